//! What the user configures: projects (a repository and the tests to run on each of its
//! targets), dashboards, and canaries.

use std::fmt;
use std::sync::Arc;

use datakit_ci_term::{CommitHash, RefName, RepoId, TargetId, Term};

/// Configuration that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A project id is not `user/repo`.
    #[error("Invalid repo ID {0:?}")]
    InvalidRepoId(String),
    /// A dashboard branch name is not a valid ref name.
    #[error("invalid dashboard branch {branch:?}: {reason}")]
    InvalidDashboard {
        /// The branch name.
        branch: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A canary is malformed (the original's messages).
    #[error("{0}")]
    InvalidCanary(String),
}

/// The tests of a project: for a target, each test's name and term. The success string of a
/// term becomes the status description.
pub type TestsFn = dyn Fn(&TargetId) -> Vec<(String, Term<String>)> + Send + Sync;

/// The jobs a target's head commit asks for (e.g. the steps of a pipeline file read from that
/// commit): what a project's plan term evaluates to.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The head commit the jobs were made for: they are evaluated only while the target's
    /// head is this commit.
    pub head: CommitHash,
    /// The plan job's status description (e.g. `3 jobs from .datakit-ci.yml`).
    pub description: String,
    /// The jobs, by unique name.
    pub jobs: Vec<PlannedJob>,
}

/// One job of a [`Plan`].
#[derive(Clone)]
pub struct PlannedJob {
    /// The job's name (its status context is `ci/datakit/<name>`).
    pub name: String,
    /// The jobs it waits for (shown by the web UI as a graph; the term does the waiting).
    pub needs: Vec<String>,
    /// What to evaluate; its success string becomes the status description.
    pub term: Term<String>,
}

impl fmt::Debug for PlannedJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlannedJob")
            .field("name", &self.name)
            .field("needs", &self.needs)
            .finish_non_exhaustive()
    }
}

/// The plan of a project: for a target, a term that evaluates to the jobs of its head.
pub type PlanFn = dyn Fn(&TargetId) -> Term<Plan> + Send + Sync;

/// A monitored repository and the tests to run on each of its branches, tags and PRs.
///
/// ```
/// use datakit_ci_engine::Project;
/// use datakit_ci_term::Term;
/// let project = Project::new("me/my-project", |_target| {
///     vec![("my-test".to_owned(), Term::ok("Success!".to_owned()))]
/// })?
/// .dashboards(["main", "release/1.x"])?;
/// assert_eq!(project.id().to_string(), "me/my-project");
/// assert!(Project::new("not a repo", |_| vec![]).is_err());
/// # Ok::<(), datakit_ci_engine::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Project {
    id: RepoId,
    tests: Arc<TestsFn>,
    plan: Option<(String, Arc<PlanFn>)>,
    dashboards: Vec<RefName>,
}

impl Project {
    /// A project on repository `id` (`user/repo`) with dashboards `main` and `master`.
    pub fn new(
        id: &str,
        tests: impl Fn(&TargetId) -> Vec<(String, Term<String>)> + Send + Sync + 'static,
    ) -> Result<Self, ConfigError> {
        let id: RepoId = id
            .parse()
            .map_err(|_| ConfigError::InvalidRepoId(id.to_owned()))?;
        let dashboards = ["main", "master"]
            .iter()
            .map(|b| RefName::branch(b).expect("constant branch names are valid"))
            .collect();
        Ok(Project {
            id,
            tests: Arc::new(tests),
            plan: None,
            dashboards,
        })
    }

    /// Adds a plan: for each target, the job `name` evaluates `plan(target)`, and the jobs of
    /// the [`Plan`] it yields become the target's jobs too, for as long as the target's head is
    /// the plan's [`head`](Plan::head). A new head evaluates the plan again, and jobs that it no
    /// longer lists go away (their statuses on earlier commits stay). While the plan is
    /// pending, its job is pending; if it fails, its job fails with the message and the target
    /// has no planned jobs. A planned job named like a test or the plan itself is ignored,
    /// with a warning.
    ///
    /// ```
    /// use datakit_ci_engine::{Plan, PlannedJob, Project};
    /// use datakit_ci_term::{CommitHash, Term};
    /// let project = Project::new("me/app", |_| vec![])?.with_plan("pipeline", |_target| {
    ///     Term::ok(Plan {
    ///         head: "a".repeat(40).parse::<CommitHash>().expect("a hash"),
    ///         description: "1 job".into(),
    ///         jobs: vec![PlannedJob {
    ///             name: "build".into(),
    ///             needs: vec![],
    ///             term: Term::ok("Built".to_owned()),
    ///         }],
    ///     })
    /// });
    /// # Ok::<(), datakit_ci_engine::ConfigError>(())
    /// ```
    #[must_use]
    pub fn with_plan(
        self,
        name: impl Into<String>,
        plan: impl Fn(&TargetId) -> Term<Plan> + Send + Sync + 'static,
    ) -> Self {
        Project {
            plan: Some((name.into(), Arc::new(plan))),
            ..self
        }
    }

    /// The plan job's name and term for `target`, if the project has a plan.
    pub(crate) fn plan_for(&self, target: &TargetId) -> Option<(String, Term<Plan>)> {
        self.plan
            .as_ref()
            .map(|(name, plan)| (name.clone(), plan(target)))
    }

    /// Replaces the dashboard branches (names may contain `/`).
    pub fn dashboards<I, S>(self, branches: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let dashboards = branches
            .into_iter()
            .map(|b| {
                RefName::branch(b.as_ref()).map_err(|e| ConfigError::InvalidDashboard {
                    branch: b.as_ref().to_owned(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Project { dashboards, ..self })
    }

    /// The repository.
    pub fn id(&self) -> &RepoId {
        &self.id
    }

    /// The dashboard branches, as targets.
    pub fn dashboard_targets(&self) -> Vec<TargetId> {
        self.dashboards
            .iter()
            .map(|name| TargetId::Ref(self.id.clone(), name.clone()))
            .collect()
    }

    /// The tests for `target`, by name (a later duplicate replaces an earlier one).
    pub(crate) fn tests_for(
        &self,
        target: &TargetId,
    ) -> std::collections::BTreeMap<String, Term<String>> {
        (self.tests)(target).into_iter().collect()
    }
}

impl fmt::Debug for Project {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Project")
            .field("id", &self.id)
            .field("dashboards", &self.dashboards)
            .finish()
    }
}

/// Parses a canary: `user/project/heads/<branch…>`, `user/project/tags/<tag…>` or
/// `user/project/prs/<number>`, with the original's error messages.
///
/// ```
/// let target = datakit_ci_engine::parse_canary("me/proj/heads/feature/x")?;
/// assert_eq!(target.to_string(), "me/proj/heads/feature/x");
/// assert_eq!(
///     datakit_ci_engine::parse_canary("me/proj/prs/x").unwrap_err().to_string(),
///     r#"Invalid PR number "x""#
/// );
/// # Ok::<(), datakit_ci_engine::ConfigError>(())
/// ```
pub fn parse_canary(s: &str) -> Result<TargetId, ConfigError> {
    let invalid = |m: String| ConfigError::InvalidCanary(m);
    let (user, rest) = s
        .split_once('/')
        .ok_or_else(|| invalid(format!("Missing user/ at start of {s:?}")))?;
    let (project, rest) = rest
        .split_once('/')
        .ok_or_else(|| invalid(format!("Missing project/ at start of {rest:?}")))?;
    let (kind, id) = rest
        .split_once('/')
        .ok_or_else(|| invalid(format!("Missing ref_type/ at start of {rest:?}")))?;
    let repo = RepoId::new(user, project).map_err(|e| invalid(e.to_string()))?;
    match kind {
        "prs" => id
            .parse()
            .map(|n| TargetId::Pr(repo, n))
            .map_err(|_| invalid(format!("Invalid PR number {id:?}"))),
        "heads" => RefName::branch(id)
            .map(|n| TargetId::Ref(repo, n))
            .map_err(|e| invalid(e.to_string())),
        "tags" => RefName::tag(id)
            .map(|n| TargetId::Ref(repo, n))
            .map_err(|e| invalid(e.to_string())),
        other => Err(invalid(format!(
            "Bad target type {other:?} (should be heads/tags/prs)"
        ))),
    }
}

/// What the engine needs to run.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The projects to monitor.
    pub projects: Vec<Project>,
    /// The public URL of the web UI, used in status links (`--web-ui`).
    pub web_ui: String,
    /// If non-empty, only these targets are tested (`--canary`).
    pub canaries: Vec<TargetId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canaries_report_the_original_messages() {
        for (input, message) in [
            ("me", r#"Missing user/ at start of "me""#),
            ("me/proj", r#"Missing project/ at start of "proj""#),
            ("me/proj/heads", r#"Missing ref_type/ at start of "heads""#),
            ("me/proj/prs/x", r#"Invalid PR number "x""#),
            (
                "me/proj/branches/x",
                r#"Bad target type "branches" (should be heads/tags/prs)"#,
            ),
        ] {
            assert_eq!(
                parse_canary(input).map_err(|e| e.to_string()),
                Err(message.to_owned())
            );
        }
        assert_eq!(
            parse_canary("me/proj/tags/v1.0").map(|t| t.to_string()),
            Ok("me/proj/tags/v1.0".into())
        );
        assert_eq!(
            parse_canary("me/proj/prs/3"),
            Ok(TargetId::Pr("me/proj".parse().expect("valid"), 3))
        );
    }

    #[test]
    fn invalid_projects_are_rejected() {
        assert_eq!(
            Project::new("nope", |_| vec![]).map(|p| p.id().clone()),
            Err(ConfigError::InvalidRepoId("nope".into()))
        );
        let project = Project::new("u/r", |_| vec![]).expect("valid");
        assert!(matches!(
            project.dashboards(["bad name"]),
            Err(ConfigError::InvalidDashboard { .. })
        ));
    }
}
