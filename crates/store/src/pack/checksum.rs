//! A thread that computes a pack's checksum over its first entries while the committing thread
//! writes them and computes their CRC-32s (see `PackWriter::add_trees_checksummed_aside`).
//!
//! It is kept rather than started per pack: starting a thread took 0.1–0.3 ms inside a commit,
//! about what hashing a 672 KB tree beside writing it saves.
//!
//! A commit that builds a big tree starts its pack's checksum as soon as the tree is built
//! ([`EarlyChecksum`]), so that the thread hashes the pack entry while the commit computes the
//! tree's id and builds the trees above it: by the time the pack is written, the checksum is
//! ready. That needs the pack's object count before the commit is finished; the commit predicts
//! it, and a pack whose count or first tree turns out different computes its checksum as usual.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use gix::ObjectId;

use crate::tree::DecodedTree;

/// The header and the trees of a pack's first entries, and where to send what was computed.
struct Job {
    header: [u8; 12],
    trees: Vec<DecodedTree>,
    reply: mpsc::SyncSender<io::Result<sha1::Sha1>>,
    /// Set when the result is no longer wanted (an early checksum whose pack turned out different):
    /// the thread then skips the job rather than delay the next one.
    abandoned: Arc<AtomicBool>,
}

/// The checksum thread of one store, started by the first pack that needs it; it ends when the
/// store is dropped.
#[derive(Default)]
pub(crate) struct ChecksumThread {
    /// `None` inside if the thread could not be started.
    jobs: OnceLock<Option<mpsc::Sender<Job>>>,
}

impl ChecksumThread {
    /// Hands the checksum of `header` followed by the stored entries of `trees` to the thread;
    /// `None` if there is no thread (the caller computes it).
    pub(super) fn submit(&self, header: [u8; 12], trees: Vec<DecodedTree>) -> Option<Pending> {
        let jobs = self.jobs.get_or_init(start).as_ref()?;
        let (reply, result) = mpsc::sync_channel(1);
        let abandoned = Arc::new(AtomicBool::new(false));
        let job = Job {
            header,
            trees,
            reply,
            abandoned: Arc::clone(&abandoned),
        };
        jobs.send(job).ok().map(|()| Pending {
            header,
            result: Mutex::new(result),
            abandoned,
        })
    }

    /// Starts the checksum of a pack of `count` objects whose first entry will be `tree`, before
    /// the pack's other objects are made; `None` if there is no thread.
    pub(crate) fn start_early(&self, count: usize, tree: &DecodedTree) -> Option<EarlyChecksum> {
        let header = super::pack_header(count).ok()?;
        let pending = self.submit(header, vec![tree.clone()])?;
        Some(EarlyChecksum {
            tree: None,
            pending,
        })
    }
}

/// A pack checksum started while its commit was still being made (see the module docs), over the
/// header of a pack of a predicted size and one big tree as its first entry.
pub(crate) struct EarlyChecksum {
    /// The id of the tree, once computed (by the commit, while the thread hashes).
    tree: Option<ObjectId>,
    pending: Pending,
}

impl EarlyChecksum {
    /// Records the id of the tree the checksum covers.
    pub(crate) fn set_tree_id(&mut self, id: ObjectId) {
        self.tree = Some(id);
    }

    /// The checksum in progress, if it is that of a pack of `count` objects starting with tree
    /// `first`.
    pub(super) fn applies_to(self, count: usize, first: ObjectId) -> Option<Pending> {
        let header = super::pack_header(count).ok()?;
        (self.tree == Some(first) && self.pending.header == header).then_some(self.pending)
    }
}

/// A checksum being computed on the thread. Dropping it unwaited tells the thread to skip it.
pub(super) struct Pending {
    header: [u8; 12],
    /// In a mutex only to be `Sync`, as a transaction holding an early checksum must be.
    result: Mutex<mpsc::Receiver<io::Result<sha1::Sha1>>>,
    abandoned: Arc<AtomicBool>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.abandoned.store(true, Ordering::Relaxed);
    }
}

impl Pending {
    /// The pack header the checksum starts with.
    pub(super) fn header(&self) -> [u8; 12] {
        self.header
    }

    /// Waits for the SHA-1 state after the header and the trees' entries; computes it from
    /// `trees` (the same as submitted) if the thread is gone.
    pub(super) fn wait<'a>(self, trees: impl Iterator<Item = &'a [u8]>) -> io::Result<sha1::Sha1> {
        let received = self
            .result
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv();
        match received {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!("the pack checksum thread is gone; computing the checksum here");
                checksum(self.header, trees)
            }
        }
    }
}

fn start() -> Option<mpsc::Sender<Job>> {
    let (jobs, received) = mpsc::channel::<Job>();
    let started = std::thread::Builder::new()
        .name("pack-checksum".to_owned())
        .spawn(move || {
            for job in received {
                if job.abandoned.load(Ordering::Relaxed) {
                    continue;
                }
                let trees = job.trees.iter().map(DecodedTree::data);
                // The committing thread may have given up waiting; nothing to do then.
                let _ = job.reply.send(checksum(job.header, trees));
            }
        });
    match started {
        Ok(_) => Some(jobs),
        Err(error) => {
            tracing::debug!(%error, "no thread for pack checksums; computing them in commits");
            None
        }
    }
}

/// The SHA-1 state after `header` and the stored entries of the trees whose data is `trees`.
pub(super) fn checksum<'a>(
    header: [u8; 12],
    trees: impl Iterator<Item = &'a [u8]>,
) -> io::Result<sha1::Sha1> {
    let mut hasher = sha1::Sha1::default();
    sha1::Digest::update(&mut hasher, header);
    for data in trees {
        super::emit_stored_entry(gix::objs::Kind::Tree, data, |bytes| {
            sha1::Digest::update(&mut hasher, bytes);
            Ok(())
        })?;
    }
    Ok(hasher)
}
