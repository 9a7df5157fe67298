//! The index of a saved log (issue 21, huge logs): what a log viewer needs for its first view
//! without reading the whole log, written beside the log when it is saved.
//!
//! A saved log is one Git blob, zlib-compressed as a whole, so reaching its end means inflating
//! all of it (about 100 ms for 100 MB). A log bigger than [`WHOLE_LIMIT`] is therefore saved with
//! two more files, which plain `git` reads too (the `log` file itself is unchanged):
//!
//! - [`TAIL_FILE`]: the log's last [`TAIL_BYTES`] or so, from the start of a line;
//! - [`INDEX_FILE`]: a few `key value` lines ([`LogIndex`]): the log's size in bytes and lines,
//!   the number of the tail's first line and, for a failed build, the number of its first
//!   error-looking line ([`looks_like_error`]) over the whole log.
//!
//! [`Indexer`] computes both from the log's bytes, chunk by chunk, in one pass;
//! [`IndexingReader`] does it while something else (the store) reads the log. A viewer of a log
//! saved without an index (an older store) can run the same [`Indexer`] over the whole log.
//!
//! Knows nothing of the store or of HTML.

use std::io::{self, Read};

/// The file beside `log` holding its [`LogIndex`].
pub const INDEX_FILE: &str = "log-index";
/// The file beside `log` holding its tail (see [`Indexer`]).
pub const TAIL_FILE: &str = "log-tail";
/// Logs up to this size are shown whole and saved without an index.
pub const WHOLE_LIMIT: usize = 4 * 1024 * 1024;
/// About how much of a bigger log's end its tail keeps.
pub const TAIL_BYTES: usize = 512 * 1024;

/// The first line of every index file: its format and version.
const MAGIC: &str = "datakit-ci log index 1";
/// The most bytes of one line checked for an error (a longer line is checked by its start).
const MAX_CHECKED_LINE: usize = 64 * 1024;

/// Lowercase pieces of text that make a line look like an error.
const ERROR_MARKS: [&str; 9] = [
    "error:",
    "error[",
    "fatal:",
    "panicked at",
    "traceback (most recent call last)",
    "exception:",
    "] failed: ",
    "npm err!",
    "assertionerror",
];

/// Whether a line (raw bytes, escape sequences included) looks like an error message. The CI's
/// own `[<time>] Running <command>` lines are not: the command may well print an error.
///
/// ```
/// use datakit_ci_log::looks_like_error;
///
/// assert!(looks_like_error(b"error[E0308]: mismatched types"));
/// assert!(!looks_like_error(b"test result: ok. 5 passed; 0 failed"));
/// assert!(!looks_like_error(b"[2026-12-07 18:12.29] Running \"sh\" \"-c\" \"echo error: x\""));
/// ```
pub fn looks_like_error(line: &[u8]) -> bool {
    let lower = line.to_ascii_lowercase();
    let text = String::from_utf8_lossy(&lower);
    let message = match text
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
    {
        Some((_, message)) => message,
        None => &text,
    };
    !message.starts_with("running ") && ERROR_MARKS.iter().any(|mark| text.contains(mark))
}

/// Whether `line` is one of the original's `=== <title>` headings (never an error line).
pub fn is_heading(line: &[u8]) -> bool {
    line.starts_with(b"=== ")
}

/// The first error-looking line of a log, as far as it was looked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstError {
    /// Not looked for (the build passed).
    NotSought,
    /// No line looks like an error.
    None,
    /// The number of the first error-looking line (from 1).
    Line(u64),
}

/// What [`INDEX_FILE`] says of a saved log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogIndex {
    /// The log's size in bytes.
    pub bytes: u64,
    /// Its number of lines (a last line without a newline counts).
    pub lines: u64,
    /// The number of the first line of [`TAIL_FILE`].
    pub tail_first_line: u64,
    /// Its first error-looking line.
    pub first_error: FirstError,
}

/// An [`INDEX_FILE`] that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("unreadable log index: {reason}")]
pub struct IndexError {
    reason: String,
}

impl LogIndex {
    /// The text of [`INDEX_FILE`].
    ///
    /// ```
    /// use datakit_ci_log::{FirstError, LogIndex};
    ///
    /// let index = LogIndex { bytes: 10, lines: 2, tail_first_line: 1, first_error: FirstError::Line(2) };
    /// assert_eq!(LogIndex::parse(index.to_text().as_bytes())?, index);
    /// # Ok::<(), datakit_ci_log::IndexError>(())
    /// ```
    pub fn to_text(&self) -> String {
        let first_error = match self.first_error {
            FirstError::NotSought => String::new(),
            FirstError::None => "first-error none\n".to_owned(),
            FirstError::Line(line) => format!("first-error {line}\n"),
        };
        format!(
            "{MAGIC}\nbytes {}\nlines {}\ntail-first-line {}\n{first_error}",
            self.bytes, self.lines, self.tail_first_line
        )
    }

    /// Reads the text of [`INDEX_FILE`]; unknown keys are ignored (a newer writer may add some).
    pub fn parse(text: &[u8]) -> Result<LogIndex, IndexError> {
        let invalid = |reason: String| IndexError { reason };
        let text = std::str::from_utf8(text).map_err(|_| invalid("not UTF-8".to_owned()))?;
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(invalid(format!("the first line is not {MAGIC:?}")));
        }
        let (mut bytes, mut count, mut tail_first_line) = (None, None, None);
        let mut first_error = FirstError::NotSought;
        for line in lines {
            let Some((key, value)) = line.split_once(' ') else {
                continue;
            };
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| invalid(format!("{key} is not a number: {value:?}")))
            };
            match key {
                "bytes" => bytes = Some(number()?),
                "lines" => count = Some(number()?),
                "tail-first-line" => tail_first_line = Some(number()?),
                "first-error" if value == "none" => first_error = FirstError::None,
                "first-error" => first_error = FirstError::Line(number()?),
                _ => {}
            }
        }
        let missing = |key: &str| invalid(format!("no {key}"));
        Ok(LogIndex {
            bytes: bytes.ok_or_else(|| missing("bytes"))?,
            lines: count.ok_or_else(|| missing("lines"))?,
            tail_first_line: tail_first_line.ok_or_else(|| missing("tail-first-line"))?,
            first_error,
        })
    }
}

/// A log's index and tail, from an [`Indexer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedLog {
    /// The index.
    pub index: LogIndex,
    /// The whole log if at most [`WHOLE_LIMIT`], else its last [`TAIL_BYTES`] or so from the
    /// start of a line (one huge line's end as it is); its first line is
    /// [`LogIndex::tail_first_line`].
    pub tail: Vec<u8>,
}

impl IndexedLog {
    /// Whether the log is big enough to be saved with an index and a tail.
    pub fn needs_index(&self) -> bool {
        self.index.bytes > WHOLE_LIMIT as u64
    }
}

/// Computes a log's [`IndexedLog`] from its bytes, given chunk by chunk; keeps at most
/// [`WHOLE_LIMIT`] plus a chunk in memory.
#[derive(Debug)]
pub struct Indexer {
    seek_errors: bool,
    bytes: u64,
    /// Newlines seen.
    newlines: u64,
    last_byte: Option<u8>,
    /// The end of the log seen so far.
    kept: Vec<u8>,
    /// Newlines in the bytes dropped from the front of `kept`.
    dropped_lines: u64,
    dropped_any: bool,
    /// The start of the current line (up to [`MAX_CHECKED_LINE`]), while errors are sought.
    partial: Vec<u8>,
    first_error: Option<u64>,
}

impl Indexer {
    /// An indexer; `seek_errors`: look for the first error-looking line (for a failed build;
    /// a passed build's index says [`FirstError::NotSought`], which costs nothing).
    pub fn new(seek_errors: bool) -> Indexer {
        Indexer {
            seek_errors,
            bytes: 0,
            newlines: 0,
            last_byte: None,
            kept: Vec::new(),
            dropped_lines: 0,
            dropped_any: false,
            partial: Vec::new(),
            first_error: None,
        }
    }

    /// The log's next bytes.
    pub fn feed(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        if self.seek_errors && self.first_error.is_none() {
            self.seek(chunk);
        }
        self.bytes += chunk.len() as u64;
        self.newlines += count_newlines(chunk);
        self.last_byte = chunk.last().copied();
        self.kept.extend_from_slice(chunk);
        if self.kept.len() > WHOLE_LIMIT {
            // Keep the last TAIL_BYTES; drop the rest, counting its lines.
            let cut = self.kept.len() - TAIL_BYTES;
            self.dropped_lines += count_newlines(&self.kept[..cut]);
            self.kept.drain(..cut);
            self.dropped_any = true;
        }
    }

    /// Checks the lines of `chunk` (the current line continuing from the last chunk) until one
    /// looks like an error.
    fn seek(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        // The number of the line `rest` starts in.
        let mut line = self.newlines + 1;
        while let Some(end) = rest.iter().position(|&byte| byte == b'\n') {
            let found = if self.partial.is_empty() {
                is_error_line(&rest[..end])
            } else {
                self.take_partial(&rest[..end])
            };
            if found {
                self.first_error = Some(line);
                self.partial.clear();
                return;
            }
            line += 1;
            rest = &rest[end + 1..];
        }
        let room = MAX_CHECKED_LINE.saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&rest[..rest.len().min(room)]);
    }

    /// Whether the current line, ending with `end`, looks like an error; forgets it.
    fn take_partial(&mut self, end: &[u8]) -> bool {
        let room = MAX_CHECKED_LINE.saturating_sub(self.partial.len());
        self.partial.extend_from_slice(&end[..end.len().min(room)]);
        let found = is_error_line(&self.partial);
        self.partial.clear();
        found
    }

    /// The index and tail of the log fed.
    pub fn finish(mut self) -> IndexedLog {
        if self.seek_errors && self.first_error.is_none() && !self.partial.is_empty() {
            // The last line, without a newline.
            let line = std::mem::take(&mut self.partial);
            if is_error_line(&line) {
                self.first_error = Some(self.newlines + 1);
            }
        }
        let mut kept = std::mem::take(&mut self.kept);
        let mut dropped_lines = self.dropped_lines;
        if self.dropped_any {
            if kept.len() > TAIL_BYTES {
                let cut = kept.len() - TAIL_BYTES;
                dropped_lines += count_newlines(&kept[..cut]);
                kept.drain(..cut);
            }
            // Start at a whole line: the partial first line is dropped too (one huge line's
            // end is kept as it is).
            if let Some(end) = kept.iter().position(|&byte| byte == b'\n') {
                kept.drain(..=end);
                dropped_lines += 1;
            }
        }
        let lines = match self.last_byte {
            None => 0,
            Some(b'\n') => self.newlines,
            Some(_) => self.newlines + 1,
        };
        let first_error = match (self.seek_errors, self.first_error) {
            (false, _) => FirstError::NotSought,
            (true, None) => FirstError::None,
            (true, Some(line)) => FirstError::Line(line),
        };
        IndexedLog {
            index: LogIndex {
                bytes: self.bytes,
                lines,
                tail_first_line: dropped_lines + 1,
                first_error,
            },
            tail: kept,
        }
    }
}

/// A reader that indexes what it reads: wrap a log's reader in it, let something else read it
/// to the end (e.g. the store, saving the log), then [`finish`](IndexingReader::finish).
#[derive(Debug)]
pub struct IndexingReader<R> {
    inner: R,
    indexer: Indexer,
}

impl<R: Read> IndexingReader<R> {
    /// Indexes what is read from `inner` (see [`Indexer::new`] for `seek_errors`).
    pub fn new(inner: R, seek_errors: bool) -> IndexingReader<R> {
        IndexingReader {
            inner,
            indexer: Indexer::new(seek_errors),
        }
    }

    /// The index and tail of what was read.
    pub fn finish(self) -> IndexedLog {
        self.indexer.finish()
    }
}

impl<R: Read> Read for IndexingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.indexer.feed(&buffer[..read]);
        Ok(read)
    }
}

fn is_error_line(line: &[u8]) -> bool {
    !is_heading(line) && looks_like_error(line)
}

fn count_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&byte| byte == b'\n').count() as u64
}

#[cfg(test)]
mod tests;
