//! Issue 14, defect 8: `kill_owned_by` kills what a program's runs left running, by their
//! owner id, as a restarted CI does with its previous run's builds.
//!
//! A test binary of its own: it kills every process of this process's owner id.

mod common;

use anyhow::Result;
use datakit_ci_process::{ExitStatus, kill_owned_by, owner_id, run_with_exit_status};

use common::{DOUBLE_FORK_SCRIPT, alive, assert_dies, escapee, sh_in};

#[tokio::test]
async fn issue_14_kill_owned_by_kills_what_finished_runs_left() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // Not a subreaper: the escapee outlives the run that exits by itself.
    let status = run_with_exit_status(sh_in(dir.path(), DOUBLE_FORK_SCRIPT, &["exit"])).await?;
    assert_eq!(status, ExitStatus::Exited(0));
    let pid = escapee(dir.path()).await?;
    assert!(alive(pid), "the escapee outlived its run");
    assert_eq!(kill_owned_by("no-such-owner"), 0);
    assert!(alive(pid));
    assert!(kill_owned_by(owner_id()) >= 1);
    assert_dies(pid).await?;
    assert_eq!(kill_owned_by(owner_id()), 0, "nothing is left");
    Ok(())
}
