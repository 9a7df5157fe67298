//! One job's evaluation loop, and how its results update the engine's state.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use datakit_ci_store::StorePath;
use datakit_ci_term::{CommitHash, EvalContext, JobId, JobOutput, JobResult};

use super::{Engine, JobKey, JobTerm, State, StatusChange, lock};

impl Engine {
    /// One job's evaluation loop.
    pub(super) async fn run_job(self, key: JobKey, wake: Arc<Notify>, cancel: CancellationToken) {
        let job_id = JobId::new(key.0.clone(), key.1.clone());
        loop {
            let Some(inputs) = self.job_inputs(&key) else {
                return;
            };
            if inputs.stale {
                // Planned for an earlier head: the plan of the new head replaces or removes it.
                tokio::select! {
                    _ = wake.notified() => continue,
                    _ = cancel.cancelled() => return,
                }
            }
            let ctx = EvalContext::new(job_id.clone(), Some(inputs.tree));
            self.inner.metrics.term_evals.inc();
            let evaluate = async {
                match &inputs.term {
                    JobTerm::Test(term) => {
                        let evaluation = term.evaluate(&ctx).await;
                        (
                            Some(JobOutput::from(evaluation.status)),
                            evaluation.dependencies,
                        )
                    }
                    JobTerm::Plan(term) => {
                        let evaluation = term.evaluate(&ctx).await;
                        let status = self.plan_evaluated(&key, &inputs.head, evaluation.status);
                        (status.map(JobOutput::from), evaluation.dependencies)
                    }
                }
            };
            let evaluation = tokio::select! {
                evaluation = AssertUnwindSafe(evaluate).catch_unwind() => evaluation,
                _ = cancel.cancelled() => return,
            };
            let (output, dependencies) = match evaluation {
                Ok(evaluation) => evaluation,
                Err(_) => {
                    tracing::error!(job = %job_id, "term evaluation panicked");
                    let result = JobResult::Failure("the test's term panicked".to_owned());
                    (
                        Some(JobOutput {
                            result,
                            logs: Default::default(),
                        }),
                        Default::default(),
                    )
                }
            };
            // No output: a plan made for a head the target is only moving to; the move wakes
            // the job again.
            if let Some(output) = output {
                let deps = dependencies.paths().iter().cloned().collect();
                self.job_evaluated(&key, &inputs.head, output, deps);
            }
            tokio::select! {
                _ = dependencies.ready() => {}
                _ = wake.notified() => {}
                _ = cancel.cancelled() => return,
            }
        }
    }

    fn job_evaluated(
        &self,
        key: &JobKey,
        head: &CommitHash,
        output: JobOutput,
        deps: Vec<StorePath>,
    ) {
        let mut state = lock(&self.inner.state);
        let State {
            targets,
            index,
            dirty,
            ..
        } = &mut *state;
        let Some(target) = targets.get_mut(&key.0) else {
            return;
        };
        if target.target.head() != head {
            // Evaluated for an old head; the head change already woke the job again.
            return;
        }
        let Some(job) = target.jobs.get_mut(&key.1) else {
            return;
        };
        for path in &job.deps {
            if let Some(keys) = index.get_mut(path) {
                keys.remove(key);
                if keys.is_empty() {
                    index.remove(path);
                }
            }
        }
        for path in &deps {
            index.entry(path.clone()).or_default().insert(key.clone());
        }
        job.deps = deps;
        if job.output_for(head) != Some(&output) {
            tracing::debug!(job = %key.1, target = %key.0, result = ?output.result, "job changed");
            job.output = Some(output);
            job.output_head = Some(head.clone());
            target.history_dirty = true;
        }
        if job.announce && job.output_for(head).is_some() {
            job.announce = false;
            // A status to write is announced when written; one the metadata already has is
            // announced now.
            if !job.wants_status_write(head)
                && let Some(reported) = &job.reported
            {
                // Nobody listening is fine.
                let _ = self.inner.events.send(StatusChange {
                    target: key.0.clone(),
                    job: key.1.clone(),
                    commit: head.clone(),
                    state: reported.state,
                    description: reported.description.clone(),
                });
            }
        }
        if target.history_dirty || job.wants_status_write(head) {
            dirty.insert(key.0.clone());
            self.inner.flush_wanted.notify_one();
        }
    }
}
