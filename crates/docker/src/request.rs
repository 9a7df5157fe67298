//! One container of a job, run on whichever host can take it: [`Hosts::run_container`] chooses
//! the host (the image's, for a built image; else the least-loaded one with room), holds one of
//! its slots, labels the container, copies the commit's tree to `/src`, and moves on to another
//! host while the chosen one does not answer.
//!
//! Knows nothing of caches: a [`Command`](crate::Command) records its runs on top of this, and
//! other plugins (the pipeline file's steps) run their containers through it too.

use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use datakit_ci_git::{Commit, JobEnvironment};
use datakit_ci_log::LiveLog;
use datakit_ci_pool::Holder;
use datakit_ci_term::JobId;

use crate::container::{self, RunSpec};
use crate::copy_out::CopyOut;
use crate::host::Hosts;
use crate::image::Image;
use crate::{Error, SOURCE_DIR, error_chain, labels};

/// One container to run for a job: see [`Hosts::run_container`].
#[derive(Clone, Debug)]
pub struct ContainerRequest<'a> {
    /// The job the container is for (its `datakit-ci.job` label, and the holder of the slot).
    pub job: &'a JobId,
    /// What the job's slot is shown as on the dashboard, e.g. `Run unit in debian:bookworm`.
    pub holder: String,
    /// The value of the container's `datakit-ci.key` label: the cache branch of the step.
    pub key: String,
    /// The image the container starts from.
    pub image: &'a Image,
    /// The command (no shell: give `sh -c …` for one).
    pub argv: &'a [String],
    /// The container's variables, `NAME=VALUE`, besides the image's own (see
    /// [`container_environment`] for the documented ones).
    pub env: Vec<String>,
    /// The commit whose tree (without `.git`) is copied to [`SOURCE_DIR`].
    pub commit: &'a Commit,
    /// The working directory; default [`SOURCE_DIR`].
    pub workdir: Option<&'a str>,
    /// The user the command runs as; default the image's.
    pub user: Option<&'a str>,
    /// The memory limit in bytes (swap included).
    pub memory: Option<u64>,
    /// How many CPUs' worth of time the container may use.
    pub cpus: Option<f64>,
    /// The longest the container may run (not counting the wait for a slot); `None`: no limit.
    pub timeout: Option<Duration>,
    /// How soon the job should run when its executor has more jobs than room (the Swarm
    /// executor's queue; the Docker hosts' pools are first come, first served).
    pub priority: Priority,
    /// The machines that may run it: on Swarm, the nodes labelled `pool=<name>`; `None`: any.
    /// The Docker hosts have no pools: they ignore it.
    pub pool: Option<&'a str>,
    /// How long the command may go without output (and, on Swarm, without a change of its
    /// task's state) before it is taken as stuck and submitted again; `None`: the executor's
    /// default. The Docker hosts do not watch for this.
    pub stall_timeout: Option<Duration>,
    /// Files to copy out of the container once its command has ended, before it is removed
    /// (a pipeline step's artifacts); `None`: nothing. The Swarm executor cannot (a finished
    /// task's container may be on any node): it says so in the log and to the sink.
    pub copy_out: Option<&'a CopyOut>,
}

/// How soon a job should run when its executor is busy: pull requests before branches and tags,
/// and both before bulk work (scheduled re-runs, mass rebuilds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// A pull request's job: someone is waiting for it.
    PullRequest,
    /// A branch's or tag's job.
    Ref,
    /// Work nobody waits for: a schedule's re-run, a rebuild of many targets.
    Bulk,
}

impl Priority {
    /// The priority's name, as the log shows it.
    pub fn name(self) -> &'static str {
        match self {
            Priority::PullRequest => "pull request",
            Priority::Ref => "branch or tag",
            Priority::Bulk => "bulk",
        }
    }

    /// The usual priority of `job`'s containers: a pull request's before a branch's or tag's.
    pub fn of_job(job: &JobId) -> Priority {
        match job.target() {
            datakit_ci_term::TargetId::Pr(..) => Priority::PullRequest,
            datakit_ci_term::TargetId::Ref(..) => Priority::Ref,
        }
    }
}

/// The documented variables of a container of `job` on `commit` (`CI`, `DATAKIT_CI_*`, without
/// `HOME` and `PATH`, which the image decides), plus those `environment` passes on, as
/// `NAME=VALUE`.
pub fn container_environment(
    environment: &JobEnvironment,
    job: &JobId,
    commit: &Commit,
) -> Vec<String> {
    let home = std::path::Path::new("/");
    let mut env: Vec<String> = JobEnvironment::variables(job, commit.hash(), home)
        .into_iter()
        .filter(|(name, _)| name != "HOME" && name != "PATH")
        .map(|(name, value)| format!("{name}={}", value.to_string_lossy()))
        .collect();
    if let JobEnvironment::Clean { pass } = environment {
        for (name, value) in pass {
            env.push(format!("{name}={}", value.to_string_lossy()));
        }
    }
    env
}

impl Hosts {
    /// Runs `request` in a fresh container, streaming its output into `log`, and removes the
    /// container in every case.
    ///
    /// It waits for a slot on a host (the image's, for a built image; else the least-loaded one
    /// with room; the wait is shown on `log`), logs `Running "<a0>" "<a1>"… in container <id> of
    /// image <image> on Docker host <name>`, and streams the output. A non-zero exit is
    /// [`Error::Exit`]; an OOM kill [`Error::OutOfMemory`]; the timeout [`Error::Timeout`]; a
    /// cancel [`Error::Cancelled`] (the container is killed). A daemon that does not answer is
    /// [`Error::Unreachable`], unless another host can take the container (for a published
    /// image): then it is tried there, saying so on `log`.
    pub async fn run_container(
        &self,
        request: &ContainerRequest<'_>,
        log: &LiveLog,
        cancel: &CancellationToken,
    ) -> Result<(), Error> {
        let mut tried: Vec<String> = Vec::new();
        loop {
            let host = match request.image.host() {
                Some(name) => self.host(name).ok_or_else(|| Error::UnknownHost {
                    image: request.image.reference().to_owned(),
                    host: name.to_owned(),
                })?,
                None => self
                    .choose(&tried)
                    .expect("Hosts has at least one host, and one is not tried yet"),
            };
            let holder = Holder {
                job: request.job.to_string(),
                label: request.holder.clone(),
                log_branch: None,
            };
            let outcome = host
                .use_slot(holder, log, cancel, async {
                    let (docker, _) = host.ready().await?;
                    let labels = HashMap::from([
                        (labels::INSTANCE.to_owned(), self.instance().to_string()),
                        (labels::JOB.to_owned(), request.job.to_string()),
                        (labels::KEY.to_owned(), request.key.clone()),
                    ]);
                    let spec = RunSpec {
                        host_name: host.spec().name(),
                        host_url: host.spec().url(),
                        image: request.image.reference(),
                        argv: request.argv,
                        env: request.env.clone(),
                        workdir: request.workdir.unwrap_or(SOURCE_DIR),
                        user: request.user,
                        memory: request.memory,
                        cpus: request.cpus,
                        labels,
                        source: Some((request.commit.repo().dir(), request.commit.hash().as_str())),
                        timeout: request.timeout,
                        copy_out: request.copy_out,
                    };
                    container::run(&docker, &spec, log, cancel).await
                })
                .await;
            match outcome {
                Err(e @ Error::Unreachable { .. }) => {
                    host.disconnected(&e).await;
                    tried.push(host.spec().name().to_owned());
                    let others_left =
                        request.image.host().is_none() && self.choose(&tried).is_some();
                    if !others_left {
                        return Err(e);
                    }
                    log.log(&format!("{}; trying another Docker host", error_chain(&e)));
                }
                outcome => return outcome,
            }
        }
    }
}
