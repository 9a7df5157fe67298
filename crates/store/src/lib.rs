//! A Git-backed state store for datakit-ci: branches, snapshots, transactions and watches on a bare
//! Git repository written in-process with gitoxide (`gix`).
//!
//! This crate knows nothing of terms, HTTP or GitHub: it stores files in branches.
//!
//! # Overview
//!
//! - [`Store`] owns a bare repository (created on first [`Store::open`]) and holds an exclusive lock
//!   on it, so only one engine uses a store at a time ([`Error::Locked`] names the holder's PID).
//! - [`Branch`] is a named line of history that may not exist yet; its [`head`](Branch::head) is a
//!   [`Commit`], whose [`tree`](Commit::tree) is a read-only [`Snapshot`].
//! - [`Transaction`] collects edits (write, make directories, remove) on top of a branch head and
//!   [`commit`](Transaction::commit)s them atomically: objects are written first, then the branch
//!   reference is moved with a compare-and-swap. If the branch moved meanwhile, the edits are
//!   replayed on the new head (see [`Transaction`]).
//! - [`Branch::watch`] reports every new head committed through the store.
//! - Names are validated once: [`BranchName`], [`StorePath`], [`CommitId`]; [`escape`] and
//!   [`unescape`] turn arbitrary strings into branch-name-safe ones and back.
//!
//! # Storage
//!
//! The repository is an ordinary bare Git repository (`git log`, `git push` and `git fsck` work on
//! it). A commit writes its new objects as loose objects, then moves the branch. Big files written
//! with [`Transaction::create_file_from_reader`] are streamed to their loose object. No reflog is
//! written (bare repositories have none by default).
//!
//! # Example
//!
//! ```
//! use datakit_ci_store::{BranchName, Store, StorePath};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(&dir.path().join("state.git"))?;
//! let branch = store.branch(&BranchName::new("github-metadata")?);
//! assert!(branch.head().await?.is_none());
//!
//! let mut transaction = branch.transaction().await?;
//! let path = StorePath::new("me/repo/pr/1/state")?;
//! transaction.create_file(&path, "open")?;
//! let id = transaction.commit("Add PR 1").await?;
//!
//! let head = branch.head().await?.expect("just committed");
//! assert_eq!(head.id(), id);
//! assert_eq!(head.message(), "Add PR 1");
//! assert_eq!(head.tree().read_file(&path)?, Some(b"open".to_vec()));
//! assert_eq!(head.tree().read_dir(&StorePath::new("me/repo/pr")?)?, Some(vec!["1".to_owned()]));
//! # Ok(())
//! # }
//! ```

mod error;
mod file_reader;
mod lock;
mod names;
mod pending;
mod repo;
mod snapshot;
mod store;
mod transaction;
mod tree;

pub use error::Error;
pub use file_reader::FileReader;
pub use names::{BranchName, CommitId, EntryKind, StorePath, TreeId, escape, unescape};
pub use snapshot::Snapshot;
pub use store::{Branch, Commit, Store};
pub use transaction::Transaction;
