//! References and history: branch heads read and moved with a compare-and-swap ([`head`]), group
//! commit — concurrent commits written as one pack, then each branch moved ([`group`]) — commits
//! decoded and the memory of the last ones ([`commit`]), branches' in-process state and watches
//! ([`branches`]), and the store's exclusive lock ([`lock`]). Like `gix-ref` beside `gix-odb`.
//!
//! It knows the object database (it writes a group's objects before moving any branch) and the
//! names. It must never know trees, edits, transactions or snapshots: a commit reaches it as
//! objects already encoded and the branch move that publishes them ([`Member`]).

mod branches;
mod commit;
mod group;
mod head;
mod lock;

pub(crate) use branches::{BranchState, Branches};
pub(crate) use commit::{CommitData, RecentCommits, read_commit};
pub(crate) use group::{CommitQueue, Member, OpenTransaction};
pub(crate) use head::{read_head, signature};
pub(crate) use lock::StoreLock;
