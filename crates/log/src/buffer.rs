//! Byte storage of one live log: a bounded in-memory head, an unnamed spill file for the rest, and
//! a small tail for truncation notices. Knows nothing of branches, pending reasons or managers.
//!
//! Layout of the logical text, by offset:
//!
//! ```text
//! [0, memory.len())                 memory  (at most `memory_limit` bytes, filled first)
//! [memory.len(), file_end)          spill file (only once the memory part is full)
//! [file_end, len)                   tail: truncation notices (only after a spill failure)
//! ```
//!
//! One `std::sync::Mutex` guards the memory part, the tail and the writer's bookkeeping; it is held
//! for one copy (or one positional file write) per append and never across `.await`. The total
//! length and the end of the file part are published through atomics, so readers of the spilled part
//! read the file with `read_at` without taking the lock at all.
//!
//! The most recently spilled bytes are also kept as shared, immutable segments ([`Recent`], at
//! most the configured recent window): a live log's followers are usually close behind its
//! writer, and a follower reading there gets a reference-counted slice of the writer's one copy
//! instead of a file read into a buffer of its own. With a hundred followers, that is one copy
//! of each byte instead of a hundred. Bytes still in the memory head are copied as before.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, RwLock};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

/// Largest chunk handed to one reader at a time.
pub(crate) const MAX_CHUNK: usize = 64 * 1024;

/// Appends shorter than this share the allocation of a [`SMALL_BLOCK`] with their neighbours
/// instead of getting one of their own.
const SMALL_APPEND: usize = 4 * 1024;
/// Size of the blocks small appends are copied into.
const SMALL_BLOCK: usize = 64 * 1024;
/// A reader given a shared piece shorter than this, with more data after it, gets the following
/// pieces merged into one copy instead: many tiny chunks cost more than copying them.
const MERGE_BELOW: usize = 4 * 1024;

/// The bytes of one live log, shared by its writer and all its readers.
pub(crate) struct Buffer {
    state: Mutex<State>,
    /// The spill file, created on the first byte past the memory limit.
    file: OnceLock<File>,
    /// Total length of the text; stored (Release) after the bytes are in place.
    len: AtomicU64,
    /// End offset of the spilled part; stored before `len`.
    file_end: AtomicU64,
    finished: AtomicBool,
    /// Woken on every append and on finish.
    notify: Notify,
    memory_limit: usize,
    spill_dir: Option<PathBuf>,
    /// The most recently spilled bytes, shared with readers. Written under `state` (so in
    /// append order), read without it.
    recent: RwLock<Recent>,
}

/// The last spilled bytes of the log as immutable segments, contiguous and in order, at most
/// `limit` bytes in all.
struct Recent {
    segments: VecDeque<(u64, Bytes)>,
    /// Sum of the segments' lengths.
    bytes: usize,
    limit: usize,
    /// Room for the next small appends (see [`SMALL_APPEND`]).
    block: BytesMut,
}

impl Recent {
    fn new(limit: usize) -> Self {
        Recent {
            segments: VecDeque::new(),
            bytes: 0,
            limit,
            block: BytesMut::new(),
        }
    }

    /// Records `data`, stored at offset `start` right after the previous segment.
    fn push(&mut self, start: u64, data: &[u8]) {
        if data.len() > self.limit {
            // It would be evicted at once; the window must stay contiguous, so start afresh.
            self.clear();
            return;
        }
        let segment = if data.len() >= SMALL_APPEND {
            Bytes::copy_from_slice(data)
        } else {
            if self.block.capacity() < data.len() {
                self.block = BytesMut::with_capacity(SMALL_BLOCK.min(self.limit));
            }
            self.block.extend_from_slice(data);
            self.block.split().freeze()
        };
        self.bytes += segment.len();
        self.segments.push_back((start, segment));
        while self.bytes > self.limit {
            let Some((_, evicted)) = self.segments.pop_front() else {
                break;
            };
            self.bytes -= evicted.len();
        }
    }

    fn clear(&mut self) {
        self.segments.clear();
        self.bytes = 0;
        self.block = BytesMut::new();
    }

    /// Up to `max` bytes at `offset`, not past `end`, if the window still holds `offset`.
    fn get(&self, offset: u64, end: u64, max: usize) -> Option<Bytes> {
        let first = self.segments.front()?.0;
        if offset < first {
            return None;
        }
        let index = self
            .segments
            .partition_point(|(start, _)| *start <= offset)
            .checked_sub(1)?;
        let (start, segment) = &self.segments[index];
        let at = usize::try_from(offset - start).ok()?;
        if at >= segment.len() {
            return None;
        }
        let want = usize::try_from(end - offset).unwrap_or(usize::MAX).min(max);
        let piece = segment.slice(at..segment.len().min(at.saturating_add(want)));
        if piece.len() >= MERGE_BELOW || piece.len() == want {
            return Some(piece);
        }
        // Small appends (a build printing line by line): one chunk of several of them.
        let mut merged = BytesMut::with_capacity(want);
        merged.extend_from_slice(&piece);
        for (_, next) in self.segments.range(index + 1..) {
            let take = next.len().min(want - merged.len());
            merged.extend_from_slice(&next[..take]);
            if merged.len() == want {
                break;
            }
        }
        Some(merged.freeze())
    }

    /// Heap bytes held: the segments and the room left for small appends.
    fn memory_bytes(&self) -> usize {
        self.bytes + self.block.capacity()
    }
}

struct State {
    memory: Vec<u8>,
    file_len: u64,
    tail: Vec<u8>,
    /// Set once the spill file could not be created or written: later output is dropped.
    truncated: bool,
    dropped: u64,
    finished: bool,
}

impl State {
    fn len(&self) -> u64 {
        self.memory.len() as u64 + self.file_len + self.tail.len() as u64
    }
}

impl Buffer {
    pub(crate) fn new(
        memory_limit: usize,
        spill_dir: Option<PathBuf>,
        recent_window: usize,
    ) -> Self {
        Self {
            state: Mutex::new(State {
                memory: Vec::new(),
                file_len: 0,
                tail: Vec::new(),
                truncated: false,
                dropped: 0,
                finished: false,
            }),
            file: OnceLock::new(),
            len: AtomicU64::new(0),
            file_end: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            notify: Notify::new(),
            memory_limit,
            spill_dir,
            recent: RwLock::new(Recent::new(recent_window)),
        }
    }

    fn recent_mut(&self) -> std::sync::RwLockWriteGuard<'_, Recent> {
        // Segments are pushed and evicted whole; a panic cannot leave them half-changed.
        self.recent
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state inconsistent in a way that matters
        // more than losing the log, so recover from poisoning.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends `data`. Returns `false` (and stores nothing) if the buffer is finished.
    pub(crate) fn append(&self, data: &[u8]) -> bool {
        if data.is_empty() {
            return !self.finished.load(Ordering::Acquire);
        }
        let mut state = self.lock();
        if state.finished {
            return false;
        }
        let room = self.memory_limit - state.memory.len();
        let in_memory = room.min(data.len());
        if in_memory > 0 {
            reserve_bounded(&mut state.memory, in_memory, self.memory_limit);
            state.memory.extend_from_slice(&data[..in_memory]);
        }
        let rest = &data[in_memory..];
        if !rest.is_empty() {
            let start = state.memory.len() as u64 + state.file_len;
            self.spill(&mut state, rest);
            if state.truncated {
                // Later bytes are dropped and notices go to the tail: no more shared segments.
                self.recent_mut().clear();
            } else {
                self.recent_mut().push(start, rest);
            }
        }
        self.publish(&state);
        drop(state);
        self.notify.notify_waiters();
        true
    }

    /// Marks the buffer finished. Returns `true` the first time only.
    pub(crate) fn finish(&self) -> bool {
        let mut state = self.lock();
        if state.finished {
            return false;
        }
        if state.dropped > 0 {
            let notice = format!(
                "=== {} bytes of output were dropped after the log was truncated\n",
                state.dropped
            );
            state.tail.extend_from_slice(notice.as_bytes());
        }
        state.finished = true;
        self.publish(&state);
        self.finished.store(true, Ordering::Release);
        drop(state);
        self.notify.notify_waiters();
        true
    }

    fn publish(&self, state: &State) {
        self.file_end.store(
            state.memory.len() as u64 + state.file_len,
            Ordering::Release,
        );
        self.len.store(state.len(), Ordering::Release);
    }

    fn spill(&self, state: &mut State, data: &[u8]) {
        if state.truncated {
            state.dropped += data.len() as u64;
            return;
        }
        let file = match self.spill_file() {
            Ok(file) => file,
            Err(error) => {
                tracing::error!(%error, "cannot create the spill file of a live log");
                truncate(state, &format!("cannot create the spill file: {error}"));
                state.dropped += data.len() as u64;
                return;
            }
        };
        let mut written = 0;
        while written < data.len() {
            match file.write_at(&data[written..], state.file_len + written as u64) {
                Ok(0) => {
                    let error = io::Error::from(io::ErrorKind::WriteZero);
                    self.write_failed(state, &error, data.len() - written);
                    break;
                }
                Ok(n) => written += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    state.file_len += written as u64;
                    self.write_failed(state, &error, data.len() - written);
                    return;
                }
            }
        }
        state.file_len += written as u64;
    }

    fn write_failed(&self, state: &mut State, error: &io::Error, lost: usize) {
        tracing::error!(%error, "cannot write to the spill file of a live log");
        truncate(state, &format!("cannot write to the spill file: {error}"));
        state.dropped += lost as u64;
    }

    fn spill_file(&self) -> io::Result<&File> {
        if let Some(file) = self.file.get() {
            return Ok(file);
        }
        let file = match &self.spill_dir {
            Some(dir) => tempfile::tempfile_in(dir)?,
            None => tempfile::tempfile()?,
        };
        // Only the writer (holding the state lock) initialises the cell, so this cannot race.
        Ok(self.file.get_or_init(|| file))
    }

    pub(crate) fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    pub(crate) fn notify(&self) -> &Notify {
        &self.notify
    }

    /// Bytes of heap memory held for the text: the memory part, the tail and the recent window
    /// (the spill file is not counted).
    pub(crate) fn memory_bytes(&self) -> usize {
        let state = self.lock();
        let recent = self
            .recent
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .memory_bytes();
        state.memory.capacity() + state.tail.capacity() + recent
    }

    /// Like [`read_at`](Self::read_at), but bytes still in the recent window come back as a
    /// shared slice, without a copy.
    pub(crate) fn read_shared(&self, offset: u64, end: u64, max: usize) -> io::Result<Bytes> {
        if offset >= self.memory_limit as u64 {
            let recent = self
                .recent
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(piece) = recent.get(offset, end, max) {
                return Ok(piece);
            }
        }
        self.read_at(offset, end, max).map(Bytes::from)
    }

    /// Reads up to `max` bytes at `offset`, not past `end`. `end` must be at most `len()`.
    /// Returns an empty vector only if `offset >= end`.
    pub(crate) fn read_at(&self, offset: u64, end: u64, max: usize) -> io::Result<Vec<u8>> {
        if offset >= end {
            return Ok(Vec::new());
        }
        let want = usize::try_from(end - offset).unwrap_or(usize::MAX).min(max);
        if offset < self.memory_limit as u64 {
            // The memory part is filled before anything else, so it holds `offset`.
            let state = self.lock();
            let start = offset as usize;
            let stop = start.saturating_add(want).min(state.memory.len());
            return Ok(state.memory.get(start..stop).unwrap_or_default().to_vec());
        }
        let file_end = self.file_end.load(Ordering::Acquire);
        if offset < file_end {
            let file = self
                .file
                .get()
                .expect("a spilled part exists only once the spill file was created");
            let want = want.min(usize::try_from(file_end - offset).unwrap_or(usize::MAX));
            let mut chunk = vec![0; want];
            file.read_exact_at(&mut chunk, offset - self.memory_limit as u64)?;
            return Ok(chunk);
        }
        let state = self.lock();
        let tail_start = state.memory.len() as u64 + state.file_len;
        let start = usize::try_from(offset - tail_start).unwrap_or(usize::MAX);
        let stop = start.saturating_add(want).min(state.tail.len());
        Ok(state.tail.get(start..stop).unwrap_or_default().to_vec())
    }
}

/// Appends a visible truncation notice and stops spilling.
fn truncate(state: &mut State, reason: &str) {
    state.truncated = true;
    let notice = format!("\n=== log truncated: {reason}; further output is dropped\n");
    state.tail.extend_from_slice(notice.as_bytes());
}

/// Reserves room for `additional` bytes without growing the capacity past `limit`.
fn reserve_bounded(memory: &mut Vec<u8>, additional: usize, limit: usize) {
    let needed = memory.len() + additional;
    if needed <= memory.capacity() {
        return;
    }
    let target = (memory.capacity() * 2).max(needed).max(4096).min(limit);
    memory.reserve_exact(target - memory.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(buffer: &Buffer) -> Vec<u8> {
        let mut all = Vec::new();
        let end = buffer.len();
        while (all.len() as u64) < end {
            let chunk = buffer
                .read_at(all.len() as u64, end, MAX_CHUNK)
                .expect("reading the test buffer");
            assert!(!chunk.is_empty());
            all.extend_from_slice(&chunk);
        }
        all
    }

    #[test]
    fn a_failing_spill_write_truncates_the_log() {
        // Writes to /dev/full fail with "no space left on device", like a full disk.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full exists on Linux");
        let buffer = Buffer::new(4, None, 1024);
        buffer
            .file
            .set(full)
            .expect("the spill file is not created before the first spill");
        assert!(buffer.append(b"abcdef"));
        assert!(buffer.append(b"gh"));
        let text = String::from_utf8(contents(&buffer)).expect("ASCII test data");
        assert!(
            text.starts_with("abcd\n=== log truncated: cannot write to the spill file: "),
            "{text:?}"
        );
        assert!(buffer.finish());
        assert!(!buffer.finish());
        assert!(!buffer.append(b"late"));
        let text = String::from_utf8(contents(&buffer)).expect("ASCII test data");
        assert!(
            text.ends_with("=== 4 bytes of output were dropped after the log was truncated\n"),
            "{text:?}"
        );
    }

    #[test]
    fn memory_never_grows_past_the_limit() {
        let buffer = Buffer::new(10_000, None, 0);
        for _ in 0..1000 {
            assert!(buffer.append(b"0123456789abcdefghijklmnopq"));
            assert!(buffer.memory_bytes() <= 10_000, "{}", buffer.memory_bytes());
        }
        assert_eq!(buffer.len(), 27_000);
        assert_eq!(contents(&buffer).len(), 27_000);
    }
}
