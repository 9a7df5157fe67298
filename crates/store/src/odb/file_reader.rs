//! Reading a stored file as a stream, so that a log of gigabytes is never held whole in memory.
//!
//! A loose object is a zlib stream of `<type> <size>\0<content>`: [`FileReader`] inflates it
//! piece by piece and skips the header. Objects in packs (files up to 256 KiB written whole; big
//! and streamed files are loose) are read whole, which is what gix offers for them.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::Path;

use gix::ObjectId;

/// A reader over a stored file's contents. See [`Snapshot::open_file`](crate::Snapshot::open_file).
pub struct FileReader {
    source: Source,
}

enum Source {
    Loose {
        file: BufReader<File>,
        inflate: gix::zlib::Decompress,
        /// Inflated content bytes not yet returned (the part after the header of the first read).
        pending: Vec<u8>,
        header_done: bool,
    },
    Memory(Cursor<Vec<u8>>),
}

impl std::fmt::Debug for FileReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.source {
            Source::Loose { .. } => "loose",
            Source::Memory(_) => "memory",
        };
        f.debug_struct("FileReader").field("source", &kind).finish()
    }
}

impl FileReader {
    /// Streams the loose object `id` from `objects_dir`, or `None` if it is not loose.
    pub(crate) fn loose(objects_dir: &Path, id: ObjectId) -> io::Result<Option<FileReader>> {
        let hex = id.to_hex().to_string();
        match File::open(objects_dir.join(&hex[..2]).join(&hex[2..])) {
            Ok(file) => Ok(Some(FileReader {
                source: Source::Loose {
                    file: BufReader::with_capacity(64 * 1024, file),
                    inflate: gix::zlib::Decompress::new(),
                    pending: Vec::new(),
                    header_done: false,
                },
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A reader over contents already in memory.
    pub(crate) fn memory(data: Vec<u8>) -> FileReader {
        FileReader {
            source: Source::Memory(Cursor::new(data)),
        }
    }
}

impl Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.source {
            Source::Memory(cursor) => cursor.read(buf),
            Source::Loose {
                file,
                inflate,
                pending,
                header_done,
            } => {
                while !*header_done {
                    let mut chunk = [0u8; 256];
                    let n = gix::zlib::stream::inflate::read(file, inflate, &mut chunk)?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "loose object without a header",
                        ));
                    }
                    pending.extend_from_slice(&chunk[..n]);
                    if let Some(nul) = pending.iter().position(|b| *b == 0) {
                        pending.drain(..=nul);
                        *header_done = true;
                    } else if pending.len() > 64 {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "loose object header too long",
                        ));
                    }
                }
                if !pending.is_empty() {
                    let n = pending.len().min(buf.len());
                    buf[..n].copy_from_slice(&pending[..n]);
                    pending.drain(..n);
                    return Ok(n);
                }
                gix::zlib::stream::inflate::read(file, inflate, buf)
            }
        }
    }
}
