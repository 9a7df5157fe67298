//! Measures commit throughput: 100 transactions of 100 small files each, then single small commits,
//! and the same work done with `git hash-object`/`mktree`/`commit-tree`/`update-ref` processes for
//! comparison. Run with `cargo run --release -p datakit-ci-store --example commit_throughput`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use datakit_ci_store::{BranchName, Store, StorePath};

const TRANSACTIONS: usize = 100;
const FILES: usize = 100;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("state.git"))?;
    let branch = store.branch(&BranchName::new("bench")?);

    let start = Instant::now();
    let (mut open, mut edit, mut commit) = Default::default();
    for n in 0..200u32 {
        let t0 = Instant::now();
        let mut transaction = branch.transaction().await?;
        let t1 = Instant::now();
        transaction.create_file(&StorePath::new("single/file")?, n.to_string())?;
        let t2 = Instant::now();
        transaction.commit("single").await?;
        open += t1 - t0;
        edit += t2 - t1;
        commit += t2.elapsed();
    }
    let (open, edit, commit): (
        std::time::Duration,
        std::time::Duration,
        std::time::Duration,
    ) = (open, edit, commit);
    println!(
        "open {:?} edit {:?} commit {:?}",
        open / 200,
        edit / 200,
        commit / 200
    );
    println!(
        "store: one small commit in a fresh store takes {:?}",
        start.elapsed() / 200
    );

    let start = Instant::now();
    for t in 0..TRANSACTIONS {
        let mut transaction = branch.transaction().await?;
        for f in 0..FILES {
            let path = StorePath::new(format!("jobs/job{}/output", f))?;
            transaction.create_file(&path, format!("transaction {t} file {f}"))?;
        }
        transaction.commit(&format!("transaction {t}")).await?;
    }
    let store_time = start.elapsed();
    println!("store: {TRANSACTIONS}x{FILES} files in {store_time:?}");

    let start = Instant::now();
    const SINGLE: u32 = 200;
    for n in 0..SINGLE {
        let mut transaction = branch.transaction().await?;
        transaction.create_file(&StorePath::new("single/file")?, n.to_string())?;
        transaction.commit("single").await?;
    }
    println!(
        "store: one small commit takes {:?}",
        start.elapsed() / SINGLE
    );

    // The same with git processes, for a tenth of the transactions.
    let git_dir = dir.path().join("baseline.git");
    run(
        "git",
        &[
            "init",
            "-q",
            "--bare",
            git_dir.to_str().expect("utf-8 path"),
        ],
        None,
    )?;
    let git = |args: &[&str], input: Option<&str>| {
        let mut full = vec!["--git-dir", git_dir.to_str().expect("utf-8 path")];
        full.extend_from_slice(args);
        run("git", &full, input)
    };
    let start = Instant::now();
    let mut parent: Option<String> = None;
    let baseline_transactions = TRANSACTIONS / 10;
    for t in 0..baseline_transactions {
        let mut jobs = String::new();
        for f in 0..FILES {
            let blob = git(
                &["hash-object", "-w", "--stdin"],
                Some(&format!("transaction {t} file {f}")),
            )?;
            let job = git(&["mktree"], Some(&format!("100644 blob {blob}\toutput\n")))?;
            jobs.push_str(&format!("040000 tree {job}\tjob{f}\n"));
        }
        let jobs_tree = git(&["mktree"], Some(&jobs))?;
        let root = git(
            &["mktree"],
            Some(&format!("040000 tree {jobs_tree}\tjobs\n")),
        )?;
        let mut args = vec![
            "commit-tree".to_owned(),
            root,
            "-m".to_owned(),
            format!("transaction {t}"),
        ];
        if let Some(parent) = &parent {
            args.push("-p".to_owned());
            args.push(parent.clone());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let commit = git(&args, None)?;
        git(&["update-ref", "refs/heads/bench", &commit], None)?;
        parent = Some(commit);
    }
    let git_time = start.elapsed() * 10;
    println!("git processes: {TRANSACTIONS}x{FILES} files in about {git_time:?} (extrapolated)");
    println!(
        "speed-up: {:.1}x",
        git_time.as_secs_f64() / store_time.as_secs_f64()
    );
    Ok(())
}

fn run(program: &str, args: &[&str], input: Option<&str>) -> anyhow::Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@localhost")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@localhost")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    if let Some(input) = input {
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(input.as_bytes())?;
    }
    drop(child.stdin.take());
    let output = child.wait_with_output()?;
    anyhow::ensure!(output.status.success(), "{program} {args:?} failed");
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}
