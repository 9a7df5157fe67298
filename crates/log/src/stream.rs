//! Readers of a live log: the asynchronous [`LogStream`] that follows the log until it finishes,
//! and the synchronous [`LogReader`] over the text written so far. Readers keep only an offset;
//! they never buffer the log.

use std::fmt;
use std::io;
use std::pin::pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::buffer::{Buffer, MAX_CHUNK};

/// Asynchronous stream of a live log's bytes from offset 0: every stream gets every byte, in order,
/// in chunks of at most 64 KiB.
///
/// Made by [`LiveLog::stream`](crate::LiveLog::stream). Each stream is independent; a slow stream
/// never slows the writer down.
pub struct LogStream {
    buffer: Arc<Buffer>,
    offset: u64,
}

impl LogStream {
    pub(crate) fn new(buffer: Arc<Buffer>) -> Self {
        Self { buffer, offset: 0 }
    }

    /// The next chunk of bytes, waiting for new data if the stream has caught up with the writer.
    /// `None` once the log is finished and everything was read.
    ///
    /// Cancel-safe: dropping the future loses no bytes.
    pub async fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        Ok(self.next_bytes().await?.map(Vec::from))
    }

    /// Like [`next_chunk`](Self::next_chunk), but as [`Bytes`]: bytes the writer spilled
    /// recently come back as a slice shared with every other stream, without a copy (see
    /// [`LogConfig::recent_window`](crate::LogConfig::recent_window)). Prefer this when the
    /// chunk is passed on as it is, e.g. to an HTTP body.
    ///
    /// Cancel-safe: dropping the future loses no bytes.
    pub async fn next_bytes(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            // Register for a wake-up before looking, so that an append between the look and the
            // wait is not missed.
            let mut notified = pin!(self.buffer.notify().notified());
            notified.as_mut().enable();
            let finished = self.buffer.is_finished();
            let len = self.buffer.len();
            if self.offset < len {
                let chunk = self.buffer.read_shared(self.offset, len, MAX_CHUNK)?;
                self.offset += chunk.len() as u64;
                return Ok(Some(chunk));
            }
            if finished {
                return Ok(None);
            }
            notified.await;
        }
    }

    /// Number of bytes returned so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl fmt::Debug for LogStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStream")
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

/// Synchronous [`io::Read`] over the text a live log held when the reader was made.
///
/// Made by [`LiveLog::reader`](crate::LiveLog::reader); meant for saving a log to the store without
/// loading it whole. Reads of the spilled part are file reads: call it from blocking code (e.g.
/// `spawn_blocking`) for large logs.
pub struct LogReader {
    buffer: Arc<Buffer>,
    offset: u64,
    end: u64,
    /// A part left out: reading reaches `cut.start`, gives `cut.note`, then goes on at `cut.end`.
    cut: Option<Cut>,
}

struct Cut {
    start: u64,
    end: u64,
    note: Vec<u8>,
    /// How much of `note` was read.
    note_read: usize,
}

impl LogReader {
    pub(crate) fn new(buffer: Arc<Buffer>) -> Self {
        let end = buffer.len();
        Self {
            buffer,
            offset: 0,
            end,
            cut: None,
        }
    }

    /// A reader of at most about `limit` bytes: a longer text gives its first and last
    /// `limit / 2` bytes, with a line between them saying how many were cut.
    pub(crate) fn head_and_tail(buffer: Arc<Buffer>, limit: u64) -> Self {
        let mut reader = LogReader::new(buffer);
        if reader.end > limit {
            let half = limit / 2;
            let (start, end) = (half, reader.end - half);
            let note = format!(
                "\n\n[… {} bytes cut here: the log was {} bytes, over the limit of {} bytes \
                 (--max-log-size); its first and last {} bytes are kept …]\n\n",
                end - start,
                reader.end,
                limit,
                half
            );
            reader.cut = Some(Cut {
                start,
                end,
                note: note.into_bytes(),
                note_read: 0,
            });
        }
        reader
    }

    /// Number of bytes this reader will return in total.
    pub fn total_len(&self) -> u64 {
        match &self.cut {
            Some(cut) => self.end - (cut.end - cut.start) + cut.note.len() as u64,
            None => self.end,
        }
    }
}

impl io::Read for LogReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(cut) = &mut self.cut
            && self.offset >= cut.start
            && self.offset < cut.end
        {
            let note = &cut.note[cut.note_read..];
            let n = note.len().min(buf.len());
            buf[..n].copy_from_slice(&note[..n]);
            cut.note_read += n;
            if cut.note_read == cut.note.len() {
                self.offset = cut.end;
            }
            return Ok(n);
        }
        let end = match &self.cut {
            Some(cut) if self.offset < cut.start => cut.start,
            _ => self.end,
        };
        if self.offset >= end {
            return Ok(0);
        }
        let chunk = self
            .buffer
            .read_at(self.offset, end, buf.len().min(MAX_CHUNK))?;
        buf[..chunk.len()].copy_from_slice(&chunk);
        self.offset += chunk.len() as u64;
        Ok(chunk.len())
    }
}

impl fmt::Debug for LogReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogReader")
            .field("offset", &self.offset)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}
