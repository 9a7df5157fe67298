//! The state store's size on disk, for the dashboard (issue 20): measured by walking its
//! directory at most once a minute, off the async threads, so a dashboard under load costs no
//! more than before.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a measurement is shown before the next one.
const REFRESH: Duration = Duration::from_secs(60);

/// The last measurement of a directory's size. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub(crate) struct StoreSize {
    last: Arc<Mutex<Option<(Instant, u64)>>>,
}

impl StoreSize {
    /// The size in bytes of the files under `dir`, measured now if the last measurement is older
    /// than a minute; `None` if it cannot be measured.
    pub(crate) async fn get(&self, dir: &Path) -> Option<u64> {
        let cached = *self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, size)) = cached
            && at.elapsed() < REFRESH
        {
            return Some(size);
        }
        let dir: PathBuf = dir.to_owned();
        match tokio::task::spawn_blocking(move || directory_size(&dir)).await {
            Ok(Ok(size)) => {
                *self.last.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((Instant::now(), size));
                Some(size)
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot measure the state store's size");
                None
            }
            Err(error) => {
                tracing::warn!(%error, "measuring the state store's size failed");
                None
            }
        }
    }
}

/// The total size of the files under `dir` (not following symbolic links). Files that vanish
/// while it walks (merged packs) are skipped.
fn directory_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let metadata = match entry.metadata() {
                Ok(metadata) => metadata,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
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
