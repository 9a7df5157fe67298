//! Merging packs into one: every object once, whole objects copied as they are stored, big trees
//! stored as deltas of other versions in the merged pack (see the [parent module](super)). Knows
//! the pack and index formats and nothing of gix handles: objects it cannot copy come from `find`.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Instant;

use gix::ObjectId;
use gix::objs::Kind;

use super::delta::{Bases, TreeVersion};
use super::writer::{
    IndexEntry, OFS_DELTA, PackInfo, PackWriter, REF_DELTA, STORE_UNCOMPRESSED_FROM, TREE, invalid,
};

/// Merges `packs` into one new pack in `pack_dir` (each object once) and returns it; the old packs
/// are left in place. Big trees become deltas of other versions in the new pack where that pays
/// (see the [`pack`](super) module docs); other whole objects are copied as they are stored, and
/// other deltas are resolved through `find` and written whole.
pub(crate) fn merge(
    pack_dir: &Path,
    packs: &[PackInfo],
    mut find: impl FnMut(&ObjectId) -> io::Result<(Kind, Vec<u8>)>,
) -> io::Result<PackInfo> {
    let started = Instant::now();
    let mut indices = Vec::with_capacity(packs.len());
    let mut seen = HashSet::new();
    for pack in packs {
        let index = Index::read(&pack.index)?;
        // An entry ends where the next one in the file starts (whether or not that one is copied).
        let mut all_offsets: Vec<u64> = index.entries.iter().map(|entry| entry.offset).collect();
        all_offsets.sort_unstable();
        let entries: Vec<_> = index
            .entries
            .into_iter()
            .filter(|entry| seen.insert(entry.id))
            .collect();
        indices.push((pack, entries, all_offsets));
    }
    let mut writer = PackWriter::new(pack_dir, seen.len())?;
    let mut big_trees = BigTrees::default();
    let mut buffer = Vec::new();
    for (pack, mut entries, all_offsets) in indices {
        let path = pack.data_path();
        let file = File::open(&path)?;
        let end = file.metadata()?.len().saturating_sub(20);
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        // Read in file order.
        entries.sort_unstable_by_key(|entry| entry.offset);
        for entry in entries {
            let next = match all_offsets.binary_search(&entry.offset) {
                Ok(at) => all_offsets.get(at + 1).copied().unwrap_or(end),
                Err(_) => end,
            };
            let size = next.checked_sub(entry.offset).ok_or_else(|| {
                invalid(format!(
                    "pack {} lists an entry past its end",
                    path.display()
                ))
            })?;
            reader.seek(SeekFrom::Start(entry.offset))?;
            buffer.resize(usize::try_from(size).map_err(io::Error::other)?, 0);
            reader.read_exact(&mut buffer)?;
            let header = EntryHeader::parse(&buffer).ok_or_else(|| {
                invalid(format!(
                    "malformed entry header of object {} in pack {}",
                    entry.id,
                    path.display()
                ))
            })?;
            match header.kind {
                OFS_DELTA | REF_DELTA => {
                    let (kind, data) = find(&entry.id)?;
                    if kind == Kind::Tree && data.len() >= STORE_UNCOMPRESSED_FROM {
                        big_trees.write(&mut writer, entry.id, TreeVersion::new(data), None)?;
                    } else {
                        writer.add_object(entry.id, kind, &data)?;
                    }
                }
                TREE if header.size >= STORE_UNCOMPRESSED_FROM as u64 => {
                    let data = big_trees
                        .inflate(&buffer[header.len..], header.size)
                        .map_err(|error| {
                            invalid(format!(
                                "cannot inflate tree {} in pack {}: {error}",
                                entry.id,
                                path.display()
                            ))
                        })?;
                    let raw = Some((buffer.as_slice(), entry.crc));
                    big_trees.write(&mut writer, entry.id, TreeVersion::new(data), raw)?;
                }
                _ => writer.add_raw(entry.id, &buffer, entry.crc)?,
            }
        }
    }
    let merged = writer.finish()?;
    tracing::debug!(
        objects = merged.count,
        big_trees_whole = big_trees.whole,
        big_trees_as_deltas = big_trees.deltas,
        elapsed = ?started.elapsed(),
        "wrote merged pack"
    );
    Ok(merged)
}

/// What [`merge`] keeps to store big trees as deltas: the bases, an inflater, and counts to log.
#[derive(Default)]
struct BigTrees {
    bases: Bases,
    /// Made on first use, then reused: its state is costly to set up.
    decompress: Option<gix::zlib::Decompress>,
    whole: usize,
    deltas: usize,
}

impl BigTrees {
    /// Writes big tree `id` as a delta of a base if one pays, else whole, making it a base. `raw`
    /// is its entry in a pack, with its CRC, if stored whole there (then copied, not recompressed).
    fn write(
        &mut self,
        writer: &mut PackWriter,
        id: ObjectId,
        tree: TreeVersion,
        raw: Option<(&[u8], u32)>,
    ) -> io::Result<()> {
        if let Some((base_offset, delta)) = self.bases.best_delta(&tree) {
            self.deltas += 1;
            return writer.add_ofs_delta(id, base_offset, &delta);
        }
        let offset = writer.next_offset();
        match raw {
            Some((entry, crc)) => writer.add_raw(id, entry, crc)?,
            None => writer.add_object(id, Kind::Tree, tree.data())?,
        }
        self.whole += 1;
        self.bases.add(offset, tree);
        Ok(())
    }

    /// The `size` bytes of the zlib stream at the start of `input`.
    fn inflate(&mut self, input: &[u8], size: u64) -> io::Result<Vec<u8>> {
        use gix::zlib::{Decompress, FlushDecompress, Status};
        let decompress = self.decompress.get_or_insert_with(Decompress::new);
        decompress.reset();
        // Deflate expands at most about 1032 times: a bigger size is a corrupt header, not a
        // reason to allocate it.
        if size > input.len() as u64 * 1032 + 64 {
            return Err(invalid(format!(
                "a size of {size} bytes for {} bytes of zlib stream",
                input.len()
            )));
        }
        let size = usize::try_from(size).map_err(io::Error::other)?;
        // One spare byte, so that a stream longer than its header says is caught.
        let mut out = vec![0; size + 1];
        let status = decompress
            .decompress(input, &mut out, FlushDecompress::Finish)
            .map_err(io::Error::other)?;
        let produced = decompress.total_out();
        if status != Status::StreamEnd || produced != size as u64 {
            return Err(invalid(format!(
                "{produced} bytes ({status:?}) where the header says {size}"
            )));
        }
        out.truncate(size);
        Ok(out)
    }
}

/// The header of a pack entry: its type code and size (of the object, or of the delta).
struct EntryHeader {
    kind: u8,
    size: u64,
    /// The header's length in bytes, up to the offset or id of a delta's base, or the zlib stream.
    len: usize,
}

impl EntryHeader {
    fn parse(entry: &[u8]) -> Option<EntryHeader> {
        let first = *entry.first()?;
        let mut size = u64::from(first & 0x0f);
        let mut shift = 4;
        let mut len = 1;
        let mut byte = first;
        while byte & 0x80 != 0 {
            byte = *entry.get(len)?;
            len += 1;
            if shift > 57 {
                return None;
            }
            size |= u64::from(byte & 0x7f) << shift;
            shift += 7;
        }
        Some(EntryHeader {
            kind: (first >> 4) & 0x07,
            size,
            len,
        })
    }
}

/// A version 2 pack index, read whole.
struct Index {
    entries: Vec<IndexEntry>,
}

impl Index {
    fn read(path: &Path) -> io::Result<Index> {
        let data = std::fs::read(path)?;
        let bad = || invalid(format!("malformed pack index {}", path.display()));
        if data.len() < 8 + 256 * 4 || data[..8] != *b"\xfftOc\0\0\0\x02" {
            return Err(bad());
        }
        let word = |at: usize| -> io::Result<u32> {
            let bytes = data.get(at..at + 4).ok_or_else(bad)?;
            Ok(u32::from_be_bytes(bytes.try_into().expect("four bytes")))
        };
        let count = word(8 + 255 * 4)? as usize;
        let names = 8 + 256 * 4;
        let crcs = names + count * 20;
        let offsets = crcs + count * 4;
        let large = offsets + count * 4;
        let mut entries = Vec::with_capacity(count);
        for n in 0..count {
            let name = data
                .get(names + n * 20..names + n * 20 + 20)
                .ok_or_else(bad)?;
            let small = word(offsets + n * 4)?;
            let offset = if small & 0x8000_0000 == 0 {
                u64::from(small)
            } else {
                let at = large + (small & 0x7fff_ffff) as usize * 8;
                let bytes = data.get(at..at + 8).ok_or_else(bad)?;
                u64::from_be_bytes(bytes.try_into().expect("eight bytes"))
            };
            entries.push(IndexEntry {
                id: ObjectId::from_bytes_or_panic(name),
                crc: word(crcs + n * 4)?,
                offset,
            });
        }
        Ok(Index { entries })
    }
}

#[cfg(test)]
mod tests;
