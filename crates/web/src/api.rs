//! The JSON API (DESIGN §6.2): the format of its responses, converted by hand from the engine's
//! and the history's types (which do not derive `Serialize`), and its routes.
//!
//! Every route needs the same role as the page it mirrors (`Reader`). Errors are
//! `{"error": "<message>"}` with the HTTP status: `401` for an anonymous viewer who must log in,
//! `403` for a viewer lacking the role, `404` for an unknown project, target or commit.
//!
//! | Route | Response |
//! |---|---|
//! | `GET /api/v1/projects` | [`Projects`]: each project's `id` and `dashboards` (target ids) |
//! | `GET /api/v1/targets` | [`Targets`]: the tracked targets, a page at a time (`?limit=`, default 100, at most 1,000; `?after=` the `next` cursor of the previous answer), filtered with `?q=` (name or title), `?state=failing\|pending\|passing`, ordered failing first with `?sort=failing` — `id`, `kind` (`pr`, `branch`, `tag`), `head`, summary `state`/`description`, `jobs` (`name`, `state`, `description`) — and the `unreadable` ones ([`UnreadableJson`]) |
//! | `GET /api/v1/targets/<user>/<repo>/pr/<n>` | [`TargetDetail`]: the target and its jobs with their `logs` (`kind` `live`/`saved`, `url`, `raw_url`, `can_cancel`, `can_rebuild`, `rebuild`) |
//! | `GET /api/v1/targets/<user>/<repo>/ref/<path…>` | the same for a ref (e.g. `ref/heads/main`, `ref/tags/v1.0`); jobs whose builds kept files list them as `artifacts` ([`ArtifactJson`]: `name`, `size`, `url`) |
//! | `GET /api/v1/artifacts/<branch>/<commit>/<path…>` | the file a build kept (`application/octet-stream`, `Content-Disposition: attachment`): the cache branch and commit of the job's saved log, then the artifact's path; `400` for a path with `..`, `.` or empty components, `404` for an unknown branch, commit or file |
//! | `GET /api/v1/history/<user>/<repo>/pr/<n>` | [`TargetHistory`]: the recorded states, newest first (at most 50): `commit`, `parents`, `source_commit`, `metadata_commit`, `recorded_at`, `subject`, `url`, `jobs` |
//! | `GET /api/v1/history/<user>/<repo>/ref/<path…>` | the same for a ref |
//! | `GET /api/v1/events` | server-sent events: `status` ([`StatusEvent`]: `target`, `job`, `commit`, `state`, `description`) for each job state change from now on; `lagged` (`{"missed": n}`) if the client fell behind |
//!
//! States are `success`, `pending` or `failure`; a job not evaluated yet is `pending` with the
//! description `(new)`. URLs are paths on this site. Logs' `raw_url`s give the log as
//! `text/plain`; `POST`s (cancel, rebuild) need the session's CSRF token in the header
//! `X-CSRF-Token`.

mod events;
mod routes;

use serde::Serialize;

use datakit_ci_engine::{Project, TargetView};
use datakit_ci_term::{JobOutput, LogLeaf, RebuildStateKind, Target, TargetId};

use crate::ci::model::{self, Job, JobState, Recorded};
use crate::ci::queue::{QueuePlace, QueuePlaces};
use crate::urls;

pub use events::StatusEvent;
pub(crate) use routes::{ApiError, routes};

/// `GET /api/v1/projects`.
#[derive(Debug, Serialize)]
pub struct Projects {
    /// The configured projects, in order.
    pub projects: Vec<ProjectJson>,
}

/// A configured project.
#[derive(Debug, Serialize)]
pub struct ProjectJson {
    /// `user/repo`.
    pub id: String,
    /// The dashboard targets' ids, e.g. `user/repo/heads/main`.
    pub dashboards: Vec<String>,
}

/// `GET /api/v1/targets`.
#[derive(Debug, Serialize)]
pub struct Targets {
    /// The tracked targets the query selects, at most `limit` (default 100, at most 1,000), in
    /// the order of their ids (refs, then PRs), or failing first with `sort=failing`.
    pub targets: Vec<TargetSummary>,
    /// The cursor of the next call (`?after=<next>`, with the same filters), if more targets
    /// follow.
    pub next: Option<String>,
    /// The targets not tested because their metadata is invalid (on the first call only).
    pub unreadable: Vec<UnreadableJson>,
}

/// A target whose metadata is invalid (e.g. a PR whose head is not a commit hash).
#[derive(Debug, Serialize)]
pub struct UnreadableJson {
    /// The target's id, as in [`TargetInfo::id`].
    pub id: String,
    /// The target's page.
    pub url: String,
    /// What is wrong with its metadata.
    pub error: String,
}

/// A target and its jobs' states.
#[derive(Debug, Serialize)]
pub struct TargetSummary {
    /// The target.
    #[serde(flatten)]
    pub target: TargetInfo,
    /// This target's detail in the API.
    pub api_url: String,
    /// The jobs, by name.
    pub jobs: Vec<JobSummary>,
}

/// A job's state.
#[derive(Debug, Serialize)]
pub struct JobSummary {
    /// The test's name.
    pub name: String,
    /// `success`, `pending` or `failure`.
    pub state: &'static str,
    /// The description, failure message or pending reason.
    pub description: String,
}

/// `GET /api/v1/targets/<target>`.
#[derive(Debug, Serialize)]
pub struct TargetDetail {
    /// The target.
    #[serde(flatten)]
    pub target: TargetInfo,
    /// Whether the engine tracks the target now (if not, the jobs are its latest recorded state).
    pub tracked: bool,
    /// Why the target is not tested, when its metadata is invalid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The target's recorded states in the API.
    pub history_url: String,
    /// The jobs with their logs.
    pub jobs: Vec<JobDetail>,
}

/// What identifies and summarises a target, in [`TargetSummary`] and [`TargetDetail`].
#[derive(Debug, Serialize)]
pub struct TargetInfo {
    /// `user/repo/prs/<n>` or `user/repo/<ref name>`.
    pub id: String,
    /// `user/repo`.
    pub repo: String,
    /// `pr`, `branch` or `tag`.
    pub kind: &'static str,
    /// The PR number, for PRs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
    /// The ref name, for refs.
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub ref_name: Option<String>,
    /// The PR's title, for tracked PRs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The head commit the jobs ran on, if known.
    pub head: Option<String>,
    /// The summary state of the jobs.
    pub state: &'static str,
    /// The summary description.
    pub description: String,
    /// The target's page.
    pub url: String,
}

/// A job with its logs.
#[derive(Debug, Serialize)]
pub struct JobDetail {
    /// The test's name.
    pub name: String,
    /// `success`, `pending` or `failure`.
    pub state: &'static str,
    /// The description, failure message or pending reason.
    pub description: String,
    /// Where its build waits for a slot, if it is queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueJson>,
    /// The jobs it waits for (a pipeline file's `needs`); absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// Why a pending job is not running yet, in words (its needs, a pool's queue, an approval,
    /// another CI's status); absent for a running or finished job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// Its logs, in order, each once.
    pub logs: Vec<LogJson>,
    /// The files its builds kept (a pipeline step's `artifacts`), in log order; absent when
    /// none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<ArtifactJson>,
}

/// A file a job's build kept.
#[derive(Debug, Serialize)]
pub struct ArtifactJson {
    /// Its path relative to where the step ran, e.g. `reports/unit.xml`.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Where to download it (`GET`, role `Reader`).
    pub url: String,
}

impl ArtifactJson {
    /// The JSON form of `link`.
    pub(crate) fn from_link(link: crate::artifacts::ArtifactLink) -> Self {
        ArtifactJson {
            name: link.path,
            size: link.size,
            url: link.url,
        }
    }
}

/// Where a job's build waits for a slot of a pool (e.g. `jobs`, the `--jobs` limit).
#[derive(Debug, Serialize)]
pub struct QueueJson {
    /// The pool's name.
    pub pool: String,
    /// Its place in the pool's queue: 1 for the next to get a slot.
    pub place: usize,
    /// How many wait in that queue.
    pub of: usize,
}

impl From<&QueuePlace> for QueueJson {
    fn from(place: &QueuePlace) -> Self {
        QueueJson {
            pool: place.pool.clone(),
            place: place.place,
            of: place.of,
        }
    }
}

/// One log of a job.
#[derive(Debug, Serialize)]
pub struct LogJson {
    /// `live` (still running) or `saved`.
    pub kind: &'static str,
    /// The build's title.
    pub title: String,
    /// The store branch the build logs to.
    pub branch: String,
    /// The log's page.
    pub url: String,
    /// The log as `text/plain`.
    pub raw_url: String,
    /// The store commit holding a saved log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Whether a saved log's build failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<bool>,
    /// A saved log's rebuild state: `rebuildable`, `rebuilding` or `archived`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebuild: Option<&'static str>,
    /// Whether the caller can cancel the build now (`POST` [`cancel_url`](Self::cancel_url)):
    /// it is running and the caller has the role `Builder`.
    pub can_cancel: bool,
    /// Whether the caller can redo the build now (`POST` [`rebuild_url`](Self::rebuild_url)):
    /// it is rebuildable and the caller has the role `Builder`.
    pub can_rebuild: bool,
    /// Where to cancel a live log's build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_url: Option<String>,
    /// Where to rebuild a saved log's build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebuild_url: Option<String>,
}

/// `GET /api/v1/history/<target>`.
#[derive(Debug, Serialize)]
pub struct TargetHistory {
    /// The target's id.
    pub target: String,
    /// The recorded states, newest first.
    pub states: Vec<RecordedState>,
}

/// One recorded state of a target's jobs.
#[derive(Debug, Serialize)]
pub struct RecordedState {
    /// The status-branch commit.
    pub commit: Option<String>,
    /// The previous states' commits.
    pub parents: Vec<String>,
    /// The source commit the jobs ran on.
    pub source_commit: Option<String>,
    /// The `github-metadata` commit used as input.
    pub metadata_commit: Option<String>,
    /// When the state was recorded, in UTC (`2026-12-07T18:12:29Z`).
    pub recorded_at: String,
    /// The first line of the status commit's message (e.g. `lint -> failure`).
    pub subject: String,
    /// The page showing this state.
    pub url: Option<String>,
    /// The summary state of the jobs.
    pub state: &'static str,
    /// The jobs' states.
    pub jobs: Vec<JobSummary>,
}

/// The error body.
#[derive(Debug, Serialize)]
pub struct ErrorJson {
    /// What went wrong.
    pub error: String,
}

impl From<&Project> for ProjectJson {
    fn from(project: &Project) -> Self {
        ProjectJson {
            id: project.id().to_string(),
            dashboards: project
                .dashboard_targets()
                .iter()
                .map(ToString::to_string)
                .collect(),
        }
    }
}

impl From<&Job> for JobSummary {
    fn from(job: &Job) -> Self {
        JobSummary {
            name: job.name.clone(),
            state: job.state().word(),
            description: job.description().to_owned(),
        }
    }
}

impl From<&TargetView> for TargetSummary {
    fn from(view: &TargetView) -> Self {
        let id = view.target.id();
        let jobs = model::live_jobs(view);
        TargetSummary {
            target: target_info(
                &id,
                Some(&view.target),
                Some(view.target.head().to_string()),
                &jobs,
            ),
            api_url: urls::api_target(&id),
            jobs: jobs.iter().map(JobSummary::from).collect(),
        }
    }
}

impl TargetSummary {
    /// The summary of a tracked target, from the engine's state (see
    /// [`Engine::visit_targets`](datakit_ci_engine::Engine::visit_targets)).
    pub(crate) fn of_live(
        id: &TargetId,
        target: &Target,
        jobs: &[(&str, Option<&JobOutput>)],
    ) -> Self {
        let (state, description) = model::summary_of_live(jobs);
        TargetSummary {
            target: info(
                id,
                Some(target),
                Some(target.head().to_string()),
                state,
                description,
            ),
            api_url: urls::api_target(id),
            jobs: model::live_job_lines(jobs)
                .map(|(name, state, description)| JobSummary {
                    name: name.to_owned(),
                    state: state.word(),
                    description: description.to_owned(),
                })
                .collect(),
        }
    }
}

/// The common fields of a target.
pub(crate) fn target_info(
    id: &TargetId,
    target: Option<&Target>,
    head: Option<String>,
    jobs: &[Job],
) -> TargetInfo {
    let (state, description) = model::summary(jobs);
    info(id, target, head, state, description)
}

fn info(
    id: &TargetId,
    target: Option<&Target>,
    head: Option<String>,
    state: JobState,
    description: String,
) -> TargetInfo {
    let (number, ref_name) = match id {
        TargetId::Pr(_, number) => (Some(*number), None),
        TargetId::Ref(_, name) => (None, Some(name.to_string())),
    };
    TargetInfo {
        id: id.to_string(),
        repo: id.repo().to_string(),
        kind: model::kind(id).word(),
        number,
        ref_name,
        title: target.and_then(model::title).map(str::to_owned),
        head,
        state: state.word(),
        description,
        url: urls::target(id),
    }
}

impl JobDetail {
    /// `job` (one of `jobs`) as shown to a caller who may (`may_build`: has the `Builder` role)
    /// or may not cancel and rebuild, with its place in `queues` if its build waits.
    pub(crate) fn new(job: &Job, jobs: &[Job], may_build: bool, queues: &QueuePlaces) -> Self {
        let mut seen = std::collections::HashSet::new();
        let logs = job
            .output
            .iter()
            .flat_map(|output| output.logs.leaves())
            .filter_map(|leaf| {
                let log = LogJson::new(leaf, may_build);
                seen.insert(log.branch.clone()).then_some(log)
            })
            .collect();
        JobDetail {
            name: job.name.clone(),
            state: job.state().word(),
            description: job.description().to_owned(),
            queue: queues.of_output(job.output.as_ref()).map(QueueJson::from),
            needs: job.needs.clone(),
            waiting_for: crate::ci::why_pending(job, jobs, queues),
            logs,
            artifacts: Vec::new(),
        }
    }
}

impl LogJson {
    /// `leaf` as shown to a caller who may (`may_build`) or may not cancel and rebuild: the
    /// `can_…` flags and action URLs say what this caller can do.
    fn new(leaf: LogLeaf<'_>, may_build: bool) -> Self {
        match leaf {
            LogLeaf::Live(log) => {
                let can_cancel = may_build && log.can_cancel();
                let url = urls::live_log(log.branch());
                LogJson {
                    kind: "live",
                    title: log.title().to_owned(),
                    branch: log.branch().to_owned(),
                    raw_url: format!("{url}?raw"),
                    url,
                    commit: None,
                    failed: None,
                    rebuild: None,
                    can_cancel,
                    can_rebuild: false,
                    cancel_url: can_cancel
                        .then(|| format!("/cancel/{}", urls::encode_segment(log.branch()))),
                    rebuild_url: None,
                }
            }
            LogLeaf::Saved(saved) => {
                let branch = saved.branch().as_str();
                let url = urls::saved_log(branch, &saved.commit().to_string());
                let rebuild = saved.rebuild_state();
                let can_rebuild = may_build && rebuild == RebuildStateKind::Rebuildable;
                LogJson {
                    kind: "saved",
                    title: saved.title().to_owned(),
                    branch: branch.to_owned(),
                    raw_url: format!("{url}?raw"),
                    url,
                    commit: Some(saved.commit().to_string()),
                    failed: Some(saved.failed()),
                    rebuild: Some(match rebuild {
                        RebuildStateKind::Rebuildable => "rebuildable",
                        RebuildStateKind::Rebuilding => "rebuilding",
                        RebuildStateKind::Archived => "archived",
                    }),
                    can_cancel: false,
                    can_rebuild,
                    cancel_url: None,
                    rebuild_url: can_rebuild
                        .then(|| format!("/log/rebuild/{}", urls::encode_segment(branch))),
                }
            }
        }
    }
}

impl RecordedState {
    /// The JSON form of a recorded state of target `id`.
    pub(crate) fn new(id: &TargetId, recorded: &Recorded) -> Self {
        let state = &recorded.state;
        let jobs = model::recorded_jobs(state);
        RecordedState {
            commit: state.commit.map(|c| c.to_string()),
            parents: state.parents.iter().map(ToString::to_string).collect(),
            source_commit: state.source_commit.as_ref().map(ToString::to_string),
            metadata_commit: state.metadata_commit.map(|c| c.to_string()),
            recorded_at: crate::time::iso(recorded.time),
            subject: recorded.subject.clone(),
            url: state
                .commit
                .map(|c| format!("{}?history={c}", urls::target(id))),
            state: model::summary(&jobs).0.word(),
            jobs: jobs.iter().map(JobSummary::from).collect(),
        }
    }
}
