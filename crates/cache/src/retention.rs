//! Retention of build logs (issue 20, `--keep-logs`): a cache branch whose latest build is older
//! than the retention period keeps its result (`value/`, `failure`, `recipe`) but loses its
//! logs: the branch is replaced by one commit whose `log` says when and why it was removed,
//! with a file `log-removed` marking it. Its earlier commits, and the logs only they held, are no
//! longer reachable; [`Store::compact`](datakit_ci_store::Store::compact) frees their disk.
//!
//! Statuses and history are other branches and stay as they are; a history entry's link to a
//! removed log finds the note on the branch instead (the web UI shows it).

use std::time::{Duration, SystemTime};

use datakit_ci_store::Store;

use crate::Error;
use crate::cache::{LOG_FILE, path};

pub use crate::cache::LOG_REMOVED_FILE;

/// What a retention pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Cache branches whose logs were removed.
    pub removed: usize,
    /// Cache branches whose latest build is recent enough to keep.
    pub kept: usize,
}

/// Removes the logs of every cache branch of `store` whose head is older than `keep` (a branch
/// with a `log` file at its root is a cache branch; one already marked `log-removed` is skipped).
pub async fn remove_old_logs(store: &Store, keep: Duration) -> Result<Retention, Error> {
    let store_error = |branch: &str| {
        let branch = branch.to_owned();
        move |source| Error::Store { branch, source }
    };
    let now = SystemTime::now();
    let cutoff = now.checked_sub(keep).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut report = Retention::default();
    for name in store.branches().await.map_err(store_error("*"))? {
        let branch = store.branch(&name);
        let Some(head) = branch.head().await.map_err(store_error(name.as_str()))? else {
            continue;
        };
        let tree = head.tree();
        let is_cache = tree
            .exists(&path(LOG_FILE))
            .map_err(store_error(name.as_str()))?;
        let removed = tree
            .exists(&path(LOG_REMOVED_FILE))
            .map_err(store_error(name.as_str()))?;
        if !is_cache || removed {
            continue;
        }
        if head.time() >= cutoff {
            report.kept += 1;
            continue;
        }
        let built = chrono::DateTime::<chrono::Utc>::from(head.time());
        let today = chrono::DateTime::<chrono::Utc>::from(now);
        let note = format!(
            "The log of this build was removed on {} by the retention policy (--keep-logs {}): \
             the build was made on {}. Its result is kept.\n",
            today.format("%Y-%m-%d %H:%M UTC"),
            humantime::format_duration(keep),
            built.format("%Y-%m-%d %H:%M UTC"),
        );
        let mut transaction = branch
            .transaction()
            .await
            .map_err(store_error(name.as_str()))?;
        transaction.replace_history();
        transaction
            .create_file(&path(LOG_FILE), note)
            .map_err(store_error(name.as_str()))?;
        crate::saved_log::remove_index(&mut transaction).map_err(store_error(name.as_str()))?;
        transaction
            .create_file(
                &path(LOG_REMOVED_FILE),
                today.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )
            .map_err(store_error(name.as_str()))?;
        transaction
            .commit("Log removed by retention")
            .await
            .map_err(store_error(name.as_str()))?;
        report.removed += 1;
    }
    tracing::info!(
        removed = report.removed,
        kept = report.kept,
        "log retention pass"
    );
    Ok(report)
}
