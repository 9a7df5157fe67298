//! Counts what a store commit costs in file creations: makes one-file commits on a deep path, like
//! the engine's status files, and prints how many files are under `objects/` afterwards. Run under
//! `strace -f -e trace=openat` to see every file created:
//! `cargo run --release -p datakit-ci-store --example files_per_commit -- <dir> <commits>`.

use datakit_ci_store::{BranchName, Store, StorePath};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir =
        std::path::PathBuf::from(args.next().unwrap_or_else(|| "files-per-commit.git".into()));
    let commits: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(100);
    let store = Store::open(&dir)?;
    let branch = store.branch(&BranchName::new("github-metadata")?);
    for n in 0..commits {
        let mut transaction = branch.transaction().await?;
        let path = format!("u/r/commit/{:040x}/status/ci/datakit/test/state", n % 7);
        transaction.create_file(&StorePath::new(path)?, format!("run {n}"))?;
        transaction.commit("probe").await?;
    }
    let mut files = 0usize;
    let mut stack = vec![dir.join("objects")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            } else {
                files += 1;
            }
        }
    }
    println!("{commits} commits: {files} files under objects/");
    Ok(())
}
