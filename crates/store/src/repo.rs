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
}

impl Repo {
    /// Opens the bare repository at `path`, creating it first if the directory is missing or empty.
    pub(crate) fn open_or_init(path: &Path) -> Result<Repo, Error> {
        // `git gc` may add packs while we run; leave room for more than the store has at opening.
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
        })
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
