//! Writing copied objects as one pack plus its index instead of one loose file each.
//!
//! Creating a file is most of what copying a commit costs on our file systems (200–500 µs of CPU
//! per new inode on ext4 without a journal, while builds delete their clones): a loose object is
//! a file, a pack of any number of objects is two. Objects are stored whole (no deltas),
//! compressed at zlib's fastest level like loose objects. The pack format itself is the store's
//! ([`datakit_ci_store::pack_format`]); this module gathers entries until a batch is complete.
//! Knows nothing of origins or refs.

use std::io;
use std::path::{Path, PathBuf};

use datakit_ci_store::pack_format::{EncodedEntry, write_encoded};
use gix::ObjectId;
use gix::objs::Kind;

/// Objects gathered for one pack, each already compressed as a pack entry.
pub(crate) struct PackBuilder {
    entries: Vec<EncodedEntry>,
    /// The bytes of all entries.
    size: usize,
    /// Reused for every entry: a compressor's state is costly to set up.
    compress: gix::zlib::stream::deflate::Compress,
}

impl PackBuilder {
    pub(crate) fn new() -> PackBuilder {
        PackBuilder {
            entries: Vec::new(),
            size: 0,
            compress: gix::zlib::stream::deflate::Compress::new(gix::zlib::Compression::BEST_SPEED),
        }
    }

    /// Adds a whole object (its encoded data, without the loose-object header).
    pub(crate) fn add(&mut self, id: ObjectId, kind: Kind, data: &[u8]) -> io::Result<()> {
        let entry = EncodedEntry::new(&mut self.compress, id, kind, data)?;
        self.size += entry.len();
        self.entries.push(entry);
        Ok(())
    }

    /// How many objects were added since the last [`write`](Self::write).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The compressed bytes held, for callers that bound their memory.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Forgets the objects added after the first `len` (e.g. those of a copy that failed).
    pub(crate) fn truncate(&mut self, len: usize) {
        for entry in self.entries.drain(len.min(self.entries.len())..) {
            self.size -= entry.len();
        }
    }

    /// Writes the objects added so far as one pack and its index in `pack_dir` (see
    /// [`write_encoded`]), and empties the builder. Returns the index's path; `None` when there
    /// was nothing to write.
    pub(crate) fn write(&mut self, pack_dir: &Path) -> io::Result<Option<PathBuf>> {
        if self.entries.is_empty() {
            return Ok(None);
        }
        // Emptied whether or not the write succeeds: the caller fails the copies it held.
        let entries = std::mem::take(&mut self.entries);
        self.size = 0;
        let index = write_encoded(pack_dir, &entries)?;
        tracing::trace!(index = %index.display(), "wrote pack");
        Ok(Some(index))
    }
}
