//! Issue 14, defect 8: a build that leaves its process group (`setsid`, a double fork into the
//! background) is killed with it on cancellation, timeout and drop, in a program that is not a
//! subreaper (a scan of every process finds it by its marker).

mod common;

use std::time::Duration;

use anyhow::{Result, bail};
use datakit_ci_process::{Error, MARKER_VAR, run, run_with_exit_status};
use nix::unistd::getsid;
use tokio_util::sync::CancellationToken;

use common::{DOUBLE_FORK_SCRIPT, SETSID_SCRIPT, alive, assert_dies, escapee, session, sh_in};

async fn cancel_kills_the_escapee(script: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let token = CancellationToken::new();
    let cmd = sh_in(dir.path(), script, &[])
        .cancel(token.clone())
        .kill_grace(Duration::from_millis(200));
    let running = tokio::spawn(run(cmd));
    let pid = escapee(dir.path()).await?;
    assert!(alive(pid));
    assert_eq!(
        session(pid),
        Some(pid),
        "the escapee has a session of its own"
    );
    assert_ne!(session(pid), getsid(None).ok());
    token.cancel();
    let error = running.await?.expect_err("a cancelled run fails");
    assert!(matches!(error, Error::Cancelled), "{error:?}");
    assert_dies(pid).await
}

async fn timeout_kills_the_escapee(script: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    // A timeout long enough for the escapee to start on a busy machine.
    let cmd = sh_in(dir.path(), script, &[])
        .timeout(Duration::from_secs(5))
        .kill_grace(Duration::from_millis(200));
    let error = run_with_exit_status(cmd)
        .await
        .expect_err("a timed out run fails");
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    let pid = escapee(dir.path()).await?;
    assert_dies(pid).await
}

#[tokio::test]
async fn issue_14_a_build_that_calls_setsid_is_killed_on_cancel() -> Result<()> {
    cancel_kills_the_escapee(SETSID_SCRIPT).await
}

#[tokio::test]
async fn issue_14_a_build_that_double_forks_is_killed_on_cancel() -> Result<()> {
    cancel_kills_the_escapee(DOUBLE_FORK_SCRIPT).await
}

#[tokio::test]
async fn issue_14_a_build_that_calls_setsid_is_killed_on_timeout() -> Result<()> {
    timeout_kills_the_escapee(SETSID_SCRIPT).await
}

#[tokio::test]
async fn issue_14_a_build_that_double_forks_is_killed_on_timeout() -> Result<()> {
    timeout_kills_the_escapee(DOUBLE_FORK_SCRIPT).await
}

#[tokio::test]
async fn issue_14_a_build_that_double_forks_is_killed_when_its_run_is_dropped() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cmd = sh_in(dir.path(), DOUBLE_FORK_SCRIPT, &[]);
    let pid = tokio::select! {
        result = run(cmd) => bail!("the script ended by itself: {result:?}"),
        pid = escapee(dir.path()) => pid?,
    };
    // `select!` dropped the run future.
    assert_dies(pid).await
}

#[tokio::test]
async fn every_process_of_a_run_carries_its_marker() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // The caller's environment cannot hide the marker.
    let cmd = sh_in(
        dir.path(),
        &format!("echo ${MARKER_VAR}; sh -c 'echo ${MARKER_VAR}'"),
        &[],
    )
    .env(MARKER_VAR, "forged");
    let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&output);
    run(cmd.stdout(move |chunk| sink.lock().expect("not poisoned").extend_from_slice(chunk)))
        .await?;
    let text = String::from_utf8(output.lock().expect("not poisoned").clone())?;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0], lines[1]);
    assert!(
        lines[0].starts_with(&format!("{}/", datakit_ci_process::owner_id())),
        "{text}"
    );
    Ok(())
}
