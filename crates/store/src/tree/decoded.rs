//! The decoded form of a stored tree: its encoded bytes, shared, and an index of where each entry
//! lies in them, in Git's order. Knows nothing of repositories, caches or edits (only that the
//! object database takes a tree's bytes as [`ObjectBytes`]).
//!
//! A tree of 10,000 entries used to be decoded into 10,000 owned names (one allocation each),
//! sorted, and freed again, several times per head change. Here decoding is one pass that records
//! offsets, a lookup is a binary search over the offsets, and a new tree is built from an old one
//! by copying runs of unchanged entries as byte slices ([`TreeBuilder`]), which also yields the new
//! tree's index without decoding it.

use std::cmp::Ordering;
use std::sync::{Arc, Mutex};

use gix::ObjectId;
use gix::bstr::{BStr, ByteSlice};
use gix::objs::tree::{EntryMode, name_order};

use crate::odb::{ObjectBytes, SharedBytes};

/// Length of a SHA-1 object id in a tree entry.
const ID_LEN: usize = 20;

/// A stored tree, decoded: cheap to clone (the bytes and index are shared).
#[derive(Clone)]
pub(crate) struct DecodedTree(Arc<Inner>);

struct Inner {
    /// The tree object's data, as stored (without header). A `Vec` rather than a boxed slice so
    /// that a tree just built is not reallocated to drop spare capacity.
    data: Vec<u8>,
    /// The entries, in Git's order.
    slots: Vec<Slot>,
    /// Whether each slot starts where the previous one ends, so that a run of entries is one slice
    /// of `data`. True for every tree written by Git or this store; a tree stored out of order is
    /// indexed in order anyway and copied entry by entry.
    contiguous: bool,
    /// Where the buffers go back to when the tree is dropped, if they came from a pool.
    pool: Option<BufferPool>,
}

/// The database writes a tree it is given by its bytes, shared with the decoded form.
impl ObjectBytes for Inner {
    fn bytes(&self) -> &[u8] {
        &self.data
    }
}

impl From<DecodedTree> for SharedBytes {
    fn from(tree: DecodedTree) -> SharedBytes {
        tree.0
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.give(Buffers {
                data: std::mem::take(&mut self.data),
                slots: std::mem::take(&mut self.slots),
            });
        }
    }
}

/// Trees from this many bytes are built in buffers of a [`BufferPool`].
const POOLED_FROM: usize = 64 * 1024;

/// How many pairs of buffers a pool keeps: a few head changes' worth of flat trees (each writes
/// two or three, and the tree cache frees a dozen at once when a generation goes).
const POOL_CAPACITY: usize = 8;

/// The buffers of a tree.
struct Buffers {
    data: Vec<u8>,
    slots: Vec<Slot>,
}

/// Buffers of big trees that were dropped, kept for the next big trees to be built in.
///
/// Every head change with 10,000 targets builds flat trees of hundreds of KB. Built in fresh
/// memory, each took a page fault per 4 KiB (the allocator had returned the memory of the versions
/// before to the system): building the 672 KB `commit/` tree took 0.29–1.0 ms (medians of bench
/// runs), in reused buffers 0.13–0.15 ms. A pool keeps at most [`POOL_CAPACITY`] pairs, a few MB.
#[derive(Clone, Default)]
pub(crate) struct BufferPool(Arc<Mutex<Vec<Buffers>>>);

impl BufferPool {
    /// Empty buffers for a tree of about `bytes` bytes and `entries` entries: the smallest kept
    /// ones that fit, else new ones with an eighth to spare, so that they still fit the next
    /// versions of a directory that grows.
    fn take(&self, bytes: usize, entries: usize) -> Buffers {
        let found = {
            let mut free = self.lock();
            let fitting = free
                .iter()
                .enumerate()
                .filter(|(_, buffers)| {
                    buffers.data.capacity() >= bytes && buffers.slots.capacity() >= entries
                })
                .min_by_key(|(_, buffers)| buffers.data.capacity())
                .map(|(index, _)| index);
            fitting.map(|index| free.swap_remove(index))
        };
        match found {
            Some(mut buffers) => {
                buffers.data.clear();
                buffers.slots.clear();
                buffers
            }
            None => Buffers {
                data: Vec::with_capacity(bytes + bytes / 8),
                slots: Vec::with_capacity(entries + entries / 8),
            },
        }
    }

    /// Keeps the buffers of a dropped tree, unless the pool is full.
    fn give(&self, buffers: Buffers) {
        let mut free = self.lock();
        if free.len() < POOL_CAPACITY {
            free.push(buffers);
        }
    }

    /// How many pairs of buffers are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Buffers>> {
        // A vector of buffers is consistent whatever panicked while holding it.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Where one entry lies in the tree's data.
#[derive(Clone, Copy)]
struct Slot {
    start: u32,
    name_start: u32,
    name_end: u32,
    mode: EntryMode,
}

impl Slot {
    /// The end of the entry (after its id).
    fn end(&self) -> usize {
        self.name_end as usize + 1 + ID_LEN
    }

    fn shifted(self, delta: i64) -> Slot {
        let shift = |offset: u32| {
            u32::try_from(i64::from(offset) + delta)
                .expect("offsets fit: the tree size was checked")
        };
        Slot {
            start: shift(self.start),
            name_start: shift(self.name_start),
            name_end: shift(self.name_end),
            mode: self.mode,
        }
    }
}

/// One entry of a decoded tree.
#[derive(Clone, Copy)]
pub(crate) struct EntryRef<'a> {
    pub(crate) name: &'a BStr,
    pub(crate) mode: EntryMode,
    pub(crate) id: ObjectId,
}

/// Why a tree's data could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("malformed tree entry at byte {offset}: {reason}")]
pub(crate) struct MalformedTree {
    offset: usize,
    reason: &'static str,
}

impl DecodedTree {
    /// The empty tree.
    pub(crate) fn empty() -> DecodedTree {
        DecodedTree(Arc::new(Inner {
            data: Vec::new(),
            slots: Vec::new(),
            contiguous: true,
            pool: None,
        }))
    }

    /// Indexes the entries of a tree object's `data`.
    pub(crate) fn decode(data: Vec<u8>) -> Result<DecodedTree, MalformedTree> {
        if u32::try_from(data.len()).is_err() {
            return Err(MalformedTree {
                offset: 0,
                reason: "tree larger than 4 GiB",
            });
        }
        // 40 bytes is a short entry (a six-digit mode, a ten-byte name): rarely over-allocates.
        let mut slots = Vec::with_capacity(data.len() / 40);
        let mut position = 0;
        while position < data.len() {
            let malformed = |reason| MalformedTree {
                offset: position,
                reason,
            };
            let rest = &data[position..];
            let space = rest
                .iter()
                .take(8)
                .position(|&byte| byte == b' ')
                .ok_or_else(|| malformed("no mode"))?;
            let mode =
                EntryMode::from_bytes(&rest[..=space]).ok_or_else(|| malformed("bad mode"))?;
            let name_start = position + space + 1;
            let name_len = data[name_start..]
                .find_byte(0)
                .ok_or_else(|| malformed("unterminated name"))?;
            let name_end = name_start + name_len;
            let end = name_end + 1 + ID_LEN;
            if end > data.len() {
                return Err(malformed("truncated object id"));
            }
            let offset = |value: usize| u32::try_from(value).expect("the tree size was checked");
            slots.push(Slot {
                start: offset(position),
                name_start: offset(name_start),
                name_end: offset(name_end),
                mode,
            });
            position = end;
        }
        let in_order = slots
            .windows(2)
            .all(|pair| slot_order(&data, &pair[0], &data, &pair[1]) == Ordering::Less);
        if !in_order {
            // Lookups and merges need Git's order; the bytes stay as stored.
            tracing::debug!("tree entries stored out of order; indexing them sorted");
            slots.sort_by(|a, b| slot_order(&data, a, &data, b));
        }
        Ok(DecodedTree(Arc::new(Inner {
            data,
            slots,
            contiguous: in_order,
            pool: None,
        })))
    }

    /// The number of entries.
    pub(crate) fn len(&self) -> usize {
        self.0.slots.len()
    }

    /// The size of the tree's data in bytes.
    pub(crate) fn data_len(&self) -> usize {
        self.0.data.len()
    }

    /// The tree object's data, as stored.
    #[cfg(test)]
    pub(crate) fn data(&self) -> &[u8] {
        &self.0.data
    }

    /// The entry at `index` in Git's order.
    pub(crate) fn get(&self, index: usize) -> Option<EntryRef<'_>> {
        self.0.slots.get(index).map(|slot| self.entry(slot))
    }

    /// The entries in Git's order.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = EntryRef<'_>> + '_ {
        self.0.slots.iter().map(|slot| self.entry(slot))
    }

    /// Finds the entry called `name`, whether a tree or not.
    pub(crate) fn find(&self, name: &[u8]) -> Option<EntryRef<'_>> {
        self.position(name)
            .map(|index| self.entry(&self.0.slots[index]))
    }

    /// The index of the entry called `name`, whether a tree or not.
    pub(crate) fn position(&self, name: &[u8]) -> Option<usize> {
        // A name sorts differently as a tree and as a file, so look for both.
        [false, true].into_iter().find_map(|is_tree| {
            let index = self.insertion_point(name, is_tree);
            let slot = self.0.slots.get(index)?;
            (self.name(slot) == name && slot.mode.is_tree() == is_tree).then_some(index)
        })
    }

    /// The index of the first entry that sorts at or after `name` (a tree if `is_tree`).
    pub(crate) fn insertion_point(&self, name: &[u8], is_tree: bool) -> usize {
        self.0.slots.partition_point(|slot| {
            name_order(self.name(slot), slot.mode.is_tree(), name, is_tree) == Ordering::Less
        })
    }

    /// How many entries at the start and at the end this tree and `other` share, byte for byte,
    /// without overlapping, so that a diff of two versions of a big tree walks only the middle.
    pub(crate) fn common_ends(&self, other: &DecodedTree) -> (usize, usize) {
        let (a, b) = (&*self.0, &*other.0);
        if !a.contiguous || !b.contiguous {
            return (0, 0);
        }
        let limit = a.slots.len().min(b.slots.len());
        // Entries wholly inside equal leading bytes parse alike in both trees.
        let prefix = common_prefix_len(&a.data, &b.data);
        let head = a
            .slots
            .partition_point(|slot| slot.end() <= prefix)
            .min(limit);
        let suffix = common_suffix_len(&a.data, &b.data);
        let suffix_start = a.data.len() - suffix;
        let mut tail = (a.slots.len()
            - a.slots
                .partition_point(|slot| (slot.start as usize) < suffix_start))
        .min(limit - head);
        // Parsed from the start, equal trailing bytes are the same entries only if an entry of
        // `other` starts where they do.
        while tail > 0 {
            let a_from_end = a.data.len() - a.slots[a.slots.len() - tail].start as usize;
            let b_from_end = b.data.len() - b.slots[b.slots.len() - tail].start as usize;
            if a_from_end == b_from_end {
                break;
            }
            tail -= 1;
        }
        (head, tail)
    }

    fn name(&self, slot: &Slot) -> &[u8] {
        &self.0.data[slot.name_start as usize..slot.name_end as usize]
    }

    fn entry(&self, slot: &Slot) -> EntryRef<'_> {
        let id_start = slot.name_end as usize + 1;
        EntryRef {
            name: self.name(slot).as_bstr(),
            mode: slot.mode,
            id: ObjectId::from_bytes_or_panic(&self.0.data[id_start..id_start + ID_LEN]),
        }
    }
}

/// The length of the longest common prefix of `a` and `b`.
fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    // Whole chunks first: slice equality is a `memcmp`, much faster than a byte loop.
    const CHUNK: usize = 256;
    let len = a.len().min(b.len());
    let mut done = 0;
    while done + CHUNK <= len && a[done..done + CHUNK] == b[done..done + CHUNK] {
        done += CHUNK;
    }
    done + a[done..len]
        .iter()
        .zip(&b[done..len])
        .take_while(|(x, y)| x == y)
        .count()
}

/// The length of the longest common suffix of `a` and `b`.
fn common_suffix_len(a: &[u8], b: &[u8]) -> usize {
    const CHUNK: usize = 256;
    let len = a.len().min(b.len());
    let (a, b) = (&a[a.len() - len..], &b[b.len() - len..]);
    let mut done = 0;
    while done + CHUNK <= len
        && a[len - done - CHUNK..len - done] == b[len - done - CHUNK..len - done]
    {
        done += CHUNK;
    }
    done + a[..len - done]
        .iter()
        .rev()
        .zip(b[..len - done].iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

/// Git's order of two slots, possibly of different trees.
fn slot_order(a_data: &[u8], a: &Slot, b_data: &[u8], b: &Slot) -> Ordering {
    name_order(
        &a_data[a.name_start as usize..a.name_end as usize],
        a.mode.is_tree(),
        &b_data[b.name_start as usize..b.name_end as usize],
        b.mode.is_tree(),
    )
}

/// Builds a tree's data and index from runs of an existing tree's entries and new entries, given
/// in Git's order.
pub(crate) struct TreeBuilder {
    data: Vec<u8>,
    slots: Vec<Slot>,
    pool: Option<BufferPool>,
}

impl TreeBuilder {
    /// A builder expecting about `bytes` of data and `entries` entries.
    pub(crate) fn with_capacity(bytes: usize, entries: usize) -> TreeBuilder {
        TreeBuilder {
            data: Vec::with_capacity(bytes),
            slots: Vec::with_capacity(entries),
            pool: None,
        }
    }

    /// Like [`with_capacity`](Self::with_capacity), but a big tree is built in buffers of `pool`
    /// (and gives them back when dropped).
    pub(crate) fn with_capacity_in(
        pool: Option<&BufferPool>,
        bytes: usize,
        entries: usize,
    ) -> TreeBuilder {
        match pool {
            Some(pool) if bytes >= POOLED_FROM => {
                let Buffers { data, slots } = pool.take(bytes, entries);
                TreeBuilder {
                    data,
                    slots,
                    pool: Some(pool.clone()),
                }
            }
            _ => TreeBuilder::with_capacity(bytes, entries),
        }
    }

    /// Appends the entries `range` of `tree`, as they are.
    pub(crate) fn copy_run(&mut self, tree: &DecodedTree, range: std::ops::Range<usize>) {
        let slots = &tree.0.slots[range];
        let (Some(first), Some(last)) = (slots.first(), slots.last()) else {
            return;
        };
        if tree.0.contiguous {
            let delta = self.data.len() as i64 - i64::from(first.start);
            self.data
                .extend_from_slice(&tree.0.data[first.start as usize..last.end()]);
            self.slots
                .extend(slots.iter().map(|slot| slot.shifted(delta)));
        } else {
            for slot in slots {
                let delta = self.data.len() as i64 - i64::from(slot.start);
                self.data
                    .extend_from_slice(&tree.0.data[slot.start as usize..slot.end()]);
                self.slots.push(slot.shifted(delta));
            }
        }
    }

    /// The bytes an entry takes in a tree's data: mode, space, name, NUL, binary id.
    pub(crate) fn entry_len(name: &[u8], mode: EntryMode) -> usize {
        let mut mode_buffer = [0; 6];
        mode.as_bytes(&mut mode_buffer).len()
            + 1
            + name.len()
            + 1
            + gix::hash::Kind::Sha1.len_in_bytes()
    }

    /// Appends a new entry.
    pub(crate) fn push(&mut self, name: &[u8], mode: EntryMode, id: &gix::oid) {
        let start = self.data.len();
        let mut mode_buffer = [0; 6];
        self.data.extend_from_slice(mode.as_bytes(&mut mode_buffer));
        self.data.push(b' ');
        let name_start = self.data.len();
        self.data.extend_from_slice(name);
        let name_end = self.data.len();
        self.data.push(0);
        self.data.extend_from_slice(id.as_bytes());
        let offset = |value: usize| {
            // A store tree is far below 4 GiB; past it, the id computed from `data` is still right
            // and only this index would be wrong, so fail loudly rather than silently.
            u32::try_from(value).expect("a tree is smaller than 4 GiB")
        };
        self.slots.push(Slot {
            start: offset(start),
            name_start: offset(name_start),
            name_end: offset(name_end),
            mode,
        });
    }

    /// Whether no entry was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The encoded tree, as stored.
    pub(crate) fn data(&self) -> &[u8] {
        &self.data
    }

    /// The tree built, decoded.
    pub(crate) fn finish(self) -> DecodedTree {
        debug_assert!(
            self.slots.windows(2).all(|pair| slot_order(
                &self.data, &pair[0], &self.data, &pair[1]
            ) == Ordering::Less),
            "entries were added in Git's order"
        );
        DecodedTree(Arc::new(Inner {
            data: self.data,
            slots: self.slots,
            contiguous: true,
            pool: self.pool,
        }))
    }
}

#[cfg(test)]
mod tests {
    use gix::objs::tree::EntryKind;

    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::from_bytes_or_panic(&[n; 20])
    }

    fn encode(entries: &[(&str, EntryKind, u8)]) -> Vec<u8> {
        let mut tree = gix::objs::Tree::empty();
        for (name, kind, n) in entries {
            tree.entries.push(gix::objs::tree::Entry {
                mode: (*kind).into(),
                filename: (*name).into(),
                oid: id(*n),
            });
        }
        tree.entries.sort();
        crate::odb::encode(&tree).expect("encode a test tree")
    }

    #[test]
    fn finds_files_and_trees_whose_names_prefix_others() -> Result<(), MalformedTree> {
        let data = encode(&[
            ("a", EntryKind::Tree, 1),
            ("a-", EntryKind::Blob, 2),
            ("a.b", EntryKind::Blob, 3),
            ("a0", EntryKind::Tree, 4),
            ("ab", EntryKind::BlobExecutable, 5),
            ("b", EntryKind::Link, 6),
        ]);
        let tree = DecodedTree::decode(data.clone())?;
        let names: Vec<_> = tree.iter().map(|entry| entry.name.to_string()).collect();
        assert_eq!(names, ["a-", "a.b", "a", "a0", "ab", "b"], "Git's order");
        for (name, n) in [
            ("a", 1),
            ("a-", 2),
            ("a.b", 3),
            ("a0", 4),
            ("ab", 5),
            ("b", 6),
        ] {
            let found = tree.find(name.as_bytes()).map(|entry| entry.id);
            assert_eq!(found, Some(id(n)), "{name}");
        }
        assert!(tree.find(b"a.").is_none());
        assert!(tree.find(b"").is_none());
        assert!(tree.find(b"c").is_none());

        let mut copy = TreeBuilder::with_capacity(data.len(), tree.len());
        copy.copy_run(&tree, 0..2);
        copy.push(b"a", EntryKind::Tree.into(), &id(1));
        copy.copy_run(&tree, 3..tree.len());
        assert_eq!(copy.data(), data.as_slice());
        let copied = copy.finish();
        assert_eq!(copied.find(b"ab").map(|entry| entry.id), Some(id(5)));
        Ok(())
    }

    #[test]
    fn indexes_a_tree_stored_out_of_order() -> Result<(), MalformedTree> {
        let mut data = encode(&[("b", EntryKind::Blob, 2)]);
        data.extend(encode(&[("a", EntryKind::Blob, 1)]));
        let tree = DecodedTree::decode(data)?;
        let names: Vec<_> = tree.iter().map(|entry| entry.name.to_string()).collect();
        assert_eq!(names, ["a", "b"]);
        let mut copy = TreeBuilder::with_capacity(0, 0);
        copy.copy_run(&tree, 0..2);
        assert_eq!(
            copy.data(),
            encode(&[("a", EntryKind::Blob, 1), ("b", EntryKind::Blob, 2)])
        );
        Ok(())
    }

    #[test]
    fn finds_the_entries_two_versions_share_at_each_end() -> Result<(), MalformedTree> {
        let entries: Vec<(String, EntryKind, u8)> = (0..50)
            .map(|n| (format!("e{n:02}"), EntryKind::Blob, n))
            .collect();
        let as_refs = |entries: &[(String, EntryKind, u8)]| -> Vec<u8> {
            let borrowed: Vec<(&str, EntryKind, u8)> = entries
                .iter()
                .map(|(name, kind, n)| (name.as_str(), *kind, *n))
                .collect();
            encode(&borrowed)
        };
        let old = DecodedTree::decode(as_refs(&entries))?;
        let mut changed = entries.clone();
        changed[20].2 = 99;
        changed.insert(30, ("e29x".to_owned(), EntryKind::Blob, 7));
        let new = DecodedTree::decode(as_refs(&changed))?;
        assert_eq!(old.common_ends(&new), (20, 20));
        assert_eq!(old.common_ends(&old), (50, 0));
        assert_eq!(old.common_ends(&DecodedTree::empty()), (0, 0));
        // Names that end alike but start apart must not be taken for the same entries.
        let a = DecodedTree::decode(encode(&[("xy", EntryKind::Blob, 1)]))?;
        let b = DecodedTree::decode(encode(&[("y", EntryKind::Blob, 1)]))?;
        assert_eq!(a.common_ends(&b), (0, 0));
        Ok(())
    }

    #[test]
    fn rejects_truncated_trees() {
        let data = encode(&[("a", EntryKind::Blob, 1)]);
        for len in [1, 7, data.len() - 1] {
            assert!(DecodedTree::decode(data[..len].to_vec()).is_err(), "{len}");
        }
    }

    #[test]
    fn an_entry_takes_the_bytes_entry_len_says() {
        for kind in [
            EntryKind::Tree,
            EntryKind::Blob,
            EntryKind::BlobExecutable,
            EntryKind::Link,
            EntryKind::Commit,
        ] {
            let name = format!("{:040x}", 7);
            let mut builder = TreeBuilder::with_capacity(0, 0);
            builder.push(name.as_bytes(), kind.into(), &id(3));
            assert_eq!(
                builder.data().len(),
                TreeBuilder::entry_len(name.as_bytes(), kind.into()),
                "{kind:?}"
            );
        }
    }

    fn big_tree(pool: &BufferPool, entries: usize) -> DecodedTree {
        let bytes = entries * TreeBuilder::entry_len(b"000000", EntryKind::Blob.into());
        let mut builder = TreeBuilder::with_capacity_in(Some(pool), bytes, entries);
        for n in 0..entries {
            builder.push(format!("{n:06}").as_bytes(), EntryKind::Blob.into(), &id(1));
        }
        builder.finish()
    }

    #[test]
    fn big_trees_reuse_the_buffers_of_dropped_ones() {
        let pool = BufferPool::default();
        let first = big_tree(&pool, 3_000);
        let first_data = first.data().as_ptr();
        assert_eq!(pool.len(), 0);
        drop(first);
        assert_eq!(pool.len(), 1, "a dropped big tree gives its buffers back");
        // A little bigger, as the next version of a growing directory is: it still fits.
        let second = big_tree(&pool, 3_010);
        assert_eq!(second.data().as_ptr(), first_data);
        assert_eq!(pool.len(), 0);
        assert_eq!(
            second.iter().last().map(|entry| entry.name.to_string()),
            Some("003009".to_owned())
        );

        // Small trees and trees without a pool keep their own memory.
        drop(big_tree(&pool, 10));
        assert_eq!(pool.len(), 0);
        let trees: Vec<_> = (0..POOL_CAPACITY + 3)
            .map(|_| big_tree(&pool, 3_000))
            .collect();
        drop(trees);
        assert_eq!(pool.len(), POOL_CAPACITY, "the pool stays bounded");
        drop(second);
        assert_eq!(pool.len(), POOL_CAPACITY);
    }
}
