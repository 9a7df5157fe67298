//! The environment a shell [`Command`](crate::Command) gives its commands: by default a clean one
//! (the server's own environment may hold its credentials), made of the documented variables
//! that say what is being built, plus the variables the operator chose to pass on.
//!
//! Knows nothing of how commands run; it only describes their environment and its part of the
//! cache's recipe.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;

use sha2::{Digest, Sha256};

use datakit_ci_process::Cmd;
use datakit_ci_term::{CommitHash, JobId, TargetId};

/// The `PATH` given when the server has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What environment a [`Command`](crate::Command)'s commands get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobEnvironment {
    /// Only these variables (the documented set, see [`JobEnvironment::variables`]), plus `pass`:
    /// the variables the operator hands on, with their values.
    Clean {
        /// Extra variables, e.g. from `--pass-env NAME`, with the values they had when the
        /// program started.
        pass: Vec<(String, OsString)>,
    },
    /// This process's whole environment (for library users who want it; not the binary's).
    Inherited,
}

impl Default for JobEnvironment {
    /// A clean environment with nothing passed on.
    fn default() -> Self {
        JobEnvironment::Clean { pass: Vec::new() }
    }
}

impl JobEnvironment {
    /// The documented variables of a clean environment for `job` building `commit`, with
    /// `home` as `HOME`:
    ///
    /// - `CI=true`;
    /// - `DATAKIT_CI_TARGET` (e.g. `local/app/heads/main`, `local/app/prs/4`), `DATAKIT_CI_COMMIT`
    ///   (the full hash) and `DATAKIT_CI_JOB` (the test's name);
    /// - `DATAKIT_CI_BRANCH`, `DATAKIT_CI_TAG` or `DATAKIT_CI_PR` (the branch or tag name, or
    ///   the PR number) for a branch, a tag or a PR;
    /// - `HOME` (an empty directory of the build's own, removed with it) and `PATH` (the
    ///   server's, else a standard one).
    ///
    /// Running a command adds `DATAKIT_CI_PROCESS`, the marker by which the CI finds every
    /// process of the build (see `datakit_ci_process`).
    ///
    /// A commit shared by several targets is built once, with the variables of the target whose
    /// job asked first.
    pub fn variables(job: &JobId, commit: &CommitHash, home: &Path) -> Vec<(String, OsString)> {
        let mut variables = vec![
            ("CI".to_owned(), OsString::from("true")),
            (
                "DATAKIT_CI_TARGET".to_owned(),
                job.target().to_string().into(),
            ),
            ("DATAKIT_CI_COMMIT".to_owned(), commit.as_str().into()),
            ("DATAKIT_CI_JOB".to_owned(), job.name().into()),
        ];
        match job.target() {
            TargetId::Pr(_, number) => {
                variables.push(("DATAKIT_CI_PR".to_owned(), number.to_string().into()));
            }
            TargetId::Ref(_, name) => {
                let components = name.components();
                let rest = components[1..].join("/");
                match components.first().map(String::as_str) {
                    Some("heads") => variables.push(("DATAKIT_CI_BRANCH".to_owned(), rest.into())),
                    Some("tags") => variables.push(("DATAKIT_CI_TAG".to_owned(), rest.into())),
                    _ => {}
                }
            }
        }
        variables.push(("HOME".to_owned(), home.into()));
        variables.push((
            "PATH".to_owned(),
            std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
        ));
        variables
    }

    /// `cmd` with this environment for `job` building `commit`.
    pub fn apply(&self, cmd: Cmd, job: &JobId, commit: &CommitHash, home: &Path) -> Cmd {
        match self {
            JobEnvironment::Inherited => cmd,
            JobEnvironment::Clean { pass } => {
                let mut cmd = cmd.env_clear();
                for (name, value) in Self::variables(job, commit, home) {
                    cmd = cmd.env(name, value);
                }
                for (name, value) in pass {
                    cmd = cmd.env(name, value);
                }
                cmd
            }
        }
    }

    /// This environment's part of the cache's recipe: what changes a result. Values passed on
    /// appear only as a SHA-256 digest (they may be secrets, and the recipe is stored as text).
    pub fn recipe(&self) -> String {
        match self {
            JobEnvironment::Inherited => "environment inherited\n".to_owned(),
            JobEnvironment::Clean { pass } => {
                let mut recipe = String::new();
                for (name, value) in pass {
                    let digest = Sha256::digest(value.as_encoded_bytes());
                    write!(recipe, "env {name} sha256:").expect("writing to a String cannot fail");
                    for byte in digest {
                        write!(recipe, "{byte:02x}").expect("writing to a String cannot fail");
                    }
                    recipe.push('\n');
                }
                recipe
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recipe_shows_no_value() {
        let environment = JobEnvironment::Clean {
            pass: vec![("TOKEN".to_owned(), OsString::from("s3cr3t"))],
        };
        let recipe = environment.recipe();
        assert!(recipe.starts_with("env TOKEN sha256:"), "{recipe}");
        assert!(!recipe.contains("s3cr3t"), "{recipe}");
        assert_eq!(JobEnvironment::default().recipe(), "");
    }
}
