//! Reading a commit's tree without a checkout: a file's contents, the object ids of paths (the
//! exact, content-addressed identity of a directory's files), and the paths a commit changed.
//! Each is one `git` process in the repository.

use std::path::Path;

use datakit_ci_process::ExitStatus;
use datakit_ci_term::CommitHash;

use crate::Error;
use crate::git::{capture, git};
use crate::repo::{Commit, git_error};

impl Commit {
    /// This commit in a plain directory: the same queries work on any repository (e.g. a
    /// user's checkout, for a command-line tool), without the plugin's services.
    pub fn tree(&self) -> TreeReader<'_> {
        TreeReader {
            dir: self.repo().dir(),
            hash: self.hash(),
        }
    }
}

/// Reads one commit's tree in the repository at `dir` with `git`.
#[derive(Clone, Copy, Debug)]
pub struct TreeReader<'a> {
    /// The repository (a working directory or a bare repository).
    pub dir: &'a Path,
    /// The commit.
    pub hash: &'a CommitHash,
}

impl TreeReader<'_> {
    /// The contents of the file `path` (relative to the repository's root) in this commit, or
    /// `None` if the commit has no file there. The contents are read as UTF-8 (invalid bytes
    /// become U+FFFD).
    pub async fn read_file(&self, path: &str) -> Result<Option<String>, Error> {
        let Some(entry) = self.tree_ids(&[path.to_owned()]).await?.pop().flatten() else {
            return Ok(None);
        };
        if entry.kind != "blob" {
            return Ok(None);
        }
        self.read_blob(&entry.id).await.map(Some)
    }

    /// The contents of the blob `id` (e.g. a [`TreeEntry::id`] from [`TreeReader::tree_ids`]),
    /// read as UTF-8 (invalid bytes become U+FFFD).
    pub async fn read_blob(&self, id: &str) -> Result<String, Error> {
        self.run(["cat-file", "blob", id]).await
    }

    /// For each of `paths` (relative, `/`-separated; a trailing `/` is ignored), the object it
    /// names in this commit's tree — a tree id for a directory, a blob id for a file — or
    /// `None` if the commit has nothing there. Two commits with the same ids for a set of paths
    /// have exactly the same files under them.
    pub async fn tree_ids(&self, paths: &[String]) -> Result<Vec<Option<TreeEntry>>, Error> {
        let wanted: Vec<String> = paths
            .iter()
            .map(|p| p.trim_end_matches('/').to_owned())
            .collect();
        let mut args = vec![
            "ls-tree".to_owned(),
            "-z".to_owned(),
            "--full-tree".to_owned(),
            self.hash.as_str().to_owned(),
            "--".to_owned(),
        ];
        args.extend(wanted.iter().filter(|p| !p.is_empty()).cloned());
        let listing = if wanted.iter().all(|p| p.is_empty()) {
            String::new()
        } else {
            self.run(args).await?
        };
        let entries: Vec<(String, TreeEntry)> = listing
            .split('\0')
            .filter_map(|line| {
                let (meta, path) = line.split_once('\t')?;
                let mut fields = meta.split(' ');
                let (_mode, kind, id) = (fields.next()?, fields.next()?, fields.next()?);
                Some((
                    path.to_owned(),
                    TreeEntry {
                        kind: kind.to_owned(),
                        id: id.to_owned(),
                    },
                ))
            })
            .collect();
        let root = if wanted.iter().any(String::is_empty) {
            Some(self.root_tree().await?)
        } else {
            None
        };
        Ok(wanted
            .iter()
            .map(|path| {
                if path.is_empty() {
                    return root.clone();
                }
                entries
                    .iter()
                    .find(|(listed, _)| listed == path)
                    .map(|(_, entry)| entry.clone())
            })
            .collect())
    }

    /// The id of this commit's whole tree.
    pub async fn root_tree(&self) -> Result<TreeEntry, Error> {
        let spec = format!("{}^{{tree}}", self.hash);
        let id = self.run(["rev-parse", "--verify", spec.as_str()]).await?;
        Ok(TreeEntry {
            kind: "tree".to_owned(),
            id: id.trim().to_owned(),
        })
    }

    /// The paths whose contents differ between `base` and this commit (added, removed or
    /// changed files), or, without `base`, those of its first parent (every file of a commit
    /// without parents).
    pub async fn changed_paths(&self, base: Option<&CommitHash>) -> Result<Vec<String>, Error> {
        let hash = self.hash.as_str();
        let output = match base {
            Some(base) => {
                self.run([
                    "diff",
                    "--name-only",
                    "-z",
                    "--no-renames",
                    base.as_str(),
                    hash,
                ])
                .await?
            }
            None => {
                self.run([
                    "diff-tree",
                    "--root",
                    "--no-commit-id",
                    "--name-only",
                    "-r",
                    "-z",
                    "--no-renames",
                    hash,
                ])
                .await?
            }
        };
        Ok(output
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// The merge base of this commit and `other`, if they have one.
    pub async fn merge_base(&self, other: &CommitHash) -> Result<Option<CommitHash>, Error> {
        let dir = self.dir;
        let cmd = git(dir, ["merge-base", self.hash.as_str(), other.as_str()]);
        let captured = capture(cmd)
            .await
            .map_err(|source| git_error(dir, source))?;
        match captured.status {
            ExitStatus::Exited(0) => Ok(captured.stdout.trim().parse().ok()),
            ExitStatus::Exited(1) => Ok(None),
            status => Err(Error::UnexpectedStatus {
                command: format!("git merge-base {} {other}", self.hash),
                dir: dir.to_owned(),
                status,
            }),
        }
    }

    /// Runs `git <args>` in the repository; its standard output, or an error naming the command
    /// and what it printed on standard error.
    async fn run<I, S>(&self, args: I) -> Result<String, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let dir = self.dir;
        let cmd = git(dir, args);
        let command = cmd.display();
        let captured = capture(cmd)
            .await
            .map_err(|source| git_error(dir, source))?;
        match captured.status {
            ExitStatus::Exited(0) => Ok(captured.stdout),
            status => Err(Error::Failed {
                command,
                dir: dir.to_owned(),
                status,
                stderr: captured.stderr.trim().to_owned(),
            }),
        }
    }
}

/// An object of a commit's tree.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TreeEntry {
    /// `tree`, `blob` or `commit` (a submodule).
    pub kind: String,
    /// The object's id (hex).
    pub id: String,
}
