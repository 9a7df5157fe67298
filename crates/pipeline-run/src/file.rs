//! Reading a commit's pipeline file: whether there is one, its text and parse, and what its
//! jobs' digests need from the commit (the object ids of their inputs, the changed files).

use std::collections::HashMap;
use std::sync::Arc;

use datakit_ci_git::{TreeEntry, TreeReader};
use datakit_ci_pipeline::{FILE_NAME, ParseError, Pipeline};
use datakit_ci_term::CommitHash;

use crate::check::FileKey;
use crate::key;

/// A commit's pipeline file, read and checked.
pub(crate) enum Loaded {
    /// The commit has no file.
    Missing,
    /// The file, which may not parse; the checking step says why.
    File {
        key: FileKey,
        parsed: Result<Box<ParsedFile>, ParseError>,
    },
}

/// A parsed file with what its jobs' digests need from the commit.
pub(crate) struct ParsedFile {
    pub(crate) pipeline: Pipeline,
    /// The object ids of every job's input paths (`""`: the whole tree).
    pub(crate) objects: HashMap<String, Option<TreeEntry>>,
    /// The files the target changed, if a job's `when` has `paths` (else not computed).
    pub(crate) changed: Option<Vec<String>>,
}

/// Reads and parses the file of `commit`; `base` is the commit a PR is compared with for
/// `when.paths`.
pub(crate) async fn read(
    commit: TreeReader<'_>,
    base: Option<&CommitHash>,
) -> Result<Loaded, datakit_ci_git::Error> {
    let Some(entry) = commit
        .tree_ids(&[FILE_NAME.to_owned()])
        .await?
        .pop()
        .flatten()
        .filter(|entry| entry.kind == "blob")
    else {
        return Ok(Loaded::Missing);
    };
    let text = commit.read_blob(&entry.id).await?;
    let parsed = datakit_ci_pipeline::parse(&text);
    let key = FileKey {
        blob: entry.id,
        text: Arc::new(text),
    };
    let pipeline = match parsed {
        Ok(pipeline) => pipeline,
        Err(error) => {
            return Ok(Loaded::File {
                key,
                parsed: Err(error),
            });
        }
    };
    let mut paths: Vec<String> = pipeline
        .jobs()
        .iter()
        .flat_map(|job| key::input_paths(job).into_iter().map(str::to_owned))
        .collect();
    paths.sort();
    paths.dedup();
    let ids = commit.tree_ids(&paths).await?;
    let objects = paths.into_iter().zip(ids).collect();
    let wants_paths = pipeline.jobs().iter().any(|job| job.when.paths().is_some());
    let changed = if wants_paths {
        let merge_base = match base {
            Some(base) => commit.merge_base(base).await?,
            None => None,
        };
        Some(commit.changed_paths(merge_base.as_ref()).await?)
    } else {
        None
    };
    Ok(Loaded::File {
        key,
        parsed: Ok(Box::new(ParsedFile {
            pipeline,
            objects,
            changed,
        })),
    })
}
