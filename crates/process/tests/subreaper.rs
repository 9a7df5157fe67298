//! Issue 14, defect 8, in a program that is a child subreaper (as the `datakit-ci` binary is):
//! the processes a build orphans become this program's children, and the end of the run kills
//! and reaps them, even when the build exits by itself.
//!
//! A test binary of its own: becoming a subreaper changes the whole process.

mod common;

use anyhow::Result;
use datakit_ci_process::{ExitStatus, become_subreaper, run_with_exit_status};

use common::{DOUBLE_FORK_SCRIPT, assert_reaped, escapee, sh_in};

#[tokio::test]
async fn issue_14_a_subreaper_kills_and_reaps_what_a_finished_build_left() -> Result<()> {
    become_subreaper()?;
    let dir = tempfile::tempdir()?;
    // The escapee writes its PID before the script exits, so it is there when the run ends.
    let status = run_with_exit_status(sh_in(dir.path(), DOUBLE_FORK_SCRIPT, &["exit"])).await?;
    assert_eq!(status, ExitStatus::Exited(0));
    let pid = escapee(dir.path()).await?;
    // Killed, and reaped by this process: not even a zombie is left.
    assert_reaped(pid).await
}
