//! Access to the bare repository: opening or creating it, and a small pool of thread-local
//! `gix::Repository` handles (each with its own object cache) shared by snapshots and transactions.

use std::ops::Deref;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::Error;

/// Bytes of decoded objects each pooled handle keeps in its cache.
const OBJECT_CACHE_BYTES: usize = 8 * 1024 * 1024;

/// The repository shared by every clone of a store, its snapshots and transactions.
pub(crate) struct Repo {
    shared: gix::ThreadSafeRepository,
    idle: Mutex<Vec<gix::Repository>>,
    /// Held while merging packs, which only one thread may do at a time.
    maintenance: Mutex<()>,
}

impl Repo {
    /// Opens the bare repository at `path`, creating it first if the directory is missing or empty.
    pub(crate) fn open_or_init(path: &Path) -> Result<Repo, Error> {
        // Each commit with many new objects adds a pack, so leave room for many more packs than the
        // store has at opening (gix's default is barely more than it finds).
        let slots = gix::odb::store::init::Slots::AsNeededByDiskState {
            multiplier: 2.0,
            minimum: 4096,
        };
        let options = || {
            gix::open::Options::isolated()
                .strict_config(false)
                .object_store_slots(slots)
        };
        let shared = if path.join("HEAD").is_file() {
            gix::ThreadSafeRepository::open_opts(path, options())
                .map_err(Error::git("open repository"))?
        } else {
            match gix::ThreadSafeRepository::init_opts(
                path,
                gix::create::Kind::Bare,
                gix::create::Options::default(),
                options(),
            ) {
                Ok(repo) => repo,
                // Another process may have created it between our check and our init.
                Err(_) if path.join("HEAD").is_file() => {
                    gix::ThreadSafeRepository::open_opts(path, options())
                        .map_err(Error::git("open repository"))?
                }
                Err(source) => return Err(Error::git("create bare repository")(source)),
            }
        };
        Ok(Repo {
            shared,
            idle: Mutex::new(Vec::new()),
            maintenance: Mutex::new(()),
        })
    }

    /// Merges packs if there are too many, unless another thread is already doing it. Failures are
    /// only logged: the commit that triggered this has already succeeded.
    pub(crate) fn maintain(&self, repo: &gix::Repository) {
        let Ok(_only_us) = self.maintenance.try_lock() else {
            return;
        };
        if let Err(error) = crate::pack::consolidate(repo) {
            tracing::warn!(%error, "cannot merge packs");
        }
    }

    /// Borrows an idle thread-local handle (or makes one) until the returned guard is dropped.
    pub(crate) fn get(self: &Arc<Self>) -> PooledRepo {
        let idle = self.idle.lock().expect("repo pool lock poisoned").pop();
        let repo = idle.unwrap_or_else(|| {
            let mut repo = self.shared.to_thread_local();
            repo.object_cache_size_if_unset(OBJECT_CACHE_BYTES);
            repo
        });
        PooledRepo {
            repo: Some(repo),
            home: Arc::clone(self),
        }
    }
}

/// A thread-local repository handle on loan from the pool; returned when dropped.
pub(crate) struct PooledRepo {
    repo: Option<gix::Repository>,
    home: Arc<Repo>,
}

impl Deref for PooledRepo {
    type Target = gix::Repository;
    fn deref(&self) -> &gix::Repository {
        self.repo.as_ref().expect("repo is only taken on drop")
    }
}

impl Drop for PooledRepo {
    fn drop(&mut self) {
        if let Some(repo) = self.repo.take()
            && let Ok(mut idle) = self.home.idle.lock()
        {
            idle.push(repo);
        }
    }
}
