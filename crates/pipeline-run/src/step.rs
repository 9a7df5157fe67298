//! The cached run of one job of the pipeline file: the builder behind the step cache. Its key is
//! the job's input digest (see `key.rs`), not the commit: a commit whose inputs are those of an
//! earlier run reuses that run's result, and the value records the commit the run was made on.
//! A step runs on the CI's host (`HostSteps`) or in a container of its image on the Docker
//! hosts or a Swarm cluster (`DockerSteps`, through an `Executor`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datakit_ci_cache::{Build, Builder};
use datakit_ci_docker::{
    ContainerRequest, Error as DockerError, Executor, Image, Priority, container_environment,
};
use datakit_ci_git::{Commit, JobEnvironment, error_chain};
use datakit_ci_log::LiveLog;
use datakit_ci_pipeline::Job;
use datakit_ci_pool::{Holder, MonitoredPool};
use datakit_ci_process::{Cmd, run};
use datakit_ci_store::{BranchName, Snapshot, StorePath};
use datakit_ci_term::{CommitHash, JobId};
use tokio_util::sync::CancellationToken;

use crate::artifacts::Collection;
use crate::retry::{Failure, FailureKind, heading};

/// The longest part of a job's name kept in its cache branch's name (escaped), so that the
/// name fits in a file name with the digest.
const NAME_IN_BRANCH: usize = 100;

/// The file of a step's result holding the commit it ran on.
const COMMIT_FILE: &str = "value/commit";

/// The file of a step's result saying which attempt passed, `2 of 3` (absent: the first).
const ATTEMPT_FILE: &str = "value/attempt";

/// A recorded run of a step: the commit it ran on, and the attempt that passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StepRun {
    pub(crate) commit: CommitHash,
    /// The attempt that passed (1: the first) and how many the step may make.
    pub(crate) attempt: (u32, u32),
}

/// What a step in an image says when the CI has no Docker hosts.
pub(crate) const NO_DOCKER: &str =
    "this step runs in a Docker image, and this CI has no Docker hosts";

/// One run of a job: its input digest (the cache's identity), the job, the commit to run it on
/// if no run with this digest is recorded, and the image it runs in (`None`: on the CI's host).
#[derive(Clone, Debug)]
pub(crate) struct StepKey {
    pub(crate) digest: String,
    pub(crate) job: Arc<Job>,
    pub(crate) commit: Commit,
    pub(crate) image: Option<Image>,
}

/// How steps run on the CI's host.
pub(crate) struct HostSteps {
    pub(crate) environment: JobEnvironment,
    pub(crate) job_slots: Option<MonitoredPool>,
}

impl HostSteps {
    /// Runs the job's script with `sh -c` in a temporary clone of the commit, with the job's
    /// environment, within its timeout.
    async fn run(
        &self,
        log: &LiveLog,
        cancel: &CancellationToken,
        job_id: &JobId,
        key: &StepKey,
        secrets: &[(String, String)],
        artifacts: Option<&Collection>,
    ) -> Result<(), Failure> {
        let commit = &key.commit;
        let script = async {
            commit
                .repo()
                .with_clone(log, commit, |dir| async move {
                    let home = commit.repo().temp_dir("home-").map_err(|e| {
                        Failure::new(
                            FailureKind::Infrastructure,
                            format!("cannot make the step's HOME directory: {e}"),
                        )
                    })?;
                    let cmd = Cmd::new(["sh", "-c", key.job.run.as_str()])
                        .map_err(|e| Failure::new(FailureKind::Other, e.to_string()))?
                        .cwd(&dir)
                        .log_cmd(vec!["sh".into(), "-c".into(), shown_script(&key.job.run)])
                        .log(log.clone())
                        .cancel(cancel.clone());
                    let mut cmd = self
                        .environment
                        .apply(cmd, job_id, commit.hash(), home.path());
                    for (name, value) in &key.job.env {
                        cmd = cmd.env(name, value);
                    }
                    for (name, value) in secrets {
                        cmd = cmd.env(name, value);
                    }
                    let ran = run(cmd).await;
                    // The script ended by itself, passing or failing: collect its files.
                    let ended =
                        matches!(&ran, Ok(()) | Err(datakit_ci_process::Error::Exited { .. }));
                    if let Some(artifacts) = artifacts.filter(|_| ended) {
                        artifacts.collect_from_checkout(&dir).await;
                    }
                    ran.map_err(|e| {
                        let kind = match &e {
                            datakit_ci_process::Error::Exited { code, .. } => {
                                FailureKind::Exit(i64::from(*code))
                            }
                            _ => FailureKind::Other,
                        };
                        Failure::new(kind, e.to_string())
                    })
                })
                .await
                .map_err(|e| {
                    Failure::new(
                        FailureKind::Infrastructure,
                        format!("cannot clone the commit: {e}"),
                    )
                })?
        };
        let timed = async {
            match tokio::time::timeout(key.job.timeout, script).await {
                Ok(result) => result,
                Err(_elapsed) => {
                    let timeout = humantime::format_duration(key.job.timeout);
                    log.log(&format!("Timed out after {timeout}"));
                    Err(Failure::new(
                        FailureKind::Timeout,
                        format!("timed out after {timeout}"),
                    ))
                }
            }
        };
        match &self.job_slots {
            Some(slots) => {
                let holder = Holder {
                    job: job_id.to_string(),
                    label: format!("{} on {}", key.job.name, commit.hash().short(8)),
                    log_branch: None,
                };
                slots.use_(holder, Some(log), timed).await
            }
            None => timed.await,
        }
    }
}

/// How steps run in Docker images: on these hosts, with the documented variables and those the
/// host steps' environment passes on.
pub(crate) struct DockerSteps {
    pub(crate) executor: Option<Executor>,
}

impl DockerSteps {
    /// Runs the job's script with `sh -c` in a fresh container of `image`, the commit's tree in
    /// `/src`, with the job's environment, within its timeout.
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        build: &Build<'_>,
        environment: &JobEnvironment,
        job_id: &JobId,
        key: &StepKey,
        image: &Image,
        secrets: &[(String, String)],
        artifacts: Option<&Collection>,
    ) -> Result<(), Failure> {
        let Some(executor) = &self.executor else {
            return Err(Failure::new(FailureKind::Other, NO_DOCKER));
        };
        let argv = vec!["sh".to_owned(), "-c".to_owned(), key.job.run.clone()];
        let mut env = container_environment(environment, job_id, &key.commit);
        for (name, value) in &key.job.env {
            env.push(format!("{name}={value}"));
        }
        for (name, value) in secrets {
            env.push(format!("{name}={value}"));
        }
        let copy_out = artifacts.map(Collection::copy_out);
        let request = ContainerRequest {
            job: job_id,
            holder: format!("{} on {}", key.job.name, key.commit.hash().short(8)),
            key: step_branch(&key.job.name, &key.digest).to_string(),
            image,
            argv: &argv,
            env,
            commit: &key.commit,
            workdir: None,
            user: None,
            memory: None,
            cpus: None,
            timeout: Some(key.job.timeout),
            // Scheduled re-runs are work nobody waits for.
            priority: if key.job.schedule.is_some() {
                Priority::Bulk
            } else {
                Priority::of_job(job_id)
            },
            pool: key.job.pool.as_deref(),
            stall_timeout: key.job.stall_timeout,
            copy_out: copy_out.as_ref(),
        };
        executor
            .run_container(&request, build.log, build.cancel)
            .await
            .map_err(|e| {
                let kind = match &e {
                    DockerError::Exit { code, .. } => FailureKind::Exit(*code),
                    DockerError::Timeout { .. } => FailureKind::Timeout,
                    DockerError::Unreachable { .. }
                    | DockerError::Git { .. }
                    | DockerError::NodeLost { .. }
                    | DockerError::Stalled { .. }
                    | DockerError::Push { .. } => FailureKind::Infrastructure,
                    _ => FailureKind::Other,
                };
                Failure::new(kind, error_chain(&e))
            })
    }
}

/// The builder of the step cache.
pub(crate) struct StepBuilder {
    pub(crate) label: String,
    pub(crate) host: HostSteps,
    pub(crate) docker: DockerSteps,
    /// Where the secrets are, a file per name.
    pub(crate) secrets_dir: Option<PathBuf>,
    /// The most bytes of artifacts a step keeps.
    pub(crate) max_artifact_size: u64,
}

/// The values of the secrets `names`, read from their files in `dir` (one trailing newline
/// removed). A missing secret fails the step, naming it (never a value).
async fn read_secrets(
    dir: Option<&Path>,
    names: &[String],
) -> Result<Vec<(String, String)>, String> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let Some(dir) = dir else {
        return Err(format!(
            "this step needs the secret {:?}, and this CI has no secrets directory",
            names[0]
        ));
    };
    let mut secrets = Vec::with_capacity(names.len());
    for name in names {
        let path = dir.join(name);
        let value = match tokio::fs::read(&path).await {
            Ok(bytes) => String::from_utf8(bytes)
                .map_err(|_| format!("the secret {name:?} ({}) is not UTF-8", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "missing secret {name:?}: no file {}",
                    path.display()
                ));
            }
            Err(e) => {
                return Err(format!(
                    "cannot read the secret {name:?} ({}): {e}",
                    path.display()
                ));
            }
        };
        let value = value
            .strip_suffix('\n')
            .map(|v| v.strip_suffix('\r').unwrap_or(v))
            .unwrap_or(&value)
            .to_owned();
        secrets.push((name.clone(), value));
    }
    Ok(secrets)
}

impl Builder for StepBuilder {
    type Key = StepKey;
    type Context = JobId;
    type Value = StepRun;

    fn name(&self) -> String {
        format!("pipeline:{}", self.label)
    }

    fn title(&self, key: &StepKey) -> String {
        match &key.image {
            None => format!("Run step {} on commit {}", key.job.name, key.commit.hash()),
            Some(image) => format!(
                "Run step {} in {image} on commit {}",
                key.job.name,
                key.commit.hash()
            ),
        }
    }

    fn branch(&self, key: &StepKey) -> BranchName {
        step_branch(&key.job.name, &key.digest)
    }

    async fn generate(
        &self,
        build: Build<'_>,
        job_id: &JobId,
        key: &StepKey,
    ) -> Result<StepRun, String> {
        let secrets = read_secrets(self.secrets_dir.as_deref(), &key.job.secrets).await?;
        // Every value is masked in the step's log while it runs.
        let _mask = (!secrets.is_empty()).then(|| {
            build
                .log
                .mask(secrets.iter().map(|(_, v)| v.as_bytes().to_vec()))
        });
        let attempts = key.job.retry.attempts.max(1);
        let mut attempt = 1;
        let (outcome, artifacts) = loop {
            // Each attempt collects afresh: the artifacts kept are the last attempt's.
            let artifacts = Collection::new(&key.job, self.max_artifact_size, || {
                key.commit
                    .repo()
                    .temp_dir("artifacts-")
                    .map_err(|e| format!("cannot make a directory for the artifacts: {e}"))
            })?;
            let outcome = tokio::select! {
                biased;
                outcome = async {
                    match &key.image {
                        None => {
                            self.host
                                .run(build.log, build.cancel, job_id, key, &secrets, artifacts.as_ref())
                                .await
                        }
                        Some(image) => {
                            self.docker
                                .run(
                                    &build,
                                    &self.host.environment,
                                    job_id,
                                    key,
                                    image,
                                    &secrets,
                                    artifacts.as_ref(),
                                )
                                .await
                        }
                    }
                } => outcome,
                () = build.cancel.cancelled() => Err(Failure::new(
                    FailureKind::Other,
                    datakit_ci_process::Error::Cancelled.to_string(),
                )),
            };
            match outcome {
                Err(failure)
                    if attempt < attempts
                        && !build.cancel.is_cancelled()
                        && failure.is_retried_by(&key.job.retry) =>
                {
                    attempt += 1;
                    build.log.log(&heading(attempt, attempts, &failure));
                }
                outcome => break (outcome, artifacts),
            }
        };
        // Kept with the result, failed or not.
        let over_limit = match &artifacts {
            Some(artifacts) => artifacts.record(build.log, build.transaction)?,
            None => None,
        };
        if let Err(failure) = outcome {
            return Err(failure.message);
        }
        if let Some(message) = over_limit {
            return Err(message);
        }
        let commit_path = StorePath::new(COMMIT_FILE).expect("a constant valid path");
        build
            .transaction
            .create_file(&commit_path, key.commit.hash().as_str())
            .map_err(|e| e.to_string())?;
        if attempt > 1 {
            let attempt_path = StorePath::new(ATTEMPT_FILE).expect("a constant valid path");
            build
                .transaction
                .create_file(&attempt_path, format!("{attempt} of {attempts}"))
                .map_err(|e| e.to_string())?;
        }
        Ok(StepRun {
            commit: key.commit.hash().clone(),
            attempt: (attempt, attempts),
        })
    }

    fn load(&self, tree: &Snapshot, key: &StepKey) -> Result<StepRun, String> {
        let path = StorePath::new(COMMIT_FILE).expect("a constant valid path");
        let bytes = tree
            .read_file(&path)
            .map_err(|e| e.to_string())?
            .ok_or("the step's result names no commit")?;
        let commit = String::from_utf8_lossy(&bytes)
            .trim()
            .parse()
            .map_err(|e| format!("the step's result names a bad commit: {e}"))?;
        let path = StorePath::new(ATTEMPT_FILE).expect("a constant valid path");
        let attempt = tree
            .read_file(&path)
            .map_err(|e| e.to_string())?
            .and_then(|bytes| parse_attempt(&String::from_utf8_lossy(&bytes)))
            .unwrap_or((1, key.job.retry.attempts.max(1)));
        Ok(StepRun { commit, attempt })
    }
}

/// How a script is shown in the log and in a failure's message: whole if it is one short line,
/// else the start of its first line and `…` (a status's description holds 140 bytes, and the
/// exit status must fit).
fn shown_script(script: &str) -> String {
    const LONGEST: usize = 60;
    let script = script.trim();
    let first = script.lines().next().unwrap_or_default();
    if first.len() == script.len() && first.chars().count() <= LONGEST {
        return first.to_owned();
    }
    let cut: String = first.chars().take(LONGEST).collect();
    format!("{cut}…")
}

/// `2 of 3` as `(2, 3)`.
fn parse_attempt(text: &str) -> Option<(u32, u32)> {
    let (attempt, attempts) = text.trim().split_once(" of ")?;
    Some((attempt.parse().ok()?, attempts.parse().ok()?))
}

/// The cache branch of a job's runs with input digest `digest`:
/// `pipeline-<escaped job name>-of-<digest>`.
pub(crate) fn step_branch(job_name: &str, digest: &str) -> BranchName {
    let mut name = datakit_ci_store::escape(job_name);
    if name.len() > NAME_IN_BRANCH {
        let mut end = NAME_IN_BRANCH;
        // Escaped names are ASCII, but keep a `_XX` escape whole.
        while name[..end].ends_with('_') || name[..end.saturating_sub(1)].ends_with('_') {
            end -= 1;
        }
        name.truncate(end);
    }
    BranchName::new(format!("pipeline-{name}-of-{digest}"))
        .expect("an escaped name and a hex digest make a valid branch name")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_shown_whole_only_when_short() {
        assert_eq!(shown_script("make test\n"), "make test");
        assert_eq!(shown_script("make\nmake test"), "make…");
        assert_eq!(
            shown_script(&"x".repeat(200)),
            format!("{}…", "x".repeat(60))
        );
    }

    #[test]
    fn branch_names_escape_and_shorten_the_job_name() {
        let digest = "0123abcd".repeat(8);
        assert_eq!(
            step_branch("test (os=linux)", &digest).to_string(),
            format!("pipeline-test_20_28os_3dlinux_29-of-{digest}")
        );
        let long = "x".repeat(300);
        let branch = step_branch(&long, &digest).to_string();
        assert_eq!(branch, format!("pipeline-{}-of-{digest}", "x".repeat(100)));
        // A cut never splits an escape.
        let escapes = "é".repeat(100);
        let branch = step_branch(&escapes, &digest).to_string();
        let name = branch
            .strip_prefix("pipeline-")
            .and_then(|b| b.strip_suffix(&format!("-of-{digest}")))
            .expect("the shape");
        assert!(
            name.len() <= NAME_IN_BRANCH && name.len().is_multiple_of(3),
            "{name}"
        );
    }
}
