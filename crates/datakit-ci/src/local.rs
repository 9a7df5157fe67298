//! A CI for local Git repositories: the local bridge mirrors their refs into the metadata, and
//! every configured shell test runs, through the Git plugin's cached `Command`, in a fresh clone
//! of each target's head. This is what the `datakit-ci` binary runs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use datakit_ci_cache::CacheMetrics;
use datakit_ci_engine::{Engine, EngineConfig, Project};
use datakit_ci_forge_github::GithubBridge;
use datakit_ci_forge_local::{LocalBridge, LocalRepo};
use datakit_ci_git::{Command, CommandConfig, JobEnvironment, Repo, Services};
use datakit_ci_health::Health;
use datakit_ci_log::{LogConfig, LogManager};
use datakit_ci_notifications::{DeliveryConfig, Notifier};
use datakit_ci_pipeline_run::{
    PLAN_JOB, PipelineRunner, RunnerConfig, UnknownTrust, hold_untrusted,
};
use datakit_ci_pool::{MonitoredPool, PoolMetrics, Pools};
use datakit_ci_process as process;
use datakit_ci_store::Store;
use datakit_ci_term::{RepoId, TargetId, Term};
use datakit_ci_web::{
    AppState, ClusterStatus, ForgeHealth, ForgeLinks, GithubLogin, WebConfig, WebServer,
    WebhookReceiver,
};

use crate::github::{GithubOptions, WebhookAdapter};
use crate::publish::Publisher;
use crate::remote::RemoteUrl;
use crate::replica::ReadOnlyOptions;

mod cluster;
mod docker;

pub use docker::{DockerBuildSpec, DockerConfig, DockerTestSpec, ExecutorChoice, TestImage};

/// A local repository to test, under a forge id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalRepoSpec {
    /// The id used in the metadata and the UI, e.g. `local/myproject`.
    pub id: RepoId,
    /// The repository's directory.
    pub path: PathBuf,
}

/// A test: a shell command run with `sh -c` in a clone of each target's head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestSpec {
    /// The test's name (the status context `ci/datakit/<name>`).
    pub name: String,
    /// The shell command.
    pub command: String,
}

/// The shell tests and how they run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShellConfig {
    /// The tests to run on every target of every repository.
    pub tests: Vec<TestSpec>,
    /// The longest a test may run; `None`: no limit.
    pub timeout: Option<Duration>,
    /// How many tests may run at once (a pool named `jobs`); `None`: no limit.
    pub jobs: Option<usize>,
    /// Variables handed on to the tests, with their values, besides the documented ones (see
    /// [`JobEnvironment::variables`]).
    pub pass_env: Vec<(String, OsString)>,
    /// The tests run in containers and the images built, on Docker hosts.
    pub docker: DockerConfig,
    /// Where the secrets of pipeline steps (`secrets: [NAME]`) are, a file per name; `None`:
    /// `<state-dir>/secrets/pipeline` (the binary: `<secrets-dir>/pipeline`).
    pub pipeline_secrets: Option<PathBuf>,
    /// The most bytes of `artifacts` a pipeline step keeps (`--max-artifact-size`); `None`:
    /// [`DEFAULT_MAX_ARTIFACT_SIZE`](datakit_ci_pipeline_run::DEFAULT_MAX_ARTIFACT_SIZE).
    pub max_artifact_size: Option<u64>,
}

impl ShellConfig {
    /// Whether targets run their commit's pipeline file: when no test is given on the command
    /// line (no `--test`, no `--docker-build`).
    pub fn uses_pipeline_file(&self) -> bool {
        self.tests.is_empty() && self.docker.tests.is_empty() && self.docker.builds.is_empty()
    }

    /// `tests`, with no timeout, no job limit and nothing passed on.
    pub fn new(tests: Vec<TestSpec>) -> Self {
        ShellConfig {
            tests,
            timeout: None,
            jobs: None,
            pass_env: Vec::new(),
            docker: DockerConfig::default(),
            pipeline_secrets: None,
            max_artifact_size: None,
        }
    }
}

/// Everything a local CI needs.
#[derive(Clone, Debug)]
pub struct LocalCiConfig {
    /// The repositories to test.
    pub repos: Vec<LocalRepoSpec>,
    /// The GitHub repositories to test, and how to reach them.
    pub github: Option<GithubOptions>,
    /// The tests to run on every target of every repository, and how.
    pub shell: ShellConfig,
    /// Where the state lives: `<state_dir>/state.git`, the CI's own clones (`repos/`) and the
    /// builds' temporary clones (`tmp/`).
    pub state_dir: PathBuf,
    /// The public URL of the web UI, for status links.
    pub web_ui: String,
    /// If non-empty, only these targets are tested.
    pub canaries: Vec<TargetId>,
    /// The web UI, if it is to be served.
    pub web: Option<WebConfig>,
    /// Where to send notifications of result changes (`--notify`), if anywhere.
    pub notify: Option<DeliveryConfig>,
    /// The most bytes of a build's log that are saved (`--max-log-size`).
    pub max_log_size: u64,
    /// How long builds' logs are kept (`--keep-logs`); `None`: forever.
    pub keep_logs: Option<Duration>,
}

/// The local CI could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The state directory cannot be created or written.
    #[error("cannot use state directory {}", .path.display())]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The state store cannot be opened (e.g. another instance holds it).
    #[error(transparent)]
    Store(#[from] datakit_ci_store::Error),
    /// A repository argument is not a Git repository.
    #[error(transparent)]
    Repository(#[from] datakit_ci_forge_local::Error),
    /// The CI's clone of a repository cannot be made, or a test is invalid.
    #[error(transparent)]
    Git(#[from] datakit_ci_git::Error),
    /// The same id is given to two repositories.
    #[error("repository id {0} is given twice")]
    DuplicateRepo(RepoId),
    /// A project could not be configured.
    #[error(transparent)]
    Config(#[from] datakit_ci_engine::ConfigError),
    /// The program's projects could not be made.
    #[error("{0}")]
    Projects(String),
    /// The Docker hosts or a containerised test cannot be set up.
    #[error(transparent)]
    Docker(#[from] datakit_ci_docker::Error),
    /// A pool of the tests cannot be made.
    #[error(transparent)]
    Pool(#[from] datakit_ci_pool::Error),
    /// The web UI cannot start (secrets, listener, sessions backend).
    #[error(transparent)]
    Web(#[from] datakit_ci_web::Error),
    /// GitHub cannot be reached or configured (secret files, the repositories' clone URLs).
    #[error(transparent)]
    Github(#[from] datakit_ci_forge_github::Error),
    /// Old logs could not be removed, or the store not compacted, at start (`--keep-logs`).
    #[error("log retention at start-up failed")]
    Retention(#[source] RetentionError),
    /// Notifications cannot be sent (a bad URL).
    #[error(transparent)]
    Notify(#[from] datakit_ci_notifications::NotifyError),
}

/// The local CI could not keep running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The engine failed.
    #[error("the engine stopped")]
    Engine(#[from] datakit_ci_engine::Error),
    /// The bridge failed.
    #[error("the local repository bridge stopped")]
    Bridge(#[from] datakit_ci_forge_local::Error),
    /// The web server failed.
    #[error("the web server stopped")]
    Web(#[from] datakit_ci_web::Error),
    /// The GitHub bridge or status reporter failed.
    #[error("the GitHub bridge stopped")]
    Github(#[from] datakit_ci_forge_github::Error),
}

/// What every local CI needs besides its projects (the common command-line options).
#[derive(Clone, Debug)]
pub struct CiOptions {
    /// The repositories to watch.
    pub repos: Vec<LocalRepoSpec>,
    /// The GitHub repositories to watch, and how to reach them.
    pub github: Option<GithubOptions>,
    /// Where the state lives.
    pub state_dir: PathBuf,
    /// The public URL of the web UI.
    pub web_ui: String,
    /// If non-empty, only these targets are tested.
    pub canaries: Vec<TargetId>,
    /// The web UI, if it is to be served.
    pub web: Option<WebConfig>,
    /// Where to send notifications of result changes (`--notify`), if anywhere.
    pub notify: Option<DeliveryConfig>,
    /// The most bytes of a build's log that are saved (`--max-log-size`).
    pub max_log_size: u64,
    /// How long builds' logs are kept (`--keep-logs`); `None`: forever.
    pub keep_logs: Option<Duration>,
    /// Where the store is pushed after each flush (`--publish-store`), if anywhere.
    pub publish_store: Option<RemoteUrl>,
    /// Serve a read-only web UI from a published store instead of running a CI
    /// (`--read-only-store`; see [`ReplicaCi`](crate::replica::ReplicaCi)).
    pub read_only: Option<ReadOnlyOptions>,
}

/// A watched repository, as the project functions see it: its id and the CI's own clone.
#[derive(Clone)]
pub struct SourceRepo {
    /// The forge id (`--repo USER/REPO=PATH`).
    pub id: RepoId,
    /// The CI's clone, for `fetch_head` and commands.
    pub repo: Repo,
    /// How its pull requests whose bridge records nothing of their trust are treated: as
    /// trusted for a local repository, held for a GitHub one (issue 17).
    pub unknown_trust: UnknownTrust,
}

/// The directory of the secrets directory holding the secrets of pipeline steps.
pub const PIPELINE_SECRETS: &str = "pipeline";

/// One project per repository, each running `tests` as shell commands in a fresh clone of each
/// target's head, and the containerised tests and image builds of `config.docker` on its Docker
/// hosts (what the `datakit-ci` binary does).
pub fn shell_projects(
    config: &ShellConfig,
    repos: &[SourceRepo],
    services: &Services,
) -> Result<Projects, StartError> {
    let job_slots = config
        .jobs
        .map(|jobs| MonitoredPool::new("jobs", jobs, &services.pool_metrics, &services.pools))
        .transpose()?;
    let command_config = CommandConfig {
        timeout: config.timeout,
        environment: JobEnvironment::Clean {
            pass: config.pass_env.clone(),
        },
        job_slots,
        ..CommandConfig::default()
    };
    let docker_hosts = config.docker.hosts(services)?;
    // The store is `<state-dir>/state.git`.
    let state_dir = services.store.path().parent().unwrap_or(Path::new("."));
    let pipeline_secrets = config
        .pipeline_secrets
        .clone()
        .unwrap_or_else(|| state_dir.join("secrets").join(PIPELINE_SECRETS));
    let pipeline_hosts = if config.uses_pipeline_file() {
        match &docker_hosts {
            Some(hosts) => Some(hosts.clone()),
            None => Some(config.docker.pipeline_hosts(services)?),
        }
    } else {
        None
    };
    let (executor, swarm) = match docker_hosts.as_ref().or(pipeline_hosts.as_ref()) {
        Some(hosts) => {
            let (executor, swarm) = config.docker.executor(hosts, services)?;
            (Some(executor), swarm)
        }
        None => (None, None),
    };
    let projects = repos
        .iter()
        .map(|source| {
            let repo = source.repo.clone();
            let unknown_trust = source.unknown_trust;
            let docker = docker_hosts
                .as_ref()
                .zip(executor.as_ref())
                .map(|(hosts, executor)| {
                    docker::DockerJobs::new(
                        &config.docker,
                        hosts,
                        executor,
                        config.timeout,
                        &config.pass_env,
                        services,
                    )
                })
                .transpose()?;
            let commands = config
                .tests
                .iter()
                .map(|test| {
                    let argv = vec!["sh".to_owned(), "-c".to_owned(), test.command.clone()];
                    Command::new(&repo, &test.name, vec![argv], command_config.clone())
                        .map(|command| (test.name.clone(), command))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let pipeline = config.uses_pipeline_file().then(|| {
                let config = RunnerConfig {
                    environment: command_config.environment.clone(),
                    job_slots: command_config.job_slots.clone(),
                    docker: pipeline_hosts.clone(),
                    executor: executor.clone(),
                    secrets_dir: Some(pipeline_secrets.clone()),
                    unknown_trust,
                    max_artifact_size: config.max_artifact_size,
                };
                PipelineRunner::new(&repo, &source.id.to_string(), config, services)
            });
            let project = Project::new(&source.id.to_string(), move |target| {
                let head = repo.fetch_head(target.clone());
                let shell = commands.iter().map(|(name, command)| {
                    (
                        name.clone(),
                        command.run(head.clone()).map(|()| "Passed".to_owned()),
                    )
                });
                let containerised = docker.iter().flat_map(|docker| docker.jobs(&head));
                let jobs = shell.chain(containerised);
                // Branches and tags are pushed by people with write access: never held, and
                // their jobs do not depend on the target's record.
                if matches!(target, TargetId::Ref(..)) {
                    return jobs.collect();
                }
                // An untrusted pull request's `--test` and `--docker-build` jobs run its code
                // too: each waits for a Builder's approval of its head, as a pipeline's do.
                jobs.map(|(name, run)| {
                    let target = target.clone();
                    let held = Term::target(target).and_then(move |resolved| {
                        hold_untrusted(&resolved, unknown_trust, run.clone())
                    });
                    (name, held)
                })
                .collect()
            })?;
            Ok(match pipeline {
                Some(runner) => project.with_plan(PLAN_JOB, move |target| runner.plan(target)),
                None => project,
            })
        })
        .collect::<Result<Vec<_>, StartError>>()?;
    Ok(Projects {
        projects,
        cluster: swarm
            .map(|swarm| Arc::new(cluster::SwarmCluster(swarm)) as Arc<dyn ClusterStatus>),
    })
}

/// What a CI tests: its projects, and the cluster its jobs run on if they run on one (shown on
/// the dashboard).
pub struct Projects {
    /// The projects.
    pub projects: Vec<Project>,
    /// The cluster that runs their jobs (the Swarm executor), if any.
    pub cluster: Option<Arc<dyn ClusterStatus>>,
}

impl From<Vec<Project>> for Projects {
    fn from(projects: Vec<Project>) -> Projects {
        Projects {
            projects,
            cluster: None,
        }
    }
}

/// A running local CI: the engine plus the bridge.
pub struct LocalCi {
    engine: Engine,
    bridge: LocalBridge,
    github: Option<GithubBridge>,
    services: Services,
    registry: Arc<Mutex<Registry>>,
    web: Option<WebServer>,
    notifier: Option<Notifier>,
    keep_logs: Option<Duration>,
    publisher: Option<Publisher>,
}

impl LocalCi {
    /// Opens the state, makes the CI's clones (under `<state_dir>/repos/`) and configures one
    /// project per repository running the shell tests.
    pub async fn start(config: LocalCiConfig) -> Result<Self, StartError> {
        let shell = config.shell;
        let options = CiOptions {
            repos: config.repos,
            github: config.github,
            state_dir: config.state_dir,
            web_ui: config.web_ui,
            canaries: config.canaries,
            web: config.web,
            notify: config.notify,
            max_log_size: config.max_log_size,
            keep_logs: config.keep_logs,
            publish_store: None,
            read_only: None,
        };
        LocalCi::start_with(options, |repos, services| {
            shell_projects(&shell, repos, services)
        })
        .await
    }

    /// Opens the state and the CI's clones of `options.repos`, then asks `make_projects` for the
    /// projects to test (given those clones and the services builds use).
    ///
    /// Once the store's lock is taken (so no other instance uses this state directory), it
    /// kills the processes a previous run on it left (by the [owner id](process::owner_id) it
    /// recorded in `<state_dir>/builds-owner`: builds survive a `kill -9` of the CI if its
    /// guardian died too) and empties `<state_dir>/tmp/`, where the builds' temporary clones are
    /// made, before anything is built; then it records this process's owner id.
    pub async fn start_with<F, P>(options: CiOptions, make_projects: F) -> Result<Self, StartError>
    where
        F: FnOnce(&[SourceRepo], &Services) -> Result<P, StartError>,
        P: Into<Projects>,
    {
        let state_dir = &options.state_dir;
        std::fs::create_dir_all(state_dir)
            .and_then(|()| tempfile::tempfile_in(state_dir).map(drop))
            .map_err(|source| StartError::StateDir {
                path: state_dir.clone(),
                source,
            })?;
        if let Some(keep) = options.keep_logs {
            apply_retention(&state_dir.join("state.git"), keep).await?;
        }
        let store = Store::open(&state_dir.join("state.git"))?;
        let temp_dir = state_dir.join(TEMP_DIR);
        {
            let state_dir = state_dir.clone();
            tokio::task::spawn_blocking(move || clean_up_previous_run(&state_dir))
                .await
                .expect("cleaning up does not panic")?;
        }
        let mut registry = Registry::default();
        // One list of trouble for the dashboard: the engine's, the bridges' and the plugins'.
        let health = Health::default();
        let services = Services {
            store: store.clone(),
            logs: LogManager::with_config(LogConfig::default().saved_limit(options.max_log_size)),
            cache_metrics: CacheMetrics::new(&mut registry),
            pool_metrics: PoolMetrics::new(&mut registry),
            pools: Pools::new(),
            temp_dir: Some(temp_dir),
            health: health.clone(),
        };
        let mut local_repos: Vec<LocalRepo> = Vec::new();
        let mut sources = Vec::new();
        for spec in &options.repos {
            if local_repos.iter().any(|r| r.id() == &spec.id) {
                return Err(StartError::DuplicateRepo(spec.id.clone()));
            }
            let local = LocalRepo::new(spec.id.clone(), &spec.path)?;
            let clone_dir = state_dir
                .join("repos")
                .join(spec.id.user())
                .join(spec.id.repo());
            let remote = local.path().to_string_lossy().into_owned();
            let repo = Repo::open(&clone_dir, Some(&remote), &services).await?;
            sources.push(SourceRepo {
                id: spec.id.clone(),
                repo,
                unknown_trust: UnknownTrust::Trusted,
            });
            local_repos.push(local);
        }
        let github = match &options.github {
            Some(github) => Some(github.bridge(&store)?),
            None => None,
        };
        for repo in github.iter().flat_map(|bridge| bridge.repos()) {
            if sources.iter().any(|s| &s.id == repo) {
                return Err(StartError::DuplicateRepo(repo.clone()));
            }
            let bridge = github.as_ref().expect("iterating over its repositories");
            let clone_dir = state_dir.join("repos").join(repo.user()).join(repo.repo());
            // Clone from where GitHub says the repository is (any URL `git` can fetch); a clone
            // made by an earlier run needs no API call, so the CI starts while GitHub is down.
            let clone_url = match tokio::fs::try_exists(&clone_dir).await {
                Ok(true) => None,
                _ => Some(bridge.repo_info(repo).await?.clone_url),
            };
            let credentials = crate::github::GitCredentials {
                bridge: bridge.clone(),
                repo: repo.clone(),
            };
            let clone = Repo::open_with_credentials(
                &clone_dir,
                clone_url.as_deref(),
                &services,
                Some(Arc::new(credentials)),
            )
            .await?;
            sources.push(SourceRepo {
                id: repo.clone(),
                repo: clone,
                // The bridge writes every open PR's `trust` with its head; one without it was
                // stored before it did, and waits for the sync made at start.
                unknown_trust: UnknownTrust::Wait,
            });
        }
        let Projects { projects, cluster } = make_projects(&sources, &services)?.into();
        for project in &projects {
            if !sources.iter().any(|s| &s.id == project.id()) {
                tracing::warn!(project = %project.id(), "no --repo gives this project's repository; it will have no targets");
            }
        }
        let engine_config = EngineConfig {
            projects,
            web_ui: options.web_ui.clone(),
            canaries: options.canaries.clone(),
        };
        let engine = Engine::with_health(engine_config, store.clone(), &mut registry, health);
        if let Some(bridge) = &github {
            bridge.on_rerun(crate::github::rerun_hook(engine.clone()));
        }
        let bridge =
            LocalBridge::new(store.clone(), local_repos).with_health(engine.health().clone());
        let registry = Arc::new(Mutex::new(registry));
        let web = match options.web {
            Some(web) => {
                let webhooks = github
                    .as_ref()
                    .filter(|_| {
                        options
                            .github
                            .as_ref()
                            .is_some_and(|g| g.webhook_secret_file.is_some())
                    })
                    .map(|bridge| WebhookAdapter::shared(bridge.clone()));
                let health = github.as_ref().map(|bridge| {
                    Arc::new(crate::github::HealthAdapter(bridge.clone())) as Arc<dyn ForgeHealth>
                });
                let api_url = options
                    .github
                    .as_ref()
                    .map_or(datakit_ci_forge_github::DEFAULT_API_URL, |g| {
                        g.api_url.as_str()
                    });
                let links = github.as_ref().map(|bridge| {
                    Arc::new(crate::github::LinksAdapter {
                        web_url: datakit_ci_forge_github::web_url(api_url),
                        repos: bridge.repos().to_vec(),
                    }) as Arc<dyn ForgeLinks>
                });
                let forges = Forges {
                    webhooks,
                    health,
                    login: Some(crate::github::oauth_login(api_url)),
                    links,
                    cluster,
                };
                Some(start_web(web, &engine, &services, &registry, forges).await?)
            }
            None => None,
        };
        let notifier = options.notify.map(Notifier::new).transpose()?;
        let publisher = options
            .publish_store
            .map(|remote| Publisher::new(store.clone(), remote, engine.health().clone()));
        Ok(LocalCi {
            engine,
            bridge,
            github,
            services,
            registry,
            web,
            notifier,
            keep_logs: options.keep_logs,
            publisher,
        })
    }

    /// The engine (to subscribe to status changes or query targets).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The store, log manager and pools the builds use.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// The metrics of the engine, caches, pools and web UI.
    pub fn registry(&self) -> &Arc<Mutex<Registry>> {
        &self.registry
    }

    /// The web server, if one was configured: its address and first-run setup URL.
    pub fn web(&self) -> Option<&WebServer> {
        self.web.as_ref()
    }

    /// Runs the bridge, the engine and the web server until `cancel` fires or one of them fails.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), RunError> {
        let stop_all = cancel.child_token();
        if let Some(keep) = self.keep_logs {
            tokio::spawn(retention_loop(
                self.services.store.clone(),
                keep,
                stop_all.clone(),
            ));
        }
        if let Some(notifier) = self.notifier {
            // Subscribed before the engine runs, so that it sees every change.
            tokio::spawn(notifier.run(self.engine.subscribe(), stop_all.clone()));
        }
        // Stopped after the engine's last flush, so that the last push carries it.
        let stop_publishing = CancellationToken::new();
        let publisher = async {
            if let Some(publisher) = self.publisher {
                publisher.run(stop_publishing.clone()).await;
            }
        };
        let bridge = self.bridge.run(stop_all.clone());
        let engine = self.engine.run(stop_all.clone());
        let github = async {
            let Some(bridge) = &self.github else {
                return Ok(());
            };
            let reporter = bridge
                .status_reporter()
                .with_logs(crate::github::log_hook(self.engine.clone()));
            let result =
                tokio::try_join!(bridge.run(stop_all.clone()), reporter.run(stop_all.clone()));
            stop_all.cancel();
            result.map(drop)
        };
        let web = async {
            match self.web {
                Some(web) => {
                    let result = web.run(stop_all.clone()).await;
                    stop_all.cancel();
                    result
                }
                // No web UI: nothing to stop the others for.
                None => Ok(()),
            }
        };
        let (bridge, engine, web, github, ()) = tokio::join!(
            async {
                let result = bridge.await;
                stop_all.cancel();
                result
            },
            async {
                let result = engine.await;
                stop_all.cancel();
                stop_publishing.cancel();
                result
            },
            web,
            github,
            publisher
        );
        engine?;
        bridge?;
        web?;
        github?;
        Ok(())
    }
}

/// Why retention at start-up failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetentionError {
    /// Removing old logs failed.
    #[error(transparent)]
    Cache(#[from] datakit_ci_cache::Error),
    /// Compacting the store failed.
    #[error(transparent)]
    Store(#[from] datakit_ci_store::Error),
}

/// How often a running CI removes logs that became too old (compaction, which frees their disk,
/// runs at the next start).
const RETENTION_EVERY: Duration = Duration::from_secs(6 * 3600);

/// At start-up, before the store is opened for good: removes the logs of builds older than
/// `keep`, then compacts the store so that their disk is freed (see `Store::compact`).
async fn apply_retention(path: &Path, keep: Duration) -> Result<(), StartError> {
    if !path.join("objects").exists() {
        return Ok(());
    }
    let retention = async {
        let store = Store::open(path)?;
        let removed = datakit_ci_cache::remove_old_logs(&store, keep).await?;
        store.wait_for_maintenance().await;
        drop(store);
        // Repacking a big store takes a while: only when some logs were removed, now or by a
        // pass while the CI last ran (which left the marker).
        let marker = compaction_marker(path);
        if removed.removed == 0 && !marker.exists() {
            return Ok::<_, RetentionError>((removed, None));
        }
        let repo = path.to_owned();
        let compaction = tokio::task::spawn_blocking(move || Store::compact(&repo))
            .await
            .map_err(datakit_ci_store::Error::Task)??;
        if let Err(error) = std::fs::remove_file(&marker)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%error, "cannot remove {}", marker.display());
        }
        Ok((removed, Some(compaction)))
    };
    let (removed, compaction) = retention.await.map_err(StartError::Retention)?;
    match compaction {
        Some(compaction) => tracing::warn!(
            "log retention (--keep-logs {}): removed the logs of {} builds, kept {}; the store's objects went from {} to {}",
            humantime::format_duration(keep),
            removed.removed,
            removed.kept,
            bytesize::ByteSize::b(compaction.before),
            bytesize::ByteSize::b(compaction.after),
        ),
        None => tracing::info!(
            kept = removed.kept,
            "log retention: no log older than {}",
            humantime::format_duration(keep)
        ),
    }
    Ok(())
}

/// The file a retention pass leaves beside the store when it removed logs while the CI ran,
/// so that the next start compacts the store.
fn compaction_marker(store: &Path) -> PathBuf {
    store.with_file_name("compaction-needed")
}

/// Removes logs that became older than `keep` every [`RETENTION_EVERY`] while the CI runs.
async fn retention_loop(store: Store, keep: Duration, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(RETENTION_EVERY) => {}
        }
        match datakit_ci_cache::remove_old_logs(&store, keep).await {
            Ok(removed) if removed.removed > 0 => {
                let marker = compaction_marker(store.path());
                if let Err(error) = std::fs::write(&marker, b"") {
                    tracing::warn!(%error, "cannot write {}", marker.display());
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %error, "log retention failed; trying again later")
            }
        }
    }
}

/// The directory of the builds' temporary clones, under the state directory.
const TEMP_DIR: &str = "tmp";

/// The file recording the process owner id of the last run on a state directory.
const OWNER_FILE: &str = "builds-owner";

/// Kills the processes the previous run on `state_dir` left, empties its temporary directory
/// and records this process as the owner of the builds to come. The caller holds the store's
/// lock.
fn clean_up_previous_run(state_dir: &Path) -> Result<(), StartError> {
    let owner_file = state_dir.join(OWNER_FILE);
    let error = |path: &Path| {
        let path = path.to_owned();
        move |source| StartError::StateDir { path, source }
    };
    match std::fs::read_to_string(&owner_file) {
        Ok(previous) => {
            let previous = previous.trim();
            // The same owner: an earlier `LocalCi` of this very process, which is alive.
            if !previous.is_empty() && previous != process::owner_id() {
                let killed = process::kill_owned_by(previous);
                if killed > 0 {
                    tracing::warn!(
                        "killed {killed} processes left running by a previous run ({previous})"
                    );
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(error(&owner_file)(source)),
    }
    let temp_dir = state_dir.join(TEMP_DIR);
    match std::fs::remove_dir_all(&temp_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(error(&temp_dir)(source)),
    }
    std::fs::create_dir(&temp_dir).map_err(error(&temp_dir))?;
    let new_file = state_dir.join(format!("{OWNER_FILE}.new"));
    std::fs::write(&new_file, format!("{}\n", process::owner_id()))
        .and_then(|()| std::fs::rename(&new_file, &owner_file))
        .map_err(error(&owner_file))?;
    Ok(())
}

/// What the web UI gets from the forges: webhooks, the dashboard's health line, GitHub login.
struct Forges {
    webhooks: Option<Arc<dyn WebhookReceiver>>,
    health: Option<Arc<dyn ForgeHealth>>,
    login: Option<Arc<dyn GithubLogin>>,
    links: Option<Arc<dyn ForgeLinks>>,
    /// Not a forge: the cluster the jobs run on, shown beside the pools.
    cluster: Option<Arc<dyn ClusterStatus>>,
}

/// Binds the web UI with the engine's pages; rebuild requests go to the engine.
async fn start_web(
    config: WebConfig,
    engine: &Engine,
    services: &Services,
    registry: &Arc<Mutex<Registry>>,
    forges: Forges,
) -> Result<WebServer, StartError> {
    let mut state = AppState::builder(
        config,
        services.store.clone(),
        services.logs.clone(),
        Arc::clone(registry),
    )
    .engine_rebuilds(engine.clone());
    if let Some(webhooks) = forges.webhooks {
        state = state.webhook_receiver(webhooks);
    }
    if let Some(health) = forges.health {
        state = state.forge_health(health);
    }
    if let Some(login) = forges.login {
        state = state.github_login(login);
    }
    if let Some(links) = forges.links {
        state = state.forge_links(links);
    }
    if let Some(cluster) = forges.cluster {
        state = state.cluster(cluster);
    }
    let state = state.build()?;
    let pages = datakit_ci_web::ci_pages(engine.clone(), services.pools.clone());
    Ok(WebServer::bind(state, Some(pages)).await?)
}
