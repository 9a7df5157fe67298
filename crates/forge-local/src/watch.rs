//! Noticing ref changes in local repositories: file-system notifications on their Git directories
//! ([`RefWatcher`]) and, as the fallback, a cheap fingerprint of the files that hold refs
//! ([`fingerprint`]) compared on every poll. Knows nothing of the store.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// File-system notifications for the ref files of some Git directories; each relevant event sends
/// a wake-up on the channel given to [`RefWatcher::start`]. Stops when dropped.
pub(crate) struct RefWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl RefWatcher {
    /// Watches `refs/` (recursively), `packed-refs` and `HEAD` of every directory in `git_dirs`.
    pub(crate) fn start(
        git_dirs: &[PathBuf],
        wake: mpsc::Sender<()>,
    ) -> Result<RefWatcher, notify::Error> {
        let refs_dirs: Vec<PathBuf> = git_dirs.iter().map(|dir| dir.join("refs")).collect();
        let relevant = {
            let refs_dirs = refs_dirs.clone();
            move |path: &Path| {
                let name = path.file_name().and_then(|name| name.to_str());
                if name.is_some_and(|name| name.ends_with(".lock")) {
                    return false;
                }
                matches!(name, Some("packed-refs" | "HEAD"))
                    || refs_dirs.iter().any(|dir| path.starts_with(dir))
            }
        };
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) => {
                    if event.paths.iter().any(|path| relevant(path)) {
                        match wake.try_send(()) {
                            // Full: a wake-up is already pending, which covers this event too.
                            Ok(()) | Err(mpsc::error::TrySendError::Full(())) => {}
                            Err(mpsc::error::TrySendError::Closed(())) => {
                                tracing::debug!("ref event after the bridge stopped");
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "file-system notification error"),
            })?;
        for (git_dir, refs_dir) in git_dirs.iter().zip(&refs_dirs) {
            watcher.watch(git_dir, RecursiveMode::NonRecursive)?;
            watcher.watch(refs_dir, RecursiveMode::Recursive)?;
        }
        Ok(RefWatcher { _watcher: watcher })
    }
}

/// A hash of the names, sizes, modification times and inodes of `HEAD`, `packed-refs` and
/// everything under `refs/` in `git_dir`: it changes whenever Git creates, moves or deletes a ref
/// (blocking; a few thousand `stat`s for a repository with thousands of loose refs).
pub(crate) fn fingerprint(git_dir: &Path) -> u64 {
    let mut hasher = DefaultHasher::new();
    for name in ["HEAD", "packed-refs"] {
        hash_entry(
            &mut hasher,
            &git_dir.join(name),
            std::fs::metadata(git_dir.join(name)),
        );
    }
    let mut stack = vec![git_dir.join("refs")];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) => {
                error.kind().hash(&mut hasher);
                continue;
            }
        };
        let mut children: Vec<(PathBuf, std::io::Result<std::fs::Metadata>)> = entries
            .filter_map(Result::ok)
            .map(|entry| (entry.path(), entry.metadata()))
            .collect();
        children.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, metadata) in children {
            if metadata.as_ref().is_ok_and(std::fs::Metadata::is_dir) {
                stack.push(path.clone());
            }
            hash_entry(&mut hasher, &path, metadata);
        }
    }
    hasher.finish()
}

fn hash_entry(
    hasher: &mut DefaultHasher,
    path: &Path,
    metadata: std::io::Result<std::fs::Metadata>,
) {
    path.hash(hasher);
    match metadata {
        Ok(metadata) => {
            metadata.len().hash(hasher);
            metadata.modified().ok().hash(hasher);
            #[cfg(unix)]
            std::os::unix::fs::MetadataExt::ino(&metadata).hash(hasher);
        }
        Err(error) => error.kind().hash(hasher),
    }
}
