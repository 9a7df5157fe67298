//! Writing copied objects as one pack plus its index instead of one loose file each.
//!
//! Creating a file is most of what copying a commit costs on our file systems (200–500 µs of CPU
//! per new inode on ext4 without a journal, while builds delete their clones): a loose object is
//! a file, a pack of any number of objects is two. Objects are stored whole (no deltas),
//! compressed at zlib's fastest level like loose objects. Knows nothing of origins or refs.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::objs::Kind;

/// The prefix of a pack's files while they are written: git's own, so that `git gc` removes the
/// leftovers of a crash (`tmp_pack_*` files older than its grace period).
const TEMP_PREFIX: &str = "tmp_pack_";

/// Objects gathered for one pack, each already compressed as a pack entry.
pub(crate) struct PackBuilder {
    entries: Vec<Entry>,
    /// The bytes of all entries.
    size: usize,
    /// Reused for every entry: a compressor's state is costly to set up.
    compress: gix::zlib::stream::deflate::Compress,
}

struct Entry {
    id: ObjectId,
    crc: u32,
    /// The entry as it goes into the pack: header, then the zlib stream of the object.
    bytes: Vec<u8>,
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
        let mut bytes = Vec::with_capacity(data.len() / 2 + 32);
        push_entry_header(&mut bytes, type_code(kind), data.len() as u64);
        deflate(&mut self.compress, data, &mut bytes)?;
        self.size += bytes.len();
        self.entries.push(Entry {
            id,
            crc: crc32fast::hash(&bytes),
            bytes,
        });
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
            self.size -= entry.bytes.len();
        }
    }

    /// Writes the objects added so far as `pack-<checksum>.pack` and `.idx` in `pack_dir`, the
    /// index last (a pack is found through its index, so readers never see a partial pack), and
    /// empties the builder. Returns the index's path; `None` when there was nothing to write.
    pub(crate) fn write(&mut self, pack_dir: &Path) -> io::Result<Option<PathBuf>> {
        if self.entries.is_empty() {
            return Ok(None);
        }
        let mut entries = std::mem::take(&mut self.entries);
        self.size = 0;
        let count = u32::try_from(entries.len()).map_err(io::Error::other)?;
        let mut pack =
            Vec::with_capacity(12 + entries.iter().map(|e| e.bytes.len()).sum::<usize>() + 20);
        pack.extend_from_slice(b"PACK");
        pack.extend_from_slice(&2u32.to_be_bytes());
        pack.extend_from_slice(&count.to_be_bytes());
        let mut offsets = Vec::with_capacity(entries.len());
        for entry in &entries {
            offsets.push(pack.len() as u64);
            pack.extend_from_slice(&entry.bytes);
        }
        let checksum = sha1(&pack)?;
        pack.extend_from_slice(checksum.as_bytes());

        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by_key(|&i| entries[i].id);
        let mut index = Vec::with_capacity(8 + 256 * 4 + entries.len() * 28 + 40);
        index.extend_from_slice(b"\xfftOc");
        index.extend_from_slice(&2u32.to_be_bytes());
        let mut fanout = [0u32; 256];
        for entry in &entries {
            fanout[usize::from(entry.id.as_bytes()[0])] += 1;
        }
        let mut cumulative = 0u32;
        for slot in fanout {
            cumulative += slot;
            index.extend_from_slice(&cumulative.to_be_bytes());
        }
        for &i in &order {
            index.extend_from_slice(entries[i].id.as_bytes());
        }
        for &i in &order {
            index.extend_from_slice(&entries[i].crc.to_be_bytes());
        }
        let mut large = Vec::new();
        for &i in &order {
            let small = match u32::try_from(offsets[i]) {
                Ok(offset) if offset < 0x8000_0000 => offset,
                _ => {
                    let at = u32::try_from(large.len()).map_err(io::Error::other)?;
                    large.push(offsets[i]);
                    0x8000_0000 | at
                }
            };
            index.extend_from_slice(&small.to_be_bytes());
        }
        for offset in large {
            index.extend_from_slice(&offset.to_be_bytes());
        }
        index.extend_from_slice(checksum.as_bytes());
        let index_checksum = sha1(&index)?;
        index.extend_from_slice(index_checksum.as_bytes());
        entries.clear();
        self.entries = entries;

        let name = format!("pack-{}", checksum.to_hex());
        persist(pack_dir, &pack, &pack_dir.join(format!("{name}.pack")))?;
        let index_path = pack_dir.join(format!("{name}.idx"));
        persist(pack_dir, &index, &index_path)?;
        tracing::trace!(objects = count, %name, "wrote pack");
        Ok(Some(index_path))
    }
}

/// Writes `bytes` to a temporary file in `dir`, then renames it to `path`.
fn persist(dir: &Path, bytes: &[u8], path: &Path) -> io::Result<()> {
    let mut file = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.persist(path).map_err(|error| error.error)?;
    Ok(())
}

fn sha1(bytes: &[u8]) -> io::Result<ObjectId> {
    let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
    hasher.update(bytes);
    hasher.try_finalize().map_err(io::Error::other)
}

fn type_code(kind: Kind) -> u8 {
    match kind {
        Kind::Commit => 1,
        Kind::Tree => 2,
        Kind::Blob => 3,
        Kind::Tag => 4,
    }
}

/// An entry's header: the type code and the size, four bits in the first byte then seven in each
/// next one, the high bit meaning "more bytes follow".
fn push_entry_header(entry: &mut Vec<u8>, type_code: u8, mut size: u64) {
    let mut byte = (type_code << 4) | (size & 0x0f) as u8;
    size >>= 4;
    while size > 0 {
        entry.push(byte | 0x80);
        byte = (size & 0x7f) as u8;
        size >>= 7;
    }
    entry.push(byte);
}

/// Appends the zlib stream of `data` to `out`.
fn deflate(
    compress: &mut gix::zlib::stream::deflate::Compress,
    data: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    use gix::zlib::stream::deflate::FlushCompress;
    compress.reset();
    let mut input = data;
    let mut grow = data.len() / 2 + 64;
    loop {
        let start = out.len();
        out.resize(start + grow, 0);
        let (before_in, before_out) = (compress.total_in(), compress.total_out());
        let status = compress
            .compress(input, &mut out[start..], FlushCompress::Finish)
            .map_err(io::Error::other)?;
        let consumed =
            usize::try_from(compress.total_in() - before_in).map_err(io::Error::other)?;
        let produced =
            usize::try_from(compress.total_out() - before_out).map_err(io::Error::other)?;
        out.truncate(start + produced);
        input = &input[consumed..];
        if status == gix::zlib::Status::StreamEnd {
            return Ok(());
        }
        grow = input.len() / 2 + 64;
    }
}
