//! A step's artifacts (`artifacts: [paths]`): after its script ends by itself — passing or
//! failing, since a failed run's reports are often what people need — the files its patterns
//! select are copied out of its checkout (a host step's clone) or its container (before the
//! container is removed), then written to the step's cache entry (`artifacts/`, see
//! [`datakit_ci_cache::write_artifacts`]) with its result, so a reused result still offers them.
//! Not collected after a timeout or a cancel, nor on Swarm (the log says so).
//!
//! `select.rs` decides (globs, links, the limit); this module finds the files and stores them.

mod select;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datakit_ci_docker::{CopiedKind, CopyOut, CopyOutSink};
use datakit_ci_log::LiveLog;
use datakit_ci_pipeline::Job;
use datakit_ci_store::Transaction;

pub use select::DEFAULT_MAX_ARTIFACT_SIZE;
use select::{Patterns, Selection};

/// One attempt's collection of a step's artifacts: what is selected, and the directory the kept
/// files are copied to until they are stored.
pub(crate) struct Collection {
    selection: Arc<Selection>,
    staging: tempfile::TempDir,
}

impl Collection {
    /// The collection of `job`'s artifacts, keeping at most `limit` bytes, staged in `staging`;
    /// `None` when the job has none.
    pub(crate) fn new(
        job: &Job,
        limit: u64,
        staging: impl FnOnce() -> Result<tempfile::TempDir, String>,
    ) -> Result<Option<Collection>, String> {
        if job.artifacts.is_empty() {
            return Ok(None);
        }
        let patterns = Patterns::new(&job.artifacts)?;
        Ok(Some(Collection {
            selection: Arc::new(Selection::new(patterns, limit)),
            staging: staging()?,
        }))
    }

    /// Copies the selected files of the checkout `dir` (links never followed, `.git` never
    /// looked at). A problem reading it is reported in the step's log, not a failure.
    pub(crate) async fn collect_from_checkout(&self, dir: &Path) {
        let (selection, into, dir) = (
            Arc::clone(&self.selection),
            self.staging.path().to_owned(),
            dir.to_owned(),
        );
        let walked =
            tokio::task::spawn_blocking(move || walk_checkout(&dir, &selection, &into)).await;
        let problem = match walked {
            Ok(Ok(())) => return,
            Ok(Err(message)) => message,
            Err(e) => format!("the copy stopped: {e}"),
        };
        self.selection.failed(&format!(
            "cannot copy the artifacts out of the checkout: {problem}"
        ));
    }

    /// What a container's request asks for: the roots of the patterns, relative to its
    /// working directory (the checkout), kept by this collection's selection.
    pub(crate) fn copy_out(&self) -> CopyOut {
        CopyOut {
            paths: self.selection.patterns().roots(),
            into: self.staging.path().to_owned(),
            sink: Arc::clone(&self.selection) as Arc<dyn CopyOutSink>,
        }
    }

    /// Logs what was kept and left, and writes the kept files into the step's `transaction`.
    /// `Ok(Some(message))`: files were dropped for the limit, and the step fails with it.
    pub(crate) fn record(
        &self,
        log: &LiveLog,
        transaction: &mut Transaction,
    ) -> Result<Option<String>, String> {
        let report = self.selection.report();
        let limit = self.selection.limit();
        for line in report.log_lines(limit) {
            log.log(&line);
        }
        let paths: Vec<String> = report.kept.iter().map(|(path, _)| path.clone()).collect();
        let staging = self.staging.path();
        // Written synchronously, as the cache writes the log: at most `limit` bytes, into the
        // store's own files.
        datakit_ci_cache::write_artifacts(transaction, &paths, |path| {
            std::fs::File::open(staging.join(path))
        })
        .map_err(|e| {
            format!(
                "cannot store the artifacts: {}",
                datakit_ci_git::error_chain(&e)
            )
        })?;
        Ok(report.over_limit_failure(limit))
    }
}

/// Offers the files under each root of `selection`'s patterns in `checkout` to it, and copies
/// those it keeps to `into`.
fn walk_checkout(checkout: &Path, selection: &Selection, into: &Path) -> Result<(), String> {
    'roots: for root in selection.patterns().roots() {
        let mut path = checkout.to_path_buf();
        let mut relative = String::new();
        // Every directory on the way must be one, not a link to one.
        let components: Vec<&str> = root.split('/').filter(|c| !c.is_empty()).collect();
        for (index, component) in components.iter().enumerate() {
            if *component == ".git" {
                continue 'roots;
            }
            path.push(component);
            if !relative.is_empty() {
                relative.push('/');
            }
            relative.push_str(component);
            let last = index + 1 == components.len();
            match std::fs::symlink_metadata(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue 'roots,
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
                Ok(meta) if meta.file_type().is_symlink() => {
                    selection.offer(&relative, 0, CopiedKind::Link);
                    continue 'roots;
                }
                Ok(meta) if !last && !meta.is_dir() => continue 'roots,
                Ok(_) => {}
            }
        }
        visit(&path, &relative, selection, into)?;
    }
    Ok(())
}

/// Offers `path` (at `relative` in the checkout), or everything under it for a directory.
fn visit(path: &Path, relative: &str, selection: &Selection, into: &Path) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        selection.offer(relative, 0, CopiedKind::Link);
    } else if kind.is_dir() {
        let mut names: Vec<(String, PathBuf)> = Vec::new();
        let entries =
            std::fs::read_dir(path).map_err(|e| format!("cannot list {}: {e}", path.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", path.display()))?;
            let name = entry.file_name();
            let child = match name.to_str() {
                Some(".git") => continue,
                Some(name) => join(relative, name),
                None => {
                    selection.offer(
                        &join(relative, &name.to_string_lossy()),
                        0,
                        CopiedKind::Other,
                    );
                    continue;
                }
            };
            names.push((child, entry.path()));
        }
        names.sort();
        for (child, child_path) in names {
            visit(&child_path, &child, selection, into)?;
        }
    } else if kind.is_file() {
        if selection.offer(relative, meta.len(), CopiedKind::File) {
            let target = into.join(relative);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot make {}: {e}", parent.display()))?;
            }
            // The clone and the staging directory are usually on one file system: a link is
            // free. The step's processes are gone, so the file no longer changes.
            if std::fs::hard_link(path, &target).is_err() {
                std::fs::copy(path, &target)
                    .map_err(|e| format!("cannot copy {}: {e}", path.display()))?;
            }
        }
    } else if !relative.is_empty() {
        selection.offer(relative, 0, CopiedKind::Other);
    }
    Ok(())
}

fn join(relative: &str, name: &str) -> String {
    if relative.is_empty() {
        name.to_owned()
    } else {
        format!("{relative}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, path: &str, contents: &[u8]) {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("makes the directory");
        std::fs::write(path, contents).expect("writes");
    }

    /// A checkout's files are selected by the patterns; links (to a file outside, to a
    /// directory outside) are never followed; `.git` is never looked at.
    #[test]
    fn the_checkout_walk_keeps_selected_files_and_never_follows_links() {
        let checkout = tempfile::tempdir().expect("a directory");
        let outside = tempfile::tempdir().expect("a directory");
        let into = tempfile::tempdir().expect("a directory");
        let dir = checkout.path();
        write(dir, "out.txt", b"out");
        write(dir, "reports/a.xml", b"<a/>");
        write(dir, "reports/b.txt", b"b");
        write(dir, ".git/config", b"secret");
        write(outside.path(), "secret", b"secret");
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.join("reports/leak.xml"))
            .expect("a link");
        std::os::unix::fs::symlink(outside.path(), dir.join("linked")).expect("a link");
        let selection = |texts: &[&str]| {
            let texts: Vec<String> = texts.iter().map(|s| s.to_string()).collect();
            Selection::new(Patterns::new(&texts).expect("valid"), 1 << 20)
        };
        let git = selection(&["**/config", "*"]);
        walk_checkout(dir, &git, into.path()).expect("walks");
        assert_eq!(git.report().unmatched, ["**/config"]);
        let into = tempfile::tempdir().expect("a directory");
        let selection = selection(&["out.txt", "reports/*.xml", "linked/secret", "gone"]);
        walk_checkout(dir, &selection, into.path()).expect("walks");
        let report = selection.report();
        assert_eq!(
            report.kept,
            [("out.txt".to_owned(), 3), ("reports/a.xml".to_owned(), 4)]
        );
        let skipped: Vec<&str> = report.skipped.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(skipped, ["linked", "reports/leak.xml"]);
        assert_eq!(report.unmatched, ["gone"]);
        assert_eq!(
            std::fs::read(into.path().join("reports/a.xml")).expect("kept"),
            b"<a/>"
        );
        assert!(!into.path().join("reports/leak.xml").exists());
        assert!(!into.path().join("linked").exists());
    }
}
