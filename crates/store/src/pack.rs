//! New objects waiting to be written at commit, and how they are written: each commit's new objects
//! go into the object database as one pack file (plus its index) instead of one loose file per
//! object. Creating files is the dominant cost of a commit (on some file systems close to a
//! millisecond each), so this keeps a commit to two file creations plus the reference update,
//! whatever its size.
//!
//! Packs are written by hand (pack format v2 with full, undeltified objects; index v2). To keep the
//! number of packs (and so the cost of object lookups) bounded, packs are consolidated in tiers by
//! object count, like a log-structured merge tree: when [`TIER_WIDTH`] packs of the same tier exist,
//! they are merged into one pack of a higher tier and deleted.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use gix::ObjectId;
use gix::objs::Kind;

use crate::Error;

/// How many packs of one size tier (object count in `[16^n, 16^(n+1))`) trigger their merge.
const TIER_WIDTH: usize = 16;

/// Objects made by a transaction but not yet in the object database.
#[derive(Default)]
pub(crate) struct PendingObjects {
    objects: Vec<(ObjectId, Kind, Vec<u8>)>,
    index: HashMap<ObjectId, usize>,
}

impl PendingObjects {
    /// Adds an object (its encoded data, without header) and returns its id.
    pub(crate) fn add(&mut self, kind: Kind, data: Vec<u8>) -> Result<ObjectId, Error> {
        let id = gix::objs::compute_hash(gix::hash::Kind::Sha1, kind, &data)
            .map_err(Error::git("hash object"))?;
        if !self.index.contains_key(&id) {
            self.index.insert(id, self.objects.len());
            self.objects.push((id, kind, data));
        }
        Ok(id)
    }

    /// The data of a pending object.
    pub(crate) fn get(&self, id: &ObjectId) -> Option<&[u8]> {
        self.index
            .get(id)
            .map(|&index| self.objects[index].2.as_slice())
    }

    /// Writes every pending object to the object database (as one pack) and forgets them.
    pub(crate) fn flush(&mut self, repo: &gix::Repository) -> Result<(), Error> {
        let objects = std::mem::take(&mut self.objects);
        self.index.clear();
        if objects.is_empty() {
            return Ok(());
        }
        let pack_dir = pack_dir(repo);
        write_pack(&pack_dir, &objects).map_err(|source| Error::Io {
            path: pack_dir,
            source,
        })
    }
}

fn pack_dir(repo: &gix::Repository) -> PathBuf {
    repo.git_dir().join("objects").join("pack")
}

/// Merges packs while some size tier holds [`TIER_WIDTH`] of them. Only one caller at a time may
/// run this (packs it merges are deleted).
pub(crate) fn consolidate(repo: &gix::Repository) -> Result<(), Error> {
    let pack_dir = pack_dir(repo);
    let io_error = |source| Error::Io {
        path: pack_dir.clone(),
        source,
    };
    loop {
        let packs = list_packs(&pack_dir).map_err(io_error)?;
        let mut tiers: HashMap<u32, Vec<PackInfo>> = HashMap::new();
        for pack in packs {
            tiers.entry(tier(pack.ids.len())).or_default().push(pack);
        }
        let Some(group) = tiers.into_values().find(|group| group.len() >= TIER_WIDTH) else {
            return Ok(());
        };
        let mut merged = PendingObjects::default();
        let mut buffer = Vec::new();
        for pack in &group {
            for id in &pack.ids {
                if merged.index.contains_key(id) {
                    continue;
                }
                let data = gix::objs::Find::try_find(&repo.objects, id, &mut buffer)
                    .map_err(Error::git("read object to repack"))?
                    .ok_or_else(|| {
                        io_error(std::io::Error::other(format!(
                            "object {id} listed in {} is missing",
                            pack.index.display()
                        )))
                    })?;
                let kind = data.kind;
                merged.index.insert(*id, merged.objects.len());
                merged.objects.push((*id, kind, data.data.to_vec()));
            }
        }
        write_pack(&pack_dir, &merged.objects).map_err(io_error)?;
        for pack in &group {
            // The merged pack is complete, so the old ones can go (index first, so nobody finds a
            // pack without its data).
            std::fs::remove_file(&pack.index).map_err(io_error)?;
            std::fs::remove_file(pack.index.with_extension("pack")).map_err(io_error)?;
        }
        tracing::debug!(
            packs = group.len(),
            objects = merged.objects.len(),
            "merged packs"
        );
    }
}

fn tier(count: usize) -> u32 {
    count.max(1).ilog(16)
}

struct PackInfo {
    index: PathBuf,
    ids: Vec<ObjectId>,
}

/// The packs in `pack_dir` (with a version 2 index) and the ids they hold.
fn list_packs(pack_dir: &Path) -> std::io::Result<Vec<PackInfo>> {
    let mut packs = Vec::new();
    let entries = match std::fs::read_dir(pack_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(packs),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|ext| ext != "idx") {
            continue;
        }
        let data = std::fs::read(&path)?;
        if data.len() < 8 + 256 * 4 || data[..8] != *b"\xfftOc\0\0\0\x02" {
            continue;
        }
        let count_bytes: [u8; 4] = data[8 + 255 * 4..8 + 256 * 4]
            .try_into()
            .expect("four bytes");
        let count = u32::from_be_bytes(count_bytes) as usize;
        let names_start = 8 + 256 * 4;
        let Some(names) = data.get(names_start..names_start + count * 20) else {
            continue;
        };
        let ids = names
            .chunks(20)
            .map(ObjectId::from_bytes_or_panic)
            .collect();
        packs.push(PackInfo { index: path, ids });
    }
    Ok(packs)
}

/// A growable buffer shared between the pack being assembled and the compressor writing into it.
#[derive(Clone, Default)]
struct SharedBuffer(Rc<RefCell<Vec<u8>>>);

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn type_code(kind: Kind) -> u8 {
    match kind {
        Kind::Commit => 1,
        Kind::Tree => 2,
        Kind::Blob => 3,
        Kind::Tag => 4,
    }
}

fn sha1(data: &[u8]) -> std::io::Result<ObjectId> {
    let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
    hasher.update(data);
    hasher.try_finalize().map_err(std::io::Error::other)
}

/// Writes `objects` as `pack-<checksum>.pack` and `.idx` in `pack_dir` (the index last, so the pack is
/// complete before anyone can find it).
fn write_pack(pack_dir: &Path, objects: &[(ObjectId, Kind, Vec<u8>)]) -> std::io::Result<()> {
    let count = u32::try_from(objects.len()).map_err(std::io::Error::other)?;
    let buffer = SharedBuffer::default();
    {
        let mut pack = buffer.0.borrow_mut();
        pack.extend_from_slice(b"PACK");
        pack.extend_from_slice(&2u32.to_be_bytes());
        pack.extend_from_slice(&count.to_be_bytes());
    }
    let mut compressor =
        gix::zlib::stream::deflate::Write::new(buffer.clone(), gix::zlib::Compression::DEFAULT);
    let mut entries = Vec::with_capacity(objects.len());
    for (id, kind, data) in objects {
        let offset = buffer.0.borrow().len();
        {
            let mut pack = buffer.0.borrow_mut();
            let mut size = data.len() as u64;
            let mut byte = (type_code(*kind) << 4) | (size & 0x0f) as u8;
            size >>= 4;
            while size != 0 {
                pack.push(byte | 0x80);
                byte = (size & 0x7f) as u8;
                size >>= 7;
            }
            pack.push(byte);
        }
        compressor.reset();
        compressor.write_all(data)?;
        compressor.flush()?;
        let pack = buffer.0.borrow();
        let offset32 = u32::try_from(offset)
            .ok()
            .filter(|o| *o < 0x8000_0000)
            .ok_or_else(|| std::io::Error::other("pack too big for 32-bit offsets"))?;
        entries.push((*id, crc32(&pack[offset..]), offset32));
    }
    drop(compressor);
    let mut pack = buffer.0.take();
    let pack_checksum = sha1(&pack)?;
    pack.extend_from_slice(pack_checksum.as_bytes());

    entries.sort_by_key(|(id, _, _)| *id);
    let mut index = Vec::with_capacity(8 + 256 * 4 + entries.len() * 28 + 40);
    index.extend_from_slice(b"\xfftOc");
    index.extend_from_slice(&2u32.to_be_bytes());
    let mut fanout = [0u32; 256];
    for (id, _, _) in &entries {
        fanout[usize::from(id.as_bytes()[0])] += 1;
    }
    let mut cumulative = 0u32;
    for slot in fanout {
        cumulative += slot;
        index.extend_from_slice(&cumulative.to_be_bytes());
    }
    for (id, _, _) in &entries {
        index.extend_from_slice(id.as_bytes());
    }
    for (_, crc, _) in &entries {
        index.extend_from_slice(&crc.to_be_bytes());
    }
    for (_, _, offset) in &entries {
        index.extend_from_slice(&offset.to_be_bytes());
    }
    index.extend_from_slice(pack_checksum.as_bytes());
    let index_checksum = sha1(&index)?;
    index.extend_from_slice(index_checksum.as_bytes());

    std::fs::create_dir_all(pack_dir)?;
    let name = format!("pack-{}", pack_checksum.to_hex());
    persist(pack_dir, &pack, &pack_dir.join(format!("{name}.pack")))?;
    persist(pack_dir, &index, &pack_dir.join(format!("{name}.idx")))?;
    tracing::trace!(objects = objects.len(), %name, "wrote pack");
    Ok(())
}

/// Writes `data` to a temporary file in `dir` and renames it to `path`.
fn persist(dir: &Path, data: &[u8], path: &Path) -> std::io::Result<()> {
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(data)?;
    file.persist(path).map_err(|error| error.error)?;
    Ok(())
}

/// CRC-32 (IEEE), as used in pack indices.
fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut n = 0;
        while n < 256 {
            let mut c = n as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[n] = c;
            n += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &byte in data {
        crc = TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc32_check_value() {
        assert_eq!(super::crc32(b"123456789"), 0xcbf4_3926);
    }
}
