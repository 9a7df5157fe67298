//! The exclusive owner lock of a store: `<store>/datakit-ci.lock`, locked with `flock` (through fs4)
//! and holding the owner's PID so a second opener can say who is in the way.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::Error;

/// Name of the lock file inside the store directory.
pub(crate) const LOCK_FILE: &str = "datakit-ci.lock";

/// How long a second opener waits for the holder to finish writing its PID before reporting it unknown.
const PID_WAIT: Duration = Duration::from_secs(1);

/// Holds the lock until dropped (closing the file releases the `flock`).
#[derive(Debug)]
pub(crate) struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Takes the lock on the store at `dir`, or reports who holds it.
    pub(crate) fn acquire(dir: &Path) -> Result<StoreLock, Error> {
        let lock_path = dir.join(LOCK_FILE);
        let io_error = |source| Error::Io {
            path: lock_path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io_error)?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: dir.to_owned(),
                    pid: read_holder_pid(&lock_path),
                });
            }
            Err(fs4::TryLockError::Error(source)) => return Err(io_error(source)),
        }
        file.set_len(0).map_err(io_error)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(io_error)?;
        file.flush().map_err(io_error)?;
        tracing::debug!(path = %dir.display(), "locked state store");
        Ok(StoreLock { _file: file })
    }
}

/// Reads the PID the holder wrote, waiting briefly in case it has locked but not yet written.
fn read_holder_pid(lock_path: &PathBuf) -> Option<u32> {
    let deadline = Instant::now() + PID_WAIT;
    loop {
        let mut contents = String::new();
        let read = File::open(lock_path).and_then(|mut f| f.read_to_string(&mut contents));
        if read.is_ok()
            && let Ok(pid) = contents.trim().parse()
        {
            return Some(pid);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
