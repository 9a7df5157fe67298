//! The bridge's writes to the metadata branch (DESIGN §6.1): [`Edit`]s of refs and pull requests,
//! the edits that bring a repository's stored state in line with a full listing ([`sync_edits`]),
//! and their application to a transaction, writing only what differs. Owns the paths
//! `<owner>/<repo>/ref/…/head` and `<owner>/<repo>/pr/<n>/…`; never writes statuses or
//! `.monitor`.

use std::collections::{BTreeMap, BTreeSet};

use datakit_ci_store::{Snapshot, StorePath, Transaction};
use datakit_ci_term::metadata::MetadataReader;
use datakit_ci_term::{CommitHash, PrState, RefName, RepoId};

use crate::Error;
use crate::webhook::PrFields;

/// One change the bridge wants in the metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Edit {
    /// `ref/<name>/head` = `head`.
    SetRef {
        repo: RepoId,
        name: RefName,
        head: CommitHash,
    },
    /// Removes `ref/<name>/head`.
    RemoveRef { repo: RepoId, name: RefName },
    /// Writes every file of a PR.
    SetPr {
        repo: RepoId,
        number: u64,
        files: BTreeMap<&'static str, String>,
    },
    /// Marks a PR `closed`, leaving its other files.
    ClosePr { repo: RepoId, number: u64 },
}

/// What GitHub says a repository holds: its branches and tags (`heads/x`, `tags/v`) and its open
/// pull requests.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub(crate) refs: BTreeMap<RefName, CommitHash>,
    pub(crate) open_prs: BTreeMap<u64, BTreeMap<&'static str, String>>,
    /// When GitHub last changed each open PR (`updated_at`), if it said.
    pub(crate) updated_at: BTreeMap<u64, chrono::DateTime<chrono::Utc>>,
}

/// The edit writing `pr`, or `None` (with a warning) if its head is not a commit hash.
pub(crate) fn pr_edit(repo: &RepoId, pr: PrFields) -> Option<Edit> {
    let number = pr.number;
    pr_files(repo, pr).map(|files| Edit::SetPr {
        repo: repo.clone(),
        number,
        files,
    })
}

/// The files of `pr`, or `None` (with a warning) if its head is not a commit hash.
pub(crate) fn pr_files(repo: &RepoId, pr: PrFields) -> Option<BTreeMap<&'static str, String>> {
    if pr.head.parse::<CommitHash>().is_err() {
        tracing::warn!(%repo, number = pr.number, head = pr.head, "skipping a PR whose head is not a commit hash");
        return None;
    }
    // One line per file: a title with a newline would read back as its first line only.
    let one_line = |s: &str| s.lines().next().unwrap_or("").trim().to_owned();
    Some(BTreeMap::from([
        ("head", pr.head),
        ("state", pr.state),
        ("title", one_line(&pr.title)),
        ("owner", one_line(&pr.owner)),
        ("base", one_line(&pr.base)),
        ("trust", one_line(&pr.trust)),
    ]))
}

/// The edit for ref `name` (`heads/x`, `tags/v`) moving to `head` (or deleted, for `None`);
/// `None` (with a warning) if the name or hash cannot be stored.
pub(crate) fn ref_edit(repo: &RepoId, name: &str, head: Option<&str>) -> Option<Edit> {
    let name = match parse_ref_name(name) {
        Ok(name) => name,
        Err(error) => {
            tracing::warn!(%repo, %error, "skipping a ref");
            return None;
        }
    };
    match head {
        None => Some(Edit::RemoveRef {
            repo: repo.clone(),
            name,
        }),
        Some(head) => match head.parse() {
            Ok(head) => Some(Edit::SetRef {
                repo: repo.clone(),
                name,
                head,
            }),
            Err(_) => {
                tracing::warn!(%repo, %name, head, "skipping a ref whose head is not a commit hash");
                None
            }
        },
    }
}

/// `heads/x/y` as a [`RefName`].
pub(crate) fn parse_ref_name(name: &str) -> Result<RefName, Error> {
    RefName::new(name.split('/')).map_err(|e| Error::Name {
        what: "ref",
        value: name.to_owned(),
        reason: e.to_string(),
    })
}

/// The edits that make the metadata of `repo` in `snapshot` match `listing`: refs set or
/// removed, open PRs written, stored PRs still open but no longer listed closed.
pub(crate) fn sync_edits(
    snapshot: Option<&Snapshot>,
    repo: &RepoId,
    listing: Listing,
) -> Result<Vec<Edit>, Error> {
    let (stored_refs, stored_open): (BTreeSet<RefName>, BTreeSet<u64>) = match snapshot {
        None => Default::default(),
        Some(snapshot) => {
            let reader = MetadataReader::new(snapshot);
            let refs = reader
                .refs(repo)
                .map_err(|e| metadata_error(repo, e))?
                .into_iter()
                .map(|r| r.name)
                .collect();
            let open = reader
                .prs(repo)
                .map_err(|e| metadata_error(repo, e))?
                .into_iter()
                .filter(|pr| pr.state == PrState::Open)
                .map(|pr| pr.number)
                .collect();
            (refs, open)
        }
    };
    let mut edits = Vec::new();
    for name in stored_refs {
        if !listing.refs.contains_key(&name) {
            edits.push(Edit::RemoveRef {
                repo: repo.clone(),
                name,
            });
        }
    }
    for (name, head) in listing.refs {
        edits.push(Edit::SetRef {
            repo: repo.clone(),
            name,
            head,
        });
    }
    for number in stored_open {
        if !listing.open_prs.contains_key(&number) {
            edits.push(Edit::ClosePr {
                repo: repo.clone(),
                number,
            });
        }
    }
    for (number, files) in listing.open_prs {
        edits.push(Edit::SetPr {
            repo: repo.clone(),
            number,
            files,
        });
    }
    Ok(edits)
}

fn metadata_error(repo: &RepoId, error: datakit_ci_term::metadata::MetadataError) -> Error {
    Error::Name {
        what: "metadata of repository",
        value: repo.to_string(),
        reason: error.to_string(),
    }
}

/// Applies `edits` to `transaction`, writing only files whose value differs (blocking: reads).
/// Returns one line per edit that changed something, for the commit message.
pub(crate) fn apply(transaction: &mut Transaction, edits: &[Edit]) -> Result<Vec<String>, Error> {
    let mut lines = Vec::new();
    for edit in edits {
        match edit {
            Edit::SetRef { repo, name, head } => {
                let path = path(&format!("{repo}/ref/{name}/head"))?;
                let old = read(transaction, &path)?;
                if old.as_deref() != Some(head.as_str()) {
                    transaction.create_file(&path, format!("{head}\n"))?;
                    let (kind, short) = ref_kind(name);
                    lines.push(match old {
                        None => format!("Tracking new {kind} {short} of {repo}"),
                        Some(_) => format!("Updating {kind} {short} of {repo} to {head}"),
                    });
                }
            }
            Edit::RemoveRef { repo, name } => {
                let path = path(&format!("{repo}/ref/{name}/head"))?;
                if read(transaction, &path)?.is_some() {
                    transaction.remove(&path)?;
                    let (kind, short) = ref_kind(name);
                    lines.push(format!("Removing deleted {kind} {short} of {repo}"));
                }
            }
            Edit::SetPr {
                repo,
                number,
                files,
            } => {
                let mut changed = Vec::new();
                for (file, value) in files {
                    let path = path(&format!("{repo}/pr/{number}/{file}"))?;
                    if read(transaction, &path)?.as_deref() != Some(value.as_str()) {
                        transaction.create_file(&path, format!("{value}\n"))?;
                        changed.push(*file);
                    }
                }
                if !changed.is_empty() {
                    lines.push(format!(
                        "Updating PR {number} of {repo} ({})",
                        changed.join(", ")
                    ));
                }
            }
            Edit::ClosePr { repo, number } => {
                let path = path(&format!("{repo}/pr/{number}/state"))?;
                if read(transaction, &path)?.as_deref() == Some("open") {
                    transaction.create_file(&path, "closed\n")?;
                    lines.push(format!("Closing PR {number} of {repo}"));
                }
            }
        }
    }
    Ok(lines)
}

fn read(transaction: &Transaction, path: &StorePath) -> Result<Option<String>, Error> {
    Ok(transaction
        .read_file(path)?
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned()))
}

fn path(path: &str) -> Result<StorePath, Error> {
    Ok(StorePath::new(path)?)
}

fn ref_kind(name: &RefName) -> (&'static str, String) {
    let text = name.to_string();
    if let Some(branch) = text.strip_prefix("heads/") {
        ("branch", branch.to_owned())
    } else if let Some(tag) = text.strip_prefix("tags/") {
        ("tag", tag.to_owned())
    } else {
        ("ref", text)
    }
}

/// The commit message for `lines`: the single line, or a summary, a blank line and the lines.
pub(crate) fn message(lines: &[String]) -> String {
    match lines {
        [single] => single.clone(),
        _ => format!("GitHub: {} updates\n\n{}", lines.len(), lines.join("\n")),
    }
}
