//! Queries that read every tracked target without copying it: the web UI's lists, counts and
//! summaries over thousands of targets visit the engine's state in place and copy out only what
//! they show, instead of cloning every target and job output ([`Engine::targets`]).
//!
//! Knows nothing of what the caller does with the targets.

use datakit_ci_term::{JobOutput, Target, TargetId};

use super::{Engine, UnreadableTarget, lock};

impl Engine {
    /// Calls `visit` once per tracked target, in the engine's order (by [`TargetId`]), with the
    /// target's current metadata and its jobs by name, each with its latest output (`None`
    /// until the job was first evaluated; as in [`Engine::targets`], an output may still be
    /// the previous head's until the job is evaluated again).
    ///
    /// `visit` runs under the engine's state lock, which job tasks and the flush task also take:
    /// keep it short, copy out only what you need, and do not call the engine from it (the
    /// lock is not reentrant, so that would deadlock). Nothing is cloned for the call itself,
    /// which is what makes it cheaper than [`Engine::targets`] for pages listing every target.
    ///
    /// ```no_run
    /// # fn example(engine: &datakit_ci_engine::Engine) {
    /// // How many jobs have produced an output, without copying any target.
    /// let mut evaluated = 0;
    /// engine.visit_targets(|_id, _target, jobs| {
    ///     evaluated += jobs.iter().filter(|(_, output)| output.is_some()).count();
    /// });
    /// println!("{evaluated} jobs evaluated");
    /// # }
    /// ```
    pub fn visit_targets(
        &self,
        mut visit: impl FnMut(&TargetId, &Target, &[(&str, Option<&JobOutput>)]),
    ) {
        let state = lock(&self.inner.state);
        // One buffer for every target's jobs, so the visit allocates nothing per target.
        let mut jobs = Vec::new();
        for (id, tracked) in &state.targets {
            jobs.clear();
            jobs.extend(
                tracked
                    .jobs
                    .iter()
                    .map(|(name, job)| (name.as_str(), job.output.as_ref())),
            );
            visit(id, &tracked.target, &jobs);
        }
    }

    /// The targets whose metadata cannot be read, in order, with the reason: they are not
    /// tested until their metadata is corrected.
    pub fn unreadable_targets(&self) -> Vec<UnreadableTarget> {
        let state = lock(&self.inner.state);
        state
            .unreadable
            .iter()
            .map(|(id, reason)| UnreadableTarget {
                id: id.clone(),
                reason: reason.clone(),
            })
            .collect()
    }

    /// Why `id`'s metadata cannot be read, if it cannot.
    pub fn unreadable_target(&self, id: &TargetId) -> Option<String> {
        lock(&self.inner.state).unreadable.get(id).cloned()
    }
}
