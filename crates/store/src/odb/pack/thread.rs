//! The store's pack thread: it does the part of writing a pack that can run beside the commit
//! making it.
//!
//! - **Checksums** ([`PackThread::checksum`]): for a pack starting with big trees, it computes
//!   the pack's checksum over the header and those trees while the committing thread writes them
//!   and computes their CRC-32s (see `PackWriter::add_trees_checksummed_aside`).
//! - **Started packs** ([`PackThread::start`]): a commit that builds a tree of 256 KiB or more
//!   (`START_EARLY_FROM`), while few other transactions are open, has the thread
//!   write the start of its pack (temporary file, header, the tree's entry, checksum and CRC-32
//!   as it goes) as soon as the tree is built, while the commit computes the tree's id (SHA-1 with
//!   collision detection, the slowest hash here) and builds the trees above it. The commit then
//!   only appends its small objects. That needs the pack's object count before the commit is
//!   finished: the commit predicts it, and a pack whose count or first tree turns out different
//!   is written as usual (the started one is deleted).
//!
//! The thread is kept rather than started per pack: starting a thread took 0.1–0.3 ms inside a
//! commit, about what hashing a 672 KB tree beside writing it saves.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use gix::ObjectId;

use super::writer::{PackWriter, StoredEntry, emit_stored_entry};
use crate::odb::object::SharedBytes;

/// What the thread is asked to do, and where to send the result.
enum Job {
    Checksum {
        header: [u8; 12],
        trees: Vec<SharedBytes>,
        reply: Reply<sha1::Sha1>,
    },
    Start {
        count: usize,
        tree: SharedBytes,
        reply: Reply<(PackWriter, StoredEntry)>,
    },
}

struct Reply<T> {
    sender: mpsc::SyncSender<io::Result<T>>,
    /// Set when the result is no longer wanted (a started pack whose commit turned out
    /// different): the thread then skips the job rather than delay the next one.
    abandoned: Arc<AtomicBool>,
}

impl<T> Reply<T> {
    fn new() -> (Reply<T>, Pending<T>) {
        let (sender, result) = mpsc::sync_channel(1);
        let abandoned = Arc::new(AtomicBool::new(false));
        let reply = Reply {
            sender,
            abandoned: Arc::clone(&abandoned),
        };
        let pending = Pending {
            result: Mutex::new(result),
            abandoned,
        };
        (reply, pending)
    }

    /// Computes and sends the result, unless it is no longer wanted.
    fn send(self, compute: impl FnOnce() -> io::Result<T>) {
        if self.abandoned.load(Ordering::Relaxed) {
            return;
        }
        // The committing thread may have given up waiting; nothing to do then.
        let _ = self.sender.send(compute());
    }
}

/// The pack thread of one store, started by the first pack that needs it; it ends when the store
/// is dropped.
pub(crate) struct PackThread {
    /// Where packs are written.
    dir: PathBuf,
    /// `None` inside if the thread could not be started.
    jobs: OnceLock<Option<mpsc::Sender<Job>>>,
}

impl PackThread {
    /// The pack thread for packs written in `dir` (started when first needed).
    pub(crate) fn new(dir: PathBuf) -> PackThread {
        PackThread {
            dir,
            jobs: OnceLock::new(),
        }
    }

    fn send(&self, job: Job) -> bool {
        let jobs = self.jobs.get_or_init(|| start(self.dir.clone()));
        jobs.as_ref().is_some_and(|jobs| jobs.send(job).is_ok())
    }

    /// Hands the checksum of `header` followed by the stored entries of `trees` to the thread;
    /// `None` if there is no thread (the caller computes it).
    pub(super) fn checksum(
        &self,
        header: [u8; 12],
        trees: Vec<SharedBytes>,
    ) -> Option<PendingChecksum> {
        let (reply, pending) = Reply::new();
        let job = Job::Checksum {
            header,
            trees,
            reply,
        };
        self.send(job)
            .then_some(PendingChecksum { header, pending })
    }

    /// Has the thread start a pack of `count` objects whose first entry is `tree`, before the
    /// pack's other objects are made; `None` if there is no thread.
    pub(crate) fn start(&self, count: usize, tree: &SharedBytes) -> Option<StartedPack> {
        let (reply, pending) = Reply::new();
        let job = Job::Start {
            count,
            tree: SharedBytes::clone(tree),
            reply,
        };
        self.send(job).then_some(StartedPack {
            count,
            tree: None,
            pending,
        })
    }
}

/// A result the thread is computing. Dropping it unwaited tells the thread to skip the job.
struct Pending<T> {
    /// In a mutex only to be `Sync`, as a transaction holding a started pack must be.
    result: Mutex<mpsc::Receiver<io::Result<T>>>,
    abandoned: Arc<AtomicBool>,
}

impl<T> Pending<T> {
    /// The result; `None` if the thread is gone.
    fn wait(self) -> Option<io::Result<T>> {
        let received = self
            .result
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv();
        received.ok()
    }
}

impl<T> Drop for Pending<T> {
    fn drop(&mut self) {
        self.abandoned.store(true, Ordering::Relaxed);
    }
}

/// A checksum being computed on the thread.
pub(super) struct PendingChecksum {
    header: [u8; 12],
    pending: Pending<sha1::Sha1>,
}

impl PendingChecksum {
    /// The pack header the checksum starts with.
    pub(super) fn header(&self) -> [u8; 12] {
        self.header
    }

    /// Waits for the SHA-1 state after the header and the trees' entries; computes it from
    /// `trees` (the same as submitted) if the thread is gone.
    pub(super) fn wait<'a>(self, trees: impl Iterator<Item = &'a [u8]>) -> io::Result<sha1::Sha1> {
        let header = self.header;
        self.pending.wait().unwrap_or_else(|| {
            tracing::warn!("the pack thread is gone; computing the checksum here");
            checksum(header, trees)
        })
    }
}

/// A pack whose start (header and first entry, a big tree) the thread is writing, while its
/// commit is still being made (see the module docs).
pub(crate) struct StartedPack {
    count: usize,
    /// The id of the tree, once computed (by the commit, while the thread writes).
    tree: Option<ObjectId>,
    pending: Pending<(PackWriter, StoredEntry)>,
}

impl StartedPack {
    /// The object count the pack was started for.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// Records the id of the tree the pack starts with.
    pub(crate) fn set_tree_id(&mut self, id: ObjectId) {
        self.tree = Some(id);
    }

    /// The pack's writer, after its first entry (named), if the pack was started for `count`
    /// objects starting with tree `first`; `None` if it was not (the started file is deleted), or
    /// if the thread could not write it (logged).
    pub(super) fn into_writer(self, count: usize, first: ObjectId) -> Option<PackWriter> {
        if self.count != count || self.tree != Some(first) {
            return None;
        }
        match self.pending.wait() {
            Some(Ok((mut writer, entry))) => {
                writer.name_entry(first, entry);
                Some(writer)
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "the pack thread could not start a pack; writing it here");
                None
            }
            None => {
                tracing::warn!("the pack thread is gone; writing the pack here");
                None
            }
        }
    }
}

fn start(dir: PathBuf) -> Option<mpsc::Sender<Job>> {
    let (jobs, received) = mpsc::channel::<Job>();
    let started = std::thread::Builder::new()
        .name("pack-writer".to_owned())
        .spawn(move || {
            for job in received {
                match job {
                    Job::Checksum {
                        header,
                        trees,
                        reply,
                    } => reply.send(|| checksum(header, trees.iter().map(|tree| tree.bytes()))),
                    Job::Start { count, tree, reply } => reply.send(|| {
                        let mut writer = PackWriter::new(&dir, count)?;
                        let entry =
                            writer.add_stored_unnamed(gix::objs::Kind::Tree, tree.bytes())?;
                        Ok((writer, entry))
                    }),
                }
            }
        });
    match started {
        Ok(_) => Some(jobs),
        Err(error) => {
            tracing::debug!(%error, "no pack thread; commits write their packs alone");
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
        emit_stored_entry(gix::objs::Kind::Tree, data, |bytes| {
            sha1::Digest::update(&mut hasher, bytes);
            Ok(())
        })?;
    }
    Ok(hasher)
}
