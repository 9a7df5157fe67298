//! Group commit: commits made at the same time (to different branches) write their new objects
//! together, as one pack, and then move their branches one by one, each with its own
//! compare-and-swap. Creating files is the main cost of a commit on some file systems, and a pack
//! costs two files whatever it holds, so 50 concurrent commits cost two files instead of 100.
//!
//! # Leader and followers
//!
//! There is no writer thread: a committer that finds no write in progress writes at once, in its own
//! thread, so an idle store adds no hand-over to a commit (the *leader*). Committers that arrive
//! while a group is being written queue up (*followers*) and wait on their own slot. When the
//! leader has written its group and told each member its result, it hands the lead to the oldest
//! follower, which writes every commit queued by then as the next group. A group is therefore
//! everything that arrived during the previous write: it grows with the load and is a single
//! commit when commits are rare.
//!
//! Objects are written before any branch moves, and a branch only moves if its head is still what
//! the commit was made on. If the pack cannot be written, no branch of the group moves and every
//! member gets [`Error::WriteObjects`] (nothing already stored is touched: the pack is written
//! to a temporary file). A compare-and-swap that fails is that member's own result; the
//! transaction then decides whether to replay its edits on the new head.
//!
//! Pack maintenance does not run here: merging only adds packs and updates the tiers under their
//! lock, and deleting waits for every handle to come back, including the one the leader borrows
//! for the whole write, so it never overlaps a write. Keeping it out of the write path keeps the
//! time a group waits for its leader short.
//!
//! This module knows nothing of trees, edits or replays: it writes objects and moves references.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use gix::ObjectId;

use super::head::update_head;
use crate::odb::{Object, Repo, StartedPack};
use crate::{BranchName, CommitId, Error};

/// A commit ready to be written: its new objects and the branch move that publishes them.
pub(crate) struct Member {
    /// Objects the store may not have yet (the commit object among them).
    pub(crate) objects: Vec<Object>,
    /// A pack of just these objects, started while the commit was made.
    pub(crate) started_pack: Option<StartedPack>,
    /// The branch to move.
    pub(crate) branch: BranchName,
    /// The commit the branch is to point at.
    pub(crate) new: ObjectId,
    /// The head the commit was made on (`None`: the branch must not exist).
    pub(crate) expected: Option<CommitId>,
}

/// How long a leader waits for more commits before writing, when many transactions are open (see
/// [`SIBLINGS`]). A write only gathers the commits that arrive while the previous one runs, and a
/// write is short next to the gaps between the commits of many concurrent builds: groups stayed at
/// 1.3 commits on average with 500 builds at once, each group costing two new files for its pack.
const LINGER: Duration = Duration::from_millis(5);

/// How many other transactions must be open for a leader to linger. Caches open their transaction
/// when a build starts, so hundreds of concurrent builds mean hundreds of open transactions, most
/// of which will commit soon; a commit made while few others are under way (a push followed by
/// its build and status) never waits. The idea is PostgreSQL's `commit_delay`/`commit_siblings`.
const SIBLINGS: usize = 8;

/// Commits waiting for the group being written to finish.
#[derive(Default)]
pub(crate) struct CommitQueue {
    state: Mutex<QueueState>,
    /// Transactions open on the store, committing ones included (see [`OpenTransaction`]).
    open: AtomicUsize,
}

/// Counts a transaction as open on its store's [`CommitQueue`] for as long as it lives.
pub(crate) struct OpenTransaction {
    commits: Arc<CommitQueue>,
}

impl OpenTransaction {
    /// Counts one more open transaction on `commits` until the result is dropped.
    pub(crate) fn new(commits: &Arc<CommitQueue>) -> OpenTransaction {
        commits.open.fetch_add(1, Ordering::Relaxed);
        OpenTransaction {
            commits: Arc::clone(commits),
        }
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        self.commits.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct QueueState {
    /// A group is being written (by its leader), or the lead is being handed over.
    writing: bool,
    /// Commits waiting for the next group, oldest first.
    waiting: Vec<Waiting>,
}

struct Waiting {
    member: Member,
    slot: Arc<Slot>,
}

/// Where a waiting committer learns its result, or that it leads the next group.
#[derive(Default)]
struct Slot {
    turn: Mutex<Option<Turn>>,
    changed: Condvar,
}

enum Turn {
    /// Write the next group.
    Lead,
    /// The commit's group was written: the result of moving its branch.
    Done(Result<(), Error>),
}

impl Slot {
    fn set(&self, turn: Turn) {
        *self.turn.lock().unwrap_or_else(PoisonError::into_inner) = Some(turn);
        self.changed.notify_one();
    }

    fn wait(&self) -> Turn {
        let mut turn = self.turn.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(turn) = turn.take() {
                return turn;
            }
            turn = self
                .changed
                .wait(turn)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl CommitQueue {
    // A panicking leader must not leave the queue locked for good: its guard still hands over.
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether so many transactions are open that commits are likely to be written in groups
    /// (counting the caller's own).
    pub(crate) fn busy(&self) -> bool {
        self.open.load(Ordering::Relaxed).saturating_sub(1) >= SIBLINGS
    }

    /// Writes `member`'s objects, with those of the commits made at the same time, and then moves
    /// its branch (blocking until done). The caller must not hold a handle from the pool: the
    /// write may wait for a deletion of merged packs, which waits for every handle.
    pub(crate) fn commit(&self, repo: &Arc<Repo>, member: Member) -> Result<(), Error> {
        let slot = Arc::new(Slot::default());
        let mut lead = {
            let mut state = self.lock();
            state.waiting.push(Waiting {
                member,
                slot: Arc::clone(&slot),
            });
            !std::mem::replace(&mut state.writing, true)
        };
        loop {
            if lead {
                self.write_group(repo);
            }
            match slot.wait() {
                Turn::Done(result) => return result,
                Turn::Lead => lead = true,
            }
        }
    }

    /// Writes every waiting commit as one group, tells each its result and hands the lead over.
    fn write_group(&self, repo: &Arc<Repo>) {
        let queued = self.lock().waiting.len();
        if self.open.load(Ordering::Relaxed).saturating_sub(queued) >= SIBLINGS {
            std::thread::sleep(LINGER);
        }
        let waiting = std::mem::take(&mut self.lock().waiting);
        let mut members = Vec::with_capacity(waiting.len());
        let mut guard = GroupGuard {
            queue: self,
            pack_dir: repo.pack_dir().to_owned(),
            slots: Vec::with_capacity(waiting.len()),
        };
        for Waiting { member, slot } in waiting {
            guard.slots.push(Some((member.branch.clone(), slot)));
            members.push(member);
        }
        let results = write_members(repo, members);
        for (slot, result) in guard.slots.iter_mut().zip(results) {
            if let Some((_, slot)) = slot.take() {
                slot.set(Turn::Done(result));
            }
        }
    }

    /// Ends the current write: the oldest waiting commit leads the next group, if there is one.
    fn hand_over(&self) {
        let mut state = self.lock();
        match state.waiting.first() {
            Some(next) => next.slot.set(Turn::Lead),
            None => state.writing = false,
        }
    }
}

/// The members of the group being written. Dropping it hands the lead over; members not told
/// their result yet (only if the leader panicked) get an error rather than waiting for ever.
struct GroupGuard<'a> {
    queue: &'a CommitQueue,
    pack_dir: std::path::PathBuf,
    slots: Vec<Option<(BranchName, Arc<Slot>)>>,
}

impl Drop for GroupGuard<'_> {
    fn drop(&mut self) {
        let group = self.slots.len();
        let mut untold = self.slots.iter_mut().filter_map(Option::take).peekable();
        if untold.peek().is_some() {
            let source = Arc::new(Error::Io {
                path: self.pack_dir.clone(),
                source: std::io::Error::other("the thread writing the group panicked"),
            });
            for (branch, slot) in untold {
                slot.set(Turn::Done(Err(Error::WriteObjects {
                    branch,
                    group,
                    source: Arc::clone(&source),
                })));
            }
        }
        self.queue.hand_over();
    }
}

/// Writes the objects of `members` as one pack, then moves each branch; one result per member.
fn write_members(repo: &Arc<Repo>, mut members: Vec<Member>) -> Vec<Result<(), Error>> {
    let group = members.len();
    let handle = repo.get();
    let mut objects = Vec::new();
    let mut seen = HashSet::new();
    // A pack started early is for one commit's objects; in a group, the others are dropped at
    // once, so that the pack thread skips them if it has not started them yet.
    let started = match members.as_mut_slice() {
        [alone] => alone.started_pack.take(),
        group => {
            for member in group {
                member.started_pack = None;
            }
            None
        }
    };
    for member in &mut members {
        // Two commits may make the same object (the same log, the same subtree); a pack must hold
        // it once.
        objects.extend(
            member
                .objects
                .drain(..)
                .filter(|(id, _, _)| seen.insert(*id)),
        );
    }
    if !objects.is_empty()
        && let Err(error) = repo.write_objects(&handle, &objects, started)
    {
        tracing::warn!(%error, commits = group, "cannot write the objects of a group of commits");
        let source = Arc::new(error);
        return members
            .into_iter()
            .map(|member| {
                Err(Error::WriteObjects {
                    branch: member.branch,
                    group,
                    source: Arc::clone(&source),
                })
            })
            .collect();
    }
    tracing::trace!(
        commits = group,
        objects = objects.len(),
        "wrote a group of commits"
    );
    drop(objects);
    members
        .iter()
        .map(|member| update_head(&handle, &member.branch, member.new, member.expected))
        .collect()
}

#[cfg(test)]
mod tests;

/// Test hooks: hold writes back so that commits gather into one group.
#[cfg(test)]
pub(crate) mod pause {
    use super::CommitQueue;

    /// Commits queue as if a group were being written until this is dropped; then they are
    /// written as one group.
    pub(crate) struct Pause<'a> {
        queue: &'a CommitQueue,
    }

    impl CommitQueue {
        /// Holds writes back until the returned pause is dropped. Call it while no commit is
        /// being made.
        pub(crate) fn pause(&self) -> Pause<'_> {
            let mut state = self.lock();
            assert!(
                !state.writing,
                "pause only while no commit is being written"
            );
            state.writing = true;
            Pause { queue: self }
        }

        /// How many commits wait for the next group.
        pub(crate) fn waiting(&self) -> usize {
            self.lock().waiting.len()
        }
    }

    impl Drop for Pause<'_> {
        fn drop(&mut self) {
            self.queue.hand_over();
        }
    }
}
