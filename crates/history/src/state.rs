//! One recorded state of a target's jobs ([`HistoryState`]) and the layout of a status-branch
//! commit (spec §3.8.1): the only module that knows the file names `source-commit`,
//! `metadata-commit` and `job/<name>/output`.

use std::collections::BTreeMap;

use datakit_ci_store::{Commit, CommitId, Snapshot, StorePath};
use datakit_ci_term::{CommitHash, JobOutput};

use crate::Error;

/// File holding the source (Git) commit hash the jobs were computed for, without a newline.
pub(crate) const SOURCE_COMMIT: &str = "source-commit";
/// File holding the `github-metadata` commit used as input, without a newline.
pub(crate) const METADATA_COMMIT: &str = "metadata-commit";
/// Directory holding one directory per job.
pub(crate) const JOB_DIR: &str = "job";
/// File holding a job's output JSON within its directory.
pub(crate) const OUTPUT: &str = "output";

/// One recorded state of a target's jobs: a commit of its status branch.
#[derive(Clone, Debug, Default)]
pub struct HistoryState {
    /// The status-branch commit holding this state (`None` if it was never written).
    pub commit: Option<CommitId>,
    /// The parents of [`commit`](Self::commit): the previous state (none for the first one).
    pub parents: Vec<CommitId>,
    /// The source commit the jobs were computed for.
    pub source_commit: Option<CommitHash>,
    /// The `github-metadata` commit used as input when this state was last *changed* (an unchanged
    /// recording does not update it, as in the original).
    pub metadata_commit: Option<CommitId>,
    /// Each job's output, by job name.
    pub jobs: BTreeMap<String, JobOutput>,
}

impl HistoryState {
    /// Reads the state held by a status-branch commit (spec §3.8.2): files `source-commit` and
    /// `metadata-commit` are optional, and each `job/<name>/output` that exists is read (job
    /// directories without `output` are skipped).
    ///
    /// A job output that is not valid JSON fails the whole load with [`Error::InvalidOutput`]
    /// rather than being skipped: a corrupt history is reported, not silently overwritten.
    pub(crate) fn from_commit(commit: &Commit) -> Result<HistoryState, Error> {
        let id = commit.id();
        let tree = commit.tree();
        let source_commit = read_text(&tree, id, SOURCE_COMMIT)?
            .map(|text| {
                text.parse::<CommitHash>()
                    .map_err(|error| invalid_file(id, SOURCE_COMMIT, error.to_string()))
            })
            .transpose()?;
        let metadata_commit = read_text(&tree, id, METADATA_COMMIT)?
            .map(|text| {
                text.trim()
                    .parse::<CommitId>()
                    .map_err(|error| invalid_file(id, METADATA_COMMIT, error.to_string()))
            })
            .transpose()?;
        let mut jobs = BTreeMap::new();
        let job_dir = StorePath::new(JOB_DIR).expect("a valid constant path");
        let names = tree
            .read_dir(&job_dir)
            .map_err(Error::read(format!("directory {JOB_DIR:?} of commit {id}")))?
            .unwrap_or_default();
        for name in names {
            let path = output_path(&name).map_err(|_| {
                invalid_file(
                    id,
                    &format!("{JOB_DIR}/{name}"),
                    "not a valid job name".to_owned(),
                )
            })?;
            let Some(text) = read_text(&tree, id, path.as_str())? else {
                continue;
            };
            let output = JobOutput::from_json(&text).map_err(|source| Error::InvalidOutput {
                commit: id,
                job: name.clone(),
                source,
            })?;
            jobs.insert(name, output);
        }
        Ok(HistoryState {
            commit: Some(id),
            parents: commit.parents().to_vec(),
            source_commit,
            metadata_commit,
            jobs,
        })
    }
}

/// `job/<name>/output`, if `name` is a single valid path component.
pub(crate) fn output_path(name: &str) -> Result<StorePath, Error> {
    Ok(job_path(name)?
        .join(OUTPUT)
        .expect("\"output\" is a valid path component"))
}

/// `job/<name>`, if `name` is a single valid path component.
pub(crate) fn job_path(name: &str) -> Result<StorePath, Error> {
    let invalid = |reason| Error::InvalidJobName {
        name: name.to_owned(),
        reason,
    };
    if name.contains('/') {
        return Err(invalid("contains '/'"));
    }
    StorePath::new(format!("{JOB_DIR}/{name}"))
        .map_err(|_| invalid("not a valid file name (empty, '.', '..', '.git' or NUL)"))
}

fn invalid_file(commit: CommitId, path: &str, reason: String) -> Error {
    Error::InvalidFile {
        commit,
        path: path.to_owned(),
        reason,
    }
}

/// The UTF-8 text of file `path` of `tree` (of commit `commit`), if it exists.
pub(crate) fn read_text(
    tree: &Snapshot,
    commit: CommitId,
    path: &str,
) -> Result<Option<String>, Error> {
    let store_path = StorePath::new(path)
        .map_err(|_| invalid_file(commit, path, "not a valid path".to_owned()))?;
    let Some(bytes) = tree
        .read_file(&store_path)
        .map_err(Error::read(format!("file {path:?} of commit {commit}")))?
    else {
        return Ok(None);
    };
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| invalid_file(commit, path, "not valid UTF-8".to_owned()))
}
