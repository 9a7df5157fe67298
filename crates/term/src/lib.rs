//! The term language of datakit-ci: pipelines described as values of type [`Term<T>`], evaluated
//! again whenever what they depend on changes.
//!
//! - [`Term`] — a computation with combinators (`map`, `and_then`, `pair`, `all`,
//!   `wait_for_all`, …) and terms reading the forge's view (`Term::target`, `Term::branch_head`,
//!   `Term::ci_success_target_url`, …).
//! - [`EvalContext`] — what a term is evaluated against: the job and a metadata snapshot.
//!   [`Term::evaluate`] returns an [`Evaluation`]: the [`Status`] plus the [`Dependencies`]
//!   (metadata paths read, `ready` futures of pending parts) that tell the engine when to
//!   evaluate again.
//! - [`Status`] — `Result<T, Problem>` plus [`Logs`]; a [`Problem`] is `Pending` (with a
//!   [`Ready`] future) or `Failure`.
//! - [`JobOutput`] — a job's result in words and its logs, with the JSON form kept in history.
//! - [`metadata`] — the reader of the `github-metadata` layout.
//!
//! ```
//! use datakit_ci_term::{EvalContext, JobId, Problem, RefName, TargetId, Term};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let tests = Term::wait_for_all([
//!     ("build", Term::ok(())),
//!     ("lint", Term::fail("lint errors")),
//!     ("docs", Term::pending("building docs")),
//! ]);
//! let target = TargetId::Ref("me/project".parse().unwrap(), RefName::branch("main").unwrap());
//! let ctx = EvalContext::new(JobId::new(target, "all"), None);
//! let evaluation = tests.evaluate(&ctx).await;
//! assert_eq!(
//!     evaluation.status.result,
//!     Err(Problem::pending("lint failed (still waiting for docs)"))
//! );
//! # }
//! ```

mod context;
mod forge;
mod ids;
mod logs;
pub mod metadata;
mod output;
mod status;
mod term;

pub use context::{Dependencies, EvalContext};
pub use ids::{CommitHash, Error as IdError, JobId, RefName, RepoId, TargetId};
pub use logs::{LogLeaf, Logs, RebuildStateKind, RebuildTrigger, SavedLog};
pub use metadata::{CiState, CiStatus, PrInfo, PrState, PrTrust, RefInfo, Target};
pub use output::{FormatError, JobOutput, JobResult};
pub use status::{Problem, Ready, ReadySender, Status};
pub use term::{Evaluation, Term};
