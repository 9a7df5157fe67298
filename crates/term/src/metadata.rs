//! Reading the forge's view from a `github-metadata` snapshot (spec §4): pull requests, refs and
//! commit statuses of any repository.
//!
//! Values are trimmed; a PR needs `head`, `state` and `owner`; a ref is any directory under
//! `ref/` holding a `head` file (a directory named `head` is a component of a longer ref name, as
//! in `ref/heads/x/head/head` for the branch `x/head`). Ref components are stored as they are:
//! every name Git accepts is a valid store path. Entries whose names do not fit the layout are skipped with a
//! warning rather than failing the whole read (the original raised, spec §9 item 14).

use std::fmt;

use datakit_ci_store::{Snapshot, StorePath};

use crate::ids::{CommitHash, RefName, RepoId, TargetId};

/// A metadata snapshot could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// The store failed to read the snapshot.
    #[error("cannot read metadata at {path:?}")]
    Store {
        /// The path being read.
        path: String,
        /// The store's error.
        #[source]
        source: datakit_ci_store::Error,
    },
    /// A value in the snapshot is malformed.
    #[error("invalid metadata at {path:?}: {problem}")]
    Invalid {
        /// The file holding the value.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// Whether a pull request is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrState {
    /// Open.
    Open,
    /// Closed or merged.
    Closed,
}

/// A pull request as mirrored in the metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrInfo {
    /// The repository.
    pub repo: RepoId,
    /// The PR number.
    pub number: u64,
    /// The head commit.
    pub head: CommitHash,
    /// Open or closed.
    pub state: PrState,
    /// The title (empty when absent).
    pub title: String,
    /// Who opened it.
    pub owner: String,
    /// The branch it targets (`master` when absent).
    pub base: String,
    /// Whether its code may run without a Builder's approval (the file `trust`).
    pub trust: PrTrust,
}

/// Whether a pull request's code may run without a Builder's approval (issue 17), as its
/// bridge recorded it in the file `pr/<n>/trust`: `trusted: <reason>`, or another word (the
/// GitHub bridge writes `fork` or `outsider`) and a reason, e.g.
/// `fork: pull request from a fork (alice/proj)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrTrust {
    /// No `trust` file: the bridge does not say (the local bridge, whose refs are all trusted,
    /// and stores written before the file existed). What this means is the runner's choice.
    Unknown,
    /// Its code runs at once; the reason says why, e.g. `the author alice is a member`.
    Trusted(String),
    /// Its code runs only once a Builder approves its head; the reason says why, e.g. `pull
    /// request from a fork (alice/proj)`.
    Untrusted(String),
}

impl PrTrust {
    /// How the file `trust` holding `text` reads: the word before the first `:` says whether
    /// it is trusted (only the word `trusted` is), the rest is the reason. Any other word, or a
    /// file without a word, reads as untrusted: a value this version does not know is never
    /// taken as permission to run.
    pub fn parse(text: &str) -> PrTrust {
        let text = text.trim();
        let (word, reason) = match text.split_once(':') {
            Some((word, reason)) => (word.trim(), reason.trim()),
            None => (text, ""),
        };
        let reason = if reason.is_empty() { text } else { reason };
        if word == TRUSTED_WORD {
            PrTrust::Trusted(reason.to_owned())
        } else {
            PrTrust::Untrusted(reason.to_owned())
        }
    }

    /// Whether it is [`PrTrust::Untrusted`].
    pub fn is_untrusted(&self) -> bool {
        matches!(self, PrTrust::Untrusted(_))
    }
}

/// The word of a trusted pull request's `trust` file.
pub const TRUSTED_WORD: &str = "trusted";

/// The key of a pull request head's approval among the approvals of its commit
/// (`<repo>/commit/<hash>/approval/.pull-request`): an escaped job name never holds `-`
/// ([`datakit_ci_store::escape`] writes it `_2d`), so no job's approval can take its place.
pub const PULL_REQUEST_APPROVAL: &str = ".pull-request";

/// A ref (branch, tag, …) as mirrored in the metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefInfo {
    /// The repository.
    pub repo: RepoId,
    /// The ref's name, e.g. `heads/main`.
    pub name: RefName,
    /// The commit it points to.
    pub head: CommitHash,
}

/// A resolved target: its id plus current metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A pull request.
    Pr(PrInfo),
    /// A ref.
    Ref(RefInfo),
}

impl Target {
    /// The target's id.
    pub fn id(&self) -> TargetId {
        match self {
            Target::Pr(pr) => TargetId::Pr(pr.repo.clone(), pr.number),
            Target::Ref(r) => TargetId::Ref(r.repo.clone(), r.name.clone()),
        }
    }

    /// The commit being tested.
    pub fn head(&self) -> &CommitHash {
        match self {
            Target::Pr(pr) => &pr.head,
            Target::Ref(r) => &r.head,
        }
    }
}

/// The state of a commit status (another CI's or our own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CiState {
    /// The check errored.
    Error,
    /// The check failed.
    Failure,
    /// The check is running.
    Pending,
    /// The check passed.
    Success,
}

impl fmt::Display for CiState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CiState::Error => "error",
            CiState::Failure => "failure",
            CiState::Pending => "pending",
            CiState::Success => "success",
        })
    }
}

/// A commit status as mirrored in the metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CiStatus {
    /// Its state (unknown words read as `failure`).
    pub state: CiState,
    /// The description, if any.
    pub description: Option<String>,
    /// The link, if any.
    pub target_url: Option<String>,
}

/// The metadata path that holds everything about `target`.
pub fn target_path(target: &TargetId) -> Result<StorePath, MetadataError> {
    match target {
        TargetId::Pr(repo, n) => store_path(&format!("{repo}/pr/{n}")),
        TargetId::Ref(repo, name) => store_path(&format!("{repo}/ref/{name}")),
    }
}

/// The metadata path of the status `context` (e.g. `ci/datakit/test`) of `commit`.
pub fn status_path(
    repo: &RepoId,
    commit: &CommitHash,
    context: &str,
) -> Result<StorePath, MetadataError> {
    store_path(&format!("{repo}/commit/{commit}/status/{context}"))
}

/// The path of the approval of job `job` on `commit` (issue 17: a `manual` step, approved by a
/// Builder): `<repo>/commit/<hash>/approval/<escaped job>`, holding who approved it. The job's
/// name is escaped (`datakit_ci_store::escape`), as it may hold `/` or spaces.
pub fn approval_path(
    repo: &RepoId,
    commit: &CommitHash,
    job: &str,
) -> Result<StorePath, MetadataError> {
    store_path(&format!(
        "{repo}/commit/{commit}/approval/{}",
        datakit_ci_store::escape(job)
    ))
}

/// The path of a Builder's approval of `commit` as the head of an untrusted pull request
/// (`<repo>/commit/<hash>/approval/.pull-request`, holding who approved it): one approval covers
/// every job of that head, and a new head needs its own.
pub fn pull_request_approval_path(
    repo: &RepoId,
    commit: &CommitHash,
) -> Result<StorePath, MetadataError> {
    store_path(&format!(
        "{repo}/commit/{commit}/approval/{PULL_REQUEST_APPROVAL}"
    ))
}

fn store_path(path: &str) -> Result<StorePath, MetadataError> {
    StorePath::new(path).map_err(|source| MetadataError::Store {
        path: path.to_owned(),
        source,
    })
}

/// Reads the forge's view from a metadata snapshot.
#[derive(Clone, Copy)]
pub struct MetadataReader<'a> {
    snapshot: &'a Snapshot,
}

impl<'a> MetadataReader<'a> {
    /// A reader over `snapshot`.
    pub fn new(snapshot: &'a Snapshot) -> Self {
        MetadataReader { snapshot }
    }

    fn read(&self, path: &str) -> Result<Option<String>, MetadataError> {
        let store_path = store_path(path)?;
        let bytes =
            self.snapshot
                .read_file(&store_path)
                .map_err(|source| MetadataError::Store {
                    path: path.to_owned(),
                    source,
                })?;
        Ok(bytes.map(|b| String::from_utf8_lossy(&b).trim().to_owned()))
    }

    fn list(&self, path: &str) -> Result<Vec<String>, MetadataError> {
        let store_path = store_path(path)?;
        let entries =
            self.snapshot
                .read_dir(&store_path)
                .map_err(|source| MetadataError::Store {
                    path: path.to_owned(),
                    source,
                })?;
        Ok(entries.unwrap_or_default())
    }

    fn is_file(&self, path: &str) -> Result<bool, MetadataError> {
        let store_path = store_path(path)?;
        let kind = self
            .snapshot
            .kind(&store_path)
            .map_err(|source| MetadataError::Store {
                path: path.to_owned(),
                source,
            })?;
        Ok(kind == Some(datakit_ci_store::EntryKind::File))
    }

    fn hash(&self, path: &str) -> Result<Option<CommitHash>, MetadataError> {
        self.read(path)?
            .map(|text| {
                text.parse()
                    .map_err(|e: crate::ids::Error| MetadataError::Invalid {
                        path: path.to_owned(),
                        problem: e.to_string(),
                    })
            })
            .transpose()
    }

    /// The current state of `target`, or `None` if it is not in the metadata.
    pub fn target(&self, target: &TargetId) -> Result<Option<Target>, MetadataError> {
        match target {
            TargetId::Pr(repo, n) => Ok(self.pr(repo, *n)?.map(Target::Pr)),
            TargetId::Ref(repo, name) => Ok(self.git_ref(repo, name)?.map(Target::Ref)),
        }
    }

    /// Pull request `number` of `repo`, if present with its required files.
    pub fn pr(&self, repo: &RepoId, number: u64) -> Result<Option<PrInfo>, MetadataError> {
        let dir = format!("{repo}/pr/{number}");
        let (Some(head), Some(state), Some(owner)) = (
            self.hash(&format!("{dir}/head"))?,
            self.read(&format!("{dir}/state"))?,
            self.read(&format!("{dir}/owner"))?,
        ) else {
            return Ok(None);
        };
        let state = match state.as_str() {
            "open" => PrState::Open,
            "closed" => PrState::Closed,
            other => {
                tracing::warn!(pr = %dir, state = other, "invalid PR state; treating as closed");
                PrState::Closed
            }
        };
        Ok(Some(PrInfo {
            repo: repo.clone(),
            number,
            head,
            state,
            title: self.read(&format!("{dir}/title"))?.unwrap_or_default(),
            owner,
            base: self
                .read(&format!("{dir}/base"))?
                .unwrap_or_else(|| "master".to_owned()),
            trust: self
                .read(&format!("{dir}/trust"))?
                .map_or(PrTrust::Unknown, |text| PrTrust::parse(&text)),
        }))
    }

    /// Ref `name` of `repo`, if present.
    pub fn git_ref(&self, repo: &RepoId, name: &RefName) -> Result<Option<RefInfo>, MetadataError> {
        Ok(self
            .hash(&format!("{repo}/ref/{name}/head"))?
            .map(|head| RefInfo {
                repo: repo.clone(),
                name: name.clone(),
                head,
            }))
    }

    /// The id of every target of `repo` in the metadata (every `pr/<n>` directory, every
    /// directory under `ref/` holding a `head` file), without reading their values: a target
    /// whose values are malformed is still listed, for [`MetadataReader::target`] to report.
    pub fn target_ids(&self, repo: &RepoId) -> Result<Vec<TargetId>, MetadataError> {
        let mut ids: Vec<TargetId> = (self.pr_numbers(repo)?.into_iter())
            .map(|n| TargetId::Pr(repo.clone(), n))
            .collect();
        ids.extend(
            self.ref_names(repo)?
                .into_iter()
                .map(|name| TargetId::Ref(repo.clone(), name)),
        );
        Ok(ids)
    }

    /// Every pull request of `repo`, by number.
    pub fn prs(&self, repo: &RepoId) -> Result<Vec<PrInfo>, MetadataError> {
        let mut prs = Vec::new();
        for n in self.pr_numbers(repo)? {
            prs.extend(self.pr(repo, n)?);
        }
        Ok(prs)
    }

    /// The number of every `pr/<n>` directory of `repo`, sorted.
    fn pr_numbers(&self, repo: &RepoId) -> Result<Vec<u64>, MetadataError> {
        let mut numbers: Vec<u64> = Vec::new();
        for entry in self.list(&format!("{repo}/pr"))? {
            match entry.parse() {
                Ok(n) => numbers.push(n),
                Err(_) => {
                    tracing::warn!(repo = %repo, entry, "skipping PR directory that is not a number")
                }
            }
        }
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// Every ref of `repo` (any directory under `ref/` with a `head` file), by name.
    pub fn refs(&self, repo: &RepoId) -> Result<Vec<RefInfo>, MetadataError> {
        let mut refs = Vec::new();
        for name in self.ref_names(repo)? {
            refs.extend(self.git_ref(repo, &name)?);
        }
        Ok(refs)
    }

    /// The name of every directory under `ref/` of `repo` holding a `head` file, sorted.
    fn ref_names(&self, repo: &RepoId) -> Result<Vec<RefName>, MetadataError> {
        let mut names = Vec::new();
        let mut stack: Vec<Vec<String>> = vec![Vec::new()];
        while let Some(prefix) = stack.pop() {
            let dir = if prefix.is_empty() {
                format!("{repo}/ref")
            } else {
                format!("{repo}/ref/{}", prefix.join("/"))
            };
            for entry in self.list(&dir)? {
                if entry == "head" && !prefix.is_empty() && self.is_file(&format!("{dir}/head"))? {
                    // A `head` file marks a ref; a directory of that name is a component of a
                    // longer ref (`heads/x/head`), which Git never holds beside the ref `heads/x`.
                    match RefName::new(&prefix) {
                        Ok(name) => names.push(name),
                        Err(e) => tracing::warn!(repo = %repo, error = %e, "skipping ref"),
                    }
                    continue;
                }
                match RefName::check_component(&entry) {
                    Ok(()) => {
                        let mut child = prefix.clone();
                        child.push(entry);
                        stack.push(child);
                    }
                    Err(e) => {
                        tracing::warn!(repo = %repo, entry, error = %e, "skipping ref component that Git would not accept")
                    }
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// The status `context` (e.g. `ci/circleci`) of `commit` in `repo`, if one was reported.
    pub fn status(
        &self,
        repo: &RepoId,
        commit: &CommitHash,
        context: &str,
    ) -> Result<Option<CiStatus>, MetadataError> {
        let dir = format!("{repo}/commit/{commit}/status/{context}");
        let Some(state) = self.read(&format!("{dir}/state"))? else {
            return Ok(None);
        };
        let state = match state.as_str() {
            "error" => CiState::Error,
            "failure" => CiState::Failure,
            "pending" => CiState::Pending,
            "success" => CiState::Success,
            other => {
                tracing::warn!(status = %dir, state = other, "unknown status state; treating as failure");
                CiState::Failure
            }
        };
        Ok(Some(CiStatus {
            state,
            description: self.read(&format!("{dir}/description"))?,
            target_url: self.read(&format!("{dir}/target_url"))?,
        }))
    }

    /// Who approved job `job` on `commit` in `repo`, if someone did (see [`approval_path`]).
    pub fn approval(
        &self,
        repo: &RepoId,
        commit: &CommitHash,
        job: &str,
    ) -> Result<Option<String>, MetadataError> {
        self.read(approval_path(repo, commit, job)?.as_str())
    }

    /// Who approved `commit` as the head of an untrusted pull request of `repo`, if someone did
    /// (see [`pull_request_approval_path`]).
    pub fn pull_request_approval(
        &self,
        repo: &RepoId,
        commit: &CommitHash,
    ) -> Result<Option<String>, MetadataError> {
        self.read(pull_request_approval_path(repo, commit)?.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_word_trusted_is_trusted() {
        assert_eq!(
            PrTrust::parse("trusted: the author alice is a member (MEMBER)\n"),
            PrTrust::Trusted("the author alice is a member (MEMBER)".to_owned())
        );
        assert_eq!(
            PrTrust::parse("trusted"),
            PrTrust::Trusted("trusted".to_owned())
        );
        assert_eq!(
            PrTrust::parse("fork: pull request from a fork (alice/proj)"),
            PrTrust::Untrusted("pull request from a fork (alice/proj)".to_owned())
        );
        // Words this version does not know, and a word that only begins like `trusted`, are
        // never permission to run.
        for text in [
            "maybe: who knows",
            "trusted-ish: no",
            "",
            "Trusted: case matters",
        ] {
            assert!(PrTrust::parse(text).is_untrusted(), "{text:?}");
        }
    }

    #[test]
    fn a_pull_request_approval_is_not_a_job_approval() {
        let repo: RepoId = "me/proj".parse().expect("a repo");
        let commit: CommitHash = "0123456789012345678901234567890123456789"
            .parse()
            .expect("a hash");
        let pr = pull_request_approval_path(&repo, &commit).expect("a path");
        assert_eq!(
            pr.as_str(),
            "me/proj/commit/0123456789012345678901234567890123456789/approval/.pull-request"
        );
        // A job named like the key is escaped to another file.
        let job = approval_path(&repo, &commit, PULL_REQUEST_APPROVAL).expect("a path");
        assert_ne!(job, pr);
    }
}
