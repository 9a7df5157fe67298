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
                    if may_change_a_file(&event.kind)
                        && event.paths.iter().any(|path| relevant(path))
                    {
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

/// Whether an event of this kind can mean that a file changed. Opening or reading one cannot, and
/// every sync opens the ref files (`git for-each-ref`), as does the Git plugin when it copies a
/// commit: waking on those made the bridge sync again after its own syncs and after every build.
fn may_change_a_file(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        notify::EventKind::Access(_) => false,
        _ => true,
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

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::RefWatcher;

    fn git(dir: &std::path::Path, args: &[&str]) {
        // No automatic maintenance: detached, it could touch the refs while the test watches.
        let status = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "maintenance.auto=false", "-c", "gc.auto=0"])
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .status()
            .expect("git runs");
        assert!(status.success(), "git {args:?}");
    }

    /// Reading refs (as every sync does) wakes no one; moving one does.
    #[tokio::test]
    async fn reading_refs_does_not_wake_the_bridge_but_moving_one_does() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        git(dir.path(), &["init", "--quiet", "--initial-branch=main"]);
        git(
            dir.path(),
            &["commit", "--quiet", "--allow-empty", "-m", "first"],
        );
        let git_dir = dir.path().join(".git");
        let (wake, mut woken) = mpsc::channel(1);
        let _watcher = RefWatcher::start(std::slice::from_ref(&git_dir), wake).expect("watching");

        for _ in 0..3 {
            std::fs::read(git_dir.join("HEAD")).expect("HEAD");
            std::fs::read(git_dir.join("refs/heads/main")).expect("the branch");
            std::fs::read_dir(git_dir.join("refs/heads"))
                .expect("the refs")
                .for_each(drop);
            git(dir.path(), &["for-each-ref"]);
        }
        let read = tokio::time::timeout(Duration::from_millis(300), woken.recv()).await;
        assert!(read.is_err(), "reading refs woke the bridge");

        git(dir.path(), &["branch", "second"]);
        let moved = tokio::time::timeout(Duration::from_secs(10), woken.recv()).await;
        assert_eq!(moved, Ok(Some(())), "a new branch woke the bridge");
    }
}
