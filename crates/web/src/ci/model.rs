//! What the CI pages and the JSON API show about targets and jobs, computed from the engine and
//! the history: job states, the summary of a list of jobs (spec §1.5.2), the state of a target
//! page (live or recorded), walks of a status branch, and the failed logs a bulk rebuild
//! restarts.
//!
//! Knows nothing of HTML or JSON.

use std::collections::BTreeSet;
use std::time::SystemTime;

use datakit_ci_engine::{Engine, TargetView};
use datakit_ci_history::{History, HistoryState};
use datakit_ci_store::{BranchName, CommitId};
use datakit_ci_term::{
    CommitHash, JobOutput, JobResult, LogLeaf, RebuildStateKind, Target, TargetId,
};

use crate::Error;

/// How many recorded states a page of the target page's history lists.
pub(crate) const PAGE_HISTORY: usize = 20;
/// How many recorded states the JSON history returns at most.
pub(crate) const API_HISTORY: usize = 50;

/// A job's state, as shown by icons and the JSON API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum JobState {
    Success,
    Pending,
    Failure,
}

impl JobState {
    /// The lowercase word: `success`, `pending`, `failure`.
    pub(crate) fn word(self) -> &'static str {
        match self {
            JobState::Success => "success",
            JobState::Pending => "pending",
            JobState::Failure => "failure",
        }
    }
}

/// What a job is doing or how it ended, as its coloured icon shows it (issue 21 item 1):
/// derived from its result and logs, since the engine's outputs say no more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not evaluated yet, or waiting (for a pool, another build, another CI's status).
    Queued,
    /// Pending with a build's live log.
    Running,
    Passed,
    Failed,
    /// Failed because it was cancelled.
    Cancelled,
    /// Failed because it was skipped.
    Skipped,
    /// Pending until someone approves it.
    WaitingForApproval,
}

impl Phase {
    /// The lowercase words, also the icon's class suffix (spaces as `-`).
    pub(crate) fn word(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Running => "running",
            Phase::Passed => "passed",
            Phase::Failed => "failed",
            Phase::Cancelled => "cancelled",
            Phase::Skipped => "skipped",
            Phase::WaitingForApproval => "waiting for approval",
        }
    }

    /// Whether the job has finished.
    pub(crate) fn is_final(self) -> bool {
        matches!(
            self,
            Phase::Passed | Phase::Failed | Phase::Cancelled | Phase::Skipped
        )
    }
}

/// The phase of a job with `output` (`None`: not evaluated yet).
pub(crate) fn phase_of(output: Option<&JobOutput>) -> Phase {
    let Some(output) = output else {
        return Phase::Queued;
    };
    match &output.result {
        JobResult::Success(_) => Phase::Passed,
        JobResult::Failure(message) => {
            let message = message.to_ascii_lowercase();
            if message.contains("cancelled") || message.contains("canceled") {
                Phase::Cancelled
            } else if message.contains("skipped") {
                Phase::Skipped
            } else {
                Phase::Failed
            }
        }
        JobResult::Pending(reason) => {
            let reason = reason.to_ascii_lowercase();
            // A build waiting for a pool's slot or another build says so on its log's
            // pending-reason stack, not in the job's result.
            let running = output.logs.leaves().iter().any(|leaf| {
                matches!(leaf, LogLeaf::Live(log) if !log.is_finished()
                && !log.pending_reason().is_some_and(|reason| {
                    reason.to_ascii_lowercase().starts_with("waiting for")
                }))
            });
            if reason.contains("approval") || reason.contains("approve") {
                Phase::WaitingForApproval
            } else if running && !reason.starts_with("waiting for") {
                Phase::Running
            } else {
                Phase::Queued
            }
        }
    }
}

/// One job of a shown state: its name and output (`None`: not evaluated yet).
#[derive(Clone, Debug)]
pub(crate) struct Job {
    pub(crate) name: String,
    pub(crate) output: Option<JobOutput>,
    /// The jobs it waits for (a live job of a pipeline file; none for recorded states).
    pub(crate) needs: Vec<String>,
}

impl Job {
    /// The job's state; a job without output is pending.
    pub(crate) fn state(&self) -> JobState {
        state_of(self.output.as_ref())
    }

    /// The description, failure message or pending reason; `(new)` before the first evaluation.
    pub(crate) fn description(&self) -> &str {
        description_of(self.output.as_ref())
    }

    /// What the job is doing or how it ended.
    pub(crate) fn phase(&self) -> Phase {
        phase_of(self.output.as_ref())
    }
}

/// The jobs of a live target, by name.
pub(crate) fn live_jobs(view: &TargetView) -> Vec<Job> {
    view.jobs
        .iter()
        .map(|job| Job {
            name: job.name.clone(),
            output: job.output.clone(),
            needs: job.needs.clone(),
        })
        .collect()
}

/// The jobs of a recorded state, by name.
pub(crate) fn recorded_jobs(state: &HistoryState) -> Vec<Job> {
    state
        .jobs
        .iter()
        .map(|(name, output)| Job {
            name: name.clone(),
            output: Some(output.clone()),
            needs: Vec::new(),
        })
        .collect()
}

/// The summary of `jobs` (spec §1.5.2): pending if any is pending (describing only those), else
/// failure if any failed (only those), else success; descriptions grouped, `"<descr> (<names>)"`
/// joined with `"; "`.
pub(crate) fn summary(jobs: &[Job]) -> (JobState, String) {
    let mut text = String::new();
    let state = write_summary(
        jobs.iter()
            .map(|job| (job.name.as_str(), job.state(), job.description())),
        &mut text,
    );
    (state, text)
}

/// The state and summary of a live target's jobs, borrowed from the engine (see
/// [`Engine::visit_targets`]), without copying them.
pub(crate) fn summary_of_live(jobs: &[(&str, Option<&JobOutput>)]) -> (JobState, String) {
    let mut text = String::new();
    let state = write_summary(live_job_lines(jobs), &mut text);
    (state, text)
}

/// `(name, state, description)` of each job borrowed from the engine, as [`Job`] shows them.
pub(crate) fn live_job_lines<'a>(
    jobs: &'a [(&'a str, Option<&'a JobOutput>)],
) -> impl Iterator<Item = (&'a str, JobState, &'a str)> + Clone + 'a {
    jobs.iter()
        .map(|(name, output)| (*name, state_of(*output), description_of(*output)))
}

/// The state shown for a job with `output` (`None`: not evaluated yet, so pending).
pub(crate) fn state_of(output: Option<&JobOutput>) -> JobState {
    match output.map(|o| &o.result) {
        Some(JobResult::Success(_)) => JobState::Success,
        Some(JobResult::Failure(_)) => JobState::Failure,
        Some(JobResult::Pending(_)) | None => JobState::Pending,
    }
}

/// The description shown for a job with `output`; `(new)` before the first evaluation.
pub(crate) fn description_of(output: Option<&JobOutput>) -> &str {
    output.map_or("(new)", |o| o.result.description())
}

/// Appends the summary text of `jobs` (`(name, state, description)`) to `out` — see
/// [`summary`] — and returns the summary state. Writes straight into `out` so that a list of
/// thousands of targets does not build a string per target.
pub(crate) fn write_summary<'a>(
    jobs: impl Iterator<Item = (&'a str, JobState, &'a str)> + Clone,
    out: &mut String,
) -> JobState {
    let state = worst_state(jobs.clone().map(|(_, state, _)| state));
    // Targets have a handful of jobs: a small vector beats a map here.
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for (name, _, description) in jobs.filter(|(_, s, _)| *s == state) {
        match groups.iter_mut().find(|(d, _)| *d == description) {
            Some((_, names)) => names.push(name),
            None => groups.push((description, vec![name])),
        }
    }
    groups.sort_by(|a, b| a.0.cmp(b.0));
    for (index, (description, names)) in groups.iter().enumerate() {
        if index > 0 {
            out.push_str("; ");
        }
        out.push_str(description);
        out.push_str(" (");
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(name);
        }
        out.push(')');
    }
    state
}

/// The summary state of jobs in `states` (spec §1.5.2): pending if any is pending, else failure
/// if any failed, else success.
pub(crate) fn worst_state(states: impl Iterator<Item = JobState>) -> JobState {
    states
        .max_by_key(|s| match s {
            JobState::Success => 0,
            JobState::Failure => 1,
            JobState::Pending => 2,
        })
        .unwrap_or(JobState::Success)
}

/// What a target page shows: the live jobs of a tracked target, or a recorded state (nothing, by
/// default: a target whose metadata is invalid and that was never recorded).
#[derive(Clone, Debug, Default)]
pub(crate) struct Shown {
    /// The target's current metadata, if the engine tracks it.
    pub(crate) target: Option<Target>,
    /// The head the jobs ran on.
    pub(crate) head: Option<CommitHash>,
    /// The jobs.
    pub(crate) jobs: Vec<Job>,
    /// The recorded state shown (`?history=`), or `None` for the live state.
    pub(crate) recorded: Option<CommitId>,
    /// The latest recorded state of the target, where its history starts.
    pub(crate) latest: Option<CommitId>,
}

/// The state of `id` to show: the recorded state `history` if given, else the live jobs if the
/// engine tracks the target, else its latest recorded state. `None` if the target is neither
/// tracked nor recorded.
pub(crate) async fn shown_state(
    engine: &Engine,
    id: &TargetId,
    history: Option<CommitId>,
) -> Result<Option<Shown>, Error> {
    let view = engine.target(id);
    let latest = engine.history().latest(id).await?;
    let latest_commit = latest.as_ref().and_then(|s| s.commit);
    let target = view.as_ref().map(|v| v.target.clone());
    if let Some(commit) = history {
        if !is_recorded_state_of(engine.history(), latest_commit, commit).await? {
            return Err(Error::NotFound(format!(
                "No recorded state {commit} of {id}"
            )));
        }
        let state = engine.history().load(commit).await?;
        return Ok(Some(Shown {
            target,
            head: state.source_commit.clone(),
            jobs: recorded_jobs(&state),
            recorded: Some(commit),
            latest: latest_commit,
        }));
    }
    Ok(match (view, latest) {
        (Some(view), _) => Some(Shown {
            head: Some(view.target.head().clone()),
            jobs: live_jobs(&view),
            target,
            recorded: None,
            latest: latest_commit,
        }),
        (None, Some(state)) => Some(Shown {
            target: None,
            head: state.source_commit.clone(),
            jobs: recorded_jobs(&state),
            recorded: state.commit,
            latest: latest_commit,
        }),
        (None, None) => None,
    })
}

/// Whether `commit` is one of the states recorded for a target whose status branch head is
/// `latest`: on its first-parent chain, which is its history. Any other store commit (another
/// target's state, which another project's ACL may guard, or a cache entry) is not.
pub(crate) async fn is_recorded_state_of(
    history: &History,
    latest: Option<CommitId>,
    commit: CommitId,
) -> Result<bool, Error> {
    let mut next = latest;
    while let Some(id) = next {
        if id == commit {
            return Ok(true);
        }
        next = history.store().commit(id).await?.parents().first().copied();
    }
    Ok(false)
}

/// A recorded state with its status-branch commit's time and subject.
#[derive(Clone, Debug)]
pub(crate) struct Recorded {
    pub(crate) state: HistoryState,
    /// When the state was recorded (the status-branch commit's time).
    pub(crate) time: SystemTime,
    /// The first line of the commit message, e.g. `lint -> failure`.
    pub(crate) subject: String,
}

/// Up to `limit` recorded states, newest first, following first parents from `start`, and
/// where the walk would continue (`None` at the first state).
pub(crate) async fn walk_history(
    history: &History,
    start: Option<CommitId>,
    limit: usize,
) -> Result<(Vec<Recorded>, Option<CommitId>), Error> {
    let mut states = Vec::new();
    let mut next = start;
    while let Some(commit) = next {
        if states.len() >= limit {
            break;
        }
        let state = history.load(commit).await?;
        let stored = history.store().commit(commit).await?;
        next = state.parents.first().copied();
        states.push(Recorded {
            state,
            time: stored.time(),
            subject: stored.message().lines().next().unwrap_or("").to_owned(),
        });
    }
    Ok((states, next))
}

/// When a job started and finished, as far as the store tells (issue 21 item 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct JobTimes {
    /// The oldest of `states` on the shown head in which the job was pending.
    pub(crate) started: Option<SystemTime>,
    /// For a finished job: its last saved log's cache commit, or else the oldest of `states` on
    /// the shown head with its result.
    pub(crate) finished: Option<SystemTime>,
}

impl JobTimes {
    /// How long the job took, if both ends are known and in order (a result taken from the
    /// cache may have been built before this head's job started).
    pub(crate) fn took(&self) -> Option<std::time::Duration> {
        self.finished?.duration_since(self.started?).ok()
    }
}

/// The times of each of `jobs` on `head`, from `states` (recorded states, newest first) and
/// the commits of their saved logs.
pub(crate) async fn job_times(
    history: &History,
    head: Option<&CommitHash>,
    jobs: &[Job],
    states: &[Recorded],
) -> Result<Vec<JobTimes>, Error> {
    let on_head: Vec<&Recorded> = states
        .iter()
        .skip_while(|recorded| recorded.state.source_commit.as_ref() != head)
        .take_while(|recorded| recorded.state.source_commit.as_ref() == head)
        .collect();
    let mut times = Vec::with_capacity(jobs.len());
    for job in jobs {
        let recorded = |wanted: &dyn Fn(&JobResult) -> bool| {
            on_head
                .iter()
                .filter(|recorded| {
                    recorded
                        .state
                        .jobs
                        .get(&job.name)
                        .is_some_and(|output| wanted(&output.result))
                })
                .map(|recorded| recorded.time)
                .min()
        };
        let started = recorded(&|result| matches!(result, JobResult::Pending(_)));
        let finished = if job.phase().is_final() {
            let saved = job.output.as_ref().and_then(|output| {
                output
                    .logs
                    .leaves()
                    .into_iter()
                    .rev()
                    .find_map(|leaf| match leaf {
                        LogLeaf::Saved(saved) => Some(saved.commit()),
                        LogLeaf::Live(_) => None,
                    })
            });
            match saved {
                Some(commit) => Some(history.store().commit(commit).await?.time()),
                None => {
                    let result = job.output.as_ref().map(|output| &output.result);
                    recorded(&|recorded| Some(recorded) == result)
                }
            }
        } else {
            None
        };
        times.push(JobTimes { started, finished });
    }
    Ok(times)
}

/// The branches of the failed saved logs of `jobs` that can be rebuilt, without duplicates.
pub(crate) fn failed_rebuildable(jobs: &[Job]) -> BTreeSet<BranchName> {
    jobs.iter()
        .filter_map(|job| job.output.as_ref())
        .flat_map(|output| output.logs.leaves())
        .filter_map(|leaf| match leaf {
            LogLeaf::Saved(saved)
                if saved.failed() && saved.rebuild_state() == RebuildStateKind::Rebuildable =>
            {
                Some(saved.branch().clone())
            }
            _ => None,
        })
        .collect()
}

/// The kind of a target, as the lists and the JSON API group them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Pr,
    Branch,
    Tag,
}

impl Kind {
    /// `pr`, `branch` or `tag`.
    pub(crate) fn word(self) -> &'static str {
        match self {
            Kind::Pr => "pr",
            Kind::Branch => "branch",
            Kind::Tag => "tag",
        }
    }
}

/// A target's kind: tags are refs under `tags/`; every other ref counts as a branch.
pub(crate) fn kind(id: &TargetId) -> Kind {
    match id {
        TargetId::Pr(..) => Kind::Pr,
        TargetId::Ref(_, name) if name.is_tag() => Kind::Tag,
        TargetId::Ref(..) => Kind::Branch,
    }
}

/// A PR's title, if the target is a PR.
pub(crate) fn title(target: &Target) -> Option<&str> {
    match target {
        Target::Pr(pr) => Some(&pr.title),
        Target::Ref(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use datakit_ci_term::Logs;

    use super::*;

    fn job(name: &str, result: Option<JobResult>) -> Job {
        Job {
            name: name.to_owned(),
            output: result.map(|result| JobOutput {
                result,
                logs: Logs::Empty,
            }),
            needs: Vec::new(),
        }
    }

    #[test]
    fn phases_follow_results_and_logs() -> anyhow::Result<()> {
        let phase = |result: Option<JobResult>| job("j", result).phase();
        assert_eq!(phase(None), Phase::Queued);
        assert_eq!(phase(Some(JobResult::Success("ok".into()))), Phase::Passed);
        assert_eq!(
            phase(Some(JobResult::Failure("exit 1".into()))),
            Phase::Failed
        );
        assert_eq!(
            phase(Some(JobResult::Failure("cancelled".into()))),
            Phase::Cancelled
        );
        assert_eq!(
            phase(Some(JobResult::Failure("Skipped: no changes".into()))),
            Phase::Skipped
        );
        assert_eq!(
            phase(Some(JobResult::Pending(
                "Waiting for approval by admin".into()
            ))),
            Phase::WaitingForApproval
        );
        // Pending without a live log: waiting, not running.
        assert_eq!(
            phase(Some(JobResult::Pending("Building".into()))),
            Phase::Queued
        );
        let logs = datakit_ci_log::LogManager::new();
        let log = logs.create(datakit_ci_log::LiveLogSpec {
            branch: "build-x".to_owned(),
            title: "Build x".to_owned(),
            pending: "Building".to_owned(),
            cancel: None,
        })?;
        let with_log = |reason: &str| {
            phase_of(Some(&JobOutput {
                result: JobResult::Pending(reason.to_owned()),
                logs: Logs::Live(log.clone()),
            }))
        };
        assert_eq!(with_log("Building"), Phase::Running);
        assert_eq!(
            with_log("Waiting for resource in \"docker\""),
            Phase::Queued
        );
        log.finish();
        assert_eq!(with_log("Building"), Phase::Queued);
        Ok(())
    }

    #[test]
    fn summaries_keep_the_worst_jobs_grouped_by_description() {
        let ok = |d: &str| Some(JobResult::Success(d.to_owned()));
        let failed = |d: &str| Some(JobResult::Failure(d.to_owned()));
        assert_eq!(summary(&[]), (JobState::Success, String::new()));
        assert_eq!(
            summary(&[
                job("a", ok("fine")),
                job("b", ok("fine")),
                job("c", ok("ok"))
            ]),
            (JobState::Success, "fine (a, b); ok (c)".to_owned())
        );
        assert_eq!(
            summary(&[
                job("a", failed("bad")),
                job("b", ok("fine")),
                job("c", failed("bad"))
            ]),
            (JobState::Failure, "bad (a, c)".to_owned())
        );
        assert_eq!(
            summary(&[job("a", failed("bad")), job("new", None)]),
            (JobState::Pending, "(new) (new)".to_owned())
        );
    }
}
