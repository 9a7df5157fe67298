//! Copying files out of a container whose command has ended, before it is removed (a pipeline
//! step's artifacts): each asked path is downloaded as a tar archive (the Engine API's
//! `GET /containers/<id>/archive`) and its regular files are offered one by one to a
//! [`CopyOutSink`], which decides which to keep; kept files are written under a local directory.
//!
//! Links are never followed nor written (a link in the container could name any file of its
//! image); they and other special files are only reported. Only plain relative paths are
//! written, into a directory the caller owns, so nothing lands outside it. Knows nothing of
//! what the files are for, nor of globs: the sink decides.

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bollard::Docker;
use bollard::query_parameters::DownloadFromContainerOptions;
use bytes::Bytes;
use futures::StreamExt;

use crate::host::is_not_found;

/// What a container's file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopiedKind {
    /// A regular file: offered with its size, written if kept.
    File,
    /// A symbolic or hard link: never followed nor written.
    Link,
    /// Anything else (a device, a pipe, a name that is not a plain relative UTF-8 path).
    Other,
}

/// Decides which files a copy keeps, and hears why a copy could not be made.
pub trait CopyOutSink: Send + Sync {
    /// A file found under one of the asked paths: `path` is relative to the container's working
    /// directory, `size` its size in bytes (0 for links and other files). Returns whether to
    /// keep it (only a [`CopiedKind::File`] is ever written).
    fn offer(&self, path: &str, size: u64, kind: CopiedKind) -> bool;

    /// The copy could not be made, or not completely (a daemon error, an executor that cannot
    /// copy from its containers), in words for the job's log.
    fn failed(&self, message: &str);
}

/// Files to copy out of a container once its command has ended (whatever its exit status; not
/// after a cancel or a timeout), before it is removed.
#[derive(Clone)]
pub struct CopyOut {
    /// Paths relative to the working directory, each a file or a directory (copied whole, as
    /// far as the sink keeps its files); `""` is the working directory itself. A path that does
    /// not exist offers nothing.
    pub paths: Vec<String>,
    /// Where kept files are written, at their paths relative to the working directory. It should
    /// be empty and the caller's own.
    pub into: PathBuf,
    /// Decides what is kept.
    pub sink: Arc<dyn CopyOutSink>,
}

impl std::fmt::Debug for CopyOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyOut")
            .field("paths", &self.paths)
            .field("into", &self.into)
            .finish_non_exhaustive()
    }
}

/// Copies `copy`'s paths out of the container `id` (working directory `workdir`) on `docker`;
/// every problem goes to the sink.
pub(crate) async fn copy(docker: &Docker, host: &str, id: &str, workdir: &str, copy: &CopyOut) {
    for path in &copy.paths {
        let in_container = match path.as_str() {
            "" => workdir.to_owned(),
            path => format!("{}/{path}", workdir.trim_end_matches('/')),
        };
        if let Err(message) = copy_path(docker, id, &in_container, path, copy).await {
            copy.sink.failed(&format!(
                "cannot copy {in_container} out of the container on Docker host {host}: {message}"
            ));
        }
    }
}

/// Copies one path: the archive is read as it arrives, by a blocking task (the `tar` crate reads
/// synchronously), through a small bounded channel, so that a big archive is never held whole.
async fn copy_path(
    docker: &Docker,
    id: &str,
    in_container: &str,
    relative: &str,
    copy: &CopyOut,
) -> Result<(), String> {
    let mut stream = docker.download_from_container(
        id,
        Some(DownloadFromContainerOptions {
            path: in_container.to_owned(),
        }),
    );
    let first = match stream.next().await {
        None => return Ok(()),
        // Nothing at that path: nothing to offer (the sink reports patterns that matched nothing).
        Some(Err(e)) if is_not_found(&e) => return Ok(()),
        Some(Err(e)) => return Err(e.to_string()),
        Some(Ok(bytes)) => bytes,
    };
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(8);
    let (into, sink, relative) = (
        copy.into.clone(),
        Arc::clone(&copy.sink),
        relative.to_owned(),
    );
    let extract = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            receiver,
            current: Bytes::new(),
        };
        extract(reader, &relative, &into, sink.as_ref())
    });
    let mut stream_error = None;
    if sender.send(first).await.is_ok() {
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    if sender.send(bytes).await.is_err() {
                        // The archive ended (or failed) before the stream did.
                        break;
                    }
                }
                Err(e) => {
                    stream_error = Some(e.to_string());
                    break;
                }
            }
        }
    }
    drop(sender);
    let extracted = extract
        .await
        .map_err(|e| format!("the copy stopped: {e}"))?;
    match (stream_error, extracted) {
        (Some(error), _) => Err(error),
        (None, result) => result,
    }
}

/// Reads the tar archive of `relative` (whose entries start with its last component, or the
/// working directory's name for `""`), offering each entry to `sink` and writing the kept files
/// under `into`.
fn extract(
    reader: impl Read,
    relative: &str,
    into: &Path,
    sink: &dyn CopyOutSink,
) -> Result<(), String> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| format!("cannot read the archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("cannot read the archive: {e}"))?;
        let raw = entry
            .path()
            .map_err(|e| format!("cannot read the archive: {e}"))?
            .into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        let Some(path) = local_path(relative, &raw) else {
            sink.offer(&raw.to_string_lossy(), 0, CopiedKind::Other);
            continue;
        };
        if kind.is_symlink() || kind.is_hard_link() {
            sink.offer(&path, 0, CopiedKind::Link);
            continue;
        }
        if !(kind.is_file() || kind.is_contiguous()) {
            sink.offer(&path, 0, CopiedKind::Other);
            continue;
        }
        let size = entry.size();
        if !sink.offer(&path, size, CopiedKind::File) {
            continue;
        }
        let target = into.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot make {}: {e}", parent.display()))?;
        }
        let mut file = std::fs::File::create(&target)
            .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
        std::io::copy(&mut entry, &mut file).map_err(|e| format!("cannot copy {path} out: {e}"))?;
    }
    Ok(())
}

/// The path, relative to the working directory, of the archive entry `raw` of the asked path
/// `relative`; `None` unless it is a plain relative UTF-8 path (no `..`, no root).
fn local_path(relative: &str, raw: &Path) -> Option<String> {
    let mut components = Vec::new();
    for component in raw.components() {
        match component {
            Component::Normal(name) => components.push(name.to_str()?),
            Component::CurDir => {}
            _ => return None,
        }
    }
    // The first component is the asked path's own name.
    let rest = components.get(1..)?.join("/");
    let path = match (relative, rest.as_str()) {
        ("", rest) => rest.to_owned(),
        (relative, "") => relative.to_owned(),
        (relative, rest) => format!("{relative}/{rest}"),
    };
    (!path.is_empty()).then_some(path)
}

/// A blocking reader over the chunks of a channel.
struct ChannelReader {
    receiver: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(bytes) => self.current = bytes,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn entries_map_back_to_paths_under_the_working_directory() {
        let path = |relative, raw: &str| local_path(relative, Path::new(raw));
        assert_eq!(
            path("reports", "reports/a.xml").as_deref(),
            Some("reports/a.xml")
        );
        assert_eq!(path("out/a.txt", "a.txt").as_deref(), Some("out/a.txt"));
        assert_eq!(path("", "src/x/y").as_deref(), Some("x/y"));
        assert_eq!(path("", "src"), None);
        assert_eq!(path("a", "a/../../etc/passwd"), None);
        assert_eq!(path("a", "/etc/passwd"), None);
    }

    /// Keeps files up to a total, records everything offered.
    struct Keep {
        limit: u64,
        offered: Mutex<Vec<(String, u64, CopiedKind)>>,
    }

    impl CopyOutSink for Keep {
        fn offer(&self, path: &str, size: u64, kind: CopiedKind) -> bool {
            let mut offered = self.offered.lock().expect("not poisoned");
            offered.push((path.to_owned(), size, kind));
            kind == CopiedKind::File && size <= self.limit
        }
        fn failed(&self, message: &str) {
            panic!("unexpected failure: {message}");
        }
    }

    #[test]
    fn kept_files_are_written_and_links_never() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8], kind: tar::EntryType| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            if kind.is_symlink() {
                header.set_link_name("/etc/passwd").expect("a link name");
            }
            header.set_path(path).expect("a path");
            header.set_cksum();
            builder.append(&header, data).expect("appends");
        };
        add("reports/", b"", tar::EntryType::Directory);
        add("reports/a.xml", b"<a/>", tar::EntryType::Regular);
        add("reports/big.bin", &[0; 100], tar::EntryType::Regular);
        add("reports/link", b"", tar::EntryType::Symlink);
        let archive = builder.into_inner().expect("an archive");
        let into = tempfile::tempdir().expect("a directory");
        let sink = Keep {
            limit: 10,
            offered: Mutex::new(Vec::new()),
        };
        extract(&archive[..], "reports", into.path(), &sink).expect("extracts");
        assert_eq!(
            *sink.offered.lock().expect("not poisoned"),
            [
                ("reports/a.xml".to_owned(), 4, CopiedKind::File),
                ("reports/big.bin".to_owned(), 100, CopiedKind::File),
                ("reports/link".to_owned(), 0, CopiedKind::Link),
            ]
        );
        assert_eq!(
            std::fs::read(into.path().join("reports/a.xml")).expect("kept"),
            b"<a/>"
        );
        assert!(!into.path().join("reports/big.bin").exists());
        assert!(
            std::fs::symlink_metadata(into.path().join("reports/link")).is_err(),
            "a link is never written"
        );
    }
}
