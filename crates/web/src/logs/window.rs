//! Which lines of a saved log a page shows (issue 21 item 3, huge logs): the whole log when it
//! is small, else its tail ([`TAIL_BYTES`] of whole lines), or the lines a `?lines=A-B` query
//! asks for (at most [`MAX_WINDOW_LINES`]). Earlier and later parts are fetched on demand by the
//! page's links, which the viewer's script turns into in-place loads.
//!
//! A big log saved with an index has its tail stored beside it ([`from_index`]); without one
//! (an older store), reaching the tail reads the whole log, through the same
//! [`Indexer`] the index is written with, which also finds the first error line on the way.
//!
//! Reads through a blocking [`Read`]: call it from a blocking task. Knows nothing of HTML.

use std::io::{self, Read};

#[cfg(test)]
use datakit_ci_log::index::TAIL_BYTES;
use datakit_ci_log::index::{FirstError, Indexer, LogIndex};
/// The most lines one `?lines=` window shows.
pub(crate) const MAX_WINDOW_LINES: u64 = 20_000;
/// The most matching lines a server-side search returns.
pub(crate) const MAX_MATCHES: usize = 1_000;

/// Size of the pieces a log is read in.
const READ_CHUNK: usize = 256 * 1024;

/// Lines `from..=to`, numbered from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LineRange {
    pub(crate) from: u64,
    pub(crate) to: u64,
}

impl LineRange {
    /// From `A-B` (or `A` alone); at most [`MAX_WINDOW_LINES`] lines, the end cut if needed.
    pub(crate) fn parse(text: &str) -> Result<LineRange, String> {
        let number = |part: &str| {
            part.trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("invalid line range {text:?}: expected A-B, from line 1"))
        };
        let (from, to) = match text.split_once('-') {
            Some((from, to)) => (number(from)?, number(to)?),
            None => (number(text)?, number(text)?),
        };
        if to < from {
            return Err(format!(
                "invalid line range {text:?}: the end comes before the start"
            ));
        }
        Ok(LineRange {
            from,
            to: to.min(from + MAX_WINDOW_LINES - 1),
        })
    }
}

/// What to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Selection {
    /// The whole log if small, else its tail.
    Default,
    Lines(LineRange),
}

/// The shown part of a log.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Window {
    /// Whole lines (the last may lack its newline).
    pub(crate) bytes: Vec<u8>,
    /// The number of the first line of `bytes`.
    pub(crate) first_line: u64,
    /// Whether lines come after the window.
    pub(crate) more_after: bool,
    /// The whole log's first error line, if known (from its index, or found reading all of it).
    pub(crate) first_error: Option<FirstError>,
}

impl Window {
    /// Whether lines come before the window.
    pub(crate) fn more_before(&self) -> bool {
        self.first_line > 1
    }

    /// How many lines the window holds (a last line without newline counts).
    pub(crate) fn line_count(&self) -> u64 {
        let newlines = memchr_count(&self.bytes);
        match self.bytes.last() {
            None => 0,
            Some(b'\n') => newlines,
            Some(_) => newlines + 1,
        }
    }
}

/// Reads the part of the log `reader` that `selection` asks for; `seek_errors`: find the first
/// error line when the whole log is read anyway (the build failed).
pub(crate) fn select(
    reader: &mut dyn Read,
    selection: Selection,
    seek_errors: bool,
) -> io::Result<Window> {
    match selection {
        Selection::Default => tail(reader, seek_errors),
        Selection::Lines(range) => lines(reader, range),
    }
}

/// The default window of a log saved with `index` and `tail` (its stored tail), without reading
/// the log; `None` if they do not fit together (then the log is read instead).
pub(crate) fn from_index(index: &LogIndex, tail: Vec<u8>) -> Option<Window> {
    let window = Window {
        bytes: tail,
        first_line: index.tail_first_line,
        more_after: false,
        first_error: Some(index.first_error),
    };
    let fits = index.lines > 0
        && window.first_line >= 1
        && window.first_line + window.line_count() - 1 == index.lines;
    fits.then_some(window)
}

/// The whole log if at most [`WHOLE_LIMIT`](datakit_ci_log::index::WHOLE_LIMIT), else its last
/// [`TAIL_BYTES`](datakit_ci_log::index::TAIL_BYTES) or so, from a line's start.
fn tail(reader: &mut dyn Read, seek_errors: bool) -> io::Result<Window> {
    let mut indexer = Indexer::new(seek_errors);
    let mut buffer = vec![0; READ_CHUNK];
    loop {
        let read = read_some(reader, &mut buffer)?;
        if read == 0 {
            break;
        }
        indexer.feed(&buffer[..read]);
    }
    let indexed = indexer.finish();
    Ok(Window {
        bytes: indexed.tail,
        first_line: indexed.index.tail_first_line,
        more_after: false,
        first_error: Some(indexed.index.first_error),
    })
}

/// Lines `range` of the log.
fn lines(reader: &mut dyn Read, range: LineRange) -> io::Result<Window> {
    let mut window = Window {
        first_line: range.from,
        ..Window::default()
    };
    // The number of the line the next byte belongs to.
    let mut line = 1;
    let mut buffer = vec![0; READ_CHUNK];
    loop {
        let read = read_some(reader, &mut buffer)?;
        if read == 0 {
            break;
        }
        let mut rest = &buffer[..read];
        while !rest.is_empty() {
            if line > range.to {
                window.more_after = true;
                return Ok(window);
            }
            let end = rest.iter().position(|&byte| byte == b'\n');
            let piece = match end {
                Some(end) => &rest[..=end],
                None => rest,
            };
            if line >= range.from {
                window.bytes.extend_from_slice(piece);
            }
            if end.is_some() {
                line += 1;
            }
            rest = &rest[piece.len()..];
        }
    }
    if line <= range.from && window.bytes.is_empty() {
        // Past the end: show nothing, from the line after the last.
        window.first_line = line;
    }
    Ok(window)
}

/// Up to [`MAX_MATCHES`] numbers of the lines containing `needle` (ASCII case ignored), and
/// whether there were more.
pub(crate) fn find(reader: &mut dyn Read, needle: &str) -> io::Result<(Vec<u64>, bool)> {
    let needle = needle.to_ascii_lowercase().into_bytes();
    let mut found = Vec::new();
    if needle.is_empty() {
        return Ok((found, false));
    }
    let mut line_number = 1;
    let mut partial: Vec<u8> = Vec::new();
    let mut buffer = vec![0; READ_CHUNK];
    let check = |line: &[u8], number: u64, found: &mut Vec<u64>| -> bool {
        if contains_ignoring_case(line, &needle) {
            if found.len() == MAX_MATCHES {
                return false;
            }
            found.push(number);
        }
        true
    };
    loop {
        let read = read_some(reader, &mut buffer)?;
        if read == 0 {
            break;
        }
        let mut rest = &buffer[..read];
        while let Some(end) = rest.iter().position(|&byte| byte == b'\n') {
            let more = if partial.is_empty() {
                check(&rest[..end], line_number, &mut found)
            } else {
                partial.extend_from_slice(&rest[..end]);
                let line = std::mem::take(&mut partial);
                check(&line, line_number, &mut found)
            };
            if !more {
                return Ok((found, true));
            }
            line_number += 1;
            rest = &rest[end + 1..];
        }
        partial.extend_from_slice(rest);
    }
    if !partial.is_empty() && !check(&partial, line_number, &mut found) {
        return Ok((found, true));
    }
    Ok((found, false))
}

fn contains_ignoring_case(line: &[u8], lower_needle: &[u8]) -> bool {
    line.len() >= lower_needle.len()
        && line
            .windows(lower_needle.len())
            .any(|window| window.eq_ignore_ascii_case(lower_needle))
}

/// The tails of the last few big saved logs shown, by their cache commit: a saved log never
/// changes, and reaching the end of a big one means inflating all of it, so a second visit (or
/// another reader) gets the tail at once. Holds at most [`TailCache::ENTRIES`] tails of at most
/// [`TAIL_BYTES`] each.
#[derive(Debug, Default)]
pub(crate) struct TailCache {
    entries: std::sync::Mutex<std::collections::VecDeque<(String, std::sync::Arc<Window>)>>,
}

impl TailCache {
    /// How many tails are kept.
    pub(crate) const ENTRIES: usize = 8;

    /// The tail of the log of commit `key`, if kept.
    pub(crate) fn get(&self, key: &str) -> Option<std::sync::Arc<Window>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, window)| std::sync::Arc::clone(window))
    }

    /// Keeps `window`, the tail of a log too big to show whole, dropping the oldest.
    pub(crate) fn put(&self, key: String, window: std::sync::Arc<Window>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(k, _)| *k != key);
        if entries.len() == Self::ENTRIES {
            entries.pop_front();
        }
        entries.push_back((key, window));
    }
}

/// Reads what is there, retrying interruptions.
fn read_some(reader: &mut dyn Read, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buffer) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

fn memchr_count(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&byte| byte == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(lines: u64) -> Vec<u8> {
        let mut text = Vec::new();
        for n in 1..=lines {
            text.extend_from_slice(format!("line {n:07}\n").as_bytes());
        }
        text
    }

    #[test]
    fn small_logs_are_shown_whole() -> io::Result<()> {
        let text = log(100);
        let window = select(&mut text.as_slice(), Selection::Default, false)?;
        assert_eq!(window.first_line, 1);
        assert_eq!(window.bytes, text);
        assert!(!window.more_before() && !window.more_after);
        assert_eq!(window.line_count(), 100);
        Ok(())
    }

    #[test]
    fn big_logs_show_their_tail_from_a_whole_line() -> io::Result<()> {
        // 13 bytes a line: 400,000 lines is 5.2 MB.
        let text = log(400_000);
        let window = select(&mut text.as_slice(), Selection::Default, false)?;
        assert!(window.more_before() && !window.more_after);
        let first = format!("line {:07}\n", window.first_line);
        assert!(window.bytes.starts_with(first.as_bytes()), "{first}");
        assert!(window.bytes.ends_with(b"line 0400000\n"));
        assert_eq!(window.first_line + window.line_count() - 1, 400_000);
        assert!(window.bytes.len() <= TAIL_BYTES);
        Ok(())
    }

    #[test]
    fn line_windows_pick_their_lines() -> io::Result<()> {
        let text = log(1000);
        let range = LineRange::parse("10-12").map_err(io::Error::other)?;
        let window = select(&mut text.as_slice(), Selection::Lines(range), false)?;
        assert_eq!(window.first_line, 10);
        assert_eq!(window.bytes, b"line 0000010\nline 0000011\nline 0000012\n");
        assert!(window.more_before() && window.more_after);
        let range = LineRange::parse("999-5000").map_err(io::Error::other)?;
        let window = select(&mut text.as_slice(), Selection::Lines(range), false)?;
        assert_eq!(window.bytes, b"line 0000999\nline 0001000\n");
        assert!(!window.more_after);
        assert_eq!(
            LineRange::parse("1-999999"),
            Ok(LineRange {
                from: 1,
                to: MAX_WINDOW_LINES
            })
        );
        assert!(LineRange::parse("5-2").is_err());
        assert!(LineRange::parse("0-2").is_err());
        assert!(LineRange::parse("x").is_err());
        Ok(())
    }

    #[test]
    fn find_reports_line_numbers_ignoring_case() -> io::Result<()> {
        let text = b"alpha\nA NEEDLE here\nbeta\nneedle again".to_vec();
        // Read in tiny pieces, so that lines span reads.
        struct Tiny<'a>(&'a [u8]);
        impl Read for Tiny<'_> {
            fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(buffer.len()).min(3);
                buffer[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        assert_eq!(find(&mut Tiny(&text), "needle")?, (vec![2, 4], false));
        let range = LineRange::parse("2-3").map_err(io::Error::other)?;
        let window = select(&mut Tiny(&text), Selection::Lines(range), false)?;
        assert_eq!(window.bytes, b"A NEEDLE here\nbeta\n");
        assert_eq!(find(&mut text.as_slice(), "")?, (vec![], false));
        Ok(())
    }
}
