//! End-to-end tests of the `datakit-ci` command line: bad arguments and unusable state
//! directories exit with status 2 and one message naming the problem, and the README's
//! walkthrough works as written.

mod common;

use std::ffi::OsString;
use std::path::Path;

use common::{Ci, Repo, Scratch, State, run_git, run_to_exit};

/// Runs the binary with `args`, checks it exits with status 2, prints nothing on standard output
/// and exactly one line on standard error, and returns that line.
fn usage_error(args: &[OsString]) -> String {
    let (status, stdout, stderr) = run_to_exit(args.iter().cloned());
    assert_eq!(status.code(), Some(2), "{args:?}: {stderr:?}");
    assert_eq!(stdout, Vec::<String>::new(), "{args:?}");
    assert_eq!(stderr.len(), 1, "{args:?}: {stderr:?}");
    stderr[0].clone()
}

fn args(repo: &Path, tests: &[&str], state: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--repo".into(), repo.into()];
    for test in tests {
        args.push("--test".into());
        args.push((*test).into());
    }
    args.push("--state-dir".into());
    args.push(state.into());
    args
}

#[test]
fn a_directory_that_is_not_a_repository_is_refused() {
    let scratch = Scratch::new();
    let empty = scratch.path("empty");
    std::fs::create_dir(&empty).expect("create the directory");
    let message = usage_error(&args(&empty, &["build=true"], &scratch.path("var")));
    let expected = format!("datakit-ci: {} is not a git repository", empty.display());
    assert!(message.starts_with(&expected), "{message}");
}

#[test]
fn a_test_without_a_command_is_refused() {
    let repo = Repo::new("args");
    let state = State::new();
    let message = usage_error(&args(repo.path(), &["build"], state.dir()));
    assert_eq!(
        message,
        r#"datakit-ci: --test "build": expected NAME=COMMAND"#
    );
    assert!(!state.dir().exists(), "nothing is created on bad arguments");
}

#[test]
fn a_test_name_given_twice_is_refused() {
    let repo = Repo::new("args");
    let state = State::new();
    let message = usage_error(&args(
        repo.path(),
        &["build=true", "build=false"],
        state.dir(),
    ));
    assert_eq!(
        message,
        r#"datakit-ci: --test: the name "build" is used twice"#
    );
}

#[test]
fn a_state_directory_that_cannot_be_created_is_refused() {
    let repo = Repo::new("args");
    let scratch = Scratch::new();
    std::fs::write(scratch.path("file"), "not a directory\n").expect("write a file");
    let state_dir = scratch.path("file").join("var");
    let message = usage_error(&args(repo.path(), &["build=true"], &state_dir));
    let expected = format!(
        "datakit-ci: cannot use state directory {}: ",
        state_dir.display()
    );
    assert!(message.starts_with(&expected), "{message}");
}

#[test]
fn a_state_directory_in_use_is_refused_and_the_owner_keeps_running() {
    let repo = Repo::new("locked");
    let state = State::new();
    let mut first = Ci::start(&[&repo], &[("build", "true")], &state, &[]);
    first.wait_for_line("local/locked/heads/main build: success (Passed)");

    let message = usage_error(&args(repo.path(), &["build=true"], state.dir()));

    assert_eq!(
        message,
        format!(
            "datakit-ci: state store at {} is locked by another engine (pid {})",
            state.store().display(),
            first.pid()
        )
    );
    // The first instance still works.
    let main = repo.rev("main");
    let next = repo.commit(&main, "Next", &[("next", "1\n")]);
    repo.set_ref("refs/heads/main", &next);
    state.wait_for_status(&first, "local/locked", &next, "build", "success");
    assert_eq!(first.terminate().code(), Some(0), "{}", first.report());
}

/// The README's "Run the CI on a local repository" walkthrough, run as written except for the
/// paths (temporary directories) and `cargo run --release -p datakit-ci --` (the binary under
/// test).
#[test]
fn the_readme_walkthrough_works() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("read README.md");
    let section = readme
        .split("## Run the CI on a local repository")
        .nth(1)
        .expect("the README has a walkthrough");
    let script = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the walkthrough has a shell block");
    let commands: Vec<&str> = script.lines().collect();
    assert_eq!(commands.len(), 2, "{script}");
    let scratch = Scratch::new();
    let sample = scratch.path("sample");
    let sample_ci = scratch.path("sample-ci");
    let localise = |command: &str| {
        command
            .replace("/tmp/sample-ci", &sample_ci.display().to_string())
            .replace("/tmp/sample", &sample.display().to_string())
            .replace("cargo run --release -p datakit-ci --", common::binary())
    };
    assert!(commands[1].contains("cargo run --release -p datakit-ci --"));

    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(localise(commands[0]))
        .status()
        .expect("sh runs");
    assert!(status.success(), "{}", commands[0]);
    assert_eq!(run_git(&sample, &["rev-list", "--count", "main"]), "1");

    let ci = Ci::spawn_program(
        "sh",
        ["-c".to_owned(), format!("exec {}", localise(commands[1]))],
    );
    let examples: Vec<&str> = section
        .split('`')
        .filter(|quoted| quoted.starts_with("local/sample/heads/main "))
        .collect();
    assert_eq!(examples.len(), 3, "the README shows three example lines");
    for line in examples {
        ci.wait_for_line(line);
    }
    assert!(sample_ci.join("state.git").exists());
}

#[test]
fn issue_20_bad_notification_and_log_size_options_are_refused() {
    let repo = Repo::new("args");
    let state = State::new();
    let with = |extra: &[&str]| {
        let mut all = args(repo.path(), &["build=true"], state.dir());
        all.extend(extra.iter().map(OsString::from));
        usage_error(&all)
    };
    assert_eq!(
        with(&["--max-log-size", "1KiB"]),
        "datakit-ci: --max-log-size: must be at least 4KiB"
    );
    assert_eq!(
        with(&["--notify", "ftp://example.org/hook"]),
        r#"datakit-ci: --notify "ftp://example.org/hook": must start with http:// or https://"#
    );
    assert_eq!(
        with(&["--notify-secret-file", "/nonexistent/secret"]),
        "datakit-ci: --notify-secret-file: no --notify URL to sign for"
    );
    let message = with(&[
        "--notify",
        "http://127.0.0.1:9/hook",
        "--notify-secret-file",
        "/nonexistent/secret",
    ]);
    assert!(
        message.starts_with("datakit-ci: notification secret /nonexistent/secret: "),
        "{message}"
    );
}
