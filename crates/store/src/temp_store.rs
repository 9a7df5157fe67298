//! A store in a temporary directory, for the crate's unit tests.

use std::path::PathBuf;
use std::sync::Arc;

use crate::Store;
use crate::state::State;

/// A store opened on `state.git` in a temporary directory, deleted when dropped.
pub(crate) struct TempStore {
    pub(crate) store: Store,
    pub(crate) git_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl TempStore {
    pub(crate) fn new() -> TempStore {
        let dir = tempfile::tempdir().expect("make a temporary directory");
        let git_dir = dir.path().join("state.git");
        let store = Store::open(&git_dir).expect("open store");
        TempStore {
            store,
            git_dir,
            _dir: dir,
        }
    }

    pub(crate) fn repo(&self) -> &Arc<State> {
        self.store.repo()
    }

    /// The files of the pack directory whose names satisfy `wanted`, sorted.
    pub(crate) fn pack_dir_files(&self, wanted: impl Fn(&str) -> bool) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.git_dir.join("objects/pack"))
            .expect("list the pack directory")
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.file_name()
                    .is_some_and(|name| wanted(&name.to_string_lossy()))
            })
            .collect();
        files.sort();
        files
    }

    /// The packs (their `.idx` files), sorted.
    pub(crate) fn pack_indexes(&self) -> Vec<PathBuf> {
        self.pack_dir_files(|name| name.ends_with(".idx"))
    }
}
