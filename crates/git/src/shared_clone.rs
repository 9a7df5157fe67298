//! Temporary clones that share a repository's object database: the checkout method of
//! [`Repo::with_clone`](crate::Repo::with_clone) and so of every [`Command`](crate::Command) run in
//! a clone.
//!
//! `git clone --shared --no-checkout` copies every ref of the source (one per commit ever fetched,
//! so its cost grows with the CI's age: ~13 ms with a handful of refs, ~47 ms with 2,000 here) and
//! installs the hook templates; a build needs none of that. The clone is made in-process instead:
//! a `.git` directory whose object database borrows the source's (`objects/info/alternates`, as
//! `--shared` does), `HEAD` detached at the commit and `origin` pointing at the source; one
//! `git read-tree --reset -u HEAD` then fills in the index and the work tree.

use std::io;
use std::path::{Path, PathBuf};

use datakit_ci_log::LiveLog;
use datakit_ci_term::CommitHash;

use crate::Error;
use crate::git::git;
use crate::repo::run_git;

/// Makes clones of one repository that share its object database.
///
/// ```
/// # use datakit_ci_git::SharedClone;
/// # fn git(dir: &std::path::Path, args: &[&str]) -> anyhow::Result<String> {
/// #     let out = std::process::Command::new("git").args(args).current_dir(dir)
/// #         .env("GIT_AUTHOR_NAME", "A").env("GIT_AUTHOR_EMAIL", "a@example.com")
/// #         .env("GIT_COMMITTER_NAME", "A").env("GIT_COMMITTER_EMAIL", "a@example.com")
/// #         .output()?;
/// #     anyhow::ensure!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
/// #     Ok(String::from_utf8(out.stdout)?)
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> anyhow::Result<()> {
/// # let tmp = tempfile::tempdir()?;
/// # let repo = tmp.path().join("repo");
/// # std::fs::create_dir(&repo)?;
/// # git(&repo, &["init", "--quiet"])?;
/// # std::fs::write(repo.join("README"), "hello\n")?;
/// # git(&repo, &["add", "README"])?;
/// # git(&repo, &["commit", "--quiet", "-m", "first"])?;
/// # let head: datakit_ci_term::CommitHash = git(&repo, &["rev-parse", "HEAD"])?.trim().parse()?;
/// let clones = SharedClone::new(&repo)?;
/// let dest = tmp.path().join("build");
/// clones.checkout(&head, &dest, None).await?;
/// assert_eq!(std::fs::read_to_string(dest.join("README"))?, "hello\n");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct SharedClone {
    /// The source's work tree, the clones' `origin`.
    source: PathBuf,
    /// The source's object database (absolute), which the clones borrow.
    objects: PathBuf,
}

impl SharedClone {
    /// Clones of the repository whose work tree (or bare directory) is `source`.
    pub fn new(source: &Path) -> Result<SharedClone, Error> {
        let source = std::path::absolute(source).map_err(|e| io_error(source, e))?;
        let repo = gix::open(&source).map_err(|e| Error::NotWorkTree {
            dir: source.clone(),
            detail: e.to_string(),
        })?;
        SharedClone::with_objects(&source, &repo.common_dir().join("objects"))
    }

    /// Clones of `source` whose object database is `objects` (for a caller that has the
    /// repository open already).
    pub(crate) fn with_objects(source: &Path, objects: &Path) -> Result<SharedClone, Error> {
        let absolute = |path: &Path| std::path::absolute(path).map_err(|e| io_error(path, e));
        Ok(SharedClone {
            source: absolute(source)?,
            objects: absolute(objects)?,
        })
    }

    /// Makes `dest` (an empty or missing directory) a clone of the source with `HEAD` detached at
    /// `commit` and its files checked out. The command's output goes to `log`, if any.
    pub async fn checkout(
        &self,
        commit: &CommitHash,
        dest: &Path,
        log: Option<&LiveLog>,
    ) -> Result<(), Error> {
        let this = self.clone();
        let (hash, target) = (commit.clone(), dest.to_owned());
        tokio::task::spawn_blocking(move || this.write_git_dir(&hash, &target))
            .await
            .map_err(|e| io_error(dest, io::Error::other(e)))??;
        let mut read_tree = git(dest, ["read-tree", "--reset", "-u", "HEAD"]);
        if let Some(log) = log {
            read_tree = read_tree.log(log.clone());
        }
        run_git(dest, read_tree).await
    }

    /// Writes `dest/.git`: the fewest files git accepts as a repository (creating files is most of
    /// what a checkout costs on some file systems).
    fn write_git_dir(&self, commit: &CommitHash, dest: &Path) -> Result<(), Error> {
        let git_dir = dest.join(".git");
        let info = git_dir.join("objects").join("info");
        std::fs::create_dir_all(&info).map_err(|e| io_error(&info, e))?;
        let refs = git_dir.join("refs");
        std::fs::create_dir(&refs).map_err(|e| io_error(&refs, e))?;
        let alternates = info.join("alternates");
        let objects = self
            .objects
            .to_str()
            .ok_or_else(|| not_utf8(&self.objects))?;
        std::fs::write(&alternates, format!("{objects}\n"))
            .map_err(|e| io_error(&alternates, e))?;
        let source = self.source.to_str().ok_or_else(|| not_utf8(&self.source))?;
        let config = git_dir.join("config");
        std::fs::write(&config, config_text(source)).map_err(|e| io_error(&config, e))?;
        let head = git_dir.join("HEAD");
        std::fs::write(&head, format!("{commit}\n")).map_err(|e| io_error(&head, e))?;
        Ok(())
    }
}

/// The clone's `.git/config`: what `git clone` writes, without reflogs (nobody reads a temporary
/// clone's reflog, and each would be one more file).
fn config_text(origin: &str) -> String {
    // Git config values are quoted so that `"`, `\`, `;` and `#` in paths survive.
    let quoted = origin.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = false\n\
         [remote \"origin\"]\n\turl = \"{quoted}\"\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n"
    )
}

fn io_error(path: &Path, source: io::Error) -> Error {
    Error::Io {
        path: path.to_owned(),
        source,
    }
}

fn not_utf8(path: &Path) -> Error {
    io_error(
        path,
        io::Error::new(io::ErrorKind::InvalidInput, "path is not valid UTF-8"),
    )
}
