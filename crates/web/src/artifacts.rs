//! Artifacts (issue 17): files a build kept on its cache branch (the cache's `artifacts/`
//! layout, read through [`datakit_ci_cache::read_artifacts`]). Lists them for the target page
//! and the JSON API, and serves each at `GET /api/v1/artifacts/<branch>/<commit>/<path…>` — the
//! cache branch and commit of the job's saved log, so a link names exactly the run that made the
//! file, and a reused result's link still works. Same role as the saved log (`Reader`).
//!
//! Only files the build's index lists are served; a path with an empty, `.` or `..` component
//! is a `400`, an unknown branch, commit or file a `404`.

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use datakit_ci_cache::{Artifact, artifact_path, read_artifacts};
use datakit_ci_store::{BranchName, CommitId, Snapshot, Store};
use datakit_ci_term::{JobOutput, LogLeaf};

use crate::acl::Role;
use crate::api::ApiError;
use crate::{AppState, Error, Viewer, access, urls};

/// The size of the pieces a file is sent in.
const CHUNK: usize = 64 * 1024;

/// A kept file of a job, as pages and the API show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ArtifactLink {
    /// Its path relative to where the step ran.
    pub(crate) path: String,
    /// Its size in bytes.
    pub(crate) size: u64,
    /// Where to download it.
    pub(crate) url: String,
}

/// The artifacts of the saved logs of `output` (a job's builds), in log order. A build whose
/// artifacts cannot be read is left out, with a warning in the server's log: a listing never
/// fails a page.
pub(crate) async fn of_output(store: &Store, output: Option<&JobOutput>) -> Vec<ArtifactLink> {
    let mut links = Vec::new();
    let Some(output) = output else {
        return links;
    };
    let mut seen = std::collections::HashSet::new();
    for leaf in output.logs.leaves() {
        let LogLeaf::Saved(saved) = leaf else {
            continue;
        };
        let (branch, commit) = (saved.branch().as_str(), saved.commit());
        if !seen.insert((branch.to_owned(), commit)) {
            continue;
        }
        let artifacts = match store.commit(commit).await {
            Ok(found) => read_artifacts(&found.tree()),
            // A commit compacted away after retention: its artifacts are on the branch's head.
            Err(_) => match crate::logs::removed_log(store, branch).await {
                Some(tree) => read_artifacts(&tree),
                None => continue,
            },
        };
        match artifacts {
            Ok(artifacts) => {
                links.extend(
                    artifacts
                        .into_iter()
                        .map(|Artifact { path, size }| ArtifactLink {
                            url: urls::artifact(branch, &commit.to_string(), &path),
                            path,
                            size,
                        }),
                )
            }
            Err(error) => {
                tracing::warn!(%branch, %commit, error = %crate::error::ErrorChain(&error), "cannot list artifacts");
            }
        }
    }
    links
}

/// The artifacts of each of `jobs`, in order.
pub(crate) async fn of_jobs(
    store: &Store,
    jobs: &[crate::ci::model::Job],
) -> Vec<Vec<ArtifactLink>> {
    let mut all = Vec::new();
    // A plain loop: a closure over the jobs held across the reads would make the handlers'
    // futures not `Send` for every lifetime.
    for job in jobs {
        all.push(of_output(store, job.output.as_ref()).await);
    }
    all
}

/// A job's artifacts on its page: a download link and the size of each; nothing without any.
pub(crate) fn list(artifacts: &[ArtifactLink]) -> Markup {
    html! {
        @if !artifacts.is_empty() {
            div.artifacts {
                "Artifacts:"
                ul {
                    @for artifact in artifacts {
                        li {
                            a.artifact href=(artifact.url) download { (artifact.path) }
                            " (" (bytesize::ByteSize::b(artifact.size).to_string()) ")"
                        }
                    }
                }
            }
        }
    }
}

/// `GET /api/v1/artifacts/{branch}/{commit}/{*path}` (role `Reader`): the file, as
/// `application/octet-stream` to save (`Content-Disposition: attachment`).
pub(crate) async fn get_artifact(
    State(state): State<AppState>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Path((branch, commit, path)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    access::require(&state, &viewer, &[Role::Reader], &uri)?;
    check_path(&path)?;
    let stored = artifact_path(&path)
        .map_err(|_| Error::BadRequest(format!("invalid artifact path {path:?}")))?;
    BranchName::new(branch.as_str())
        .map_err(|_| Error::NotFound(format!("No such branch {branch:?}")))?;
    let id: CommitId = commit
        .parse()
        .map_err(|_| Error::NotFound(format!("Invalid commit id {commit:?}")))?;
    let tree: Snapshot = match state.store().commit(id).await {
        Ok(found) => found.tree(),
        Err(_) => crate::logs::removed_log(state.store(), &branch)
            .await
            .ok_or_else(|| Error::NotFound(format!("No such commit {id}")))?,
    };
    let listed = read_artifacts(&tree)
        .map_err(Error::from)?
        .into_iter()
        .find(|artifact| artifact.path == path)
        .ok_or_else(|| Error::NotFound(format!("No artifact {path:?} in {id}")))?;
    let reader = tree
        .open_file(&stored)?
        .ok_or_else(|| Error::NotFound(format!("No artifact {path:?} in {id}")))?;
    let name = path.rsplit('/').next().unwrap_or(&path);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, content_disposition(name)),
            (header::CONTENT_LENGTH, listed.size.to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        Body::from_stream(stream(reader)),
    )
        .into_response())
}

/// Refuses a path that is not plainly relative: `..` and `.` components, empty ones (a leading
/// `/`, `//`).
fn check_path(path: &str) -> Result<(), Error> {
    if path
        .split('/')
        .any(|component| component.is_empty() || component == "." || component == "..")
    {
        return Err(Error::BadRequest(format!(
            "invalid artifact path {path:?}: it must be relative, without empty, '.' or '..' components"
        )));
    }
    Ok(())
}

/// `attachment; filename="…"; filename*=UTF-8''…` (RFC 6266): the plain name with anything
/// outside printable ASCII, `"` and `\` replaced, and the exact name percent-encoded.
fn content_disposition(name: &str) -> String {
    let plain: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c,
            _ => '_',
        })
        .collect();
    format!(
        "attachment; filename=\"{plain}\"; filename*=UTF-8''{}",
        urls::encode_segment(name)
    )
}

/// The file's bytes, read in pieces by a blocking task with a little read-ahead (an artifact
/// may be large: never held whole).
fn stream(
    reader: datakit_ci_store::FileReader,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> {
    let receiver = crate::stored_file::read_in_pieces(reader, CHUNK);
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_be_plainly_relative() {
        for good in ["out.txt", "reports/unit.xml", "a b/c"] {
            assert!(check_path(good).is_ok(), "{good:?}");
        }
        for bad in ["", "../x", "a/../b", "/etc/passwd", "a//b", "./x", "a/"] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_download_name_is_quoted_safely() {
        assert_eq!(
            content_disposition("unit.xml"),
            "attachment; filename=\"unit.xml\"; filename*=UTF-8''unit.xml"
        );
        assert_eq!(
            content_disposition("a\"b é.txt"),
            "attachment; filename=\"a_b _.txt\"; filename*=UTF-8''a%22b%20%C3%A9.txt"
        );
    }
}
