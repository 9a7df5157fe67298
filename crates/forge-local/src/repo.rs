//! One local repository ([`LocalRepo`]): validating it, and reading its branches, tags and PR refs
//! with the real `git` into the values the metadata layout wants. Knows nothing of the store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use datakit_ci_store::StorePath;
use datakit_ci_term::{CommitHash, RefName, RepoId};

use crate::Error;

/// One local repository to mirror, under the forge id `user/repo`.
///
/// Made by [`LocalRepo::new`], which checks that the path is a Git repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalRepo {
    id: RepoId,
    path: PathBuf,
    git_dir: PathBuf,
}

impl LocalRepo {
    /// Validates that `path` is a Git repository — the top directory of a work tree, or a bare
    /// repository — and makes it absolute. A directory *inside* a work tree is rejected, so a typo
    /// cannot silently mirror an enclosing repository.
    ///
    /// This runs `git rev-parse` synchronously; call it at start-up.
    pub fn new(id: RepoId, path: &Path) -> Result<Self, Error> {
        StorePath::new(id.to_string()).map_err(|source| Error::InvalidRepoId {
            id: id.to_string(),
            source,
        })?;
        let absolute = std::fs::canonicalize(path).map_err(|source| Error::Path {
            path: path.to_owned(),
            source,
        })?;
        let mut command = std::process::Command::new("git");
        command.arg("-C").arg(&absolute).args([
            "rev-parse",
            "--path-format=absolute",
            "--git-common-dir",
        ]);
        clean_git_env(&mut command);
        if let Some(parent) = absolute.parent() {
            command.env("GIT_CEILING_DIRECTORIES", parent);
        }
        let output = command.output().map_err(|source| Error::Spawn {
            path: absolute.clone(),
            source,
        })?;
        if !output.status.success() {
            return Err(Error::NotARepository {
                path: path.to_owned(),
                message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        let git_dir = String::from_utf8(output.stdout).map_err(|_| Error::NotARepository {
            path: path.to_owned(),
            message: "git printed a git directory that is not UTF-8".to_owned(),
        })?;
        Ok(LocalRepo {
            id,
            path: absolute,
            git_dir: PathBuf::from(git_dir.trim_end_matches('\n')),
        })
    }

    /// The forge id the repository is mirrored under.
    pub fn id(&self) -> &RepoId {
        &self.id
    }

    /// The repository's absolute path, as given (canonicalised).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory holding the repository's refs (the common Git directory: `.git` of a work tree,
    /// the repository itself when bare). The bridge watches it for changes.
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    /// Reads every branch, tag and PR ref, in one `git for-each-ref` (plus one `git symbolic-ref`
    /// when there are PRs, for their base branch).
    pub(crate) async fn read(&self) -> Result<GitState, Error> {
        let format = [
            "%(objectname)",
            "%(objecttype)",
            "%(*objectname)",
            "%(*objecttype)",
            "%(refname)",
            "%(subject)",
            "%(authorname)",
        ]
        .join("%00");
        let output = self
            .git(&[
                "for-each-ref",
                &format!("--format={format}"),
                "refs/heads",
                "refs/tags",
                "refs/pull",
            ])
            .await?;
        let mut state = GitState::default();
        let mut branches = BTreeSet::new();
        let mut pr_heads = Vec::new();
        for line in output.split(|&byte| byte == b'\n') {
            if line.is_empty() {
                continue;
            }
            let Some(line) = parse_line(line) else {
                state.skipped.push(SkippedRef {
                    refname: String::from_utf8_lossy(line).into_owned(),
                    reason: "unexpected `git for-each-ref` output".to_owned(),
                });
                continue;
            };
            if let Some(branch) = line.refname.strip_prefix("refs/heads/") {
                branches.insert(branch.to_owned());
            }
            match self.classify(&line) {
                Ok(Some(Classified::Ref(name, head))) => {
                    state.refs.insert(name.to_string(), head);
                }
                Ok(Some(Classified::Pr(number, head))) => pr_heads.push((number, head, line)),
                Ok(None) => {}
                Err(reason) => state.skipped.push(SkippedRef {
                    refname: line.refname.to_owned(),
                    reason,
                }),
            }
        }
        if !pr_heads.is_empty() {
            let base = self.default_branch(&branches).await?;
            for (number, head, line) in pr_heads {
                let owner = match line.author.trim() {
                    "" => self.id.user().to_owned(),
                    author => author.to_owned(),
                };
                state.prs.insert(
                    number,
                    PrFiles {
                        head,
                        title: line.subject.trim().to_owned(),
                        owner,
                        base: base.clone(),
                    },
                );
            }
        }
        Ok(state)
    }

    /// Sorts a line into a mirrored ref, a PR, something ignored (`Ok(None)`) or something skipped
    /// (`Err(reason)`).
    fn classify(&self, line: &Line<'_>) -> Result<Option<Classified>, String> {
        let name = if let Some(branch) = line.refname.strip_prefix("refs/heads/") {
            Some(RefName::branch(branch))
        } else {
            line.refname.strip_prefix("refs/tags/").map(RefName::tag)
        };
        if let Some(name) = name {
            let name = name.map_err(|error| error.to_string())?;
            StorePath::new(format!("{}/ref/{name}/head", self.id))
                .map_err(|error| error.to_string())?;
            return Ok(Some(Classified::Ref(name, peeled_commit(line)?)));
        }
        let Some(rest) = line.refname.strip_prefix("refs/pull/") else {
            return Ok(None);
        };
        let Some(number) = rest.strip_suffix("/head") else {
            // `refs/pull/<n>/merge` and the like are not PR heads.
            return Ok(None);
        };
        match number.parse::<u64>() {
            Ok(n) if n.to_string() == number => Ok(Some(Classified::Pr(n, peeled_commit(line)?))),
            _ => Err(format!("PR number {number:?} is not a canonical integer")),
        }
    }

    /// The branch PRs target: the branch `HEAD` names if it exists, else `main` if it exists, else
    /// `master`.
    async fn default_branch(&self, branches: &BTreeSet<String>) -> Result<String, Error> {
        let output = self.git_status(&["symbolic-ref", "-q", "HEAD"]).await?;
        if let Some(stdout) = output {
            let target = String::from_utf8_lossy(&stdout);
            if let Some(branch) = target.trim().strip_prefix("refs/heads/")
                && branches.contains(branch)
            {
                return Ok(branch.to_owned());
            }
        }
        Ok(if branches.contains("main") {
            "main"
        } else {
            "master"
        }
        .to_owned())
    }

    /// Runs `git` on the repository and returns its standard output; fails if git fails.
    async fn git(&self, args: &[&str]) -> Result<Vec<u8>, Error> {
        let output = self.run_git(args).await?;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            Err(self.git_error(args, &output.stderr))
        }
    }

    /// Runs `git` on the repository: its standard output if it succeeded, `None` if it exited with
    /// status 1 (git's "no" for queries such as `symbolic-ref -q`); other failures are errors.
    async fn git_status(&self, args: &[&str]) -> Result<Option<Vec<u8>>, Error> {
        let output = self.run_git(args).await?;
        match output.status.code() {
            Some(0) => Ok(Some(output.stdout)),
            Some(1) => Ok(None),
            _ => Err(self.git_error(args, &output.stderr)),
        }
    }

    async fn run_git(&self, args: &[&str]) -> Result<std::process::Output, Error> {
        let mut command = tokio::process::Command::new("git");
        command
            .arg("--git-dir")
            .arg(&self.git_dir)
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        clean_git_env(command.as_std_mut());
        command.output().await.map_err(|source| Error::Spawn {
            path: self.path.clone(),
            source,
        })
    }

    fn git_error(&self, args: &[&str], stderr: &[u8]) -> Error {
        Error::Git {
            path: self.path.clone(),
            command: args.join(" "),
            stderr: String::from_utf8_lossy(stderr).trim().to_owned(),
        }
    }
}

/// Removes the variables that would make `git` look at another repository than the one named.
fn clean_git_env(command: &mut std::process::Command) {
    for variable in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_COMMON_DIR",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_NAMESPACE",
    ] {
        command.env_remove(variable);
    }
}

/// What a repository's refs say, in the metadata's terms.
#[derive(Debug, Default)]
pub(crate) struct GitState {
    /// Branches and tags, by ref name below `refs/` (`heads/main`), with their commit.
    pub(crate) refs: BTreeMap<String, CommitHash>,
    /// PRs by number.
    pub(crate) prs: BTreeMap<u64, PrFiles>,
    /// Refs that cannot be mirrored, and why.
    pub(crate) skipped: Vec<SkippedRef>,
}

/// The files of one PR directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PrFiles {
    pub(crate) head: CommitHash,
    pub(crate) title: String,
    pub(crate) owner: String,
    pub(crate) base: String,
}

/// A ref that cannot be mirrored.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SkippedRef {
    pub(crate) refname: String,
    pub(crate) reason: String,
}

enum Classified {
    Ref(RefName, CommitHash),
    Pr(u64, CommitHash),
}

/// One line of `git for-each-ref` output.
struct Line<'a> {
    object: &'a str,
    kind: &'a str,
    peeled_object: &'a str,
    peeled_kind: &'a str,
    refname: &'a str,
    subject: String,
    author: String,
}

fn parse_line(line: &[u8]) -> Option<Line<'_>> {
    let mut fields = line.split(|&byte| byte == 0);
    let mut text = || fields.next().and_then(|f| std::str::from_utf8(f).ok());
    let (object, kind, peeled_object, peeled_kind, refname) =
        (text()?, text()?, text()?, text()?, text()?);
    let subject = String::from_utf8_lossy(fields.next()?).into_owned();
    let author = String::from_utf8_lossy(fields.next()?).into_owned();
    Some(Line {
        object,
        kind,
        peeled_object,
        peeled_kind,
        refname,
        subject,
        author,
    })
}

/// The commit a ref points at, through annotated tags.
fn peeled_commit(line: &Line<'_>) -> Result<CommitHash, String> {
    let hash = match (line.kind, line.peeled_kind) {
        ("commit", _) => line.object,
        ("tag", "commit") => line.peeled_object,
        ("tag", other) => return Err(format!("tag of a {other}, not of a commit")),
        (other, _) => return Err(format!("points at a {other}, not a commit")),
    };
    hash.parse()
        .map_err(|error: datakit_ci_term::IdError| error.to_string())
}
