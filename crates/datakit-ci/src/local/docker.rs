//! The binary's containerised tests: the Docker hosts of the CI (one set for every repository),
//! and per repository the image builds (`--docker-build`) and the tests run in containers
//! (`--test NAME@IMAGE=COMMAND`), as jobs of its project.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use datakit_ci_docker::{
    BuildConfig, Builder, Command, CommandConfig, Executor, HostSpec, Hosts, Image, Instance,
    Swarm, SwarmConfig,
};
use datakit_ci_git::{Commit, JobEnvironment, Services};
use datakit_ci_term::Term;

use super::StartError;

/// The file of the state directory holding the CI's instance id, the label of everything it
/// makes on Docker hosts.
const INSTANCE_FILE: &str = "docker-instance";

/// A test run in a container: `--test NAME@IMAGE=COMMAND`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerTestSpec {
    /// The test's name (the status context `ci/datakit/<name>`).
    pub name: String,
    /// The image it runs in.
    pub image: TestImage,
    /// The shell command, run with `sh -c` in `/src`, where the head's tree is.
    pub command: String,
}

/// The image of a containerised test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TestImage {
    /// An image the Docker hosts have, by name or id (`debian:bookworm`).
    Published(String),
    /// The image a `--docker-build` step builds, by the step's name.
    Built(String),
}

/// An image built from the repository: `--docker-build NAME=DOCKERFILE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerBuildSpec {
    /// The step's name (a job of its own, `ci/datakit/<name>`).
    pub name: String,
    /// The Dockerfile's path in the repository; its directory is the build context.
    pub dockerfile: String,
}

/// The containerised tests and image builds, and where they run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerConfig {
    /// Tests run in containers.
    pub tests: Vec<DockerTestSpec>,
    /// Images built from each target's head.
    pub builds: Vec<DockerBuildSpec>,
    /// The Docker daemons (at least one).
    pub hosts: Vec<HostSpec>,
    /// How many containers or builds may run at once on each host.
    pub jobs_per_host: usize,
    /// Remove, at start, the built images no cache entry refers to any more once older than
    /// this; `None`: keep them.
    pub prune_after: Option<Duration>,
    /// Remove, at start, the oldest of those images while they take more bytes than this on a
    /// host; `None`: no size limit.
    pub prune_size: Option<u64>,
    /// Where the containers run.
    pub executor: ExecutorChoice,
}

/// Where containers run: `--executor`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ExecutorChoice {
    /// On the Docker hosts, each with a pool of `jobs_per_host` slots.
    #[default]
    Hosts,
    /// As services of the Swarm cluster whose manager is the one Docker host, `jobs_per_host`
    /// at once; images are built on the manager.
    Swarm {
        /// The registry the nodes pull the jobs' images from (`HOST:PORT`).
        registry: Option<String>,
        /// How long a task may give no output and not change state before it is taken as stuck.
        stall_timeout: Option<Duration>,
    },
}

impl Default for DockerConfig {
    /// No containerised test or build; the local daemon, with a slot per CPU.
    fn default() -> Self {
        DockerConfig {
            tests: Vec::new(),
            builds: Vec::new(),
            hosts: vec![HostSpec::local_default()],
            jobs_per_host: std::thread::available_parallelism().map_or(1, usize::from),
            prune_after: None,
            prune_size: None,
            executor: ExecutorChoice::Hosts,
        }
    }
}

impl DockerConfig {
    /// Whether anything runs on Docker.
    pub fn is_empty(&self) -> bool {
        self.tests.is_empty() && self.builds.is_empty()
    }

    /// The CI's Docker hosts, labelling what they make with the instance id kept in the state
    /// directory, or `None` if nothing runs on Docker. Each host first removes what a previous
    /// run of this CI left there (started now, in the background; a container is never started
    /// before it is done).
    pub(crate) fn hosts(&self, services: &Services) -> Result<Option<Hosts>, StartError> {
        if self.is_empty() {
            return Ok(None);
        }
        let hosts = self.unstarted_hosts(services)?;
        hosts.start_reaping();
        Ok(Some(hosts))
    }

    /// The CI's Docker hosts for the steps of pipeline files in images: no daemon is contacted
    /// until a step needs one (each host removes what a previous run left before its first
    /// container), so that a CI whose files use no image never needs a Docker daemon, and a
    /// daemon that does not answer fails only the steps in images.
    pub(crate) fn pipeline_hosts(&self, services: &Services) -> Result<Hosts, StartError> {
        self.unstarted_hosts(services)
    }

    /// Where the containers of `hosts`' CI run: the hosts themselves, or the Swarm cluster
    /// they manage (whose reconciliation of what a previous run left starts now, in the
    /// background; it is also returned, for the dashboard).
    pub(crate) fn executor(
        &self,
        hosts: &Hosts,
        services: &Services,
    ) -> Result<(Executor, Option<Swarm>), StartError> {
        match &self.executor {
            ExecutorChoice::Hosts => Ok((Executor::from(hosts.clone()), None)),
            ExecutorChoice::Swarm {
                registry,
                stall_timeout,
            } => {
                let config = SwarmConfig {
                    jobs: self.jobs_per_host,
                    registry: registry.clone(),
                    stall_timeout: *stall_timeout,
                    ..SwarmConfig::default()
                };
                let swarm = Swarm::new(hosts.clone(), config, services)?;
                swarm.start_reconciling();
                Ok((std::sync::Arc::new(swarm.clone()), Some(swarm)))
            }
        }
    }

    fn unstarted_hosts(&self, services: &Services) -> Result<Hosts, StartError> {
        // The store is `<state-dir>/state.git`: the instance id lives beside it.
        let state_dir = services.store.path().parent().unwrap_or(Path::new("."));
        let instance = Instance::load_or_create(&state_dir.join(INSTANCE_FILE))?;
        let mut hosts = Hosts::new(self.hosts.clone(), self.jobs_per_host, instance, services)?;
        if let Some(age) = self.prune_after {
            hosts = hosts.with_image_pruning(age);
        }
        if let Some(size) = self.prune_size {
            hosts = hosts.with_image_size_limit(size);
        }
        Ok(hosts)
    }
}

/// One repository's image builds and containerised tests.
pub(crate) struct DockerJobs {
    builds: Vec<(String, Builder)>,
    tests: Vec<(String, ImageOf, Command)>,
}

/// The image a test runs in.
enum ImageOf {
    Published(Image),
    /// The image of the build step at this index of `DockerJobs::builds`.
    Build(usize),
}

impl DockerJobs {
    /// The steps of `config` for `repo`, built on `hosts` and run by `executor`, with the
    /// tests' timeout and passed variables.
    pub(crate) fn new(
        config: &DockerConfig,
        hosts: &Hosts,
        executor: &Executor,
        timeout: Option<Duration>,
        pass_env: &[(String, OsString)],
        services: &Services,
    ) -> Result<DockerJobs, StartError> {
        let builds = config
            .builds
            .iter()
            .map(|spec| {
                let dockerfile = Path::new(&spec.dockerfile);
                let context = dockerfile
                    .parent()
                    .map(|dir| dir.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let build = BuildConfig {
                    dockerfile: spec.dockerfile.clone(),
                    context: if context.is_empty() {
                        ".".to_owned()
                    } else {
                        context
                    },
                    timeout,
                    ..BuildConfig::default()
                };
                Ok((
                    spec.name.clone(),
                    Builder::new(hosts, &spec.name, build, services)?,
                ))
            })
            .collect::<Result<Vec<_>, StartError>>()?;
        let command_config = CommandConfig {
            timeout,
            environment: JobEnvironment::Clean {
                pass: pass_env.to_vec(),
            },
            ..CommandConfig::default()
        };
        let tests = config
            .tests
            .iter()
            .map(|test| {
                let argv = vec!["sh".to_owned(), "-c".to_owned(), test.command.clone()];
                let command = Command::on(
                    executor.clone(),
                    &test.name,
                    argv,
                    command_config.clone(),
                    services,
                )?;
                let image = match &test.image {
                    TestImage::Published(name) => ImageOf::Published(Image::of_published(name)),
                    TestImage::Built(step) => {
                        let index = builds
                            .iter()
                            .position(|(name, _)| name == step)
                            .ok_or_else(|| {
                                StartError::Projects(format!(
                                    "test {}: no --docker-build {step}",
                                    test.name
                                ))
                            })?;
                        ImageOf::Build(index)
                    }
                };
                Ok((test.name.clone(), image, command))
            })
            .collect::<Result<Vec<_>, StartError>>()?;
        Ok(DockerJobs { builds, tests })
    }

    /// The jobs of a target whose head is `head`: one per build (`Built <image>`), one per test
    /// (`Passed`).
    pub(crate) fn jobs(&self, head: &Term<Commit>) -> Vec<(String, Term<String>)> {
        let images: Vec<Term<Image>> = self
            .builds
            .iter()
            .map(|(_, builder)| builder.build(head.clone(), None))
            .collect();
        let builds = self.builds.iter().zip(&images).map(|((name, _), image)| {
            let described = image
                .clone()
                .map(|image| format!("Built {}", image.short()));
            (name.clone(), described)
        });
        let tests = self.tests.iter().map(|(name, image, command)| {
            let image = match image {
                ImageOf::Build(index) => images[*index].clone(),
                ImageOf::Published(image) => Term::ok(image.clone()),
            };
            let run = command
                .run(image, head.clone())
                .map(|()| "Passed".to_owned());
            (name.clone(), run)
        });
        builds.chain(tests).collect()
    }
}
