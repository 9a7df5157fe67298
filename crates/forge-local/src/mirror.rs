//! The bridge's memory of what the metadata holds for its repositories ([`Mirror`]), the changes
//! that bring it in line with what Git says ([`RepoChanges`]), their application to a transaction
//! and the commit message describing them. Owns the paths `<user>/<repo>/ref/…/head` and
//! `<user>/<repo>/pr/<n>/…`; never reads or writes anything else.

use std::collections::{BTreeMap, HashMap, HashSet};

use datakit_ci_store::{Commit, EntryKind, StorePath, Transaction};
use datakit_ci_term::{CommitHash, RepoId};

use crate::Error;
use crate::repo::{GitState, PrFiles, SkippedRef};

/// What the metadata held for each repository at commit `seen`, kept up to date with the bridge's
/// own commits so a sync reads nothing from the store unless someone else touched these paths.
pub(crate) struct Mirror {
    seen: Option<Commit>,
    repos: HashMap<RepoId, Stored>,
    /// Refs skipped at the last sync, per repository (each is warned about once, when it appears).
    skipped: HashMap<RepoId, HashSet<SkippedRef>>,
}

/// The bridge-owned files of one repository, as stored (values trimmed).
#[derive(Debug, Default)]
struct Stored {
    refs: BTreeMap<String, String>,
    prs: BTreeMap<u64, StoredPr>,
}

#[derive(Debug, Default)]
struct StoredPr {
    files: BTreeMap<&'static str, String>,
}

/// The files of a PR directory the bridge writes, in order.
const PR_FILES: [&str; 5] = ["head", "state", "title", "owner", "base"];

impl Mirror {
    /// Reads the bridge-owned files of `repos` from `transaction`, whose parent is `head`
    /// (blocking: many small reads).
    pub(crate) fn load(
        head: Option<Commit>,
        transaction: &mut Transaction,
        repos: &[RepoId],
    ) -> Result<Mirror, Error> {
        let mut mirror = Mirror {
            seen: None,
            repos: HashMap::new(),
            skipped: HashMap::new(),
        };
        mirror.reload(head, transaction, repos)?;
        Ok(mirror)
    }

    /// The commit the mirror describes.
    pub(crate) fn seen(&self) -> Option<&Commit> {
        self.seen.as_ref()
    }

    /// Moves the mirror to `head` (the parent of `transaction`), re-reading the stored files from
    /// the transaction only if something between the commit the mirror describes and `head`
    /// touched them (blocking).
    pub(crate) fn refresh(
        &mut self,
        head: Option<Commit>,
        transaction: &mut Transaction,
        repos: &[RepoId],
    ) -> Result<(), Error> {
        let same = self.seen.as_ref().map(Commit::id) == head.as_ref().map(Commit::id);
        if same {
            return Ok(());
        }
        let touched = match (&self.seen, &head) {
            (Some(old), Some(new)) => {
                let prefixes: Vec<String> = repos
                    .iter()
                    .flat_map(|repo| [format!("{repo}/ref/"), format!("{repo}/pr/")])
                    .collect();
                old.tree()
                    .changed_files(&new.tree())?
                    .iter()
                    .any(|path| prefixes.iter().any(|p| path.as_str().starts_with(p)))
            }
            _ => true,
        };
        if touched {
            tracing::info!("metadata changed by someone else; re-reading the mirrored refs");
            self.reload(head, transaction, repos)
        } else {
            self.seen = head;
            Ok(())
        }
    }

    fn reload(
        &mut self,
        head: Option<Commit>,
        transaction: &mut Transaction,
        repos: &[RepoId],
    ) -> Result<(), Error> {
        self.repos.clear();
        for repo in repos {
            self.repos
                .insert(repo.clone(), Stored::load(transaction, repo)?);
        }
        self.seen = head;
        Ok(())
    }

    /// The changes that make the metadata of `repo` match `git`, logging refs skipped for the
    /// first time.
    pub(crate) fn diff(&mut self, repo: &RepoId, git: GitState) -> RepoChanges {
        let skipped: HashSet<SkippedRef> = git.skipped.into_iter().collect();
        let known = self.skipped.entry(repo.clone()).or_default();
        for skip in skipped.difference(known) {
            tracing::warn!(
                repo = %repo,
                git_ref = skip.refname,
                reason = skip.reason,
                "skipping a ref the metadata layout cannot hold"
            );
        }
        let skipped_count = skipped.len();
        *known = skipped;

        let empty = Stored::default();
        let stored = self.repos.get(repo).unwrap_or(&empty);
        let mut changes = Vec::new();
        for (name, head) in &git.refs {
            match stored.refs.get(name) {
                None => changes.push(Change::RefAdded {
                    name: name.clone(),
                    head: head.clone(),
                }),
                Some(old) if old != head.as_str() => changes.push(Change::RefUpdated {
                    name: name.clone(),
                    head: head.clone(),
                }),
                Some(_) => {}
            }
        }
        for name in stored.refs.keys() {
            if !git.refs.contains_key(name) {
                changes.push(Change::RefRemoved { name: name.clone() });
            }
        }
        for (&number, pr) in &git.prs {
            let wanted = pr_values(pr);
            match stored.prs.get(&number) {
                None => changes.push(Change::PrAdded {
                    number,
                    files: wanted,
                }),
                Some(old) => {
                    let files: BTreeMap<&'static str, String> = wanted
                        .into_iter()
                        .filter(|(file, value)| old.files.get(file) != Some(value))
                        .collect();
                    if !files.is_empty() {
                        changes.push(Change::PrUpdated { number, files });
                    }
                }
            }
        }
        for &number in stored.prs.keys() {
            if !git.prs.contains_key(&number) {
                changes.push(Change::PrRemoved { number });
            }
        }
        RepoChanges {
            repo: repo.clone(),
            changes,
            skipped: skipped_count,
        }
    }

    /// Records that `changes` were committed as `commit`.
    pub(crate) fn committed(&mut self, changes: &[RepoChanges], commit: Commit) {
        for repo_changes in changes {
            let stored = self.repos.entry(repo_changes.repo.clone()).or_default();
            for change in &repo_changes.changes {
                match change {
                    Change::RefAdded { name, head } | Change::RefUpdated { name, head } => {
                        stored.refs.insert(name.clone(), head.to_string());
                    }
                    Change::RefRemoved { name } => {
                        stored.refs.remove(name);
                    }
                    Change::PrAdded { number, files } | Change::PrUpdated { number, files } => {
                        let pr = stored.prs.entry(*number).or_default();
                        pr.files
                            .extend(files.iter().map(|(file, value)| (*file, value.clone())));
                    }
                    Change::PrRemoved { number } => {
                        stored.prs.remove(number);
                    }
                }
            }
        }
        self.seen = Some(commit);
    }
}

fn pr_values(pr: &PrFiles) -> BTreeMap<&'static str, String> {
    let values = [
        pr.head.to_string(),
        "open".to_owned(),
        pr.title.clone(),
        pr.owner.clone(),
        pr.base.clone(),
    ];
    PR_FILES.into_iter().zip(values).collect()
}

impl Stored {
    /// Reads the bridge-owned files of `repo` from the transaction (before any edit of ours).
    fn load(tree: &mut Transaction, repo: &RepoId) -> Result<Stored, Error> {
        let mut stored = Stored::default();
        let root = path(&format!("{repo}/ref"))?;
        let mut stack: Vec<(StorePath, String)> = vec![(root, String::new())];
        while let Some((dir, name)) = stack.pop() {
            let entries = tree.read_dir(&dir)?.unwrap_or_default();
            preload(tree, &dir, &entries)?;
            for entry in entries {
                let child = dir.join(&entry)?;
                if entry == "head"
                    && !name.is_empty()
                    && let Some(bytes) = tree.read_file(&child)?
                {
                    stored.refs.insert(name.clone(), trimmed(&bytes));
                    continue;
                }
                let child_name = if name.is_empty() {
                    entry
                } else {
                    format!("{name}/{entry}")
                };
                stack.push((child, child_name));
            }
        }
        let prs = path(&format!("{repo}/pr"))?;
        let entries = tree.read_dir(&prs)?.unwrap_or_default();
        preload(tree, &prs, &entries)?;
        for entry in entries {
            let Ok(number) = entry.parse::<u64>() else {
                continue;
            };
            if number.to_string() != entry {
                continue;
            }
            let dir = prs.join(&entry)?;
            let mut pr = StoredPr::default();
            for file in PR_FILES {
                if let Some(bytes) = tree.read_file(&dir.join(file)?)? {
                    pr.files.insert(file, trimmed(&bytes));
                }
            }
            stored.prs.insert(number, pr);
        }
        Ok(stored)
    }
}

/// Directories with more entries than this are loaded into the transaction's memory before their
/// children are read.
const PRELOAD_ABOVE: usize = 16;

/// Makes reading the children of the big directory `dir` cheap: a read of a stored path decodes
/// every directory on the way, so reading the 10,000 children of `ref/heads` one by one would
/// decode that directory 10,000 times. [`Transaction::make_dirs`] of an existing child loads every
/// directory above it into the transaction's memory once (and changes nothing in the tree).
fn preload(tree: &mut Transaction, dir: &StorePath, entries: &[String]) -> Result<(), Error> {
    if entries.len() <= PRELOAD_ABOVE {
        return Ok(());
    }
    for entry in entries {
        let child = dir.join(entry)?;
        if tree.kind(&child)? == Some(EntryKind::Dir) {
            tree.make_dirs(&child)?;
            break;
        }
    }
    Ok(())
}

fn trimmed(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

fn path(path: &str) -> Result<StorePath, Error> {
    Ok(StorePath::new(path)?)
}

/// What one sync changes in one repository.
#[derive(Debug)]
pub(crate) struct RepoChanges {
    pub(crate) repo: RepoId,
    pub(crate) changes: Vec<Change>,
    /// How many refs were skipped because the layout cannot hold them.
    pub(crate) skipped: usize,
}

/// One change to the metadata of a repository.
#[derive(Debug)]
pub(crate) enum Change {
    RefAdded {
        name: String,
        head: CommitHash,
    },
    RefUpdated {
        name: String,
        head: CommitHash,
    },
    RefRemoved {
        name: String,
    },
    /// A new PR, with all its files.
    PrAdded {
        number: u64,
        files: BTreeMap<&'static str, String>,
    },
    /// A known PR, with only the files that changed.
    PrUpdated {
        number: u64,
        files: BTreeMap<&'static str, String>,
    },
    PrRemoved {
        number: u64,
    },
}

/// How a change counts in a [`SyncReport`](crate::SyncReport).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    Added,
    Updated,
    Removed,
}

impl Change {
    pub(crate) fn kind(&self) -> ChangeKind {
        match self {
            Change::RefAdded { .. } | Change::PrAdded { .. } => ChangeKind::Added,
            Change::RefUpdated { .. } | Change::PrUpdated { .. } => ChangeKind::Updated,
            Change::RefRemoved { .. } | Change::PrRemoved { .. } => ChangeKind::Removed,
        }
    }

    /// Applies the change to `transaction` (blocking).
    fn apply(&self, repo: &RepoId, transaction: &mut Transaction) -> Result<(), Error> {
        match self {
            Change::RefAdded { name, head } | Change::RefUpdated { name, head } => {
                transaction.create_file(&path(&format!("{repo}/ref/{name}/head"))?, line(head))?;
            }
            Change::RefRemoved { name } => {
                remove_if_present(transaction, &path(&format!("{repo}/ref/{name}/head"))?)?;
            }
            Change::PrAdded { number, files } | Change::PrUpdated { number, files } => {
                for (file, value) in files {
                    transaction
                        .create_file(&path(&format!("{repo}/pr/{number}/{file}"))?, line(value))?;
                }
            }
            Change::PrRemoved { number } => {
                remove_if_present(transaction, &path(&format!("{repo}/pr/{number}"))?)?;
            }
        }
        Ok(())
    }

    /// The line of the commit message describing the change.
    fn describe(&self) -> String {
        match self {
            Change::RefAdded { name, .. } => {
                let (kind, short) = ref_kind(name);
                format!("Tracking new {kind} {short}")
            }
            Change::RefUpdated { name, head } => {
                let (kind, short) = ref_kind(name);
                format!("Updating existing {kind} {short} to {head}")
            }
            Change::RefRemoved { name } => {
                let (kind, short) = ref_kind(name);
                format!("Removing deleted {kind} {short}")
            }
            Change::PrAdded { number, .. } => format!("Tracking new PR {number}"),
            Change::PrUpdated { number, files } => match files.get("head") {
                Some(head) => format!("Updating existing PR {number} to {head}"),
                None => {
                    let names: Vec<&str> = files.keys().copied().collect();
                    format!("Updating existing PR {number} ({})", names.join(", "))
                }
            },
            Change::PrRemoved { number } => format!("Removing deleted PR {number}"),
        }
    }
}

/// `("branch", "main")` for `heads/main`, `("tag", "v1")` for `tags/v1`.
fn ref_kind(name: &str) -> (&'static str, &str) {
    if let Some(branch) = name.strip_prefix("heads/") {
        ("branch", branch)
    } else if let Some(tag) = name.strip_prefix("tags/") {
        ("tag", tag)
    } else {
        ("ref", name)
    }
}

fn line(value: impl std::fmt::Display) -> String {
    format!("{value}\n")
}

/// Removes `path`; a path someone else already removed is not an error.
fn remove_if_present(transaction: &mut Transaction, path: &StorePath) -> Result<(), Error> {
    match transaction.remove(path) {
        Ok(()) | Err(datakit_ci_store::Error::NotFound { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Applies every change to `transaction` (blocking).
pub(crate) fn apply(transaction: &mut Transaction, changes: &[RepoChanges]) -> Result<(), Error> {
    for repo_changes in changes {
        for change in &repo_changes.changes {
            change.apply(&repo_changes.repo, transaction)?;
        }
    }
    Ok(())
}

/// The commit message: the single change's line, or a summary line, a blank line and one line per
/// change.
pub(crate) fn message(changes: &[RepoChanges]) -> String {
    let lines: Vec<String> = changes
        .iter()
        .flat_map(|repo| repo.changes.iter().map(Change::describe))
        .collect();
    if let [single] = lines.as_slice() {
        return single.clone();
    }
    let repos: Vec<String> = changes
        .iter()
        .filter(|repo| !repo.changes.is_empty())
        .map(|repo| repo.repo.to_string())
        .collect();
    format!(
        "Sync {}: {} updates\n\n{}",
        repos.join(", "),
        lines.len(),
        lines.join("\n")
    )
}
