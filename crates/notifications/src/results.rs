//! A target's result from its jobs' statuses, and the changes of it that are news.

use std::collections::{BTreeMap, HashMap};

use datakit_ci_engine::StatusChange;
use datakit_ci_term::{CommitHash, TargetId};

/// What a result change is, as the event's `event` field says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultKind {
    /// The target now fails (it passed, or had no result yet).
    Failed,
    /// The target passes again after failing.
    Fixed,
    /// The target fails because its failing jobs were cancelled.
    Cancelled,
}

impl ResultKind {
    /// `failed`, `fixed` or `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultKind::Failed => "failed",
            ResultKind::Fixed => "fixed",
            ResultKind::Cancelled => "cancelled",
        }
    }
}

/// A target's result changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultChange {
    /// What changed.
    pub kind: ResultKind,
    /// The target.
    pub target: TargetId,
    /// The commit the new result is about.
    pub commit: CommitHash,
    /// Every job's state and description, by name.
    pub jobs: BTreeMap<String, (String, String)>,
}

/// A settled result: every job passed, or one failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settled {
    Success,
    Failure,
}

#[derive(Debug, Default)]
struct Target {
    commit: Option<CommitHash>,
    /// Job name → (state, description), for `commit`.
    jobs: BTreeMap<String, (String, String)>,
    /// The last settled result (of any commit), and whether its failure was a cancellation.
    settled: Option<(Settled, bool)>,
}

/// Follows the statuses of every target's jobs and reports when a target's result changes.
///
/// A target's result is `failure` once any job of its head fails, `success` once every job it has
/// seen passed and none is pending; while jobs are pending it keeps its last settled result, so a
/// new commit that passes again is not news, and one that fails after a pass is. The first result
/// seen for a target is news only if it is a failure: the CI does not know what it was before it
/// started.
#[derive(Debug, Default)]
pub struct TargetResults {
    targets: HashMap<TargetId, Target>,
}

impl TargetResults {
    /// Records `change`; returns the target's result change, if it is one.
    pub fn observe(&mut self, change: &StatusChange) -> Option<ResultChange> {
        let target = self.targets.entry(change.target.clone()).or_default();
        if target.commit.as_ref() != Some(&change.commit) {
            target.commit = Some(change.commit.clone());
            target.jobs.clear();
        }
        target.jobs.insert(
            change.job.clone(),
            (change.state.to_owned(), change.description.clone()),
        );
        let failing: Vec<&str> = target
            .jobs
            .values()
            .filter(|(state, _)| state == "failure" || state == "error")
            .map(|(_, description)| description.as_str())
            .collect();
        let now = if !failing.is_empty() {
            let cancelled = failing
                .iter()
                .all(|description| description.to_ascii_lowercase().contains("cancelled"));
            (Settled::Failure, cancelled)
        } else if target.jobs.values().all(|(state, _)| state == "success") {
            (Settled::Success, false)
        } else {
            return None;
        };
        let before = target.settled.replace(now);
        let kind = match (before, now) {
            (Some(before), now) if before == now => return None,
            (None, (Settled::Success, _)) => return None,
            (Some((Settled::Failure, _)), (Settled::Success, _)) => ResultKind::Fixed,
            (_, (Settled::Failure, true)) => ResultKind::Cancelled,
            (_, (Settled::Failure, false)) => ResultKind::Failed,
            (Some((Settled::Success, _)), (Settled::Success, _)) => return None,
        };
        Some(ResultChange {
            kind,
            target: change.target.clone(),
            commit: change.commit.clone(),
            jobs: target.jobs.clone(),
        })
    }

    /// Forgets `target` (it was removed).
    pub fn forget(&mut self, target: &TargetId) {
        self.targets.remove(target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(target: &TargetId, commit: char, job: &str, state: &'static str) -> StatusChange {
        StatusChange {
            target: target.clone(),
            job: job.to_owned(),
            commit: std::iter::repeat_n(commit, 40)
                .collect::<String>()
                .parse()
                .expect("a hash"),
            state,
            description: match state {
                "failure" => "exited with status 1".to_owned(),
                _ => state.to_owned(),
            },
        }
    }

    #[test]
    fn only_settled_changes_are_news() -> anyhow::Result<()> {
        let target = TargetId::Ref(
            datakit_ci_term::RepoId::new("me", "proj")?,
            datakit_ci_term::RefName::new(["heads", "main"])?,
        );
        let mut results = TargetResults::default();
        let kinds = |results: &mut TargetResults, changes: &[StatusChange]| {
            changes
                .iter()
                .filter_map(|change| results.observe(change))
                .map(|change| change.kind)
                .collect::<Vec<_>>()
        };
        // A first pass is not news; pending steps never are.
        let first = [
            change(&target, 'a', "build", "pending"),
            change(&target, 'a', "lint", "pending"),
            change(&target, 'a', "build", "success"),
            change(&target, 'a', "lint", "success"),
        ];
        assert_eq!(kinds(&mut results, &first), []);
        // A new commit: pending, then one failure is news once, however many jobs fail.
        let second = [
            change(&target, 'b', "build", "pending"),
            change(&target, 'b', "lint", "pending"),
            change(&target, 'b', "build", "failure"),
            change(&target, 'b', "lint", "failure"),
        ];
        assert_eq!(kinds(&mut results, &second), [ResultKind::Failed]);
        // Fixed by the next commit.
        let third = [
            change(&target, 'c', "build", "pending"),
            change(&target, 'c', "lint", "success"),
            change(&target, 'c', "build", "success"),
        ];
        assert_eq!(kinds(&mut results, &third), [ResultKind::Fixed]);
        // Cancelled.
        let mut cancelled = change(&target, 'd', "build", "failure");
        cancelled.description = "cancelled".to_owned();
        assert_eq!(
            kinds(
                &mut results,
                &[change(&target, 'd', "lint", "success"), cancelled]
            ),
            [ResultKind::Cancelled]
        );
        Ok(())
    }
}
