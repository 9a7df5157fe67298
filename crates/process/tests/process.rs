//! Integration tests of `datakit-ci-process`: real `sh` scripts, real process groups.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use datakit_ci_log::{LiveLog, LiveLogSpec, LogManager};
use datakit_ci_process::{Cmd, Error, ExitStatus, run, run_with_exit_status};
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;

/// A shared buffer collecting everything a callback receives.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Sink {
    fn callback(&self) -> impl FnMut(&[u8]) + Send + 'static {
        let buffer = Arc::clone(&self.0);
        move |chunk| {
            buffer
                .lock()
                .expect("not poisoned")
                .extend_from_slice(chunk)
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
    }

    fn bytes(&self) -> Vec<u8> {
        self.0.lock().expect("not poisoned").clone()
    }
}

fn sh(script: &str) -> Cmd {
    Cmd::new(["sh", "-c", script]).expect("non-empty argv")
}

fn live_log(branch: &str) -> Result<LiveLog> {
    let manager = LogManager::new();
    Ok(manager.create(LiveLogSpec {
        branch: branch.into(),
        title: "test".into(),
        pending: "running".into(),
        cancel: None,
    })?)
}

fn log_text(log: &LiveLog) -> Result<String> {
    Ok(String::from_utf8(log.contents()?)?)
}

#[tokio::test]
async fn exit_zero_is_ok_and_output_arrives() -> Result<()> {
    let out = Sink::default();
    run(sh("echo hello").stdout(out.callback())).await?;
    assert_eq!(out.text(), "hello\n");
    Ok(())
}

/// A clean environment with its own `PATH`: the program is found in that `PATH` (which the
/// process crate looks up itself, so that it can spawn without forking) and still sees its name
/// as given, and only the given variables.
#[tokio::test]
async fn a_clean_environment_finds_programs_in_its_own_path() -> Result<()> {
    let bin = tempfile::tempdir()?;
    let tool = bin.path().join("only-here");
    fs::write(&tool, "#!/bin/sh\necho \"$0 sees $GREETING\"\n")?;
    fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let path = format!("{}:/usr/bin:/bin", bin.path().display());
    // A child forked by another test's thread before it executes its program holds every
    // descriptor of this process, the script's writable one included, and executing a file open
    // for writing fails with ETXTBSY: try again, as Go's tests do.
    let mut attempts = 0;
    let out = loop {
        let out = Sink::default();
        let cmd = Cmd::new(["only-here"])?
            .env_clear()
            .env("PATH", &path)
            .env("GREETING", "hello")
            .stdout(out.callback());
        match run(cmd).await {
            Err(error) if attempts < 50 && format!("{error:?}").contains("Text file busy") => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            result => {
                result?;
                break out;
            }
        }
    };
    assert_eq!(out.text(), format!("{} sees hello\n", tool.display()));

    let out = Sink::default();
    let cmd = sh("echo \"$0\" $PATH")
        .env_clear()
        .env("PATH", &path)
        .stdout(out.callback());
    run(cmd).await?;
    assert_eq!(out.text(), format!("sh {path}\n"), "argv[0] stays as given");

    let missing = Cmd::new(["not-in-this-path"])?
        .env_clear()
        .env("PATH", &path);
    let error = run(missing).await.expect_err("no such program");
    assert!(matches!(error, Error::Spawn { .. }), "{error:?}");
    Ok(())
}

#[tokio::test]
async fn non_zero_exit_names_command_and_status() -> Result<()> {
    let error = run(sh("exit 3")).await.expect_err("exit 3 must fail");
    assert!(matches!(error, Error::Exited { code: 3, .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        r#"command "sh" "-c" "exit 3" exited with status 3"#
    );
    let status = run_with_exit_status(sh("exit 3")).await?;
    assert_eq!(status, ExitStatus::Exited(3));
    Ok(())
}

#[tokio::test]
async fn death_by_signal_names_the_signal() -> Result<()> {
    let error = run(sh("kill -9 $$")).await.expect_err("killed must fail");
    assert_eq!(
        error.to_string(),
        r#"command "sh" "-c" "kill -9 $$" was killed by signal SIGKILL"#
    );
    Ok(())
}

#[tokio::test]
async fn missing_program_fails_to_start() -> Result<()> {
    let cmd = Cmd::new(["/nonexistent/program", "arg"])?;
    let error = run(cmd).await.expect_err("no such program");
    assert_eq!(
        error.to_string(),
        r#"failed to start "/nonexistent/program" "arg""#
    );
    let source = std::error::Error::source(&error).context("spawn errors have a source")?;
    assert!(source.to_string().contains("No such file"), "{source}");
    Ok(())
}

#[tokio::test]
async fn stderr_is_merged_into_stdout_in_order() -> Result<()> {
    let out = Sink::default();
    run(sh("echo a; echo b >&2; echo c; echo d >&2").stdout(out.callback())).await?;
    assert_eq!(out.text(), "a\nb\nc\nd\n");
    Ok(())
}

#[tokio::test]
async fn separate_callbacks_get_separate_streams() -> Result<()> {
    let out = Sink::default();
    let err = Sink::default();
    let cmd = sh("echo a; echo b >&2; echo c")
        .stdout(out.callback())
        .stderr(err.callback());
    run(cmd).await?;
    assert_eq!(out.text(), "a\nc\n");
    assert_eq!(err.text(), "b\n");
    Ok(())
}

#[tokio::test]
async fn binary_output_passes_through_untouched() -> Result<()> {
    let out = Sink::default();
    run(sh(r"printf '\377\000\376\n'").stdout(out.callback())).await?;
    assert_eq!(out.bytes(), b"\xff\x00\xfe\n");
    Ok(())
}

#[tokio::test]
async fn stdin_data_reaches_the_child() -> Result<()> {
    let out = Sink::default();
    let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let cmd = Cmd::new(["cat"])?
        .stdin(data.clone())
        .stdout(out.callback());
    run(cmd).await?;
    assert_eq!(out.bytes(), data);
    Ok(())
}

#[tokio::test]
async fn default_stdin_is_empty() -> Result<()> {
    let out = Sink::default();
    run(sh("wc -c").stdout(out.callback())).await?;
    assert_eq!(out.text().trim(), "0");
    Ok(())
}

#[tokio::test]
async fn unread_stdin_is_not_an_error() -> Result<()> {
    let cmd = Cmd::new(["true"])?.stdin(vec![b'x'; 1 << 20]);
    run(cmd).await?;
    Ok(())
}

#[tokio::test]
async fn cwd_and_env_are_applied() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path().canonicalize()?;
    let out = Sink::default();
    let cmd = sh(r#"pwd; echo "$DKCI_TEST_VAR"; echo "${HOME-unset}""#)
        .cwd(&dir)
        .env("DKCI_TEST_VAR", "some value")
        .env_remove("HOME")
        .stdout(out.callback());
    run(cmd).await?;
    assert_eq!(
        out.text(),
        format!("{}\nsome value\nunset\n", dir.display())
    );
    Ok(())
}

#[tokio::test]
async fn log_shows_the_command_and_its_output() -> Result<()> {
    let log = live_log("log-output")?;
    run(sh("echo out; echo err >&2").log(log.clone())).await?;
    let text = log_text(&log)?;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].ends_with(r#"] Running "sh" "-c" "echo out; echo err >&2""#),
        "{text}"
    );
    assert_eq!(&lines[1..], ["out", "err"]);
    Ok(())
}

#[tokio::test]
async fn log_cmd_hides_secrets() -> Result<()> {
    let log = live_log("log-cmd")?;
    let cmd = Cmd::new(["sh", "-c", "exit 4", "s3cret-token"])?
        .log_cmd(vec![
            "sh".into(),
            "-c".into(),
            "exit 4".into(),
            "***".into(),
        ])
        .log(log.clone());
    let error = run(cmd).await.expect_err("exit 4 must fail");
    let text = log_text(&log)?;
    assert!(
        text.contains(r#"Running "sh" "-c" "exit 4" "***""#),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
    assert!(!error.to_string().contains("s3cret"), "{error}");
    assert!(error.to_string().contains(r#""***""#), "{error}");
    Ok(())
}

#[tokio::test]
async fn large_output_is_delivered_completely() -> Result<()> {
    const SIZE: u64 = 200_000_000;
    let total = Arc::new(AtomicU64::new(0));
    let largest_chunk = Arc::new(AtomicUsize::new(0));
    let cmd = sh(&format!("head -c {SIZE} /dev/zero")).stdout({
        let total = Arc::clone(&total);
        let largest_chunk = Arc::clone(&largest_chunk);
        move |chunk| {
            total.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            largest_chunk.fetch_max(chunk.len(), Ordering::Relaxed);
        }
    });
    run(cmd).await?;
    assert_eq!(total.load(Ordering::Relaxed), SIZE);
    assert!(largest_chunk.load(Ordering::Relaxed) <= 64 * 1024);
    Ok(())
}

/// A script whose grandchild ignores SIGTERM; both write their PIDs into the working directory.
/// The child (the group leader) waits for the grandchild.
const TREE_SCRIPT: &str = r#"
sh -c 'trap "" TERM; echo $$ > grandchild.pid.tmp; mv grandchild.pid.tmp grandchild.pid; exec sleep 1000' &
echo $$ > child.pid.tmp; mv child.pid.tmp child.pid
wait
"#;

/// The PIDs of the tree started by [`TREE_SCRIPT`] in `dir`.
struct Tree {
    child: Pid,
    grandchild: Pid,
}

fn read_pid(path: &Path) -> Option<Pid> {
    let text = fs::read_to_string(path).ok()?;
    Some(Pid::from_raw(text.trim().parse().ok()?))
}

fn tree_pids(dir: &Path) -> Option<Tree> {
    Some(Tree {
        child: read_pid(&dir.join("child.pid"))?,
        grandchild: read_pid(&dir.join("grandchild.pid"))?,
    })
}

/// Waits (with a deadline) until both PID files exist.
async fn wait_for_tree(dir: &Path) -> Result<Tree> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(tree) = tree_pids(dir) {
            return Ok(tree);
        }
        if Instant::now() > deadline {
            bail!("the script never wrote its PID files");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: Pid) -> bool {
    if kill(pid, None) == Err(Errno::ESRCH) {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => match stat.rsplit_once(')') {
            Some((_, rest)) => !rest.trim_start().starts_with(['Z', 'X']),
            None => true,
        },
        Err(_) => false,
    }
}

/// PIDs of live (not zombie) processes in process group `pgid`.
fn live_group_members(pgid: Pid) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            // Fields after the name: state ppid pgrp ...
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.get(2) == Some(&pgid.as_raw().to_string().as_str())
                && !matches!(fields.first(), Some(&"Z") | Some(&"X"))
        })
        .collect()
}

/// Waits (with a deadline) until no process of the tree is alive.
async fn assert_tree_dies(tree: &Tree) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let members = live_group_members(tree.child);
        if !alive(tree.child) && !alive(tree.grandchild) && members.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("process group {} survived: {members:?}", tree.child);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn cancel_kills_the_whole_tree() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let token = CancellationToken::new();
    let log = live_log("cancel")?;
    let cmd = sh(TREE_SCRIPT)
        .cwd(dir.path())
        .cancel(token.clone())
        .kill_grace(Duration::from_millis(200))
        .log(log.clone());
    let running = tokio::spawn(run(cmd));
    let tree = wait_for_tree(dir.path()).await?;
    assert!(alive(tree.child) && alive(tree.grandchild));
    assert_eq!(tree.child, nix::unistd::getpgid(Some(tree.grandchild))?);
    assert_ne!(
        tree.child,
        nix::unistd::getpgrp(),
        "the child has its own group"
    );
    token.cancel();
    let error = running.await?.expect_err("cancelled run must fail");
    assert!(matches!(error, Error::Cancelled), "{error:?}");
    assert_eq!(error.to_string(), "cancelled");
    assert_tree_dies(&tree).await?;
    let text = log_text(&log)?;
    assert!(
        text.contains("] Switch was turned off, so killing process \"sh\" \"-c\""),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn timeout_kills_the_whole_tree() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log = live_log("timeout")?;
    let cmd = sh(TREE_SCRIPT)
        .cwd(dir.path())
        .timeout(Duration::from_millis(1500))
        .kill_grace(Duration::from_millis(200))
        .log(log.clone());
    let error = run_with_exit_status(cmd)
        .await
        .expect_err("timed-out run must fail");
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert_eq!(error.to_string(), "exceeded timeout of 1.50 seconds");
    let tree = tree_pids(dir.path()).context("the script started within the timeout")?;
    assert_tree_dies(&tree).await?;
    let text = log_text(&log)?;
    assert!(
        text.contains("] Timeout (of 1.50 seconds) expired"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn dropping_the_run_kills_the_whole_tree() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cmd = sh(TREE_SCRIPT).cwd(dir.path());
    let tree = tokio::select! {
        result = run(cmd) => bail!("the script ended by itself: {result:?}"),
        tree = wait_for_tree(dir.path()) => tree?,
    };
    // The run future has been dropped by `select!`.
    assert_tree_dies(&tree).await?;
    Ok(())
}

#[tokio::test]
async fn cancelled_token_fails_even_a_successful_run() -> Result<()> {
    let token = CancellationToken::new();
    token.cancel();
    let error = run(sh("exit 0").cancel(token))
        .await
        .expect_err("cancelled run must fail");
    assert!(matches!(error, Error::Cancelled), "{error:?}");
    Ok(())
}
