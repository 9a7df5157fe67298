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
//! The repository is an ordinary bare Git repository (`git log`, `git push`, `git gc` and
//! `git fsck` work on it). No reflog is written (bare repositories have none by default).
//!
//! - **One pack per group of concurrent commits.** A commit writes its new objects (blobs, the
//!   trees along the edited paths, the commit) as one pack and its index, then moves the branch:
//!   two new files whatever the commit's size, instead of one loose file per object (creating a
//!   file is the main cost of a commit on some file systems). Commits to different branches that
//!   are made while a pack is being written wait for it and are then written together, as one
//!   pack, before each moves its branch with its own compare-and-swap; a commit made while the
//!   store is idle is written at once, and under load (8 or more other transactions open) the
//!   writer waits 5 ms for more commits to join its group. Objects the store already has are not written again. Big
//!   files (over 256 KiB, whether given whole or streamed with
//!   [`Transaction::create_file_from_reader`]) are written as loose objects, so they are never
//!   held in memory whole and not copied again when packs are merged. Trees of 64 KiB or more
//!   (the flat trees of the metadata branch) are packed without compression: deflating them was
//!   the largest cost of a head change with 10,000 targets. So are objects under 512 bytes, most
//!   of a commit's: starting a deflate stream costs more than it saves on them.
//! - **Packs merged in tiers.** Packs are grouped by object count (below 16, 256, 4096, …); when 16
//!   packs share a tier they are merged into one pack of the next tier. At most 15 packs per tier
//!   are left, so 100,000 commits of ten objects leave at most 90 packs, and each object is
//!   copied about once per tier.
//! - **Readers never miss an object.** A merged pack is complete before the packs it replaces are
//!   retired, and retired packs are deleted only while no object read is in progress (reads wait
//!   for the deletion, a few milliseconds, and the deletion gives up and retries after a later commit
//!   if reads keep going for 50 ms; once 512 packs were written without a deletion, new reads
//!   also wait, at most 50 ms, while a deletion waits for the reads under way). Every handle that
//!   may remember a deleted pack is then dropped, and new handles come from a freshly opened object database (gix's database misses objects
//!   once it has had more packs than it has slots; if deletions are held off for over 1,024
//!   commits, commits write loose objects until the next deletion). Long-lived [`Snapshot`]s and
//!   [`Commit`]s hold no handle between reads, so they keep working. A race not yet understood
//!   remained (a stress test with fast readers saw a miss in about 1 run of 4), so a lookup that
//!   misses retries once in an object database opened afresh, and logs a warning if that finds it.
//! - **Decoded trees are cached; big trees are edited in proportion to the change.** Trees are
//!   immutable, so a bounded cache by tree id, shared by every reader, makes a lookup in a
//!   10,000-entry directory a binary search and lets [`Snapshot::changed_files`] skip the entries two
//!   versions share at each end. A decoded tree is its raw bytes plus an index of entry offsets (no
//!   allocation per entry). A transaction edits a directory as that shared base plus an overlay of
//!   the changed entries, writes the new tree by copying the unchanged runs of bytes, and puts it in
//!   the cache as it writes it, so nothing reads back a tree this process has just written.
//! - **Crash safety.** A pack and its index are written to temporary files (`tmp_pack_*`) and renamed
//!   into place, the index last, before the branch moves; a crash leaves at worst an unreferenced
//!   pack or a temporary file (removed by the next [`Store::open`]), or merged packs not yet deleted
//!   (objects stored twice, which Git allows). As with loose objects, files are not `fsync`ed.

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

// The store's layers: `names` at the bottom, then `odb`, then `tree` and `refs` (side by side, both
// on `odb`), then the public API's modules; each uses only those below it (`tests/layers.rs`
// checks it; ARCHITECTURE.md has the map).
mod names;
mod odb;
mod refs;
mod tree;

mod commit;
mod compact;
mod snapshot;
mod state;
mod store;
#[cfg(test)]
mod temp_store;
mod transaction;

pub use commit::Commit;
pub use compact::Compaction;
pub use names::{BranchName, CommitId, EntryKind, Error, StorePath, TreeId, escape, unescape};
pub use odb::FileReader;
pub use snapshot::Snapshot;
pub use store::{Branch, Store};

/// The store's pack writer, for other code that writes packs into a Git repository (the Git
/// plugin's copies of commits into its clone): one implementation of Git's pack and index format.
pub mod pack_format {
    pub use crate::odb::{EncodedEntry, write_encoded};
}
pub use transaction::Transaction;
