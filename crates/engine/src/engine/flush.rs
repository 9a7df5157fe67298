//! Flushing: recording changed outputs in history and writing statuses to the metadata, in
//! batches (one status commit and one commit-index commit per flush).

use std::collections::BTreeMap;

use datakit_ci_store::{Commit, CommitId};
use datakit_ci_term::{CommitHash, JobOutput, TargetId};

use super::{Engine, State, StatusChange, StatusWrite, lock};
use crate::status::{self, ReportedStatus};

impl Engine {
    pub(super) async fn flush_loop(self) {
        loop {
            tokio::select! {
                _ = self.inner.flush_wanted.notified() => {}
                _ = self.inner.shutdown.cancelled() => {
                    self.flush().await;
                    return;
                }
            }
            // Let the other evaluations of this round land, so that they share one commit.
            tokio::task::yield_now().await;
            if !self.flush().await {
                // The store refused; try again shortly rather than on the next event only.
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => self.inner.flush_wanted.notify_one(),
                    _ = self.inner.shutdown.cancelled() => {}
                }
            }
        }
    }

    /// Records history and writes statuses for every dirty target. Returns false if something
    /// could not be written (it stays dirty).
    async fn flush(&self) -> bool {
        let _one_at_a_time = self.inner.flush_lock.lock().await;
        let (records, writes, metadata_commit) = {
            let mut state = lock(&self.inner.state);
            let Some(metadata_commit) = state.snapshot.as_ref().map(Commit::id) else {
                return true;
            };
            let State { targets, dirty, .. } = &mut *state;
            let mut records = Vec::new();
            let mut writes = Vec::new();
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
                if target.history_dirty && all_current {
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
            }
            (records, writes, metadata_commit)
        };
        let mut ok = self.record_history(records, metadata_commit).await;
        if !writes.is_empty() {
            ok &= self.write_statuses(writes).await;
        }
        ok
    }

    async fn record_history(
        &self,
        records: Vec<(TargetId, CommitHash, BTreeMap<String, JobOutput>)>,
        metadata_commit: CommitId,
    ) -> bool {
        let mut ok = true;
        let mut index = Vec::new();
        for (id, head, jobs) in records {
            match self
                .inner
                .history
                .record(&id, &head, metadata_commit, &jobs)
                .await
            {
                Ok(Some(commit)) => index.push((id, head, commit)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(target = %id, error = %error_chain(&e), "failed to record history");
                    self.mark_dirty(&id, true);
                    ok = false;
                }
            }
        }
        if !index.is_empty()
            && let Err(e) = self.inner.history.index(&index).await
        {
            tracing::warn!(error = %error_chain(&e), "failed to update the commit index");
            ok = false;
        }
        ok
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
            for write in &writes {
                let repo = write.target.repo();
                let url = status::target_url(&self.inner.web_ui, repo, &write.head, &write.job);
                status::write_status(
                    &mut transaction,
                    repo,
                    &write.head,
                    &write.job,
                    &write.status,
                    &url,
                )?;
            }
            let message = match messages.as_slice() {
                [one] => one.clone(),
                several => {
                    let lines: Vec<&str> = several.iter().rev().map(String::as_str).collect();
                    format!("{} updates\n\n{}", several.len(), lines.join("\n"))
                }
            };
            transaction.commit(&message).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %error_chain(&e), "Failed to update statuses: {}", messages.join("; "));
            for write in &writes {
                self.mark_dirty(&write.target, false);
            }
            return false;
        }
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

    fn mark_dirty(&self, id: &TargetId, history: bool) {
        let mut state = lock(&self.inner.state);
        if let Some(target) = state.targets.get_mut(id) {
            target.history_dirty |= history;
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
