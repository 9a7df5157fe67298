//! Git deltas between versions of a big tree, for merged packs: the encoder (an entry-level diff of
//! two trees in Git's delta format) and the choice of a base among the whole trees a merged pack
//! already holds. Knows nothing of pack files, indices or repositories.
//!
//! A flat directory of 10,000 entries is a tree of about 1 MB that each commit rewrites with one
//! entry changed. Trees are sorted lists of entries, so walking two versions side by side (like a
//! merge of sorted lists) finds every change in one pass: runs of identical entries become copies
//! from the base, the rest is inserted. The delta grows with the number of changed entries, not
//! with the size of the tree, and needs no hashing of the base (unlike a general delta encoder).

use std::cmp::Ordering;
use std::collections::VecDeque;

use gix::objs::tree::name_order;

/// How many whole trees of a merged pack are tried as the base of the next big tree. Trees of one
/// family (versions of one directory) are usually written one after another, so a few suffice for
/// the few big directories of the metadata; a bound keeps a merge linear in the objects it writes.
const MAX_BASES: usize = 8;

/// Length of a SHA-1 object id in a tree entry.
const ID_LEN: usize = 20;

/// The largest size a single copy op can express (three size bytes).
const MAX_COPY: u64 = 0xFF_FFFF;

/// The largest length of an insert op (its opcode is the length, and the high bit means "copy").
const MAX_INSERT: usize = 0x7f;

/// One version of a tree, with where each of its entries lies.
pub(super) struct TreeVersion {
    data: Vec<u8>,
    /// `None` if the data does not parse as tree entries: such a tree is neither deltified nor a
    /// base (git would reject it anyway; it is copied as it is).
    entries: Option<Vec<Entry>>,
}

/// Where one tree entry (`<mode> <name>\0<id>`) lies in the tree's data.
#[derive(Clone, Copy)]
struct Entry {
    start: usize,
    name_start: usize,
    /// Where the NUL after the name is; the id follows it and ends the entry.
    name_end: usize,
    is_tree: bool,
}

impl Entry {
    fn end(&self) -> usize {
        self.name_end + 1 + ID_LEN
    }
}

impl TreeVersion {
    /// Indexes the entries of a tree object's `data`.
    pub(super) fn new(data: Vec<u8>) -> TreeVersion {
        let entries = parse_entries(&data);
        TreeVersion { data, entries }
    }

    /// The tree object's data.
    pub(super) fn data(&self) -> &[u8] {
        &self.data
    }
}

/// The whole trees written so far to a merged pack that the next big trees may be deltas of: the
/// most recent [`MAX_BASES`], newest first.
#[derive(Default)]
pub(super) struct Bases {
    bases: VecDeque<(u64, TreeVersion)>,
}

impl Bases {
    /// The smallest delta of `target` against one of the bases, with the pack offset of that base;
    /// `None` unless some delta is smaller than half the tree (otherwise the tree is better stored
    /// whole, and becomes a base itself: it is of a family not seen yet, or has drifted far).
    pub(super) fn best_delta(&self, target: &TreeVersion) -> Option<(u64, Vec<u8>)> {
        let target_entries = target.entries.as_deref()?;
        let mut best: Option<(u64, Vec<u8>)> = None;
        for (offset, base) in &self.bases {
            let Some(base_entries) = base.entries.as_deref() else {
                continue;
            };
            // The best delta so far bounds the next attempts: a base of another family is given up
            // after as many bytes of inserts, a small fraction of the tree once a good base is found.
            let limit = best
                .as_ref()
                .map_or(target.data.len() / 2, |(_, delta)| delta.len());
            let found = encode(
                &base.data,
                base_entries,
                &target.data,
                target_entries,
                limit,
            );
            if let Some(delta) = found {
                best = Some((*offset, delta));
            }
        }
        best
    }

    /// Records `tree`, written whole at `offset` of the pack, as a base for the next big trees.
    pub(super) fn add(&mut self, offset: u64, tree: TreeVersion) {
        if tree.entries.is_none() {
            return;
        }
        if self.bases.len() == MAX_BASES {
            self.bases.pop_back();
        }
        self.bases.push_front((offset, tree));
    }
}

/// The entries of a tree's data, or `None` if it is not a sequence of well-formed entries (or is
/// too large for a delta's four offset bytes to reach every byte of it).
fn parse_entries(data: &[u8]) -> Option<Vec<Entry>> {
    u32::try_from(data.len()).ok()?;
    // 40 bytes is a short entry (a six-digit mode, a ten-byte name): rarely over-allocates.
    let mut entries = Vec::with_capacity(data.len() / 40);
    let mut position = 0;
    while position < data.len() {
        let rest = &data[position..];
        let space = rest.iter().take(8).position(|&byte| byte == b' ')?;
        let mode = &rest[..space];
        let name_start = position + space + 1;
        let name_len = data.get(name_start..)?.iter().position(|&byte| byte == 0)?;
        let entry = Entry {
            start: position,
            name_start,
            name_end: name_start + name_len,
            // Git writes "40000"; some old tools wrote "040000".
            is_tree: mode == b"40000" || mode == b"040000",
        };
        if entry.end() > data.len() {
            return None;
        }
        position = entry.end();
        entries.push(entry);
    }
    Some(entries)
}

/// The delta turning `base` into `target` (both trees, with their entries), or `None` if it would
/// be `limit` bytes or more.
///
/// Both entry lists are walked in Git's order: an entry of the target equal to the base's is copied
/// (consecutive ones in one op), an entry only in the base is skipped, and a changed one is copied
/// as far as it matches (mode and name, when only its id changed) and the rest inserted. Only
/// identical bytes are ever copied, so the delta is exact even for trees out of order; it is small
/// when they are in order, as Git writes them.
fn encode(
    base: &[u8],
    base_entries: &[Entry],
    target: &[u8],
    target_entries: &[Entry],
    limit: usize,
) -> Option<Vec<u8>> {
    let mut delta = Encoder::new(base.len() as u64, target.len() as u64);
    let mut at_base = 0;
    for entry in target_entries {
        let bytes = &target[entry.start..entry.end()];
        loop {
            let Some(old) = base_entries.get(at_base) else {
                delta.insert(bytes);
                break;
            };
            let old_bytes = &base[old.start..old.end()];
            if old_bytes == bytes {
                delta.copy(old.start as u64, bytes.len() as u64);
                at_base += 1;
                break;
            }
            let order = name_order(
                name(target, entry),
                entry.is_tree,
                name(base, old),
                old.is_tree,
            );
            match order {
                // Removed from the base: skip it, and compare the next one.
                Ordering::Greater => at_base += 1,
                // New in the target.
                Ordering::Less => {
                    delta.insert(bytes);
                    break;
                }
                // Changed: copy what still matches (usually the mode and name).
                Ordering::Equal => {
                    let same = bytes
                        .iter()
                        .zip(old_bytes)
                        .take_while(|(new, old)| new == old)
                        .count();
                    delta.copy(old.start as u64, same as u64);
                    delta.insert(&bytes[same..]);
                    at_base += 1;
                    break;
                }
            }
        }
        if delta.len() >= limit {
            return None;
        }
    }
    let delta = delta.finish();
    (delta.len() < limit).then_some(delta)
}

fn name<'a>(data: &'a [u8], entry: &Entry) -> &'a [u8] {
    &data[entry.name_start..entry.name_end]
}

/// Writes a delta in Git's format: the base and result sizes, then copy and insert ops. Copies
/// of adjacent base ranges are merged into one op; inserted bytes are buffered and cut into ops of
/// at most [`MAX_INSERT`] bytes.
struct Encoder {
    out: Vec<u8>,
    /// A copy not written yet (base offset, size), extended while the next copy follows it.
    copy: Option<(u64, u64)>,
    literal: Vec<u8>,
}

impl Encoder {
    fn new(base_size: u64, result_size: u64) -> Encoder {
        let mut out = Vec::with_capacity(256);
        push_size(&mut out, base_size);
        push_size(&mut out, result_size);
        Encoder {
            out,
            copy: None,
            literal: Vec::new(),
        }
    }

    /// About how long the delta is so far (the pending op is not counted).
    fn len(&self) -> usize {
        self.out.len() + self.literal.len()
    }

    fn copy(&mut self, offset: u64, size: u64) {
        if size == 0 {
            return;
        }
        self.flush_literal();
        match &mut self.copy {
            Some((start, pending)) if *start + *pending == offset => *pending += size,
            _ => {
                self.flush_copy();
                self.copy = Some((offset, size));
            }
        }
    }

    fn insert(&mut self, bytes: &[u8]) {
        self.flush_copy();
        self.literal.extend_from_slice(bytes);
    }

    fn finish(mut self) -> Vec<u8> {
        self.flush_copy();
        self.flush_literal();
        self.out
    }

    fn flush_copy(&mut self) {
        if let Some((offset, size)) = self.copy.take() {
            push_copy(&mut self.out, offset, size);
        }
    }

    fn flush_literal(&mut self) {
        for chunk in self.literal.chunks(MAX_INSERT) {
            self.out
                .push(u8::try_from(chunk.len()).expect("chunks of at most 127 bytes"));
            self.out.extend_from_slice(chunk);
        }
        self.literal.clear();
    }
}

/// A size in a delta's header: little-endian base-128, the high bit meaning "more bytes follow".
fn push_size(out: &mut Vec<u8>, mut size: u64) {
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        if size == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Copy ops for `size` bytes of the base from `offset` (below 4 GiB, see [`parse_entries`]): the
/// opcode `0x80 | flags`, then the non-zero bytes of the offset (flags `0x01..=0x08`) and of the
/// size (flags `0x10..=0x40`), least significant first. A size of `0x10000` is written as none at
/// all (Git reads a size of 0 as `0x10000`); copies over [`MAX_COPY`] are split.
fn push_copy(out: &mut Vec<u8>, mut offset: u64, mut size: u64) {
    while size > 0 {
        let chunk = size.min(MAX_COPY);
        let opcode_at = out.len();
        let mut opcode = 0x80u8;
        out.push(opcode);
        for byte in 0..4 {
            let value = (offset >> (8 * byte)) as u8;
            if value != 0 {
                opcode |= 1 << byte;
                out.push(value);
            }
        }
        if chunk != 0x10000 {
            for byte in 0..3 {
                let value = (chunk >> (8 * byte)) as u8;
                if value != 0 {
                    opcode |= 0x10 << byte;
                    out.push(value);
                }
            }
        }
        out[opcode_at] = opcode;
        offset += chunk;
        size -= chunk;
    }
}

#[cfg(test)]
mod tests;
