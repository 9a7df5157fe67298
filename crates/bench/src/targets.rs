//! The synthetic targets the engine and web groups load: one repository, branches `b00000…`
//! written straight into `github-metadata`, three cheap jobs each, and a way to wait until their
//! statuses are announced.

use anyhow::{bail, ensure};
use tokio::sync::broadcast::{self, error::RecvError};

use datakit_ci::engine::{Engine, StatusChange};
use datakit_ci::store::StorePath;

/// The repository every synthetic target belongs to.
pub(crate) const REPO: &str = "bench/repo";
/// The jobs of every target.
pub(crate) const JOBS: [&str; 3] = ["alpha", "beta", "gamma"];

/// The name of branch `i`: `b00042`.
pub(crate) fn branch_name(i: usize) -> String {
    format!("b{i:05}")
}

/// `bench/repo/ref/heads/b<i>/head`.
pub(crate) fn head_path(i: usize) -> anyhow::Result<StorePath> {
    Ok(StorePath::new(format!(
        "{REPO}/ref/heads/{}/head",
        branch_name(i)
    ))?)
}

/// A distinct 40-digit lowercase hex commit hash for `n` (the commits need not exist).
pub(crate) fn fake_hash(n: u64) -> String {
    let mixed = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1_e995;
    format!("{mixed:016x}{n:024x}")
}

/// Counts `success` announcements until `expected`. Announcements the receiver was too slow for
/// (the engine writes them in bursts; the channel holds 4,096) are counted as `Lagged`; callers
/// check the store or the engine afterwards.
pub(crate) async fn count_successes(
    events: &mut broadcast::Receiver<StatusChange>,
    expected: usize,
) -> anyhow::Result<()> {
    let mut seen = 0;
    while seen < expected {
        match events.recv().await {
            Ok(change) => {
                ensure!(
                    change.state == "success",
                    "job {} of {} is {}: {}",
                    change.job,
                    change.target,
                    change.state,
                    change.description
                );
                seen += 1;
            }
            Err(RecvError::Lagged(n)) => seen += n as usize,
            Err(RecvError::Closed) => bail!("the engine stopped after {seen} statuses"),
        }
    }
    Ok(())
}

/// Checks that `engine` tracks `targets` targets and that every job has an output (after a load).
pub(crate) fn check_loaded(engine: &Engine, targets: usize) -> anyhow::Result<()> {
    let tracked = engine.targets();
    ensure!(
        tracked.len() == targets,
        "the engine tracks {} targets, {targets} were written",
        tracked.len()
    );
    let missing = tracked
        .iter()
        .flat_map(|t| &t.jobs)
        .filter(|job| job.output.is_none())
        .count();
    ensure!(missing == 0, "{missing} jobs have no output after the load");
    Ok(())
}
