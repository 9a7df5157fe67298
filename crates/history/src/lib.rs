//! Target history for datakit-ci: status branches and the commit index (spec §3.7, §3.8).
//!
//! Every target (a PR or a ref) has a **status branch** in the state store, named by
//! [`status_branch`] (e.g. `status-me-my_2dproject-ref-heads-feature_2fx_5fy`); each of its commits is
//! one state of all the target's jobs: files `source-commit` (the source commit the jobs ran on),
//! `metadata-commit` (the `github-metadata` commit used as input) and `job/<name>/output` (the job's
//! output as JSON, [`JobOutput::to_json`](datakit_ci_term::JobOutput::to_json)). `git log` of the
//! branch is the target's history. The **commit index** (branch `commit-index`) maps
//! `<user>/<repo>/commit/<source>/<sub>` to the latest status commit of that target for that source
//! commit, so a commit's page can list its builds.
//!
//! - [`History`] — the cache of every target's latest [`HistoryState`], loaded lazily and kept in
//!   memory; [`History::record`] writes a new state only when something changed,
//!   [`History::index`] writes index entries in one batch, [`History::load`] reads any old state and
//!   [`History::builds_of_commit`] answers the index.
//! - [`status_branch`], [`target_sub`], [`parse_status_branch`], [`parse_target_sub`],
//!   [`is_shortened`] — the names.
//!
//! This crate knows the store layout of history, and nothing of terms' evaluation, the forge or HTTP.
//!
//! # Deviations from the original
//!
//! - The commit index is written by [`History::index`] in one commit for many targets, instead of
//!   one commit per recorded state (spec §9 item 15).
//! - Status branches of targets whose names Git would refuse (`a..b`, `x.lock`) escape `.` too
//!   (see [`status_branch`]).
//! - A status-branch name longer than a file name can be (250 bytes, with `.lock`) is shortened
//!   to a prefix, `--` and a hash, and its branch holds the full name in a file `target`
//!   (see [`status_branch`], [`History::status_branch_target`]).
//! - A corrupt job output fails the load with [`Error::InvalidOutput`] (naming commit and job)
//!   instead of raising an exception.
//!
//! # Example
//!
//! ```
//! use std::collections::BTreeMap;
//! use datakit_ci_history::History;
//! use datakit_ci_store::{BranchName, Store};
//! use datakit_ci_term::{CommitHash, JobOutput, JobResult, Logs, RefName, TargetId};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(&dir.path().join("state.git"))?;
//! // Any commit id of the store stands for the metadata snapshot here.
//! let mut transaction = store.branch(&BranchName::new("github-metadata")?).transaction().await?;
//! transaction.create_file(&"me/repo/.monitor".parse()?, "")?;
//! let metadata = transaction.commit("Add .monitor files").await?;
//!
//! let history = History::new(store);
//! let target = TargetId::Ref("me/repo".parse()?, RefName::branch("main")?);
//! let source: CommitHash = "0123456789abcdef0123456789abcdef01234567".parse()?;
//! let jobs = BTreeMap::from([(
//!     "build".to_owned(),
//!     JobOutput { result: JobResult::Success("built".into()), logs: Logs::Empty },
//! )]);
//!
//! let first = history.record(&target, &source, metadata, &jobs).await?;
//! assert!(first.is_some());
//! // Nothing changed: nothing is written.
//! assert_eq!(history.record(&target, &source, metadata, &jobs).await?, None);
//! history.index(&[(target.clone(), source.clone(), first.expect("written"))]).await?;
//!
//! let latest = history.latest(&target).await?.expect("recorded");
//! assert_eq!(latest.commit, first);
//! assert_eq!(latest.jobs, jobs);
//! let builds = history.builds_of_commit(target.repo(), &source).await?;
//! assert_eq!(builds[&target].commit, first);
//! # Ok(())
//! # }
//! ```

mod error;
mod history;
mod names;
mod state;

pub use error::Error;
pub use history::{History, commit_index_branch};
pub use names::{
    SHORTENED_PREFIX_LEN, TARGET_FILE, is_shortened, parse_status_branch, parse_target_sub,
    status_branch, target_sub,
};
pub use state::HistoryState;
