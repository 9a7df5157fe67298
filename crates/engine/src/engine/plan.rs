//! Plans: a project's plan term evaluates, per target, to the jobs of its head commit (e.g. the
//! steps of the pipeline file read from that commit); here its value becomes the target's
//! planned jobs, added, replaced and removed as the plan changes.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::Notify;

use datakit_ci_term::{CommitHash, Problem, Status};

use super::{Engine, JobKey, JobState, JobTerm, lock, status};
use crate::config::Plan;

impl Engine {
    /// A job's state before its first evaluation.
    pub(super) fn new_job(
        &self,
        term: JobTerm,
        planned: Option<(CommitHash, Vec<String>)>,
        reported: Option<status::ReportedStatus>,
        announce: bool,
    ) -> JobState {
        JobState {
            term,
            planned,
            wake: Arc::new(Notify::new()),
            cancel: self.inner.shutdown.child_token(),
            output: None,
            output_head: None,
            reported,
            deps: Vec::new(),
            announce,
        }
    }

    /// Applies the plan job `key`'s evaluation for `head` and returns the plan job's own status:
    /// the plan's description, or its problem. A failed plan leaves the target no planned jobs;
    /// a pending one leaves them as they are (they wait, if planned for another head). A plan
    /// made for another head than `head` changes nothing and has no status (`None`).
    pub(super) fn plan_evaluated(
        &self,
        key: &JobKey,
        head: &CommitHash,
        status: Status<Plan>,
    ) -> Option<Status<String>> {
        let Status { result, output } = status;
        if let Ok(plan) = &result
            && plan.head != *head
        {
            // The evaluation read a newer metadata commit than the target's head the engine
            // knows yet (the head is being updated): nothing to report for either head.
            return None;
        }
        Some(match result {
            Ok(plan) => {
                self.set_planned_jobs(key, head, &plan);
                Status {
                    result: Ok(plan.description),
                    output,
                }
            }
            Err(problem) => {
                if matches!(problem, Problem::Failure(_)) {
                    self.set_planned_jobs(
                        key,
                        head,
                        &Plan {
                            head: head.clone(),
                            description: String::new(),
                            jobs: Vec::new(),
                        },
                    );
                }
                Status {
                    result: Err(problem),
                    output,
                }
            }
        })
    }

    /// Makes `plan`'s jobs the planned jobs of `key`'s target, if its head is still `head`:
    /// jobs it no longer lists stop and go away, listed jobs get the new term (and are evaluated
    /// again), new ones start.
    fn set_planned_jobs(&self, key: &JobKey, head: &CommitHash, plan: &Plan) {
        let (target_id, plan_name) = key;
        let mut spawn = Vec::new();
        {
            let mut state = lock(&self.inner.state);
            let announce = state.applied.is_some();
            let tree = state.snapshot.as_ref().map(|c| c.tree());
            let super::State {
                targets,
                index,
                dirty,
                ..
            } = &mut *state;
            let Some(target) = targets.get_mut(target_id) else {
                return;
            };
            if target.target.head() != head {
                return;
            }
            let mut listed = BTreeSet::new();
            for job in &plan.jobs {
                let taken = target
                    .jobs
                    .get(&job.name)
                    .is_some_and(|existing| existing.planned.is_none());
                if taken || job.name == *plan_name || !listed.insert(job.name.clone()) {
                    tracing::warn!(
                        target = %target_id,
                        job = job.name,
                        "a planned job has the name of another job; ignored"
                    );
                    continue;
                }
                let planned = Some((head.clone(), job.needs.clone()));
                if let Some(existing) = target.jobs.get_mut(&job.name) {
                    existing.term = JobTerm::Test(job.term.clone());
                    existing.planned = planned;
                    existing.wake.notify_one();
                    continue;
                }
                let reported = tree.as_ref().and_then(|tree| {
                    let reader = datakit_ci_term::metadata::MetadataReader::new(tree);
                    status::ReportedStatuses::read(tree, target_id.repo(), head)
                        .get(&reader, &job.name)
                });
                let state =
                    self.new_job(JobTerm::Test(job.term.clone()), planned, reported, announce);
                spawn.push((
                    (target_id.clone(), job.name.clone()),
                    Arc::clone(&state.wake),
                    state.cancel.clone(),
                ));
                target.jobs.insert(job.name.clone(), state);
            }
            let removed: Vec<String> = target
                .jobs
                .iter()
                .filter(|(name, job)| job.planned.is_some() && !listed.contains(*name))
                .map(|(name, _)| name.clone())
                .collect();
            let changed = !spawn.is_empty() || !removed.is_empty();
            for name in removed {
                if let Some(job) = target.jobs.remove(&name) {
                    job.cancel.cancel();
                    let key = (target_id.clone(), name);
                    for path in &job.deps {
                        if let Some(keys) = index.get_mut(path) {
                            keys.remove(&key);
                        }
                    }
                }
            }
            if changed {
                // The target's recorded state gains or loses jobs.
                target.history_dirty = true;
                dirty.insert(target_id.clone());
                self.inner.flush_wanted.notify_one();
            }
        }
        for (key, wake, cancel) in spawn {
            self.inner
                .tasks
                .spawn(self.clone().run_job(key, wake, cancel));
        }
    }
}
