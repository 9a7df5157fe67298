//! The state store's size on disk, for the dashboard (issue 20): measured by walking its
//! directory at most once a minute, off the async threads, so a dashboard under load costs no
//! more than before.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use datakit_ci_store::Store;

/// How long a measurement is shown before the next one.
const REFRESH: Duration = Duration::from_secs(60);

/// The last measurement of a directory's size. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub(crate) struct StoreSize {
    last: Arc<Mutex<Option<(Instant, u64)>>>,
}

impl StoreSize {
    /// The size in bytes of `store` on disk, measured now if the last measurement is older than
    /// a minute; `None` if it cannot be measured.
    pub(crate) async fn get(&self, store: &Store) -> Option<u64> {
        let cached = *self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, size)) = cached
            && at.elapsed() < REFRESH
        {
            return Some(size);
        }
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.size_on_disk()).await {
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
