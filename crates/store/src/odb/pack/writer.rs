//! The pack and index formats (version 2 both): a pack being written entry by entry to a
//! temporary file ([`PackWriter`]), whole objects compressed or stored, `OFS_DELTA` entries, the
//! index written and both renamed into place, the index last; and the encoded entries other code
//! gathers to write a pack of its own ([`EncodedEntry`], [`write_encoded`]). Knows bytes and files
//! only: nothing of tiers, the pack thread or what the objects mean.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::objs::Kind;

use crate::odb::object::SharedBytes;

/// Prefix of the temporary files a pack is written to before being renamed into place; the same as
/// git's, so `git gc` cleans them up if we crash, and so does [`remove_temporary_files`].
pub(super) const TEMP_PREFIX: &str = "tmp_pack_";

/// Pack entry type codes (Git's `OBJ_*`).
pub(super) const TREE: u8 = 2;
pub(super) const OFS_DELTA: u8 = 6;
pub(super) const REF_DELTA: u8 = 7;

/// A pack of the store and what tier merging needs to know about it.
#[derive(Clone, Debug)]
pub(crate) struct PackInfo {
    /// The `.idx` file; the `.pack` is beside it.
    pub(crate) index: PathBuf,
    /// How many objects it holds.
    pub(crate) count: usize,
}

impl PackInfo {
    pub(crate) fn data_path(&self) -> PathBuf {
        self.index.with_extension("pack")
    }
}

/// Whether an object is one of the big trees stored without compression
/// ([`STORE_UNCOMPRESSED_FROM`]), which lead their pack.
pub(super) fn is_big_tree(kind: Kind, data: &[u8]) -> bool {
    kind == Kind::Tree && data.len() >= STORE_UNCOMPRESSED_FROM
}

/// An object encoded as a pack entry (its header, then its zlib stream), with the entry's CRC-32,
/// ready for [`write_encoded`]. For writers of packs into other repositories (the Git plugin's
/// copies of commits), which gather entries before deciding what goes into one pack.
pub struct EncodedEntry {
    /// The object's id.
    pub id: ObjectId,
    crc: u32,
    bytes: Vec<u8>,
}

impl EncodedEntry {
    /// Encodes a whole object (its data without the loose-object header), compressed with
    /// `compress` (whose level the caller chose; its state is reused from entry to entry).
    pub fn new(
        compress: &mut gix::zlib::stream::deflate::Compress,
        id: ObjectId,
        kind: Kind,
        data: &[u8],
    ) -> io::Result<EncodedEntry> {
        let mut bytes = Vec::with_capacity(data.len() / 2 + 32);
        push_entry_header(&mut bytes, type_code(kind), data.len() as u64);
        if data.len() < STORE_UNCOMPRESSED_BELOW {
            push_stored(data, &mut bytes)?;
        } else {
            deflate(compress, data, data.len() / 2 + 64, &mut bytes)?;
        }
        Ok(EncodedEntry {
            id,
            crc: crc32(&bytes),
            bytes,
        })
    }

    /// The entry's size in the pack, in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the entry has no bytes (never: an entry has at least a header).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Writes `entries` as `pack-<checksum>.pack` and `.idx` in `pack_dir`, through temporary files
/// (`tmp_pack_*`, git's own prefix, so `git gc` removes a crash's leftovers), the index renamed into
/// place last so that no reader finds a partial pack; returns the index's path.
pub fn write_encoded(pack_dir: &Path, entries: &[EncodedEntry]) -> io::Result<PathBuf> {
    let mut writer = PackWriter::new(pack_dir, entries.len())?;
    for entry in entries {
        writer.add_raw(entry.id, &entry.bytes, entry.crc)?;
    }
    Ok(writer.finish()?.index)
}

pub(super) fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The object count of a version 2 pack index (`None` for other versions), from its fan-out table.
pub(super) fn read_count(index: &Path) -> io::Result<Option<usize>> {
    let mut header = [0u8; 8 + 256 * 4];
    File::open(index)?.read_exact(&mut header)?;
    if header[..8] != *b"\xfftOc\0\0\0\x02" {
        return Ok(None);
    }
    let last: [u8; 4] = header[8 + 255 * 4..].try_into().expect("four bytes");
    Ok(Some(u32::from_be_bytes(last) as usize))
}

pub(super) struct IndexEntry {
    pub(super) id: ObjectId,
    pub(super) crc: u32,
    pub(super) offset: u64,
}

/// Where an entry was written and its CRC-32, waiting for its object's id.
pub(super) struct StoredEntry {
    pub(super) offset: u64,
    pub(super) crc: u32,
}

/// Trees this big are stored without compression (zlib "stored" blocks). They are the flat trees
/// of the metadata branch (`ref/heads/`, `commit/`: tens of thousands of entries, hundreds of KB),
/// rewritten by every commit that touches one of their entries: deflating them was the largest
/// cost of a head change with 10,000 targets, and their entries (hex names, binary ids) compress
/// only to about two thirds anyway. Blobs (logs, which compress well) are compressed, unless tiny
/// (see [`STORE_UNCOMPRESSED_BELOW`]).
pub(super) const STORE_UNCOMPRESSED_FROM: usize = 64 * 1024;

/// Objects smaller than this are stored without compression too. Starting a deflate stream clears
/// the compressor's 128 KiB hash table, and a commit's objects are mostly tiny (status files of a
/// few bytes, trees of a few entries, the commit itself): in a head change's commits, that
/// clearing was 13% of the CPU (and deflating 6% more), while deflating a few hundred bytes saves
/// a few dozen.
const STORE_UNCOMPRESSED_BELOW: usize = 512;

/// Computes the SHA-1 of everything written through it.
///
/// Plain SHA-1 (with the CPU's SHA instructions), not gix's collision-detecting one: a pack's
/// checksum only guards against corruption, the objects' ids are still computed by gix, and
/// detection made hashing the hundreds of KB of flat trees each head change writes about a third
/// slower.
struct HashingWriter<W> {
    inner: W,
    hasher: sha1::Sha1,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Writes `buf` without hashing it, for bytes whose hash is computed elsewhere and then put in
    /// [`hasher`](Self::hasher).
    fn write_all_unhashed(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)?;
        self.written += buf.len() as u64;
        Ok(())
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        sha1::Digest::update(&mut self.hasher, &buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Where a pack's bytes go: its temporary file, through a buffer and the pack's checksum.
type PackOut = HashingWriter<BufWriter<tempfile::NamedTempFile>>;

/// A pack being written to a temporary file, entry by entry.
pub(super) struct PackWriter {
    dir: PathBuf,
    out: PackOut,
    entries: Vec<IndexEntry>,
    expected: usize,
    /// Reused for every entry: a compressor's state is costly to set up.
    compress: gix::zlib::stream::deflate::Compress,
    compressed: Vec<u8>,
}

impl PackWriter {
    pub(super) fn new(dir: &Path, count: usize) -> io::Result<PackWriter> {
        let temporary = || {
            tempfile::Builder::new()
                .prefix(TEMP_PREFIX)
                .tempfile_in(dir)
        };
        // The directory exists but for the first pack: `mkdir` of an existing directory still
        // takes its parent's lock, which every commit would contend for.
        let file = match temporary() {
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)?;
                temporary()?
            }
            other => other?,
        };
        let mut out = HashingWriter {
            inner: BufWriter::with_capacity(64 * 1024, file),
            hasher: sha1::Sha1::default(),
            written: 0,
        };
        out.write_all(&pack_header(count)?)?;
        Ok(PackWriter {
            dir: dir.to_owned(),
            out,
            entries: Vec::with_capacity(count),
            expected: count,
            compress: gix::zlib::stream::deflate::Compress::new(gix::zlib::Compression::BEST_SPEED),
            compressed: Vec::new(),
        })
    }

    /// Appends a whole object, compressed unless tiny or a big tree.
    pub(super) fn add_object(&mut self, id: ObjectId, kind: Kind, data: &[u8]) -> io::Result<()> {
        if data.len() < STORE_UNCOMPRESSED_BELOW || is_big_tree(kind, data) {
            return self.add_stored(id, kind, data);
        }
        let mut entry = std::mem::take(&mut self.compressed);
        entry.clear();
        push_entry_header(&mut entry, type_code(kind), data.len() as u64);
        deflate(&mut self.compress, data, data.len() / 2 + 64, &mut entry)?;
        let crc = crc32(&entry);
        let result = self.add_raw(id, &entry, crc);
        self.compressed = entry;
        result
    }

    /// Appends a whole object as a zlib stream of stored (uncompressed) blocks, written straight
    /// from `data`. Going through a compressor set to store meant zeroing an output buffer as big
    /// as the object and copying the object into it: a head change with 10,000 targets (two packs
    /// holding a flat tree of hundreds of KB) took 8.8–9.3 ms that way, 7.9 ms this way.
    pub(super) fn add_stored(&mut self, id: ObjectId, kind: Kind, data: &[u8]) -> io::Result<()> {
        let entry = self.add_stored_unnamed(kind, data)?;
        self.name_entry(id, entry);
        Ok(())
    }

    /// Appends a whole object like [`add_stored`](Self::add_stored), before its id is known:
    /// the entry goes into the index when [named](Self::name_entry).
    pub(super) fn add_stored_unnamed(
        &mut self,
        kind: Kind,
        data: &[u8],
    ) -> io::Result<StoredEntry> {
        self.write_stored_entry(kind, data, |out, bytes| out.write_all(bytes))
    }

    /// Writes a whole object's stored entry through `write` (hashing it or not) and computes its
    /// CRC-32.
    fn write_stored_entry(
        &mut self,
        kind: Kind,
        data: &[u8],
        mut write: impl FnMut(&mut PackOut, &[u8]) -> io::Result<()>,
    ) -> io::Result<StoredEntry> {
        let offset = self.out.written;
        let mut crc = crc32fast::Hasher::new();
        emit_stored_entry(kind, data, |bytes| {
            crc.update(bytes);
            write(&mut self.out, bytes)
        })?;
        Ok(StoredEntry {
            offset,
            crc: crc.finalize(),
        })
    }

    /// Lists an entry written by [`add_stored_unnamed`](Self::add_stored_unnamed) as object `id`.
    pub(super) fn name_entry(&mut self, id: ObjectId, entry: StoredEntry) {
        self.entries.push(IndexEntry {
            id,
            crc: entry.crc,
            offset: entry.offset,
        });
    }

    /// Appends `trees` as [stored](Self::add_stored) entries right after the pack's header, while
    /// the store's pack thread computes the pack's checksum over the header and them
    /// (`checksumming`). Hashing a flat tree of a head change with 10,000 targets (hundreds of KB)
    /// and writing it into the page cache cost about the same, so doing both at once saves about
    /// half. Only first entries: the checksum starts at the header.
    pub(super) fn add_trees_checksummed_aside(
        &mut self,
        trees: &[(ObjectId, &SharedBytes)],
        header: [u8; 12],
        checksum: impl FnOnce() -> io::Result<sha1::Sha1>,
    ) -> io::Result<()> {
        if !self.entries.is_empty() || header != pack_header(self.expected)? {
            return Err(io::Error::other(
                "entries checksummed aside must come first in their pack",
            ));
        }
        let mut written = Vec::with_capacity(trees.len());
        for (_, tree) in trees {
            written.push(
                self.write_stored_entry(Kind::Tree, tree.bytes(), |out, bytes| {
                    out.write_all_unhashed(bytes)
                })?,
            );
        }
        self.out.hasher = checksum()?;
        for ((id, _), entry) in trees.iter().zip(written) {
            self.name_entry(*id, entry);
        }
        Ok(())
    }

    /// Appends object `id` as `delta` (Git's delta format) of the entry written at `base_offset`.
    pub(super) fn add_ofs_delta(
        &mut self,
        id: ObjectId,
        base_offset: u64,
        delta: &[u8],
    ) -> io::Result<()> {
        let distance = self
            .out
            .written
            .checked_sub(base_offset)
            .filter(|&distance| distance > 0)
            .ok_or_else(|| {
                io::Error::other(format!("delta base at {base_offset} not written yet"))
            })?;
        let mut entry = std::mem::take(&mut self.compressed);
        entry.clear();
        // The size is the delta's, not the object's.
        push_entry_header(&mut entry, OFS_DELTA, delta.len() as u64);
        push_base_distance(&mut entry, distance);
        deflate(&mut self.compress, delta, delta.len() / 2 + 64, &mut entry)?;
        let crc = crc32(&entry);
        let result = self.add_raw(id, &entry, crc);
        self.compressed = entry;
        result
    }

    /// Where the next entry will be written.
    pub(super) fn next_offset(&self) -> u64 {
        self.out.written
    }

    /// Appends an entry exactly as stored in another pack.
    pub(super) fn add_raw(&mut self, id: ObjectId, entry: &[u8], crc: u32) -> io::Result<()> {
        let offset = self.out.written;
        self.out.write_all(entry)?;
        self.entries.push(IndexEntry { id, crc, offset });
        Ok(())
    }

    /// Writes the trailer and the index and renames both into place (the index last, so the pack is
    /// complete before anyone can find it).
    pub(super) fn finish(self) -> io::Result<PackInfo> {
        let PackWriter {
            dir,
            out,
            mut entries,
            expected,
            ..
        } = self;
        if entries.len() != expected {
            return Err(io::Error::other(format!(
                "pack announced {expected} objects but holds {}",
                entries.len()
            )));
        }
        let checksum = ObjectId::from_bytes_or_panic(&sha1::Digest::finalize(out.hasher));
        let mut file = out.inner.into_inner().map_err(|error| error.into_error())?;
        file.write_all(checksum.as_bytes())?;

        entries.sort_by_key(|entry| entry.id);
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
        for entry in &entries {
            index.extend_from_slice(entry.id.as_bytes());
        }
        for entry in &entries {
            index.extend_from_slice(&entry.crc.to_be_bytes());
        }
        let mut large = Vec::new();
        for entry in &entries {
            let small = match u32::try_from(entry.offset) {
                Ok(offset) if offset < 0x8000_0000 => offset,
                _ => {
                    let at = u32::try_from(large.len()).map_err(io::Error::other)?;
                    large.push(entry.offset);
                    0x8000_0000 | at
                }
            };
            index.extend_from_slice(&small.to_be_bytes());
        }
        for offset in large {
            index.extend_from_slice(&offset.to_be_bytes());
        }
        index.extend_from_slice(checksum.as_bytes());
        let index_checksum: [u8; 20] = <sha1::Sha1 as sha1::Digest>::digest(&index).into();
        index.extend_from_slice(&index_checksum);

        let name = format!("pack-{}", checksum.to_hex());
        let pack_path = dir.join(format!("{name}.pack"));
        let index_path = dir.join(format!("{name}.idx"));
        file.persist(&pack_path).map_err(|error| error.error)?;
        let mut index_file = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&dir)?;
        index_file.write_all(&index)?;
        index_file
            .persist(&index_path)
            .map_err(|error| error.error)?;
        tracing::trace!(objects = entries.len(), %name, "wrote pack");
        Ok(PackInfo {
            index: index_path,
            count: entries.len(),
        })
    }
}

/// The two bytes that open a zlib stream: deflate with a 32 KiB window (`0x78`), no preset
/// dictionary, the "fastest" level hint, and the check bits that make the pair a multiple of 31.
const ZLIB_HEADER: [u8; 2] = [0x78, 0x01];

/// The most a deflate stored block holds.
const STORED_BLOCK: usize = u16::MAX as usize;

/// Passes the zlib stream of `data` as stored blocks (RFC 1951, 3.2.4) to `emit`, piece by piece
/// and without copying `data`: the zlib header, each block's 5-byte header and its bytes (the last
/// block with the final bit set; empty data is one empty final block), then the Adler-32.
fn emit_stored(data: &[u8], mut emit: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
    emit(&ZLIB_HEADER)?;
    let blocks = data.len().div_ceil(STORED_BLOCK).max(1);
    for n in 0..blocks {
        let block =
            &data[(n * STORED_BLOCK).min(data.len())..((n + 1) * STORED_BLOCK).min(data.len())];
        let len = u16::try_from(block.len()).map_err(io::Error::other)?;
        let mut header = [0u8; 5];
        header[0] = u8::from(n + 1 == blocks);
        header[1..3].copy_from_slice(&len.to_le_bytes());
        header[3..5].copy_from_slice(&(!len).to_le_bytes());
        emit(&header)?;
        emit(block)?;
    }
    emit(&zlib_rs::adler32::adler32(1, data).to_be_bytes())
}

/// Appends the zlib stream of `data` to `out`, growing `out` by `first_guess` bytes at first (zeroing
/// them costs, so a good guess matters), then by half the input left plus a little.
fn deflate(
    compress: &mut gix::zlib::stream::deflate::Compress,
    data: &[u8],
    first_guess: usize,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    use gix::zlib::stream::deflate::FlushCompress;
    compress.reset();
    let mut input = data;
    let mut grow = first_guess;
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

/// Passes a whole object's pack entry, stored without compression, to `emit`: its header, then
/// [`emit_stored`].
pub(super) fn emit_stored_entry(
    kind: Kind,
    data: &[u8],
    mut emit: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut header = Vec::with_capacity(10);
    push_entry_header(&mut header, type_code(kind), data.len() as u64);
    emit(&header)?;
    emit_stored(data, emit)
}

/// A pack's header: signature, version 2, object count.
pub(super) fn pack_header(count: usize) -> io::Result<[u8; 12]> {
    let mut header = [0u8; 12];
    header[..4].copy_from_slice(b"PACK");
    header[4..8].copy_from_slice(&2u32.to_be_bytes());
    header[8..].copy_from_slice(
        &u32::try_from(count)
            .map_err(io::Error::other)?
            .to_be_bytes(),
    );
    Ok(header)
}

/// Appends `data` as a zlib stream of stored blocks (see [`STORE_UNCOMPRESSED_BELOW`]).
fn push_stored(data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    out.reserve(data.len() + 16);
    emit_stored(data, |bytes| {
        out.extend_from_slice(bytes);
        Ok(())
    })
}

/// An entry's header: the type code and the size, four bits in the first byte then seven in each
/// next one, the high bit meaning "more bytes follow".
fn push_entry_header(entry: &mut Vec<u8>, type_code: u8, mut size: u64) {
    let mut byte = (type_code << 4) | (size & 0x0f) as u8;
    size >>= 4;
    while size != 0 {
        entry.push(byte | 0x80);
        byte = (size & 0x7f) as u8;
        size >>= 7;
    }
    entry.push(byte);
}

/// How far back an `OFS_DELTA`'s base is, as Git encodes it: big-endian base-128, the high bit
/// meaning "more bytes follow", and one added to each but the last group so that no two encodings
/// mean the same distance.
fn push_base_distance(entry: &mut Vec<u8>, distance: u64) {
    let mut bytes = [0u8; 10];
    let mut at = bytes.len() - 1;
    bytes[at] = (distance & 0x7f) as u8;
    let mut rest = distance >> 7;
    while rest != 0 {
        rest -= 1;
        at -= 1;
        bytes[at] = 0x80 | (rest & 0x7f) as u8;
        rest >>= 7;
    }
    entry.extend_from_slice(&bytes[at..]);
}

fn type_code(kind: Kind) -> u8 {
    match kind {
        Kind::Commit => 1,
        Kind::Tree => 2,
        Kind::Blob => 3,
        Kind::Tag => 4,
    }
}

/// CRC-32 (IEEE), as used in pack indices.
fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

#[cfg(test)]
mod tests {
    use super::{STORED_BLOCK, ZLIB_HEADER, push_stored};

    /// The zlib stream of stored blocks for `data` (`add_stored` writes the same, from
    /// `emit_stored`).
    fn stored_stream(data: &[u8]) -> Vec<u8> {
        let mut stream = Vec::new();
        push_stored(data, &mut stream).expect("writing to a Vec cannot fail");
        stream
    }

    #[test]
    fn stored_streams_inflate_to_their_data_at_every_block_boundary() {
        for len in [
            0,
            1,
            STORED_BLOCK - 1,
            STORED_BLOCK,
            STORED_BLOCK + 1,
            3 * STORED_BLOCK + 7,
        ] {
            let data: Vec<u8> = (0..len).map(|n| (n * 7 % 251) as u8).collect();
            let stream = stored_stream(&data);
            let mut out = vec![0u8; len + 1];
            let (inflated, code) = zlib_rs::decompress_slice(&mut out, &stream, Default::default());
            assert_eq!(code, zlib_rs::ReturnCode::Ok, "{len} bytes");
            assert_eq!(inflated, &data[..], "{len} bytes");
            // A corrupted byte of data is caught by the checksum.
            if len > 0 {
                let mut corrupt = stream.clone();
                corrupt[ZLIB_HEADER.len() + 5] ^= 1;
                let (_, code) = zlib_rs::decompress_slice(&mut out, &corrupt, Default::default());
                assert_ne!(code, zlib_rs::ReturnCode::Ok, "{len} bytes, corrupted");
            }
        }
    }
}
