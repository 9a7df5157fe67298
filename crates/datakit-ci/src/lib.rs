//! datakit-ci: continuous-integration pipelines written as code, evaluated live against every
//! branch, tag and pull request of a project, with cached build steps, live logs and history kept
//! in Git.
//!
//! This crate is the facade over the layer crates; each module below re-exports one of them:
//!
//! | module | crate | owns |
//! |---|---|---|
//! | [`store`] | `datakit-ci-store` | the Git-backed state store (branches, snapshots, transactions, watches) |
//! | [`log`] | `datakit-ci-log` | live logs of running builds and their manager |
//! | [`term`] | `datakit-ci-term` | `Term<T>` and its combinators, statuses, log trees, forge metadata |
//! | [`cache`] | `datakit-ci-cache` | the `Builder` trait and `Cache<B>` |
//! | [`process`] | `datakit-ci-process` | child processes killed as a group on cancel or timeout |
//! | [`pool`] | `datakit-ci-pool` | monitored resource pools |
//! | [`git`] | `datakit-ci-git` | the Git plugin: fetch, checkout, clone, cached commands |
//! | [`notifications`] | `datakit-ci-notifications` | signed JSON events to URLs when a target's result changes |
//! | [`docker`] | `datakit-ci-docker` | the Docker plugin: image builds and commands in containers, on several hosts |
//!
//! A pipeline is a [`Term`](term::Term) per test:
//!
//! ```
//! use datakit_ci::term::{EvalContext, JobId, RefName, TargetId, Term};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let build = Term::ok("built").map(|s| format!("{s} and tested"));
//! let target = TargetId::Ref("me/project".parse().unwrap(), RefName::branch("main").unwrap());
//! let ctx = EvalContext::new(JobId::new(target, "test"), None);
//! assert_eq!(build.evaluate(&ctx).await.status.result, Ok("built and tested".to_owned()));
//! # }
//! ```

pub mod cli;
pub mod github;
pub mod local;
pub mod pipeline_cli;
pub mod publish;
pub mod remote;
pub mod replica;
mod run;

pub use run::{disable_transparent_huge_pages, run};

/// The engine: projects, evaluation, statuses.
pub mod engine {
    pub use datakit_ci_engine::*;
}

/// Target history: status branches and the commit index.
pub mod history {
    pub use datakit_ci_history::*;
}

/// GitHub as a forge: webhooks, full syncs, commit statuses.
pub mod forge_github {
    pub use datakit_ci_forge_github::*;
}

/// Local Git repositories as a forge.
pub mod forge_local {
    pub use datakit_ci_forge_local::*;
}

/// The Git-backed state store.
pub mod store {
    pub use datakit_ci_store::*;
}

/// Live logs.
pub mod log {
    pub use datakit_ci_log::*;
}

/// Terms, statuses, logs and the forge's metadata.
pub mod term {
    pub use datakit_ci_term::*;
}

/// Cached builds.
pub mod cache {
    pub use datakit_ci_cache::*;
}

/// Child processes.
pub mod process {
    pub use datakit_ci_process::*;
}

/// Monitored resource pools.
pub mod pool {
    pub use datakit_ci_pool::*;
}

/// The Git plugin.
pub mod git {
    pub use datakit_ci_git::*;
}

/// Notifications of result changes (`--notify`).
pub mod notifications {
    pub use datakit_ci_notifications::*;
}

/// The Docker plugin.
pub mod docker {
    pub use datakit_ci_docker::*;
}

/// The pipeline file's format ([`datakit_ci_pipeline`]).
pub mod pipeline {
    pub use datakit_ci_pipeline::*;
}

/// Running the pipeline file of each commit ([`datakit_ci_pipeline_run`]).
pub mod pipeline_run {
    pub use datakit_ci_pipeline_run::*;
}

#[cfg(test)]
mod tests {
    /// The pipeline's descriptions are what GitHub's check runs turn into conclusions.
    #[test]
    fn the_pipelines_descriptions_are_the_ones_github_reads() {
        assert_eq!(
            datakit_ci_pipeline_run::SKIPPED_PREFIX,
            datakit_ci_forge_github::SKIPPED_PREFIX
        );
        assert_eq!(
            datakit_ci_pipeline_run::ALLOWED_FAILURE_PREFIX,
            datakit_ci_forge_github::ALLOWED_FAILURE_PREFIX
        );
        assert!(
            datakit_ci_pipeline_run::APPROVAL_PREFIX
                .starts_with(datakit_ci_forge_github::APPROVAL_PREFIX)
        );
    }
}
