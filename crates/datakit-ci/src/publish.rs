//! Publishing the state store (`--publish-store URL`): every branch of the store is pushed to a
//! Git remote after the engine's flushes, so that statuses, history and logs can be read
//! elsewhere with plain `git`, or served by a read-only web UI ([`crate::replica`]).
//!
//! What triggers a push: a new head of `github-metadata` (each status flush of the engine, after
//! the history it reports was recorded, and each bridge sync) or of `commit-index` (written just
//! after the statuses), seen through [`Branch::watch`](datakit_ci_store::Branch::watch). The
//! builds' logs are on their cache branches, written before the statuses that report them, so
//! every push carries the logs its statuses link to. (Not [`Engine::subscribe`](datakit_ci_engine::Engine::subscribe): it announces
//! status changes only, not a flush that records history alone, nor the commit index written
//! after the statuses.) Pushes coalesce: one runs at a time, and
//! whatever moves meanwhile is pushed by one more push after it. A failed push is retried with
//! a back-off (1 s doubling to 60 s) and shown on the dashboard (health key
//! [`HEALTH_PUBLISH`]) until a push succeeds.
//!
//! What is pushed: `+refs/heads/*:refs/heads/*` with `--prune`, i.e. the remote's branches
//! become exactly the store's. All of them, because each is part of what a reader needs: the
//! metadata (targets, statuses), the `status-…` branches (history), `commit-index` (a commit's
//! builds) and the cache branches (logs, and the results the history's log links name). Forced,
//! because the store may rewrite a branch (retention's `replace_history`), and pruned, because
//! a branch gone from the store must not be read from the copy. Only refs are pushed: the
//! store's own files (its lock, `builds-owner`, temporary packs) are not part of it.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use datakit_ci_engine::METADATA_BRANCH;
use datakit_ci_git::error_chain;
use datakit_ci_health::Health;
use datakit_ci_store::{BranchName, CommitId, Store};

use crate::remote::{GitError, REMOTE, RemoteUrl};

/// The health key under which a failing push is shown.
pub const HEALTH_PUBLISH: &str = "publish store";

/// The first wait after a failed push; it doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);

/// The longest wait between two attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// The longest the last push, at shutdown, may take.
const LAST_PUSH_LIMIT: Duration = Duration::from_secs(30);

/// Pushes a store to a remote after each flush; see the [module docs](self).
pub struct Publisher {
    store: Store,
    remote: RemoteUrl,
    health: Health,
}

impl Publisher {
    /// A publisher of `store` to `remote`, reporting failures on `health`.
    pub fn new(store: Store, remote: RemoteUrl, health: Health) -> Self {
        Publisher {
            store,
            remote,
            health,
        }
    }

    /// Pushes once at start, then after each flush, until `stop` fires; then once more if
    /// something was not pushed yet (so cancel it after the engine's last flush).
    pub async fn run(self, stop: CancellationToken) {
        let branch = |name: &str| BranchName::new(name).expect("constant branch names are valid");
        let mut metadata = Some(self.store.branch(&branch(METADATA_BRANCH)).watch());
        let mut index = Some(
            self.store
                .branch(&datakit_ci_history::commit_index_branch())
                .watch(),
        );
        let mut dirty = true;
        let mut failures: u32 = 0;
        let mut retry_at: Option<Instant> = None;
        loop {
            if dirty && retry_at.is_none_or(|at| at <= Instant::now()) {
                dirty = false;
                match self.push().await {
                    Ok(()) => {
                        if failures > 0 {
                            tracing::info!(remote = %self.remote, "the store is published again");
                        }
                        failures = 0;
                        retry_at = None;
                        self.health.resolve(HEALTH_PUBLISH);
                    }
                    Err(error) => {
                        failures = failures.saturating_add(1);
                        let delay = retry_delay(failures);
                        retry_at = Some(Instant::now() + delay);
                        dirty = true;
                        let error = error_chain(&error);
                        tracing::warn!(remote = %self.remote, "cannot publish the store: {error}");
                        self.health.report(
                            HEALTH_PUBLISH,
                            format!(
                                "cannot push the store to {}: {error}; retrying in {}",
                                self.remote,
                                humantime::format_duration(delay)
                            ),
                        );
                    }
                }
                continue;
            }
            let retry = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => break,
                () = retry => {}
                moved = changed(&mut metadata) => dirty |= moved,
                moved = changed(&mut index) => dirty |= moved,
            }
        }
        // The engine's last flush happened before `stop`: push it, if it was not.
        dirty |= [&mut metadata, &mut index]
            .into_iter()
            .flatten()
            .any(|watch| watch.has_changed().unwrap_or(false));
        if dirty {
            match tokio::time::timeout(LAST_PUSH_LIMIT, self.push()).await {
                Ok(Ok(())) => self.health.resolve(HEALTH_PUBLISH),
                Ok(Err(error)) => tracing::warn!(
                    remote = %self.remote,
                    "cannot publish the store's last changes: {}",
                    error_chain(&error)
                ),
                Err(_) => tracing::warn!(
                    remote = %self.remote,
                    "the store's last changes are not published: no answer within {}",
                    humantime::format_duration(LAST_PUSH_LIMIT)
                ),
            }
        }
    }

    /// One push of every branch.
    async fn push(&self) -> Result<(), GitError> {
        let started = std::time::Instant::now();
        self.remote
            .git(
                self.store.path(),
                &[
                    "push",
                    "--force",
                    "--prune",
                    "--quiet",
                    REMOTE,
                    "+refs/heads/*:refs/heads/*",
                ],
            )
            .await?;
        tracing::debug!(remote = %self.remote, elapsed = ?started.elapsed(), "published the store");
        Ok(())
    }
}

/// Waits until `watch` sees a new head (`true`), or forever once its branch's sender is gone
/// (`false` the first time).
async fn changed(watch: &mut Option<watch::Receiver<Option<CommitId>>>) -> bool {
    let Some(receiver) = watch else {
        return std::future::pending().await;
    };
    match receiver.changed().await {
        Ok(()) => true,
        Err(_) => {
            *watch = None;
            false
        }
    }
}

/// How long to wait after `failures` failed pushes in a row.
fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(6);
    (FIRST_RETRY_DELAY * 2u32.pow(doublings)).min(MAX_RETRY_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_a_minute() {
        let delays: Vec<u64> = (1..=9).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
