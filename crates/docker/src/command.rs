//! The container command cache: `Command` runs a fixed argument vector in a fresh container of
//! an image, with a commit's tree in `/src`, and caches the outcome per (image, commit) on the
//! branch `docker-run-of-<label>-in-<image>-on-<hash>`, with the command and its settings as the
//! recipe.
//!
//! Knows nothing of how hosts connect, which host runs the container or how a container's life
//! goes (`host.rs`, `request.rs`, `container.rs`); it decides what to run, and records it.

use std::fmt::Write as _;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tracing::Instrument;

use datakit_ci_cache::{Build, Builder, Cache};
use datakit_ci_git::{Commit, JobEnvironment, Services};
use datakit_ci_store::{BranchName, Snapshot};
use datakit_ci_term::{JobId, Term};

use crate::executor::Executor;
use crate::host::Hosts;
use crate::image::Image;
use crate::request::{ContainerRequest, Priority, container_environment};
use crate::{Error, display_command, error_chain, validate_label};

/// How a [`Command`] runs.
#[derive(Clone, Debug)]
pub struct CommandConfig {
    /// The longest the container may run (not counting the wait for a slot on a host). `None`:
    /// no limit. A step that exceeds it fails with `timed out after <timeout>`, its container
    /// killed and removed.
    pub timeout: Option<Duration>,
    /// The variables the container gets besides the image's own: `Clean` gives the documented
    /// `CI` and `DATAKIT_CI_*` variables plus those passed on (never the CI's `HOME` or
    /// `PATH`: the image's apply); `Inherited` is treated as `Clean` with nothing passed on,
    /// since the CI's environment has no meaning inside a container.
    pub environment: JobEnvironment,
    /// The working directory; default [`SOURCE_DIR`](crate::SOURCE_DIR) (`/src`), where the commit's tree is.
    pub workdir: Option<String>,
    /// The user (`NAME`, `UID` or `UID:GID`) the command runs as; default the image's. The tree
    /// in `/src` belongs to root: another user can read it but not write it.
    pub user: Option<String>,
    /// The memory limit in bytes (swap included: there is none); going over it kills the
    /// container, reported as `container killed: out of memory (limit …)`.
    pub memory: Option<u64>,
    /// How many CPUs' worth of time the container may use (e.g. `1.5`).
    pub cpus: Option<f64>,
}

impl Default for CommandConfig {
    /// No timeout or limits, in `/src` as the image's user, with a clean environment.
    fn default() -> CommandConfig {
        CommandConfig {
            timeout: None,
            environment: JobEnvironment::default(),
            workdir: None,
            user: None,
            memory: None,
            cpus: None,
        }
    }
}

/// A command run in containers on commits, with cached results. Cheap to clone.
///
/// Each (image, commit) is run at most once: the log and any failure are recorded on the store
/// branch `docker-run-of-<label>-in-<image>-on-<hash>` (so labels must be unique within an
/// application), and reused until a rebuild is requested or the command or its settings change.
#[derive(Clone)]
pub struct Command {
    cache: Cache<DockerRun>,
}

/// What one run is of: an image and a commit.
#[derive(Clone)]
struct RunKey {
    image: Image,
    commit: Commit,
    /// For a published image, the id its name stood for (part of the recipe, not the branch:
    /// the branch keeps the readable name, and a re-tagged name replaces its result).
    image_id: Option<String>,
}

impl Command {
    /// A command named `label` running `argv` (no shell: give `sh -c …` for one) on `hosts`,
    /// configured by `config`, with results recorded through `services`.
    ///
    /// `label` names the cache branch and the cache `docker run <label>`: 1 to 64 ASCII letters,
    /// digits, `.`, `_` and `-`, otherwise [`Error::InvalidLabel`], as is an empty `argv`.
    pub fn new(
        hosts: &Hosts,
        label: &str,
        argv: Vec<String>,
        config: CommandConfig,
        services: &Services,
    ) -> Result<Command, Error> {
        Command::on(Executor::from(hosts.clone()), label, argv, config, services)
    }

    /// [`Command::new`], with the containers run by `executor` (e.g. a
    /// [`Swarm`](crate::Swarm)) instead of Docker hosts.
    pub fn on(
        executor: Executor,
        label: &str,
        argv: Vec<String>,
        config: CommandConfig,
        services: &Services,
    ) -> Result<Command, Error> {
        validate_label(label)?;
        if argv.is_empty() {
            return Err(Error::InvalidLabel {
                label: label.to_owned(),
                reason: "the command has no arguments".to_owned(),
            });
        }
        let run = DockerRun {
            executor,
            label: label.to_owned(),
            argv,
            config,
        };
        let cache = Cache::new(
            run,
            services.store.clone(),
            services.logs.clone(),
            &services.cache_metrics,
        );
        Ok(Command { cache })
    }

    /// The command's label.
    pub fn label(&self) -> &str {
        &self.cache.builder().label
    }

    /// The cache branch recording the run of `image` on `commit`.
    pub fn branch(&self, image: &Image, commit: &Commit) -> BranchName {
        self.cache.builder().branch(&RunKey {
            image: image.clone(),
            commit: commit.clone(),
            image_id: None,
        })
    }

    /// Runs the command in `image` on the commit `commit` evaluates to: see
    /// [`Command::run_on`].
    pub fn run(&self, image: Term<Image>, commit: Term<Commit>) -> Term<()> {
        let command = self.clone();
        Term::pair(image, commit).and_then(move |(image, commit)| command.run_on(&image, &commit))
    }

    /// Runs the command in a fresh container of `image` with `commit`'s tree in `/src`, or
    /// reuses the recorded result.
    ///
    /// While it runs the term is pending, with the step's live log: it waits for a slot on a
    /// host (the image's, for a built image; else the least-loaded one with room), logs
    /// `Running "<a0>" "<a1>"… in container <id> of image <image> on Docker host <name>`, and
    /// streams the container's output into the log. A non-zero exit fails the step with
    /// `command "<a0>" … exited with status <n>`; an OOM kill with `container killed: out of
    /// memory (limit …)`; exceeding the timeout with `timed out after …`; cancelling it kills the
    /// container. A daemon that does not answer fails it with `cannot reach the Docker daemon at
    /// <url>: …`, unless another host can take the step. The container is removed in every case.
    ///
    /// A published image's name is first resolved to the id it stands for (on the first host
    /// that answers; see [`Hosts::resolve_published`]), which is recorded with the result: a
    /// name re-tagged to another image runs the command again. A name no host has fails the
    /// step with `unknown image "<name>" on Docker host "<host>"`.
    pub fn run_on(&self, image: &Image, commit: &Commit) -> Term<()> {
        let cache = self.cache.clone();
        let (image, commit) = (image.clone(), commit.clone());
        let image_id = match image.host() {
            // A built image is its id already.
            Some(_) => Term::ok(Ok(None)),
            None => {
                let executor = self.cache.builder().executor.clone();
                let name = image.reference().to_owned();
                Term::from_future(move || {
                    let (executor, name) = (executor.clone(), name.clone());
                    async move {
                        executor
                            .resolve_published(&name)
                            .await
                            .map_err(|e| error_chain(&e))
                    }
                })
            }
        };
        Term::job_id()
            .zip(image_id)
            .and_then(move |(job, image_id)| match image_id {
                Ok(image_id) => cache.find(
                    job,
                    RunKey {
                        image: image.clone(),
                        commit: commit.clone(),
                        image_id,
                    },
                ),
                Err(message) => Term::fail(message),
            })
    }

    /// Requests that the run of `image` on `commit` be done again at the next evaluation.
    pub async fn mark_for_rebuild(
        &self,
        image: &Image,
        commit: &Commit,
    ) -> Result<(), datakit_ci_cache::Error> {
        self.cache
            .mark_for_rebuild(&self.branch(image, commit))
            .await
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let run = self.cache.builder();
        f.debug_struct("Command")
            .field("label", &run.label)
            .field("argv", &run.argv)
            .field("config", &run.config)
            .finish()
    }
}

/// The builder behind a [`Command`].
struct DockerRun {
    executor: Executor,
    label: String,
    argv: Vec<String>,
    config: CommandConfig,
}

impl DockerRun {
    /// Runs the container through the executor.
    async fn run_somewhere(
        &self,
        build: &Build<'_>,
        job: &JobId,
        key: &RunKey,
    ) -> Result<(), Error> {
        let request = ContainerRequest {
            job,
            holder: format!("Run {} in {}", self.label, key.image.short()),
            key: self.branch(key).to_string(),
            image: &key.image,
            argv: &self.argv,
            env: container_environment(&self.config.environment, job, &key.commit),
            commit: &key.commit,
            workdir: self.config.workdir.as_deref(),
            user: self.config.user.as_deref(),
            memory: self.config.memory,
            cpus: self.config.cpus,
            timeout: self.config.timeout,
            priority: Priority::of_job(job),
            pool: None,
            stall_timeout: None,
            copy_out: None,
        };
        self.executor
            .run_container(&request, build.log, build.cancel)
            .await
    }
}

impl Builder for DockerRun {
    type Key = RunKey;
    type Context = JobId;
    type Value = ();

    fn name(&self) -> String {
        format!("docker run {}", self.label)
    }

    fn title(&self, key: &RunKey) -> String {
        format!(
            "Docker run {} in {} on commit {}",
            self.label,
            key.image.short(),
            key.commit.hash()
        )
    }

    fn branch(&self, key: &RunKey) -> BranchName {
        BranchName::new(format!(
            "docker-run-of-{}-in-{}-on-{}",
            self.label,
            image_in_branch(&key.image),
            key.commit.hash()
        ))
        .expect("Command::new checked the label; image_in_branch escapes the image")
    }

    /// The argument vector, the id a published image name stood for, and how it runs (limits,
    /// user, directory, timeout, variables passed on, as digests): a result recorded for other
    /// settings is not reused.
    fn recipe(&self, key: &RunKey) -> String {
        let mut recipe = format!("run {}\n", display_command(&self.argv));
        if let Some(id) = &key.image_id {
            writeln!(recipe, "image {id}").expect("writing to a String cannot fail");
        }
        let config = &self.config;
        let mut line = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                writeln!(recipe, "{name} {value}").expect("writing to a String cannot fail");
            }
        };
        line("workdir", config.workdir.clone());
        line("user", config.user.clone());
        line("memory", config.memory.map(|m| m.to_string()));
        line("cpus", config.cpus.map(|c| c.to_string()));
        line(
            "timeout",
            config
                .timeout
                .map(|t| humantime::format_duration(t).to_string()),
        );
        if let JobEnvironment::Clean { pass } = &config.environment {
            for (name, value) in pass {
                let digest = Sha256::digest(value.as_encoded_bytes());
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                writeln!(recipe, "env {name} sha256:{hex}")
                    .expect("writing to a String cannot fail");
            }
        }
        recipe
    }

    async fn generate(&self, build: Build<'_>, job: &JobId, key: &RunKey) -> Result<(), String> {
        let span = tracing::info_span!(
            "docker_run",
            label = %self.label,
            job = %job,
            image = %key.image,
            commit = %key.commit.hash()
        );
        self.run_somewhere(&build, job, key)
            .instrument(span)
            .await
            .map_err(|e| error_chain(&e))
    }

    fn load(&self, _tree: &Snapshot, _key: &RunKey) -> Result<(), String> {
        Ok(())
    }
}

/// The image as part of a branch name: an id or a name with `:` as `-` (as in the original) and
/// any other byte but letters, digits, `.` and `-` escaped as `_XX`; a long one (a name with a registry and a path) as the SHA-256 of it.
fn image_in_branch(image: &Image) -> String {
    let mut escaped = String::new();
    for byte in image.reference().bytes() {
        match byte {
            b':' => escaped.push('-'),
            b'-' | b'.' => escaped.push(char::from(byte)),
            b if b.is_ascii_alphanumeric() => escaped.push(char::from(b)),
            b => escaped.push_str(&format!("_{b:02x}")),
        }
    }
    if escaped.len() <= 80 {
        escaped
    } else {
        let digest = Sha256::digest(image.reference().as_bytes());
        digest[..20].iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_fit_in_branch_names() {
        let id = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            image_in_branch(&Image::on_host(&id, "local")),
            format!("sha256-{}", "ab".repeat(32))
        );
        assert_eq!(
            image_in_branch(&Image::of_published("debian:bookworm")),
            "debian-bookworm"
        );
        let long = format!("registry.example.com/{}/image:tag", "x".repeat(80));
        let name = image_in_branch(&Image::of_published(long));
        assert_eq!(name.len(), 40);
        for image in [
            Image::of_published("registry.example.com:5000/team/app:1.0"),
            Image::of_published("datakit-ci-test/busybox:1"),
        ] {
            let branch = format!("docker-run-of-t-in-{}-on-x", image_in_branch(&image));
            assert!(BranchName::new(branch.clone()).is_ok(), "{branch}");
        }
    }
}
