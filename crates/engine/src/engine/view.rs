//! Viewing a replica: an engine over a copy of another engine's store (a read-only web UI's
//! clone of a published store, updated by `git fetch`), which evaluates nothing and writes
//! nothing. The targets follow the replica's metadata as [`Engine::run`] would have them; each
//! target's jobs are its latest recorded state (its status branch), not evaluations.
//!
//! Knows nothing of how the replica is updated: the caller says which branches moved.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use datakit_ci_store::BranchName;
use datakit_ci_term::{CommitHash, JobOutput, TargetId, Term};

use super::{Engine, Error, JobState, JobTerm, StatusChange, lock};
use crate::status::ReportedStatus;

impl Engine {
    /// Brings the engine's view up to date after its store was changed from outside (a replica
    /// refreshed with `git fetch`): `changed` are the branches that moved, appeared or went
    /// since the last call (every branch on the first). Evaluates no term and writes nothing.
    ///
    /// For an engine that is never [run](Engine::run) (whose projects need no tests: jobs come
    /// from the history). When the metadata moved, the targets are updated from it; each target
    /// whose head moved or whose status branch is in `changed` gets its jobs again from its latest
    /// recorded state ([`History::reload`](datakit_ci_history::History::reload), which the web UI's
    /// history pages then also see). A state recorded for an older head is shown as the engine
    /// shows a job not yet evaluated for a new head. After the first call, a job whose recorded
    /// result on its target's head changed is announced to [subscribers](Engine::subscribe).
    pub async fn refresh_view(&self, changed: &BTreeSet<BranchName>) -> Result<(), Error> {
        let first = lock(&self.inner.state).applied.is_none();
        let mut stale = BTreeSet::new();
        if first || changed.contains(self.inner.metadata.name()) {
            let heads_before = self.target_heads();
            if let Some(head) = self.inner.metadata.head().await? {
                self.apply_head(head.id()).await?;
            }
            let heads_after = self.target_heads();
            stale.extend(
                heads_after
                    .into_iter()
                    .filter(|(id, head)| heads_before.get(id) != Some(head))
                    .map(|(id, _)| id),
            );
        }
        for name in changed {
            if !name.as_str().starts_with("status-") {
                continue;
            }
            match self.inner.history.status_branch_target(name).await {
                Ok(Some(id)) => {
                    stale.insert(id);
                }
                Ok(None) => {}
                // Some other branch whose name starts like a status branch's.
                Err(error) => tracing::debug!(branch = %name, %error, "not a status branch"),
            }
        }
        for id in stale {
            self.view_target(&id, !first).await?;
        }
        Ok(())
    }

    /// Each tracked target's head.
    fn target_heads(&self) -> BTreeMap<TargetId, CommitHash> {
        lock(&self.inner.state)
            .targets
            .iter()
            .map(|(id, target)| (id.clone(), target.target.head().clone()))
            .collect()
    }

    /// Replaces `id`'s jobs by its latest recorded state.
    async fn view_target(&self, id: &TargetId, announce: bool) -> Result<(), Error> {
        let latest = self.inner.history.reload(id).await?;
        let mut state = lock(&self.inner.state);
        let Some(tracked) = state.targets.get_mut(id) else {
            return Ok(());
        };
        let head = tracked.target.head().clone();
        let Some((source, outputs)) =
            latest.and_then(|state| state.source_commit.map(|source| (source, state.jobs)))
        else {
            tracked.jobs.clear();
            return Ok(());
        };
        let mut jobs = BTreeMap::new();
        for (name, output) in outputs {
            let before = tracked
                .jobs
                .get(&name)
                .and_then(|job| job.output_for(&head))
                .map(|output| &output.result);
            if announce && source == head && before != Some(&output.result) {
                let status = ReportedStatus::of_result(&output.result);
                // Nobody listening is fine.
                let _ = self.inner.events.send(StatusChange {
                    target: id.clone(),
                    job: name.clone(),
                    commit: head.clone(),
                    state: status.state,
                    description: status.description,
                });
            }
            jobs.insert(name, viewed_job(output, source.clone()));
        }
        tracked.jobs = jobs;
        Ok(())
    }
}

/// A job shown from the history: no task evaluates it, so its term is never used.
fn viewed_job(output: JobOutput, head: CommitHash) -> JobState {
    JobState {
        term: JobTerm::Test(Term::ok(String::new())),
        planned: None,
        wake: Arc::new(Notify::new()),
        cancel: CancellationToken::new(),
        output: Some(output),
        output_head: Some(head),
        reported: None,
        deps: Vec::new(),
        announce: false,
    }
}
