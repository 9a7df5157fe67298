//! The Docker plugin of datakit-ci (spec §5.6): build images from a commit's tree and run
//! commands in containers, as cached steps, on one or more Docker hosts, through the Docker
//! Engine API ([`bollard`]).
//!
//! # Overview
//!
//! - [`Hosts`] are the Docker daemons the CI may use, each with a [`MonitoredPool`](datakit_ci_pool::MonitoredPool) of job slots
//!   (`docker-<name>`, shown on the dashboard like every pool). A step goes to the least-loaded
//!   host that has room, or to the host that holds the image it needs. Every container and image
//!   the CI makes is labelled with the CI's [`Instance`] id (`datakit-ci.instance`), the job
//!   (`datakit-ci.job`) and the cache key (`datakit-ci.key`): [`Hosts::reap_leftovers`] removes
//!   what a previous run of the same instance left (e.g. after `kill -9`), and every host does so
//!   before it starts its first container.
//! - [`Image`]: an image id on a host, as built by [`Builder`], or a name
//!   ([`Image::of_published`]) for an image already on the hosts.
//! - [`Builder`] builds an image from a commit's tree (a Dockerfile and a context directory,
//!   build arguments, an optional rewrite of the first `FROM`), cached on the branch
//!   `docker-build-<label>-of-<digest>`, where the digest covers everything that decides the
//!   image: the context's Git tree, the Dockerfile, the build arguments, the base images' ids and
//!   the host. An image the host no longer has (pruned) is built again.
//! - [`Command`] runs a command in a fresh container of an image, with a commit's tree copied
//!   to [`SOURCE_DIR`] (`/src`, the working directory by default), cached on the branch
//!   `docker-run-<label>-in-<image>-on-<hash>`. Output is streamed into the build's live log as it
//!   comes; the exit status decides; a cancel, a timeout, or the step being dropped kills and
//!   removes the container.
//! - [`Hosts::run_container`] runs one container of a job ([`ContainerRequest`]) without a
//!   cache: host choice, slot, labels, the commit's tree in `/src`, failover. [`Command`] runs
//!   its containers through it; so do the pipeline file's steps in images.
//!
//! # Example
//!
//! ```no_run
//! use datakit_ci_docker::{Command, CommandConfig, HostSpec, Hosts, Image, Instance};
//! use datakit_ci_term::Term;
//! # fn example(services: &datakit_ci_git::Services, head: datakit_ci_term::Term<datakit_ci_git::Commit>)
//! #     -> Result<datakit_ci_term::Term<()>, Box<dyn std::error::Error>> {
//! let instance = Instance::load_or_create(std::path::Path::new("/var/lib/ci/docker-instance"))?;
//! let hosts = Hosts::new(vec![HostSpec::local_default()], 4, instance, services)?;
//! let unit = Command::new(
//!     &hosts,
//!     "unit",
//!     vec!["sh".into(), "-c".into(), "make test".into()],
//!     CommandConfig::default(),
//!     services,
//! )?;
//! Ok(unit.run(Term::ok(Image::of_published("debian:bookworm")), head))
//! # }
//! ```

use std::path::PathBuf;

mod archive;
mod build;
mod command;
mod container;
mod copy_out;
mod executor;
mod host;
mod image;
mod instance;
mod layers;
mod prune;
mod request;
mod resolve;
mod swarm;

pub use build::{BuildConfig, Builder};
pub use command::{Command, CommandConfig};
pub use copy_out::{CopiedKind, CopyOut, CopyOutSink};
pub use executor::{ContainerExecutor, Executor};
pub use host::{HostSpec, Hosts};
pub use image::Image;
pub use instance::Instance;
pub use request::{ContainerRequest, Priority, container_environment};
pub use swarm::{JobPhase, NodeView, POOL_LABEL, Swarm, SwarmConfig, SwarmJob, SwarmStatus};

/// Where a [`Command`]'s container gets the commit's tree (without `.git`), and its default
/// working directory.
pub const SOURCE_DIR: &str = "/src";

/// The labels put on every container and image the plugin makes.
pub mod labels {
    /// The CI instance ([`Instance`](crate::Instance)) that made it.
    pub const INSTANCE: &str = "datakit-ci.instance";
    /// The job that asked for it (e.g. `local/app/heads/main unit`).
    pub const JOB: &str = "datakit-ci.job";
    /// The cache branch of the step (e.g. `docker-run-of-unit-in-…`).
    pub const KEY: &str = "datakit-ci.key";
}

/// Errors of the Docker plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The daemon did not answer (no socket, connection refused, a failed version check).
    #[error("cannot reach the Docker daemon at {url}")]
    Unreachable {
        /// The host's URL, e.g. `unix:///var/run/docker.sock`.
        url: String,
        /// Why.
        #[source]
        source: bollard::errors::Error,
    },
    /// A host URL that is neither `unix://PATH` nor `tcp://HOST:PORT`.
    #[error("invalid Docker host URL {url:?}: expected unix:///PATH or tcp://HOST:PORT")]
    InvalidUrl {
        /// The URL given.
        url: String,
    },
    /// A host name that cannot name a pool.
    #[error("invalid Docker host name {name:?}: use ASCII letters, digits, '.', '_' and '-'")]
    InvalidHostName {
        /// The name given.
        name: String,
    },
    /// Two hosts have the same name, or none was given.
    #[error("invalid Docker hosts: {reason}")]
    Hosts {
        /// What is wrong.
        reason: String,
    },
    /// The image is not on the host.
    #[error("unknown image {image:?} on Docker host {host:?}")]
    UnknownImage {
        /// The image's name or id.
        image: String,
        /// The host's name.
        host: String,
    },
    /// The image is on a host that is not configured (any more).
    #[error("image {image:?} is on Docker host {host:?}, which is not configured")]
    UnknownHost {
        /// The image's id.
        image: String,
        /// The host's name.
        host: String,
    },
    /// A call of the Docker API failed.
    #[error("Docker host {host:?}: cannot {action}")]
    Api {
        /// The host's name.
        host: String,
        /// What was being done, e.g. `create the container`.
        action: String,
        /// The API's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The container's command exited with a non-zero status.
    #[error("command {command} exited with status {code}")]
    Exit {
        /// The command, as shown to users (each argument quoted).
        command: String,
        /// Its exit status.
        code: i64,
    },
    /// The kernel's OOM killer killed a process of the container.
    #[error("container killed: out of memory (limit {limit})")]
    OutOfMemory {
        /// The memory limit, e.g. `512 MiB`, or `none` without one.
        limit: String,
    },
    /// The step was cancelled (from its live log, or because the CI stopped).
    #[error("cancelled")]
    Cancelled,
    /// The step ran longer than its timeout.
    #[error("timed out after {}", humantime::format_duration(*.timeout))]
    Timeout {
        /// The timeout that expired.
        timeout: std::time::Duration,
    },
    /// The image build failed.
    #[error("docker build failed: {message}")]
    BuildFailed {
        /// The daemon's message.
        message: String,
    },
    /// A Dockerfile or context path of a [`Builder`] is unusable.
    #[error("invalid {what} {path:?}: {reason}")]
    InvalidPath {
        /// `Dockerfile path` or `context directory`.
        what: &'static str,
        /// The path given.
        path: String,
        /// Why.
        reason: String,
    },
    /// The Dockerfile cannot be rewritten to start from another image.
    #[error("cannot rewrite {path:?} to start from another image: {reason}")]
    Rewrite {
        /// The Dockerfile's path in the repository.
        path: String,
        /// Why.
        reason: String,
    },
    /// Reading the commit's tree with `git` failed.
    #[error("git {args} in {dir:?} failed: {message}")]
    Git {
        /// The arguments given to `git`.
        args: String,
        /// The repository.
        dir: PathBuf,
        /// What git said.
        message: String,
    },
    /// A step label that cannot be part of a branch name.
    #[error("invalid step label {label:?}: {reason}")]
    InvalidLabel {
        /// The label.
        label: String,
        /// Why.
        reason: String,
    },
    /// A file of the plugin (the instance id) cannot be read or written.
    #[error("cannot access {path:?}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An image could not be pushed to the registry.
    #[error("cannot push {image}: {message}")]
    Push {
        /// The image's name.
        image: String,
        /// The daemon's or registry's message.
        message: String,
    },
    /// The node running the job went down or was drained (Swarm).
    #[error("the job's {reason}")]
    NodeLost {
        /// Which node, and what happened to it.
        reason: String,
    },
    /// The job's task gave no output and did not change state for too long (Swarm).
    #[error("no output and no change of state for {}: the task is stuck", humantime::format_duration(*.after))]
    Stalled {
        /// The stall timeout that expired.
        after: std::time::Duration,
    },
    /// The job's task ended without its command's exit status (Swarm): rejected by its node
    /// (e.g. an image it cannot pull), shut down, or lost.
    #[error("the job's task {state}: {message}")]
    Task {
        /// The task's last state, e.g. `rejected`.
        state: String,
        /// Swarm's message.
        message: String,
    },
    /// The host's job pool cannot be made.
    #[error("cannot create the pool of Docker host {host:?}")]
    Pool {
        /// The host's name.
        host: String,
        /// The pool's error.
        #[source]
        source: datakit_ci_pool::Error,
    },
}

/// `error`, then each of its sources, separated by `: ` (the Git plugin's, which this plugin
/// builds on).
pub(crate) use datakit_ci_git::error_chain;

/// Checks that `label` can name a cache branch (`<prefix>-<label>-…`).
pub(crate) fn validate_label(label: &str) -> Result<(), Error> {
    let invalid = |reason: &str| Error::InvalidLabel {
        label: label.to_owned(),
        reason: reason.to_owned(),
    };
    if label.is_empty() {
        return Err(invalid("it is empty"));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(invalid(&format!(
            "{c:?} is not an ASCII letter, digit, '.', '_' or '-'"
        )));
    }
    if label.len() > 64 {
        return Err(invalid("it is longer than 64 bytes"));
    }
    let example = format!("docker-run-of-{label}-in-x-on-{}", "0".repeat(40));
    datakit_ci_store::BranchName::new(example).map_err(|e| invalid(&e.to_string()))?;
    Ok(())
}

/// `argv` as shown to users: each argument quoted, separated by spaces.
pub(crate) fn display_command(argv: &[String]) -> String {
    argv.iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(" ")
}
