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
//! - with `image: NAME`, the script runs instead in a fresh container of that image on the
//!   Docker hosts of [`RunnerConfig::docker`] (`Hosts::run_container`), the commit's tree in
//!   `/src`, with the job's `env` plus the documented `CI` and `DATAKIT_CI_*` variables; the
//!   digest covers the image's name (not its id: give an id, or a tag that never moves, when a
//!   name may come to mean another image). With `dockerfile`, the image is built first from
//!   the commit (a [`datakit_ci_docker::Builder`] per distinct Dockerfile, context, arguments
//!   and timeout, kept for the runner's life, so unchanged builds are reused), and the built
//!   image's id is part of the digest; the Dockerfile and the context are inputs of the job
//!   besides its `inputs`. A daemon that does not answer fails these steps only, with
//!   `cannot reach the Docker daemon at <url>: …`;
//! - with `allow_failure`, a failure is a success described `Failed (allowed): …`
//!   ([`ALLOWED_FAILURE_PREFIX`]);
//! - a `schedule` adds the latest tick (UTC) to the digest on branches, and the plan is
//!   evaluated again at the next tick, so the job runs again then.
//!
//! - with `retry: {attempts, on}`, a failed attempt whose reason is listed in `on` (`timeout`;
//!   `infrastructure`: a Docker daemon that does not answer, a clone or copy of the commit that
//!   failed — never the script's own failure; an exit code) runs the step again within the same
//!   build: every attempt's output stays in its log, each after a heading
//!   `=== Attempt 2 of 3 (after exit status 1) ===`, and a later attempt's success is described
//!   `Passed on attempt 2 of 3`.
//!
//! - with `secrets: [NAME]`, the step gets each secret as the variable `NAME`, its value read
//!   when the step runs from the file `NAME` of [`RunnerConfig::secrets_dir`] (the binary's
//!   `<secrets-dir>/pipeline/NAME`); a missing file fails the step naming the secret. Every
//!   occurrence of a value in the step's output is replaced by `***` in its log (`LiveLog::mask`,
//!   also when a write splits it). Values are never part of the step's key or recipe. Secrets
//!   are given to branches and tags only: a pull request's step that needs one fails saying so,
//!   without running.
//!
//! A `manual` job waits, after its needs, as `Waiting for approval …` ([`APPROVAL_PREFIX`])
//! until a Builder approves it in the web UI (`Engine::approve`, recorded in the metadata, read
//! by `Term::approval`); its description then says who approved it.
//!
//! A pull request its bridge calls untrusted (a fork, or an author who is not a collaborator:
//! `PrTrust::Untrusted`) runs none of its jobs until a Builder approves its head: each waits,
//! before anything else, as `Waiting for approval: <why>; …` ([`hold_untrusted`]), and once
//! approved says who approved it. A new head needs a new approval. Secrets are never given to
//! pull requests, approved or trusted or not.
//!
//! With `artifacts: [paths]`, once the script has ended by itself (passing or failing: a failed
//! run's test reports are often what people need), the files its paths and globs select (a
//! directory: all its files; `*` within a directory, `**` across) are copied out of the
//! checkout, or of the container before it is removed, and kept on the step's cache branch
//! under `artifacts/` ([`datakit_ci_cache::write_artifacts`]), so they live as long as its
//! result and a step whose inputs did not change still offers the artifacts of the run that
//! made them. Links are never followed (a step cannot make the CI read outside its checkout);
//! a path that matches nothing is a warning in the log. The files kept add up to at most
//! [`RunnerConfig::max_artifact_size`]: a file that would pass it is dropped, the log names it,
//! and the step fails (`artifacts over the limit of …`), keeping the files that fit — a step
//! whose deliverables are missing must not look green. Nothing is collected after a timeout or
//! a cancel, nor from Swarm tasks (a finished task's container is on another node; the log
//! says so and the step's result stands).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use datakit_ci_cache::Cache;
use datakit_ci_docker::{BuildConfig, Executor, Hosts, Image};
use datakit_ci_engine::{Plan, PlannedJob};
use datakit_ci_git::{Commit, JobEnvironment, Repo, Services};
use datakit_ci_pipeline::{FILE_NAME, Job, Runner, TargetKind};
use datakit_ci_pool::MonitoredPool;
use datakit_ci_term::{
    CommitHash, EvalContext, Problem, Ready, RefName, RepoId, Status, Target, TargetId, Term,
};
use sha2::Digest as _;

mod artifacts;
mod check;
mod file;
mod inspect;
mod key;
mod retry;
mod step;
mod trust;

pub use artifacts::DEFAULT_MAX_ARTIFACT_SIZE;
use check::FileCheck;
use file::{Loaded, ParsedFile, read};
pub use inspect::{FileState, InspectedJob, inspect};
use step::{DockerSteps, HostSteps, NO_DOCKER, StepBuilder, StepKey};
pub use trust::{PULL_REQUEST_APPROVED, UnknownTrust, hold_untrusted};

/// The name of the plan job: its status says how many jobs the file made, or why it could not
/// be read.
pub const PLAN_JOB: &str = "pipeline";

/// How the description of a job skipped because a job it needs failed begins.
pub const SKIPPED_PREFIX: &str = "Skipped: ";

/// How the description of a failed job with `allow_failure` begins (its state is `success`).
pub const ALLOWED_FAILURE_PREFIX: &str = "Failed (allowed): ";

/// How the description of a `manual` job waiting for a Builder's approval begins (its state is
/// `pending`).
pub const APPROVAL_PREFIX: &str = "Waiting for approval";

/// How long a plan waits before reading a commit's file again after `git` failed to.
const LOAD_RETRY: Duration = Duration::from_secs(10);

/// How many commits' files are remembered, read and checked.
const LOADED_KEPT: usize = 256;

/// How the jobs run.
#[derive(Clone, Debug, Default)]
pub struct RunnerConfig {
    /// The environment of host steps (the job's `env` is added to it); steps in images get the
    /// documented `CI` and `DATAKIT_CI_*` variables and those it passes on.
    pub environment: JobEnvironment,
    /// If given, a running host step holds one of its slots (the binary's `--jobs`); a step in
    /// an image holds a slot of its Docker host instead.
    pub job_slots: Option<MonitoredPool>,
    /// Where steps with `image` or `dockerfile` run; without hosts, such a step fails saying
    /// so. Daemons are contacted when a step first needs one: a daemon that does not answer
    /// fails the steps in images only.
    pub docker: Option<Hosts>,
    /// Where the containers of steps in images run, if not on the [`RunnerConfig::docker`]
    /// hosts' pools: e.g. a [`Swarm`](datakit_ci_docker::Swarm) (images are still built on the
    /// hosts).
    pub executor: Option<Executor>,
    /// Where the values of `secrets` are: a file per name, its contents the value (one
    /// trailing newline removed); the binary uses `<secrets-dir>/pipeline`. Without it, a step
    /// with secrets fails saying so.
    pub secrets_dir: Option<std::path::PathBuf>,
    /// How a pull request whose bridge records nothing of its trust is treated (the local
    /// bridge's: as trusted; the GitHub bridge's: held until it does).
    pub unknown_trust: UnknownTrust,
    /// The most bytes of `artifacts` a step keeps, in all (the binary's
    /// `--max-artifact-size`); `None`: [`DEFAULT_MAX_ARTIFACT_SIZE`].
    pub max_artifact_size: Option<u64>,
}

/// Runs the pipeline files of one repository's commits. Cheap to clone.
#[derive(Clone)]
pub struct PipelineRunner {
    inner: Arc<Inner>,
}

struct Inner {
    repo: Repo,
    label: String,
    services: Services,
    docker: Option<Hosts>,
    unknown_trust: UnknownTrust,
    /// The image builders of `dockerfile` steps, one per distinct recipe, kept for the runner's
    /// life (each is a cache).
    builders: Mutex<HashMap<ImageRecipe, datakit_ci_docker::Builder>>,
    steps: Cache<StepBuilder>,
    checks: Cache<FileCheck>,
    /// Files read and checked, by (commit, base commit), oldest first: every target on a commit
    /// shares one reading (the target's kind only filters its jobs afterwards).
    loaded: Mutex<VecDeque<(LoadKey, Arc<Loaded>)>>,
}

type LoadKey = (CommitHash, Option<CommitHash>);

/// What a `dockerfile` step's image is built from: the Dockerfile, the context, the build
/// arguments and the build's timeout.
type ImageRecipe = (String, String, Vec<(String, String)>, Duration);

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
                docker: DockerSteps {
                    executor: config
                        .executor
                        .clone()
                        .or_else(|| config.docker.clone().map(Executor::from)),
                },
                secrets_dir: config.secrets_dir,
                max_artifact_size: config
                    .max_artifact_size
                    .unwrap_or(DEFAULT_MAX_ARTIFACT_SIZE),
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
                label: label.to_owned(),
                services: services.clone(),
                docker: config.docker,
                unknown_trust: config.unknown_trust,
                builders: Mutex::new(HashMap::new()),
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
                    let (runner, commit) = (runner.clone(), commit.clone());
                    Term::from_status(move || {
                        let (runner, commit, base) = (runner.clone(), commit.clone(), base.clone());
                        async move {
                            match runner.load(&commit, base.as_ref()).await {
                                Ok(loaded) => Status::ok(loaded),
                                // `git` failing to read a fetched commit is the machine's
                                // trouble, not the file's: try again rather than fail.
                                Err(message) => Status {
                                    result: Err(Problem::Pending {
                                        reason: format!(
                                            "{message}; retrying in {}s",
                                            LOAD_RETRY.as_secs()
                                        ),
                                        ready: Ready::new(tokio::time::sleep(LOAD_RETRY)),
                                    }),
                                    output: Default::default(),
                                },
                            }
                        }
                    })
                };
                let resolved = resolved.clone();
                load.and_then(move |loaded| runner.plan_of(&resolved, &commit, &kind, loaded))
            })
        })
    }

    /// Reads and parses the file of `commit`, with what its jobs' digests need; remembered.
    async fn load(&self, commit: &Commit, base: Option<&Commit>) -> Result<Arc<Loaded>, String> {
        let key: LoadKey = (commit.hash().clone(), base.map(|b| b.hash().clone()));
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
    fn plan_of(
        &self,
        target: &Target,
        commit: &Commit,
        kind: &TargetKind,
        loaded: Arc<Loaded>,
    ) -> Term<Plan> {
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
            Ok(file) => Ok(self.jobs_of(target, commit, kind, file)),
            Err(_) => Err(()),
        };
        check.and_then(move |()| match &plan {
            Ok(plan) => plan.clone(),
            // The check failed on this file already; never reached.
            Err(()) => Term::fail(format!("{FILE_NAME} is invalid")),
        })
    }

    /// The plan of the jobs of `file` that apply to `kind`, on `commit`.
    fn jobs_of(
        &self,
        target: &Target,
        commit: &Commit,
        kind: &TargetKind,
        file: &ParsedFile,
    ) -> Term<Plan> {
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
            let term = self.job_term(
                target.id().repo(),
                job,
                commit,
                kind,
                &digests,
                &jobs,
                &mut terms,
            );
            // Outermost, so that every job of an untrusted pull request says why it waits,
            // whatever it needs.
            let term = hold_untrusted(target, self.inner.unknown_trust, term);
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
    #[allow(clippy::too_many_arguments)]
    fn job_term(
        &self,
        repo: &RepoId,
        job: &Job,
        commit: &Commit,
        kind: &TargetKind,
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
                let term = self.job_term(repo, needed, commit, kind, digests, jobs, terms);
                needs.push((need.clone(), term.without_logs()));
            }
        }
        let run = self.run_term(job, commit, kind, digests);
        let run = if job.manual {
            approved(repo, commit, &job.name, run)
        } else {
            run
        };
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
        kind: &TargetKind,
        digests: &BTreeMap<String, key::Digest>,
    ) -> Term<String> {
        if !job.secrets.is_empty() && !secrets_allowed(kind) {
            return Term::fail(format!(
                "secrets are never given to pull requests, and this step needs {}: it runs on branches and tags only",
                job.secrets
                    .iter()
                    .map(|name| format!("{name:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let Some(digest) = digests.get(&job.name) else {
            return Term::fail(format!("no digest for job {:?}", job.name));
        };
        let image: Term<Option<Image>> = match &job.runner {
            Runner::Host => Term::ok(None),
            Runner::Image(name) => Term::ok(Some(Image::of_published(name.as_str()))),
            Runner::Dockerfile { .. } => match self.image_builder(job) {
                Ok(builder) => builder.build_on(commit, None).map(Some),
                Err(message) => return Term::fail(message),
            },
        };
        let (digest, job, commit) = (digest.hex.clone(), Arc::new(job.clone()), commit.clone());
        let head = commit.hash().clone();
        let steps = self.inner.steps.clone();
        image
            .and_then(move |image| {
                let digest = match &image {
                    // A built image's id is known once it is built: it is part of the key.
                    Some(built) if built.host().is_some() => {
                        key::with_image(&digest, built.reference())
                    }
                    _ => digest.clone(),
                };
                let key = StepKey {
                    digest,
                    job: Arc::clone(&job),
                    commit: commit.clone(),
                    image,
                };
                let steps = steps.clone();
                Term::job_id().and_then(move |id| steps.find(id, key.clone()))
            })
            .map(move |ran| match ran.attempt {
                _ if ran.commit != head => format!("Unchanged since {}", ran.commit.short(7)),
                (1, _) => "Passed".to_owned(),
                (attempt, attempts) => format!("Passed on attempt {attempt} of {attempts}"),
            })
    }
}

impl PipelineRunner {
    /// The long-lived image builder of a `dockerfile` job's recipe (made on first use).
    fn image_builder(&self, job: &Job) -> Result<datakit_ci_docker::Builder, String> {
        let Runner::Dockerfile {
            file,
            context,
            args,
        } = &job.runner
        else {
            return Err(format!("job {:?} has no dockerfile", job.name));
        };
        let Some(hosts) = &self.inner.docker else {
            return Err(NO_DOCKER.to_owned());
        };
        let args: Vec<(String, String)> =
            args.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        let recipe: ImageRecipe = (file.clone(), context.clone(), args, job.timeout);
        let mut builders = lock(&self.inner.builders);
        if let Some(builder) = builders.get(&recipe) {
            return Ok(builder.clone());
        }
        // The label names the builder's cache branches: a digest of the recipe and the runner.
        let label = format!(
            "pipeline-{}",
            &key::hex(&sha2::Sha256::digest(
                format!("{}\n{recipe:?}", self.inner.label).as_bytes()
            ))[..16]
        );
        let config = BuildConfig {
            dockerfile: file.clone(),
            context: context.clone(),
            build_args: recipe.2.clone(),
            timeout: Some(job.timeout),
        };
        let builder = datakit_ci_docker::Builder::new(hosts, &label, config, &self.inner.services)
            .map_err(|e| format!("cannot build {file:?}: {e}"))?;
        builders.insert(recipe, builder.clone());
        Ok(builder)
    }
}

/// Whether steps of a target of `kind` get secrets: branches and tags (pushed by people with
/// write access), not pull requests (anyone's code).
fn secrets_allowed(kind: &TargetKind) -> bool {
    match kind {
        TargetKind::Branch(_) | TargetKind::Tag(_) => true,
        TargetKind::PullRequest { .. } => false,
    }
}

/// `run`, once someone approved job `job` on `commit` (a `manual` step): pending until then; the
/// description then names who approved it, so the target's history records it.
fn approved(repo: &RepoId, commit: &Commit, job: &str, run: Term<String>) -> Term<String> {
    Term::approval(repo.clone(), commit.hash().clone(), job).and_then(
        move |approver| match approver {
            None => Term::pending(format!("{APPROVAL_PREFIX} by a Builder in the web UI")),
            Some(user) => run
                .clone()
                .map(move |description| format!("{description} (approved by {user})")),
        },
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use datakit_ci_term::JobId;

    /// A plan with a schedule is evaluated again at the schedule's next tick (then with the new
    /// tick in the jobs' digests), and not before.
    #[tokio::test]
    async fn a_schedule_tick_makes_the_plan_evaluate_again() {
        let job = JobId::new(
            TargetId::Ref(
                "me/app".parse().expect("a repo"),
                RefName::branch("main").expect("a branch"),
            ),
            "pipeline",
        );
        let soon = SystemTime::now() + Duration::from_millis(200);
        let evaluation = at_time(soon)
            .evaluate(&EvalContext::new(job.clone(), None))
            .await;
        assert_eq!(evaluation.status.result.ok(), Some(()));
        assert_eq!(evaluation.dependencies.ready_count(), 1);
        tokio::time::timeout(Duration::from_secs(10), evaluation.dependencies.ready())
            .await
            .expect("the tick wakes the plan");
        assert!(SystemTime::now() >= soon, "woken before the tick");
        // A tick in the past wakes at once.
        let past = at_time(SystemTime::UNIX_EPOCH)
            .evaluate(&EvalContext::new(job, None))
            .await;
        tokio::time::timeout(Duration::from_secs(10), past.dependencies.ready())
            .await
            .expect("a past tick wakes at once");
    }
}
