//! Flushing: recording changed outputs in history and writing statuses to the metadata, in
//! batches (one status commit per flush; the commit index in commits of its own).
//!
//! The cost of a flush is dominated by its commits, and the metadata commit rewrites the
//! `<repo>/commit/` tree, which has an entry per commit ever reported. So a flush waits briefly
//! (`STATUS_GRACE`) for the jobs of a moved target that are not yet evaluated, so that all its
//! statuses share one commit; and the commit index (whose tree is as big) is written by a task
//! of its own after the statuses, batching the entries of the flushes that happened meanwhile.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;

use datakit_ci_store::{Commit, CommitId};
use datakit_ci_term::{CommitHash, JobOutput, TargetId};

use super::{
    Engine, HEALTH_HISTORY, HEALTH_INDEX, HEALTH_STATUSES, State, StatusChange, StatusWrite, lock,
};
use crate::status::{self, ReportedStatus};

/// How long the statuses of a target whose head moved wait for its other jobs' first evaluation
/// for that head. Evaluations take microseconds to milliseconds (they never wait for builds); a
/// term that takes longer only delays the other jobs' statuses by this much.
const STATUS_GRACE: Duration = Duration::from_millis(100);

/// How many status branches are written at once. Each history record is a small commit whose
/// time goes mostly to file-system calls; commits made at the same time share one pack (the
/// store's group commit), and under load a group waits a few milliseconds for more members, so
/// with few writers a flush of hundreds of targets was a queue of such waits. Commits no longer hold
/// a pooled store handle while their group is written, so more writers cost little memory: with 16,
/// 10,000 targets loaded in 10.8–11.4 s against 14.3–14.9 s with 3, for the same resident size.
const HISTORY_PARALLELISM: usize = 16;

/// How many targets a flush must write for the store to count as busy (see [`BUSY_PACE`]).
const BUSY_TARGETS: usize = 8;

/// After a flush that wrote [`BUSY_TARGETS`] targets or more, how long the next flush waits. Under
/// load (hundreds of builds at once), each flush was a history commit per target and a status
/// commit, and a fast build's states (pending while fetching, pending while building, success)
/// each got theirs: 2.2 history commits per build of `true`, each a new ref file. Pacing lets the
/// states that last less than this share one. A single change (a push, a build ending) is
/// written at once. With 500 builds at once, 200 ms took 9.2–9.4 s for three rounds against
/// 10.0–10.4 s with 50 ms, and 6.0 ms of CPU per build against 6.8–7.2 ms.
const BUSY_PACE: Duration = Duration::from_millis(200);

/// A pause ends early once no job has changed for this long: the changes it waits to batch have
/// stopped coming (the last builds of a burst have ended), and the last states should not wait
/// out the rest of [`BUSY_PACE`]. With 500 builds at once, rounds take under 2 s on a fresh file
/// system, and that wait was up to a tenth of one.
const PACE_QUIET: Duration = Duration::from_millis(20);

/// How long a target whose history could not be recorded waits before the first new attempt;
/// each further failure in a row doubles it, up to [`MAX_RETRY_DELAY`]. Other targets do not
/// wait: their statuses and history are written meanwhile (issue 14, defect 7).
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// The longest wait between two attempts to record a target's history.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// How long to wait before the next attempt after `failures` failed attempts in a row.
fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY_DELAY
        .saturating_mul(1 << doublings)
        .min(MAX_RETRY_DELAY)
}

/// The earlier of two optional deadlines.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The pause before the next flush, after one that wrote `targets` targets.
fn pace_after(targets: usize) -> Option<Duration> {
    (targets >= BUSY_TARGETS).then_some(BUSY_PACE)
}

/// What one flush did.
struct Flushed {
    /// How many targets it recorded or wrote statuses of.
    targets: usize,
    /// When the next flush must happen even if nothing changes: the earliest end of a target's
    /// [`STATUS_GRACE`], or the earliest retry of something that could not be written.
    deferred_until: Option<Instant>,
}

impl Engine {
    pub(super) async fn flush_loop(self) {
        let mut deferred_until: Option<Instant> = None;
        loop {
            let grace_over = async {
                match deferred_until {
                    Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.inner.flush_wanted.notified() => {}
                _ = grace_over => {}
                _ = self.inner.shutdown.cancelled() => {
                    self.flush(true).await;
                    return;
                }
            }
            // Let the other evaluations of this round land, so that they share one commit.
            tokio::task::yield_now().await;
            let flushed = self.flush(false).await;
            // What could not be written is retried at its deadline, without holding up the
            // flushes of everything else meanwhile.
            deferred_until = flushed.deferred_until;
            if let Some(pause) = pace_after(flushed.targets) {
                self.pace(pause).await;
            }
        }
    }

    /// Waits `pause`, or less once no job has changed for [`PACE_QUIET`], before the next flush
    /// (which happens at once if a job changed meanwhile).
    async fn pace(&self, pause: Duration) {
        let end = tokio::time::Instant::now() + pause;
        let mut changed = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(end) => break,
                _ = self.inner.shutdown.cancelled() => break,
                woken = tokio::time::timeout(PACE_QUIET, self.inner.flush_wanted.notified()) => {
                    if woken.is_err() {
                        break;
                    }
                    changed = true;
                }
            }
        }
        if changed {
            // The loop consumed the notifications the next flush waits for.
            self.inner.flush_wanted.notify_one();
        }
    }

    /// Writes the queued commit-index entries whenever a flush queued some, in one commit for
    /// all the flushes since the last write; on `stop`, writes what is left and returns.
    pub(super) async fn index_loop(self, stop: tokio_util::sync::CancellationToken) {
        loop {
            let stopping = tokio::select! {
                _ = self.inner.index_wanted.notified() => false,
                _ = stop.cancelled() => true,
            };
            let indexed = self.inner.history.index(&[]).await;
            if indexed.is_ok() {
                self.inner.health.resolve(HEALTH_INDEX);
            }
            if let Err(e) = indexed {
                let error = error_chain(&e);
                tracing::warn!(%error, "failed to update the commit index");
                self.inner.health.report(
                    HEALTH_INDEX,
                    format!("cannot write the commit index: {error}; retrying"),
                );
                if !stopping {
                    // The entries stay queued; try again shortly.
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => self.inner.index_wanted.notify_one(),
                        _ = stop.cancelled() => {}
                    }
                }
            }
            if stopping {
                return;
            }
        }
    }

    /// Records history and writes statuses for every dirty target, except (unless `last`) the
    /// statuses of targets whose head moved less than [`STATUS_GRACE`] ago and whose jobs are
    /// not all evaluated for it yet.
    async fn flush(&self, last: bool) -> Flushed {
        let _one_at_a_time = self.inner.flush_lock.lock().await;
        let now = Instant::now();
        let mut deferred_until: Option<Instant> = None;
        let mut flushed_targets = 0;
        let (records, writes, metadata_commit) = {
            let mut state = lock(&self.inner.state);
            let Some(metadata_commit) = state.snapshot.as_ref().map(Commit::id) else {
                return Flushed {
                    targets: 0,
                    deferred_until,
                };
            };
            let State { targets, dirty, .. } = &mut *state;
            let mut records = Vec::new();
            let mut writes = Vec::new();
            let mut deferred = Vec::new();
            for id in std::mem::take(dirty) {
                let Some(target) = targets.get_mut(&id) else {
                    continue;
                };
                let head = target.target.head().clone();
                // History records one state per head: wait until every job has an output for it
                // (the last one to be evaluated marks the target dirty again).
                let all_current = target
                    .jobs
                    .values()
                    .all(|job| job.output_for(&head).is_some());
                let grace_end = target.head_since + STATUS_GRACE;
                if !all_current && !last && now < grace_end {
                    deferred_until = Some(deferred_until.map_or(grace_end, |d| d.min(grace_end)));
                    deferred.push(id);
                    continue;
                }
                let queued = records.len() + writes.len();
                let retry_at = target
                    .history_retry
                    .map(|(at, _)| at)
                    .filter(|&at| !last && now < at);
                if target.history_dirty && all_current && retry_at.is_some() {
                    // Its last attempt failed: its statuses go on, its history waits.
                    deferred_until = earliest(deferred_until, retry_at);
                    deferred.push(id.clone());
                } else if target.history_dirty && all_current {
                    target.history_dirty = false;
                    let jobs: BTreeMap<String, JobOutput> = target
                        .jobs
                        .iter()
                        .filter_map(|(name, job)| {
                            Some((name.clone(), job.output_for(&head)?.clone()))
                        })
                        .collect();
                    records.push((id.clone(), head.clone(), jobs));
                }
                for (name, job) in &target.jobs {
                    if job.wants_status_write(&head)
                        && let Some(output) = job.output_for(&head)
                    {
                        writes.push(StatusWrite {
                            target: id.clone(),
                            job: name.clone(),
                            head: head.clone(),
                            status: ReportedStatus::of_result(&output.result),
                        });
                    }
                }
                if records.len() + writes.len() > queued {
                    flushed_targets += 1;
                }
            }
            dirty.extend(deferred);
            (records, writes, metadata_commit)
        };
        let (retry_history, indexed) = self.record_history(records, metadata_commit).await;
        deferred_until = earliest(deferred_until, retry_history);
        if !writes.is_empty() && !self.write_statuses(writes).await {
            // The store refused the status commit; try again shortly rather than on the next
            // event only.
            deferred_until = earliest(deferred_until, Some(Instant::now() + RETRY_DELAY));
        }
        if indexed {
            // Only now: the index commit rewrites a tree as big as the status commit's, and
            // written alongside it, it would delay the statuses.
            self.inner.index_wanted.notify_one();
        }
        Flushed {
            targets: flushed_targets,
            deferred_until,
        }
    }

    /// Records the states in history (a few targets at a time) and queues their commit-index
    /// entries for [`index_loop`](Self::index_loop); the history's readers see them at once.
    /// A target whose record fails is retried later (see [`retry_delay`]), and only it waits.
    /// Returns the earliest retry, if any failed, and whether index entries were queued.
    async fn record_history(
        &self,
        records: Vec<(TargetId, CommitHash, BTreeMap<String, JobOutput>)>,
        metadata_commit: CommitId,
    ) -> (Option<Instant>, bool) {
        let history = &self.inner.history;
        let mut results = futures::stream::iter(records)
            .map(|(id, head, jobs)| async move {
                let result = history.record(&id, &head, metadata_commit, &jobs).await;
                (id, head, result)
            })
            .buffered(HISTORY_PARALLELISM);
        let mut retry = None;
        let mut index = Vec::new();
        let mut history_error = None;
        while let Some((id, head, result)) = results.next().await {
            let failed = result.as_ref().err().map(|e| error_chain(e));
            if let Some(error) = &failed {
                history_error = Some(format!("{id}: {error}"));
            }
            let retry_at = self.history_recorded(&id, failed.is_some());
            match result {
                Ok(Some(commit)) => index.push((id, head, commit)),
                Ok(None) => {}
                Err(_) => {
                    let (at, failures) = retry_at.expect("a failed record is retried");
                    tracing::warn!(
                        target = %id,
                        error = failed.as_deref().unwrap_or_default(),
                        failures,
                        retry_in = ?at.saturating_duration_since(Instant::now()),
                        "failed to record history"
                    );
                    retry = earliest(retry, Some(at));
                }
            }
        }
        match &history_error {
            Some(error) => self.inner.health.report(
                HEALTH_HISTORY,
                format!("cannot record history: {error}; retrying"),
            ),
            None => self.inner.health.resolve(HEALTH_HISTORY),
        }
        if !index.is_empty() {
            history.queue_index(&index);
        }
        (retry, !index.is_empty())
    }

    /// Notes the outcome of recording `id`'s history: a failure marks it for a retry (returned:
    /// when, and how many attempts failed in a row), a success clears any retry.
    fn history_recorded(&self, id: &TargetId, failed: bool) -> Option<(Instant, u32)> {
        let mut state = lock(&self.inner.state);
        let target = state.targets.get_mut(id)?;
        if !failed {
            target.history_retry = None;
            return None;
        }
        let failures = target.history_retry.map_or(0, |(_, n)| n) + 1;
        let retry = (Instant::now() + retry_delay(failures), failures);
        target.history_retry = Some(retry);
        target.history_dirty = true;
        state.dirty.insert(id.clone());
        Some(retry)
    }

    async fn write_statuses(&self, writes: Vec<StatusWrite>) -> bool {
        let mut messages: Vec<String> = Vec::new();
        let mut by_target: BTreeMap<&TargetId, Vec<&StatusWrite>> = BTreeMap::new();
        for write in &writes {
            by_target.entry(&write.target).or_default().push(write);
        }
        for (target, jobs) in &by_target {
            let name = metadata_target_name(target);
            let message = match jobs.as_slice() {
                [one] => format!("Set {name}:{} to {}", one.job, one.status.description),
                several => format!("Update {} jobs in {name}", several.len()),
            };
            tracing::info!("Flush: {message}");
            messages.push(message);
        }
        let result = async {
            let mut transaction = self.inner.metadata.transaction().await?;
            let mut paths = Vec::with_capacity(3 * writes.len());
            for write in &writes {
                let repo = write.target.repo();
                let url = status::target_url(&self.inner.web_ui, repo, &write.head, &write.job);
                paths.extend(status::write_status(
                    &mut transaction,
                    repo,
                    &write.head,
                    &write.job,
                    &write.status,
                    &url,
                )?);
            }
            let message = match messages.as_slice() {
                [one] => one.clone(),
                several => {
                    let lines: Vec<&str> = several.iter().rev().map(String::as_str).collect();
                    format!("{} updates\n\n{}", several.len(), lines.join("\n"))
                }
            };
            let id = transaction.commit(&message).await?;
            lock(&self.inner.state).remember_own_commit(id, paths);
            Ok::<_, datakit_ci_store::Error>(id)
        }
        .await;
        if let Err(e) = result {
            let error = error_chain(&e);
            tracing::warn!(%error, "Failed to update statuses: {}", messages.join("; "));
            self.inner.health.report(
                HEALTH_STATUSES,
                format!("cannot write statuses: {error}; retrying"),
            );
            for write in &writes {
                self.mark_dirty(&write.target);
            }
            return false;
        }
        self.inner.health.resolve(HEALTH_STATUSES);
        self.inner
            .metrics
            .status_updates
            .inc_by(writes.len() as u64);
        let mut state = lock(&self.inner.state);
        for write in writes {
            if let Some(target) = state.targets.get_mut(&write.target)
                && target.target.head() == &write.head
                && let Some(job) = target.jobs.get_mut(&write.job)
            {
                job.reported = Some(write.status.clone());
            }
            // Nobody listening is fine.
            let _ = self.inner.events.send(StatusChange {
                target: write.target,
                job: write.job,
                commit: write.head,
                state: write.status.state,
                description: write.status.description,
            });
        }
        true
    }

    fn mark_dirty(&self, id: &TargetId) {
        let mut state = lock(&self.inner.state);
        if state.targets.contains_key(id) {
            state.dirty.insert(id.clone());
        }
    }
}

/// `<user>/<repo>/pr/<n>` or `<user>/<repo>/ref/<name>`, as in the original's flush messages.
fn metadata_target_name(target: &TargetId) -> String {
    match target {
        TargetId::Pr(repo, n) => format!("{repo}/pr/{n}"),
        TargetId::Ref(repo, name) => format!("{repo}/ref/{name}"),
    }
}

pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_busy_flushes_pace_the_next() {
        assert_eq!(pace_after(0), None);
        assert_eq!(pace_after(1), None, "a push is written at once");
        assert_eq!(pace_after(BUSY_TARGETS - 1), None);
        assert_eq!(pace_after(BUSY_TARGETS), Some(BUSY_PACE));
        assert_eq!(pace_after(500), Some(BUSY_PACE));
    }

    #[test]
    fn failed_history_is_retried_later_and_later() {
        assert_eq!(retry_delay(1), RETRY_DELAY);
        assert_eq!(retry_delay(2), 2 * RETRY_DELAY);
        assert_eq!(retry_delay(4), 8 * RETRY_DELAY);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY_DELAY);
    }
}
