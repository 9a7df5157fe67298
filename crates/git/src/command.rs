//! The shell command cache (spec §5.5): `Command` runs a fixed list of argument vectors on a
//! commit, in a temporary clone or the checkout, and caches the outcome on the branch
//! `shell-of-<label>-on-<hash>`, with the commands as the cache's recipe (so that a changed
//! command is run again rather than shown with the old result).

use std::path::Path;
use std::time::Duration;

use datakit_ci_cache::{Build, Builder, Cache};
use datakit_ci_log::LiveLog;
use datakit_ci_pool::{Holder, MonitoredPool};
use datakit_ci_process::{Cmd, run};
use datakit_ci_store::{BranchName, Snapshot};
use datakit_ci_term::{JobId, Term};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::environment::JobEnvironment;
use crate::repo::{Commit, Repo};
use crate::{Error, error_chain};

/// How a [`Command`] runs.
#[derive(Clone, Debug)]
pub struct CommandConfig {
    /// The longest the commands may take together (not counting the wait for a job slot or the
    /// directory lock, nor the clone or checkout). `None`: no limit. A build that exceeds it
    /// fails with `timed out after <timeout>`, its processes killed.
    pub timeout: Option<Duration>,
    /// `true`: run in a temporary clone ([`Repo::with_clone`]), so builds of different commits
    /// run concurrently; `false`: run in the repository's own checkout
    /// ([`Repo::with_checkout`]), holding its lock throughout.
    pub clone: bool,
    /// The environment the commands get (default: a clean one, see [`JobEnvironment`]).
    pub environment: JobEnvironment,
    /// If given, a build holds one of this pool's slots from before its clone to its end, so
    /// that at most the pool's capacity of builds run at once (the binary's `--jobs`); queued
    /// builds are pending with their place in the queue.
    pub job_slots: Option<MonitoredPool>,
}

impl Default for CommandConfig {
    /// No timeout, in a temporary clone, with a clean environment, no job limit.
    fn default() -> CommandConfig {
        CommandConfig {
            timeout: None,
            clone: true,
            environment: JobEnvironment::default(),
            job_slots: None,
        }
    }
}

/// A list of commands run on commits of one repository, with cached results.
///
/// Each commit is built at most once: the log and any failure are recorded on the store branch
/// `shell-of-<label>-on-<hash>` (so labels must be unique within an application), and reused until
/// a rebuild is requested. Cheap to clone.
#[derive(Clone)]
pub struct Command {
    repo: Repo,
    cache: Cache<Shell>,
}

impl Command {
    /// A command named `label` running `commands` (argument vectors, no shell) on commits of
    /// `repo`, configured by `config`. Builds are recorded through `repo`'s services.
    ///
    /// `label` names the cache branch `shell-of-<label>-on-<hash>` and the cache `shell:<label>`;
    /// it must be non-empty and made of ASCII letters, digits, `.`, `_` and `-` (and form a valid
    /// branch name), otherwise [`Error::InvalidLabel`]. An empty argument vector is
    /// [`Error::EmptyCommand`].
    pub fn new(
        repo: &Repo,
        label: &str,
        commands: Vec<Vec<String>>,
        config: CommandConfig,
    ) -> Result<Command, Error> {
        validate_label(label)?;
        if let Some(index) = commands.iter().position(Vec::is_empty) {
            return Err(Error::EmptyCommand {
                label: label.to_owned(),
                index,
            });
        }
        let shell = Shell {
            label: label.to_owned(),
            commands,
            config,
        };
        let services = repo.services();
        let cache = Cache::new(
            shell,
            services.store.clone(),
            services.logs.clone(),
            &services.cache_metrics,
        );
        Ok(Command {
            repo: repo.clone(),
            cache,
        })
    }

    /// The command's label.
    pub fn label(&self) -> &str {
        &self.cache.builder().label
    }

    /// The cache branch recording the run on `commit`: `shell-of-<label>-on-<hash>`.
    pub fn branch(&self, commit: &Commit) -> BranchName {
        self.cache.builder().branch(commit)
    }

    /// Runs the commands on the commit `commit` evaluates to, once per commit: see
    /// [`Command::run_on`].
    pub fn run(&self, commit: Term<Commit>) -> Term<()> {
        let command = self.clone();
        commit.and_then(move |commit| command.run_on(&commit))
    }

    /// Runs the commands on `commit`, or reuses the recorded result.
    ///
    /// While the build runs the term is pending, with the build's live log. The build, titled
    /// `Run <label> on commit <hash>`, makes a clone or checkout of the commit (waiting for the
    /// repository's lock, shown as the evaluating job), then for each argument vector logs
    /// `Running "<a0>" "<a1>"…` and runs it there with its output streamed into the log. The
    /// first non-zero exit fails the build with a message naming the command and its exit
    /// status; exceeding the timeout fails it with `timed out after …`; cancelling the build
    /// (from its live log) kills the running command and fails it.
    ///
    /// A commit of another repository than the command's fails at once.
    pub fn run_on(&self, commit: &Commit) -> Term<()> {
        if commit.repo().dir() != self.repo.dir() {
            return Term::fail(format!(
                "commit {} is in {:?}, but command {:?} runs in {:?}",
                commit.hash(),
                commit.repo().dir(),
                self.label(),
                self.repo.dir()
            ));
        }
        let cache = self.cache.clone();
        let commit = commit.clone();
        Term::job_id().and_then(move |job| cache.find(job, commit.clone()))
    }

    /// Requests a rebuild of the result recorded for `commit`: the next evaluation runs the
    /// commands again (ignored while they run).
    pub async fn mark_for_rebuild(&self, commit: &Commit) -> Result<(), datakit_ci_cache::Error> {
        self.cache.mark_for_rebuild(&self.branch(commit)).await
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shell = self.cache.builder();
        f.debug_struct("Command")
            .field("dir", &self.repo.dir())
            .field("label", &shell.label)
            .field("commands", &shell.commands)
            .field("config", &shell.config)
            .finish()
    }
}

/// The builder behind a [`Command`].
struct Shell {
    label: String,
    commands: Vec<Vec<String>>,
    config: CommandConfig,
}

impl Shell {
    /// Runs every command in `dir` for `job` on `commit`, within the timeout.
    async fn run_commands(
        &self,
        dir: &Path,
        job: &JobId,
        commit: &Commit,
        log: &LiveLog,
        cancel: &CancellationToken,
    ) -> Result<(), String> {
        // An empty directory of the build's own, beside its clone (where a CI's start-up
        // cleans up what a crash left).
        let home = commit.repo().temp_dir("home-").map_err(|e| {
            format!(
                "cannot make the build's HOME directory: {}",
                error_chain(&e)
            )
        })?;
        let commands = async {
            for argv in &self.commands {
                let cmd = Cmd::new(argv.iter().map(String::as_str))
                    .map_err(|e| e.to_string())?
                    .cwd(dir)
                    .log(log.clone())
                    .cancel(cancel.clone());
                let cmd = self
                    .config
                    .environment
                    .apply(cmd, job, commit.hash(), home.path());
                run(cmd).await.map_err(|e| e.to_string())?;
            }
            Ok(())
        };
        let Some(timeout) = self.config.timeout else {
            return commands.await;
        };
        // Dropping a running command kills its process group.
        match tokio::time::timeout(timeout, commands).await {
            Ok(result) => result,
            Err(_elapsed) => {
                let timeout = humantime::format_duration(timeout);
                log.log(&format!("Timed out after {timeout}"));
                Err(format!("timed out after {timeout}"))
            }
        }
    }
}

impl Builder for Shell {
    type Key = Commit;
    type Context = JobId;
    type Value = ();

    fn name(&self) -> String {
        format!("shell:{}", self.label)
    }

    fn title(&self, commit: &Commit) -> String {
        format!("Run {} on commit {}", self.label, commit.hash())
    }

    fn branch(&self, commit: &Commit) -> BranchName {
        BranchName::new(format!("shell-of-{}-on-{}", self.label, commit.hash()))
            .expect("Command::new checked that the label makes a valid branch name")
    }

    /// The argument vectors and how they run (timeout, checkout, the environment passed on):
    /// a result recorded for other commands (the test was changed on the command line) is not
    /// reused.
    fn recipe(&self, _commit: &Commit) -> String {
        use std::fmt::Write;
        let mut recipe = String::new();
        for argv in &self.commands {
            recipe.push_str("run");
            for argument in argv {
                write!(recipe, " {argument:?}").expect("writing to a String cannot fail");
            }
            recipe.push('\n');
        }
        if let Some(timeout) = self.config.timeout {
            writeln!(recipe, "timeout {}", humantime::format_duration(timeout))
                .expect("writing to a String cannot fail");
        }
        if !self.config.clone {
            recipe.push_str("in the repository's checkout\n");
        }
        recipe.push_str(&self.config.environment.recipe());
        recipe
    }

    async fn generate(&self, build: Build<'_>, job: &JobId, commit: &Commit) -> Result<(), String> {
        let (log, cancel) = (build.log, build.cancel);
        let repo = commit.repo();
        let run_all = |dir: std::path::PathBuf| async move {
            self.run_commands(&dir, job, commit, log, cancel).await
        };
        let build = async {
            if self.config.clone {
                repo.with_clone(log, commit, run_all).await
            } else {
                repo.with_checkout(log, job, commit, run_all).await
            }
        };
        let work = async {
            match &self.config.job_slots {
                Some(slots) => {
                    let holder = Holder {
                        job: job.to_string(),
                        label: format!("{} on {}", self.label, commit.hash().short(8)),
                        log_branch: None,
                    };
                    slots.use_(holder, Some(log), build).await
                }
                None => build.await,
            }
        };
        // Cancelling also stops the wait for the lock and the clone or checkout.
        let span = tracing::info_span!(
            "shell_command",
            label = %self.label,
            job = %job,
            commit = %commit.hash()
        );
        let outcome = tokio::select! {
            biased;
            outcome = work.instrument(span) => outcome,
            () = cancel.cancelled() => return Err(datakit_ci_process::Error::Cancelled.to_string()),
        };
        match outcome {
            Ok(result) => result,
            Err(e) => Err(error_chain(&e)),
        }
    }

    fn load(&self, _tree: &Snapshot, _commit: &Commit) -> Result<(), String> {
        Ok(())
    }
}

fn validate_label(label: &str) -> Result<(), Error> {
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
    let example = format!("shell-of-{label}-on-{}", "0".repeat(64));
    BranchName::new(example).map_err(|e| invalid(&e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_must_fit_in_a_branch_name() {
        for good in ["make", "unit-tests", "v1.2_x"] {
            assert!(validate_label(good).is_ok(), "{good}");
        }
        for (bad, reason) in [
            ("", "it is empty"),
            ("a b", "' ' is not an ASCII letter"),
            ("a/b", "'/' is not"),
            ("a..b", "contains '..'"),
            ("é", "'é' is not"),
        ] {
            let error = validate_label(bad).expect_err(bad).to_string();
            assert!(
                error.starts_with(&format!("invalid command label {bad:?}: ")),
                "{error}"
            );
            assert!(error.contains(reason), "{bad}: {error}");
        }
    }
}
