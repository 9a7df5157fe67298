//! A thread that computes a pack's checksum over its first entries while the committing thread
//! writes them and computes their CRC-32s (see `PackWriter::add_trees_checksummed_aside`).
//!
//! It is kept rather than started per pack: starting a thread took 0.1–0.3 ms inside a commit,
//! about what hashing a 672 KB tree beside writing it saves.

use std::io;
use std::sync::OnceLock;
use std::sync::mpsc;

use crate::tree::DecodedTree;

/// The header and the trees of a pack's first entries, and where to send what was computed.
struct Job {
    header: [u8; 12],
    trees: Vec<DecodedTree>,
    reply: mpsc::SyncSender<io::Result<sha1::Sha1>>,
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
        let job = Job {
            header,
            trees,
            reply,
        };
        jobs.send(job).ok().map(|()| Pending { header, result })
    }
}

/// A checksum being computed on the thread.
pub(super) struct Pending {
    header: [u8; 12],
    result: mpsc::Receiver<io::Result<sha1::Sha1>>,
}

impl Pending {
    /// The pack header the checksum starts with.
    pub(super) fn header(&self) -> [u8; 12] {
        self.header
    }

    /// Waits for the SHA-1 state after the header and the trees' entries; computes it from
    /// `trees` (the same as submitted) if the thread is gone.
    pub(super) fn wait<'a>(self, trees: impl Iterator<Item = &'a [u8]>) -> io::Result<sha1::Sha1> {
        match self.result.recv() {
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
