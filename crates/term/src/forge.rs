//! Terms that read the forge's view (the metadata snapshot of the evaluation): targets, heads,
//! and other CIs' statuses (spec §3.13). Each records the metadata paths it read, so that the
//! job is evaluated again when they change.

use crate::context::EvalContext;
use crate::ids::{CommitHash, RefName, RepoId, TargetId};
use crate::metadata::{self, CiState, CiStatus, MetadataReader, Target};
use crate::status::Status;
use crate::term::Term;

/// Resolves `target` in the context's snapshot, recording the dependency.
fn resolve(ctx: &EvalContext, target: &TargetId) -> Result<Target, String> {
    let path = metadata::target_path(target).map_err(|e| e.to_string())?;
    ctx.record_path(path);
    let Some(snapshot) = ctx.metadata() else {
        return Err(format!("Target {target} does not exist"));
    };
    match MetadataReader::new(snapshot).target(target) {
        Ok(Some(resolved)) => Ok(resolved),
        Ok(None) => Err(format!("Target {target} does not exist")),
        Err(e) => Err(e.to_string()),
    }
}

/// Reads status `context` of `target`'s head, recording the dependencies.
fn read_status(
    ctx: &EvalContext,
    context: &str,
    target: &TargetId,
) -> Result<Option<CiStatus>, String> {
    let resolved = resolve(ctx, target)?;
    let repo = target.repo();
    let path = metadata::status_path(repo, resolved.head(), context).map_err(|e| e.to_string())?;
    ctx.record_path(path);
    let snapshot = ctx
        .metadata()
        .ok_or_else(|| format!("Target {target} does not exist"))?;
    MetadataReader::new(snapshot)
        .status(repo, resolved.head(), context)
        .map_err(|e| e.to_string())
}

fn from_result<T>(result: Result<T, String>) -> Status<T> {
    match result {
        Ok(value) => Status::ok(value),
        Err(message) => Status::failure(message),
    }
}

impl Term<Target> {
    /// The current metadata of `target`; fails with `Target <id> does not exist` when absent.
    pub fn target(target: TargetId) -> Self {
        Term::from_fn(move |ctx| std::future::ready(from_result(resolve(&ctx, &target))))
    }
}

impl Term<CommitHash> {
    /// The head commit of `target`.
    pub fn head(target: TargetId) -> Self {
        Term::target(target).map(|t| t.head().clone())
    }

    /// The head of branch `branch` (may contain `/`) of any repository in the metadata.
    pub fn branch_head(repo: RepoId, branch: &str) -> Self {
        match RefName::branch(branch) {
            Ok(name) => Term::head(TargetId::Ref(repo, name)),
            Err(e) => Term::fail(format!("Invalid ref name {branch:?}: {e}")),
        }
    }

    /// The commit tag `tag` points to in any repository in the metadata.
    pub fn tag(repo: RepoId, tag: &str) -> Self {
        match RefName::tag(tag) {
            Ok(name) => Term::head(TargetId::Ref(repo, name)),
            Err(e) => Term::fail(format!("Invalid ref name {tag:?}: {e}")),
        }
    }
}

impl Term<Option<CiState>> {
    /// The state of status `context` (e.g. `ci/circleci`) on `target`'s head, if reported.
    pub fn ci_status(context: impl Into<String>, target: TargetId) -> Self {
        let context = context.into();
        Term::from_fn(move |ctx| {
            let status = read_status(&ctx, &context, &target).map(|s| s.map(|s| s.state));
            std::future::ready(from_result(status))
        })
    }
}

impl Term<Option<String>> {
    /// Who approved job `job` on `commit` of `repo` (a `manual` step), if someone did; the job
    /// is evaluated again when an approval is recorded.
    pub fn approval(repo: RepoId, commit: CommitHash, job: impl Into<String>) -> Self {
        let job = job.into();
        Term::from_fn(move |ctx| {
            let approval = metadata::approval_path(&repo, &commit, &job)
                .map_err(|e| e.to_string())
                .and_then(|path| {
                    ctx.record_path(path);
                    match ctx.metadata() {
                        None => Ok(None),
                        Some(snapshot) => MetadataReader::new(snapshot)
                            .approval(&repo, &commit, &job)
                            .map_err(|e| e.to_string()),
                    }
                });
            std::future::ready(from_result(approval))
        })
    }

    /// Who approved `commit` as the head of an untrusted pull request of `repo`, if someone did
    /// ([`metadata::pull_request_approval_path`]); the job is evaluated again when an approval
    /// is recorded.
    pub fn pull_request_approval(repo: RepoId, commit: CommitHash) -> Self {
        Term::from_fn(move |ctx| {
            let approval = metadata::pull_request_approval_path(&repo, &commit)
                .map_err(|e| e.to_string())
                .and_then(|path| {
                    ctx.record_path(path);
                    match ctx.metadata() {
                        None => Ok(None),
                        Some(snapshot) => MetadataReader::new(snapshot)
                            .pull_request_approval(&repo, &commit)
                            .map_err(|e| e.to_string()),
                    }
                });
            std::future::ready(from_result(approval))
        })
    }

    /// The URL of status `context` on `target`'s head, if reported.
    pub fn ci_target_url(context: impl Into<String>, target: TargetId) -> Self {
        let context = context.into();
        Term::from_fn(move |ctx| {
            let url = read_status(&ctx, &context, &target).map(|s| s.and_then(|s| s.target_url));
            std::future::ready(from_result(url))
        })
    }
}

impl Term<String> {
    /// The URL of status `context` on `target`'s head once it succeeded: pending while it is
    /// absent or pending, failed when it failed or errored (spec §3.13 messages).
    pub fn ci_success_target_url(context: impl Into<String>, target: TargetId) -> Self {
        let context = context.into();
        Term::from_fn(move |ctx| {
            let status = match read_status(&ctx, &context, &target) {
                Err(message) => Status::failure(message),
                Ok(None) => Status::pending(format!("Waiting for {context} status to appear")),
                Ok(Some(status)) => {
                    let details = status
                        .description
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default();
                    match (status.state, status.target_url) {
                        (CiState::Pending, _) => {
                            Status::pending(format!("Waiting for {context} to complete{details}"))
                        }
                        (CiState::Failure, _) => {
                            Status::failure(format!("{context} failed{details}"))
                        }
                        (CiState::Error, _) => {
                            Status::failure(format!("{context} errored{details}"))
                        }
                        (CiState::Success, None) => {
                            Status::failure(format!("{context} succeeded, but has no URL!"))
                        }
                        (CiState::Success, Some(url)) => Status::ok(url),
                    }
                }
            };
            std::future::ready(status)
        })
    }
}
