//! A job: one step with one combination of matrix values, fully validated. Plain data, plus the
//! digest that says whether two jobs do the same work.

use std::collections::BTreeMap;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::schedule::Schedule;
use crate::when::When;

/// One job of the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The job's name: the step's name, then the matrix values, e.g. `test (os=linux, rust=1.95)`.
    pub name: String,
    /// The name of the step the job comes from.
    pub step: String,
    /// The matrix values of this job, in the order of the matrix keys.
    pub matrix: Vec<(String, String)>,
    /// The shell script.
    pub run: String,
    /// Where the script runs.
    pub runner: Runner,
    /// The names of the jobs that must succeed first, in file order (a step with a matrix
    /// stands for all its jobs).
    pub needs: Vec<String>,
    /// The environment: the step's `env` and the matrix values.
    pub env: BTreeMap<String, String>,
    /// The names of the secrets the job gets.
    pub secrets: Vec<String>,
    /// How long the job may run.
    pub timeout: Duration,
    /// When the job runs again after a failure.
    pub retry: Retry,
    /// Which targets the job applies to.
    pub when: When,
    /// A failure of the job does not fail the target.
    pub allow_failure: bool,
    /// The job runs only when started by hand.
    pub manual: bool,
    /// When the job runs on a schedule.
    pub schedule: Option<Schedule>,
    /// Paths or globs of the files kept after the job.
    pub artifacts: Vec<String>,
    /// Repository paths the job reads; empty means the whole tree.
    pub inputs: Vec<String>,
    /// The machines the job may run on (on Swarm, the nodes labelled `pool=<name>`); `None`:
    /// any. Not part of the digest: where a job runs does not change its work.
    pub pool: Option<String>,
    /// How long the job may give no output before it is taken as stuck and run again; `None`:
    /// never. Not part of the digest.
    pub stall_timeout: Option<Duration>,
}

/// Where a job's script runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runner {
    /// On the CI's own host.
    Host,
    /// In a container of this Docker image.
    Image(String),
    /// In a container of an image built from a Dockerfile.
    Dockerfile {
        /// The Dockerfile's path in the repository.
        file: String,
        /// The build context, a directory of the repository (`.` is its root).
        context: String,
        /// Build arguments.
        args: BTreeMap<String, String>,
    },
}

/// When a failed job runs again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// How many times the job may run in all (1 = no retry).
    pub attempts: u32,
    /// The failures that are retried.
    pub on: Vec<RetryOn>,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 1,
            on: Vec::new(),
        }
    }
}

/// A kind of failure that may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOn {
    /// The job ran past its timeout.
    Timeout,
    /// The CI could not run the job (Docker, the host), not the script's fault.
    Infrastructure,
    /// The script exited with this code.
    ExitCode(u8),
}

impl Job {
    /// A hex SHA-256 of everything that defines the job's work: name, run, runner, env, secret
    /// names, timeout, retry, allow_failure, manual, schedule text, artifacts, inputs and
    /// needs — not `when`, which decides where the job applies, not what it does.
    ///
    /// It is stable across runs and versions of this crate: it hashes a canonical text built
    /// here field by field (every string length-prefixed, maps sorted), never `Debug` output.
    /// Changing that text is a breaking change: every job would look new.
    pub fn definition_digest(&self) -> String {
        let digest = Sha256::digest(self.canonical_text().as_bytes());
        digest.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// The status context reported for the job: `ci/datakit/<name>`.
    pub fn context(&self) -> String {
        format!("ci/datakit/{}", self.name)
    }

    /// The text `definition_digest` hashes, one field a line in a fixed order.
    fn canonical_text(&self) -> String {
        let mut text = String::from("datakit-ci job definition v1\n");
        field(&mut text, "name", &self.name);
        field(&mut text, "run", &self.run);
        match &self.runner {
            Runner::Host => field(&mut text, "runner", "host"),
            Runner::Image(image) => {
                field(&mut text, "runner", "image");
                field(&mut text, "image", image);
            }
            Runner::Dockerfile {
                file,
                context,
                args,
            } => {
                field(&mut text, "runner", "dockerfile");
                field(&mut text, "file", file);
                field(&mut text, "context", context);
                list(&mut text, "args", args.len());
                for (name, value) in args {
                    field(&mut text, "arg", name);
                    field(&mut text, "value", value);
                }
            }
        }
        list(&mut text, "env", self.env.len());
        for (name, value) in &self.env {
            field(&mut text, "env", name);
            field(&mut text, "value", value);
        }
        strings(&mut text, "secrets", &self.secrets);
        field(
            &mut text,
            "timeout_ms",
            &self.timeout.as_millis().to_string(),
        );
        field(&mut text, "attempts", &self.retry.attempts.to_string());
        list(&mut text, "retry_on", self.retry.on.len());
        for on in &self.retry.on {
            let on = match on {
                RetryOn::Timeout => "timeout".to_owned(),
                RetryOn::Infrastructure => "infrastructure".to_owned(),
                RetryOn::ExitCode(code) => code.to_string(),
            };
            field(&mut text, "on", &on);
        }
        field(&mut text, "allow_failure", bool_text(self.allow_failure));
        field(&mut text, "manual", bool_text(self.manual));
        match &self.schedule {
            Some(schedule) => field(&mut text, "schedule", schedule.text()),
            None => field(&mut text, "schedule", ""),
        }
        strings(&mut text, "artifacts", &self.artifacts);
        strings(&mut text, "inputs", &self.inputs);
        strings(&mut text, "needs", &self.needs);
        text
    }
}

fn bool_text(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// `key len:value\n`: the length makes any value, newlines included, unambiguous.
fn field(text: &mut String, key: &str, value: &str) {
    text.push_str(&format!("{key} {}:{value}\n", value.len()));
}

fn list(text: &mut String, key: &str, len: usize) {
    text.push_str(&format!("{key} [{len}]\n"));
}

fn strings(text: &mut String, key: &str, values: &[String]) {
    list(text, key, values.len());
    for value in values {
        field(text, "item", value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical text is the digest's contract: this test shows it whole, so that a change
    /// to it (which makes every job look new) is seen in review.
    #[test]
    fn canonical_text_is_fixed() {
        let job = Job {
            name: "test (os=linux)".into(),
            step: "test".into(),
            matrix: vec![("os".into(), "linux".into())],
            run: "make\ntest".into(),
            runner: Runner::Dockerfile {
                file: "ci/Dockerfile".into(),
                context: ".".into(),
                args: [("RUST".to_owned(), "1.95".to_owned())].into(),
            },
            needs: vec!["build".into()],
            env: [("os".to_owned(), "linux".to_owned())].into(),
            secrets: vec!["TOKEN".into()],
            timeout: Duration::from_secs(90),
            retry: Retry {
                attempts: 2,
                on: vec![RetryOn::Timeout, RetryOn::ExitCode(137)],
            },
            when: When::default(),
            allow_failure: true,
            manual: false,
            schedule: None,
            artifacts: vec![],
            inputs: vec!["src".into()],
            pool: None,
            stall_timeout: None,
        };
        assert_eq!(
            job.canonical_text(),
            "datakit-ci job definition v1
name 15:test (os=linux)
run 9:make
test
runner 10:dockerfile
file 13:ci/Dockerfile
context 1:.
args [1]
arg 4:RUST
value 4:1.95
env [1]
env 2:os
value 5:linux
secrets [1]
item 5:TOKEN
timeout_ms 5:90000
attempts 1:2
retry_on [2]
on 7:timeout
on 3:137
allow_failure 4:true
manual 5:false
schedule 0:
artifacts [0]
inputs [1]
item 3:src
needs [1]
item 5:build
"
        );
        assert_eq!(job.definition_digest().len(), 64);
    }
}
