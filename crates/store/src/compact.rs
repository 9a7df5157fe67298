//! Compaction (issue 20): frees the disk that objects no branch reaches any more take (logs
//! removed by retention, earlier versions of rewritten branches), by repacking what is reachable
//! into one pack and deleting the rest.
//!
//! It runs `git` on the repository while no store has it open — it takes the store's lock —
//! because this store's writers assume that an object stays once written: a commit skips objects
//! it believes stored (its own recent writes, or the object database's answer), and large files
//! are written before their commit. Deleting unreachable objects under a live store could delete
//! one a commit in flight is about to reference. gix has no repack or prune yet; `git` is already
//! a requirement of the CI.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::Error;
use crate::refs::StoreLock;

/// What a compaction did: the size of the object database before and after, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compaction {
    /// Bytes under `objects/` before.
    pub before: u64,
    /// Bytes under `objects/` after.
    pub after: u64,
}

/// Compacts the store at `path`; see [`Store::compact`](crate::Store::compact).
pub(crate) fn compact(path: &Path) -> Result<Compaction, Error> {
    let _lock = acquire_after_close(path)?;
    let objects = path.join("objects");
    let before = size_of(&objects, path)?;
    // Reflogs would keep every earlier head reachable; the store writes none by default.
    git(path, "reflog", &["expire", "--expire=now", "--all"])?;
    // Everything reachable into one pack; the old packs, with what only they held, deleted.
    git(
        path,
        "repack",
        &["-a", "-d", "-q", "--no-write-bitmap-index"],
    )?;
    // Unreachable loose objects (files of 256 KiB or more are stored loose) and temporary files.
    git(path, "prune", &["--expire=now"])?;
    let after = size_of(&objects, path)?;
    tracing::info!(path = %path.display(), before, after, "store compacted");
    Ok(Compaction { before, after })
}

/// How long compaction waits for a store of this process that is closing to release its lock.
const CLOSING_WAIT: Duration = Duration::from_secs(2);

/// Takes the store's lock, waiting a little if this process holds it: a store just dropped may
/// still be released by a task finishing, and a child process forked (by another thread) before
/// it executes its program holds our descriptors, and so the lock, until it does.
fn acquire_after_close(path: &Path) -> Result<StoreLock, Error> {
    let deadline = Instant::now() + CLOSING_WAIT;
    loop {
        match StoreLock::acquire(path) {
            Err(Error::Locked { pid: Some(pid), .. })
                if pid == std::process::id() && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn git(path: &Path, command: &'static str, args: &[&str]) -> Result<(), Error> {
    let failed = |message: String| Error::Maintenance {
        path: path.to_owned(),
        command,
        message,
    };
    let output = Command::new("git")
        .arg("-C")
        .arg(path)
        .arg(command)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .map_err(|error| failed(format!("cannot run git: {error}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(failed(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// The total size of the files under `dir` (not following symbolic links). Files that vanish
/// while it walks (merged packs) are skipped.
pub(crate) fn size_of(dir: &Path, repo: &Path) -> Result<u64, Error> {
    let io = |source| Error::Io {
        path: repo.to_owned(),
        source,
    };
    let mut total = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let metadata = match entry.metadata() {
                Ok(metadata) => metadata,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(io(error)),
            };
            if metadata.is_dir() {
                pending.push(entry.path());
            } else {
                total += metadata.len();
            }
        }
    }
    Ok(total)
}
