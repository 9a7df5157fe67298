//! Runs the pipeline file (`.datakit-ci.yml`) of every tested commit (issue 17).
//!
//! [`PipelineRunner::plan`] is a project's plan term
//! ([`Project::with_plan`](datakit_ci_engine::Project::with_plan)): for a target, it fetches the
//! head commit, reads the file from that commit (so every branch and pull request runs its own
//! version), checks it (the plan job's log lists every problem, `FILE:LINE:COL: message`), keeps
//! the jobs whose `when` applies to the target, and gives each a term:
//!
//! - it waits for the jobs it `needs`; if one failed it fails as
//!   `Skipped: <need> failed` ([`SKIPPED_PREFIX`]);
//! - it runs the job's script with `sh -c` in a temporary clone of the commit, with the job's
//!   environment and timeout, cached on the branch `pipeline-<job>-of-<digest>`, where the
//!   digest covers the job's definition, the Git object ids of its `inputs` and the digests of
//!   its needs (`key.rs`): a commit that changes none of a job's inputs does not run it again,
//!   and its status says `Unchanged since <commit>`;
//! - with `allow_failure`, a failure is a success described `Failed (allowed): …`
//!   ([`ALLOWED_FAILURE_PREFIX`]);
//! - a `schedule` adds the latest tick (UTC) to the digest on branches, and the plan is
//!   evaluated again at the next tick, so the job runs again then.
//!
//! Not yet: steps in Docker images (`image`, `dockerfile`), `secrets`, `retry`, `artifacts`,
//! and approving `manual` steps; such a step fails with a message saying so, rather than
//! running differently from what its file says.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use datakit_ci_cache::Cache;
use datakit_ci_engine::{Plan, PlannedJob};
use datakit_ci_git::{Commit, JobEnvironment, Repo, Services};
use datakit_ci_pipeline::{FILE_NAME, Job, Runner, TargetKind};
use datakit_ci_pool::MonitoredPool;
use datakit_ci_term::{CommitHash, EvalContext, Ready, RefName, Status, Target, TargetId, Term};

mod check;
mod file;
mod inspect;
mod key;
mod step;

use check::FileCheck;
use file::{Loaded, ParsedFile, read};
pub use inspect::{FileState, InspectedJob, inspect};
use step::{HostSteps, StepBuilder, StepKey};

/// The name of the plan job: its status says how many jobs the file made, or why it could not
/// be read.
pub const PLAN_JOB: &str = "pipeline";

/// How the description of a job skipped because a job it needs failed begins.
pub const SKIPPED_PREFIX: &str = "Skipped: ";

/// How the description of a failed job with `allow_failure` begins (its state is `success`).
pub const ALLOWED_FAILURE_PREFIX: &str = "Failed (allowed): ";

/// How many commits' files are remembered, read and checked.
const LOADED_KEPT: usize = 256;

/// How the jobs run.
#[derive(Clone, Debug, Default)]
pub struct RunnerConfig {
    /// The environment of host steps (the job's `env` is added to it).
    pub environment: JobEnvironment,
    /// If given, a running step holds one of its slots (the binary's `--jobs`).
    pub job_slots: Option<MonitoredPool>,
}

/// Runs the pipeline files of one repository's commits. Cheap to clone.
#[derive(Clone)]
pub struct PipelineRunner {
    inner: Arc<Inner>,
}

struct Inner {
    repo: Repo,
    steps: Cache<StepBuilder>,
    checks: Cache<FileCheck>,
    /// Files read and checked, by (commit, base commit, target kind), oldest first.
    loaded: Mutex<VecDeque<(LoadKey, Arc<Loaded>)>>,
}

type LoadKey = (CommitHash, Option<CommitHash>, TargetKind);

impl PipelineRunner {
    /// A runner for the commits of `repo`, recording its steps with `services`; `label` (e.g.
    /// the repository's id) names its caches in metrics.
    pub fn new(repo: &Repo, label: &str, config: RunnerConfig, services: &Services) -> Self {
        let steps = Cache::new(
            StepBuilder {
                label: label.to_owned(),
                host: HostSteps {
                    environment: config.environment,
                    job_slots: config.job_slots,
                },
            },
            services.store.clone(),
            services.logs.clone(),
            &services.cache_metrics,
        );
        let checks = Cache::new(
            FileCheck {
                label: label.to_owned(),
            },
            services.store.clone(),
            services.logs.clone(),
            &services.cache_metrics,
        );
        PipelineRunner {
            inner: Arc::new(Inner {
                repo: repo.clone(),
                steps,
                checks,
                loaded: Mutex::new(VecDeque::new()),
            }),
        }
    }

    /// The plan of `target`: the jobs of the pipeline file of its head commit (see the crate
    /// documentation). Fails when the commit has no file or the file is invalid.
    pub fn plan(&self, target: &TargetId) -> Term<Plan> {
        let runner = self.clone();
        let repo = self.inner.repo.clone();
        let head = repo.fetch_head(target.clone());
        Term::pair(Term::target(target.clone()), head).and_then(move |(resolved, commit)| {
            let runner = runner.clone();
            let kind = target_kind(&resolved);
            let base = match &resolved {
                Target::Pr(pr) => match RefName::branch(&pr.base) {
                    Ok(name) => repo
                        .fetch_head(TargetId::Ref(pr.repo.clone(), name))
                        .catch()
                        .map(Result::ok),
                    Err(_) => Term::ok(None),
                },
                Target::Ref(_) => Term::ok(None),
            };
            base.and_then(move |base| {
                let runner = runner.clone();
                let (commit, kind) = (commit.clone(), kind.clone());
                let load = {
                    let (runner, commit, kind) = (runner.clone(), commit.clone(), kind.clone());
                    Term::from_future(move || {
                        let (runner, commit, kind, base) =
                            (runner.clone(), commit.clone(), kind.clone(), base.clone());
                        async move { runner.load(&commit, base.as_ref(), kind).await }
                    })
                };
                load.and_then(move |loaded| match loaded {
                    Ok(loaded) => runner.plan_of(&commit, &kind, loaded),
                    Err(message) => Term::fail(message),
                })
            })
        })
    }

    /// Reads and parses the file of `commit`, with what its jobs' digests need; remembered.
    async fn load(
        &self,
        commit: &Commit,
        base: Option<&Commit>,
        kind: TargetKind,
    ) -> Result<Arc<Loaded>, String> {
        let key: LoadKey = (commit.hash().clone(), base.map(|b| b.hash().clone()), kind);
        if let Some((_, loaded)) = lock(&self.inner.loaded).iter().find(|(k, _)| *k == key) {
            return Ok(Arc::clone(loaded));
        }
        let loaded = Arc::new(
            read(commit.tree(), base.map(Commit::hash))
                .await
                .map_err(|e| {
                    format!(
                        "cannot read {FILE_NAME} of commit {}: {e}",
                        commit.hash().short(7)
                    )
                })?,
        );
        let mut remembered = lock(&self.inner.loaded);
        if remembered.len() == LOADED_KEPT {
            remembered.pop_front();
        }
        remembered.push_back((key, Arc::clone(&loaded)));
        Ok(loaded)
    }

    /// The plan for `commit`'s loaded file: its check, then its jobs for `kind`.
    fn plan_of(&self, commit: &Commit, kind: &TargetKind, loaded: Arc<Loaded>) -> Term<Plan> {
        let (key, parsed) = match &*loaded {
            Loaded::Missing => {
                return Term::fail(format!(
                    "No {FILE_NAME} in commit {}",
                    commit.hash().short(7)
                ));
            }
            Loaded::File { key, parsed } => (key.clone(), parsed),
        };
        let check = {
            let checks = self.inner.checks.clone();
            Term::job_id().and_then(move |job| checks.find(job, key.clone()))
        };
        let plan = match parsed {
            Ok(file) => Ok(self.jobs_of(commit, kind, file)),
            Err(_) => Err(()),
        };
        check.and_then(move |()| match &plan {
            Ok(plan) => plan.clone(),
            // The check failed on this file already; never reached.
            Err(()) => Term::fail(format!("{FILE_NAME} is invalid")),
        })
    }

    /// The plan of the jobs of `file` that apply to `kind`, on `commit`.
    fn jobs_of(&self, commit: &Commit, kind: &TargetKind, file: &ParsedFile) -> Term<Plan> {
        let jobs = file.pipeline.jobs_for(kind, file.changed.as_deref());
        let now = SystemTime::now();
        let on_branch = matches!(kind, TargetKind::Branch(_));
        let tick = |job: &Job| -> Option<u64> {
            let schedule = job.schedule.as_ref().filter(|_| on_branch)?;
            let at = schedule.latest_at_or_before(now)?;
            at.duration_since(SystemTime::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs())
        };
        let digests = key::digests(&jobs, &file.objects, &tick);
        let next_tick = jobs
            .iter()
            .filter(|_| on_branch)
            .filter_map(|job| job.schedule.as_ref()?.next_after(now))
            .min();
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        let mut terms: BTreeMap<String, Term<String>> = BTreeMap::new();
        let mut planned = Vec::new();
        for job in &jobs {
            let term = self.job_term(job, commit, &digests, &jobs, &mut terms);
            let needs = job
                .needs
                .iter()
                .filter(|n| names.contains(&n.as_str()))
                .cloned()
                .collect();
            planned.push(PlannedJob {
                name: job.name.clone(),
                needs,
                term,
            });
        }
        let description = match planned.len() {
            1 => format!("1 job from {FILE_NAME}"),
            n => format!("{n} jobs from {FILE_NAME}"),
        };
        let plan = Plan {
            head: commit.hash().clone(),
            description,
            jobs: planned,
        };
        match next_tick {
            None => Term::ok(plan),
            Some(at) => at_time(at).map(move |()| plan.clone()),
        }
    }

    /// The term of `job` (and, first, of the jobs it needs, into `terms`).
    fn job_term(
        &self,
        job: &Job,
        commit: &Commit,
        digests: &BTreeMap<String, key::Digest>,
        jobs: &[&Job],
        terms: &mut BTreeMap<String, Term<String>>,
    ) -> Term<String> {
        if let Some(term) = terms.get(&job.name) {
            return term.clone();
        }
        let mut needs = Vec::new();
        for need in &job.needs {
            if let Some(needed) = jobs.iter().find(|j| j.name == *need) {
                let term = self.job_term(needed, commit, digests, jobs, terms);
                needs.push((need.clone(), term.without_logs()));
            }
        }
        let run = self.run_term(job, commit, digests);
        let term = if needs.is_empty() {
            run
        } else {
            Term::wait_for_all(needs)
                .catch()
                .and_then(move |waited| match waited {
                    Ok(()) => run.clone(),
                    Err(failed) => Term::fail(format!("{SKIPPED_PREFIX}{failed}")),
                })
        };
        let term = if job.allow_failure {
            term.catch().map(|result| match result {
                Ok(description) => description,
                Err(message) => format!("{ALLOWED_FAILURE_PREFIX}{message}"),
            })
        } else {
            term
        };
        terms.insert(job.name.clone(), term.clone());
        term
    }

    /// The term running `job` itself (its needs done).
    fn run_term(
        &self,
        job: &Job,
        commit: &Commit,
        digests: &BTreeMap<String, key::Digest>,
    ) -> Term<String> {
        if let Some(missing) = unsupported(job) {
            return Term::fail(format!(
                "{missing} is not supported yet by datakit-ci; the step does not run"
            ));
        }
        let Some(digest) = digests.get(&job.name) else {
            return Term::fail(format!("no digest for job {:?}", job.name));
        };
        let key = StepKey {
            digest: digest.hex.clone(),
            job: Arc::new(job.clone()),
            commit: commit.clone(),
        };
        let head = commit.hash().clone();
        let steps = self.inner.steps.clone();
        Term::job_id()
            .and_then(move |id| steps.find(id, key.clone()))
            .map(move |ran_on| {
                if ran_on == head {
                    "Passed".to_owned()
                } else {
                    format!("Unchanged since {}", ran_on.short(7))
                }
            })
    }
}

/// What a job asks for that this version cannot do yet, if anything.
fn unsupported(job: &Job) -> Option<&'static str> {
    if !matches!(job.runner, Runner::Host) {
        Some("a step in a Docker image (`image`, `dockerfile`)")
    } else if !job.secrets.is_empty() {
        Some("`secrets`")
    } else if job.retry.attempts > 1 {
        Some("`retry`")
    } else if !job.artifacts.is_empty() {
        Some("`artifacts`")
    } else if job.manual {
        Some("`manual`")
    } else {
        None
    }
}

/// The kind of `target` for `when`.
fn target_kind(target: &Target) -> TargetKind {
    match target {
        Target::Pr(pr) => TargetKind::PullRequest {
            number: pr.number,
            base: pr.base.clone(),
        },
        Target::Ref(r) => {
            let components = r.name.components();
            let rest = components[1..].join("/");
            match components.first().map(String::as_str) {
                Some("tags") => TargetKind::Tag(rest),
                Some("heads") => TargetKind::Branch(rest),
                _ => TargetKind::Branch(r.name.to_string()),
            }
        }
    }
}

/// A term that is `()` at once, and is evaluated again at `at` (a schedule's next tick).
fn at_time(at: SystemTime) -> Term<()> {
    Term::from_fn(move |ctx: EvalContext| {
        let wait = at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        ctx.record_ready(Ready::new(tokio::time::sleep(wait)));
        std::future::ready(Status::ok(()))
    })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Updates under these locks are single pushes and pops.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
