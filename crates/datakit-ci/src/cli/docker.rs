//! The binary's Docker options: `--test NAME@IMAGE=COMMAND`, `--test NAME@build:STEP=COMMAND`,
//! `--docker-build NAME=DOCKERFILE`, `--docker-host NAME=URL`, `--docker-jobs N` and the image
//! pruning limits, checked
//! without I/O.

use clap::Args;

use datakit_ci_docker::HostSpec;

use super::{UsageError, check_test_name};
use crate::local::{DockerBuildSpec, DockerConfig, DockerTestSpec, ExecutorChoice, TestImage};

/// Where containerised tests run, and the images they run in.
#[derive(Debug, Args)]
pub struct DockerArgs {
    /// Build DOCKERFILE (a path in the repository; its directory is the build context) as a
    /// cached step named NAME (repeatable); `--test TEST@build:NAME=COMMAND` runs in its image.
    #[arg(long = "docker-build", value_name = "NAME=DOCKERFILE")]
    pub docker_builds: Vec<String>,
    /// A Docker daemon for containerised tests and builds, `NAME=URL` with URL `unix:///PATH`
    /// or `tcp://HOST:PORT` (repeatable; default `local=unix:///var/run/docker.sock`).
    #[arg(long = "docker-host", value_name = "NAME=URL")]
    pub docker_hosts: Vec<String>,
    /// How many containerised tests and builds may run at once on each Docker host (default:
    /// the number of CPUs).
    #[arg(long = "docker-jobs", value_name = "N")]
    pub docker_jobs: Option<usize>,
    /// At start, remove the images this CI built that no cache entry refers to any more (a
    /// rebuild replaced them) and that are older than DURATION (e.g. `7days`); default: keep.
    #[arg(long = "docker-prune-after", value_name = "DURATION")]
    pub docker_prune_after: Option<humantime::Duration>,
    /// At start, when the images this CI built that no cache entry refers to any more take more
    /// than SIZE on a host (e.g. `10GiB`), remove the oldest of them until they take less (after
    /// `--docker-prune-after`); an image a container uses stays; default: no limit.
    #[arg(long = "docker-prune-size", value_name = "SIZE")]
    pub docker_prune_size: Option<bytesize::ByteSize>,
    /// Where containers run: `hosts` (each `--docker-host`, with `--docker-jobs` slots) or
    /// `swarm` (as services of the Swarm cluster whose manager is the one `--docker-host`,
    /// `--docker-jobs` at once, pull requests first).
    #[arg(long = "executor", value_name = "EXECUTOR", default_value = "hosts")]
    pub executor: ExecutorArg,
    /// With `--executor swarm`: the registry (`HOST:PORT`) the nodes pull from; the image of
    /// each job is pushed there and run by digest. Without it, jobs run on the manager's
    /// images only (a cluster of one node).
    #[arg(long = "registry", value_name = "HOST:PORT")]
    pub registry: Option<String>,
    /// With `--executor swarm`: a task that gives no output and does not change state for
    /// DURATION is taken as stuck, removed and submitted again (default: never).
    #[arg(long = "stall-timeout", value_name = "DURATION")]
    pub stall_timeout: Option<humantime::Duration>,
}

/// The values of `--executor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutorArg {
    /// The Docker hosts' pools.
    Hosts,
    /// A Docker Swarm cluster.
    Swarm,
}

impl DockerArgs {
    /// The Docker configuration, with the containerised `tests` already parsed.
    pub(crate) fn into_config(
        self,
        tests: Vec<DockerTestSpec>,
    ) -> Result<DockerConfig, UsageError> {
        let error = |option: &'static str, value: &str, reason: String| UsageError::Docker {
            option,
            value: value.to_owned(),
            reason,
        };
        let mut builds: Vec<DockerBuildSpec> = Vec::new();
        for value in &self.docker_builds {
            let (name, dockerfile) = value
                .split_once('=')
                .ok_or_else(|| error("--docker-build", value, "expected NAME=DOCKERFILE".into()))?;
            check_test_name(name)
                .map_err(|reason| error("--docker-build", value, reason.to_owned()))?;
            if dockerfile.is_empty() {
                return Err(error("--docker-build", value, "the path is empty".into()));
            }
            if builds.iter().any(|b| b.name == name) {
                return Err(UsageError::DuplicateTest(name.to_owned()));
            }
            builds.push(DockerBuildSpec {
                name: name.to_owned(),
                dockerfile: dockerfile.to_owned(),
            });
        }
        for test in &tests {
            if let TestImage::Built(step) = &test.image
                && !builds.iter().any(|b| &b.name == step)
            {
                return Err(UsageError::Test {
                    value: format!("{}@build:{step}", test.name),
                    reason: format!("no --docker-build {step}=DOCKERFILE"),
                });
            }
        }
        let mut hosts: Vec<HostSpec> = Vec::new();
        for value in &self.docker_hosts {
            let (name, url) = value
                .split_once('=')
                .ok_or_else(|| error("--docker-host", value, "expected NAME=URL".into()))?;
            let host = HostSpec::new(name, url)
                .map_err(|e| error("--docker-host", value, e.to_string()))?;
            if hosts.iter().any(|h| h.name() == host.name()) {
                return Err(error(
                    "--docker-host",
                    value,
                    format!("the name {name:?} is used twice"),
                ));
            }
            hosts.push(host);
        }
        if hosts.is_empty() {
            hosts.push(HostSpec::local_default());
        }
        let jobs_per_host = match self.docker_jobs {
            Some(0) => return Err(error("--docker-jobs", "0", "must be at least 1".into())),
            Some(jobs) => jobs,
            None => std::thread::available_parallelism().map_or(1, usize::from),
        };
        let executor = match self.executor {
            ExecutorArg::Hosts => {
                for (option, given) in [
                    ("--registry", self.registry.is_some()),
                    ("--stall-timeout", self.stall_timeout.is_some()),
                ] {
                    if given {
                        return Err(error(option, "", "only with --executor swarm".into()));
                    }
                }
                ExecutorChoice::Hosts
            }
            ExecutorArg::Swarm => {
                if hosts.len() != 1 {
                    return Err(error(
                        "--executor",
                        "swarm",
                        format!(
                            "needs exactly one --docker-host, the Swarm manager; {} given",
                            hosts.len()
                        ),
                    ));
                }
                if let Some(registry) = &self.registry {
                    check_registry(registry)
                        .map_err(|reason| error("--registry", registry, reason))?;
                }
                ExecutorChoice::Swarm {
                    registry: self.registry,
                    stall_timeout: self.stall_timeout.map(Into::into),
                }
            }
        };
        Ok(DockerConfig {
            tests,
            builds,
            hosts,
            jobs_per_host,
            prune_after: self.docker_prune_after.map(Into::into),
            prune_size: self.docker_prune_size.map(|size| size.as_u64()),
            executor,
        })
    }
}

/// Checks a registry address: `HOST:PORT`, without a scheme or a path.
fn check_registry(registry: &str) -> Result<(), String> {
    let Some((host, port)) = registry.rsplit_once(':') else {
        return Err("expected HOST:PORT".to_owned());
    };
    if host.is_empty() || host.contains(['/', ' ']) {
        return Err("expected HOST:PORT, without a scheme or a path".to_owned());
    }
    port.parse::<u16>()
        .map_err(|_| format!("{port:?} is not a port number"))?;
    Ok(())
}

/// `NAME@IMAGE=COMMAND` or `NAME@build:STEP=COMMAND` as a containerised test; `None` for a
/// `--test` value without `@` before its `=` (a shell test).
pub(crate) fn parse_docker_test(value: &str) -> Result<Option<DockerTestSpec>, UsageError> {
    let error = |reason: &str| UsageError::Test {
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let Some((left, command)) = value.split_once('=') else {
        return Ok(None);
    };
    let Some((name, image)) = left.split_once('@') else {
        return Ok(None);
    };
    check_test_name(name).map_err(error)?;
    let image = match image.strip_prefix("build:") {
        Some(step) if !step.is_empty() => TestImage::Built(step.to_owned()),
        Some(_) => return Err(error("expected NAME@build:STEP=COMMAND")),
        None if image.is_empty() || image.contains(char::is_whitespace) => {
            return Err(error(
                "expected NAME@IMAGE=COMMAND, with an image name or id",
            ));
        }
        None => TestImage::Published(image.to_owned()),
    };
    if command.trim().is_empty() {
        return Err(error("the command is empty"));
    }
    Ok(Some(DockerTestSpec {
        name: name.to_owned(),
        image,
        command: command.to_owned(),
    }))
}
