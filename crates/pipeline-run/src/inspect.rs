//! What a commit's pipeline file would run, without running anything: for `datakit-ci plan`.
//! Each job comes with its cache branch (where a run with the same inputs would be recorded) and
//! the lines of its input digest, so that a caller can say which input differs from another
//! commit's.

use std::path::Path;

use datakit_ci_git::TreeReader;
use datakit_ci_pipeline::{ParseError, TargetKind};
use datakit_ci_store::BranchName;
use datakit_ci_term::CommitHash;

use crate::file::{Loaded, read};
use crate::key;
use crate::step::step_branch;

/// A commit's pipeline file, as [`inspect`] found it.
#[derive(Debug)]
pub enum FileState {
    /// The commit has no `.datakit-ci.yml`.
    Missing,
    /// The file has problems.
    Invalid(ParseError),
    /// The jobs for the target, in file order.
    Valid(Vec<InspectedJob>),
}

/// One job of a commit, as the CI would run it.
#[derive(Clone, Debug)]
pub struct InspectedJob {
    /// The job's name.
    pub name: String,
    /// The jobs it waits for (those that apply to the target).
    pub needs: Vec<String>,
    /// The cache branch of a run with exactly these inputs.
    pub branch: BranchName,
    /// What the inputs are, one per line (`definition …`, `input "src" tree …`, `need …`): two
    /// commits' lines differ where the job's inputs do.
    pub inputs: Vec<String>,
}

/// The jobs that the pipeline file of `commit` (in the repository at `dir`) makes for a target
/// of kind `kind`; `base` is the commit a pull request is compared with for `when.paths` (else
/// its first parent is). Schedules are not taken into account.
pub async fn inspect(
    dir: &Path,
    commit: &CommitHash,
    kind: &TargetKind,
    base: Option<&CommitHash>,
) -> Result<FileState, datakit_ci_git::Error> {
    let tree = TreeReader { dir, hash: commit };
    let file = match read(tree, base).await? {
        Loaded::Missing => return Ok(FileState::Missing),
        Loaded::File {
            parsed: Err(error), ..
        } => return Ok(FileState::Invalid(error)),
        Loaded::File {
            parsed: Ok(file), ..
        } => file,
    };
    let jobs = file.pipeline.jobs_for(kind, file.changed.as_deref());
    let digests = key::digests(&jobs, &file.objects, &|_| None);
    let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    Ok(FileState::Valid(
        jobs.iter()
            .filter_map(|job| {
                let digest = digests.get(&job.name)?;
                Some(InspectedJob {
                    name: job.name.clone(),
                    needs: job
                        .needs
                        .iter()
                        .filter(|n| names.contains(&n.as_str()))
                        .cloned()
                        .collect(),
                    branch: step_branch(&job.name, &digest.hex),
                    inputs: digest.lines.clone(),
                })
            })
            .collect(),
    ))
}
