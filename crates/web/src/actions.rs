//! Build actions (spec §1.4 rows 16–17): `POST /cancel/{branch}` cancels a running build through
//! its live log; `POST /log/rebuild/{branch}` calls the engine's rebuild hook. Both need the
//! `Builder` role; the CSRF token is checked by the `csrf` middleware before they run.

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::HeaderMap;
use axum::response::Redirect;
use datakit_ci_store::BranchName;

use crate::acl::Role;
use crate::{AppState, Error, Viewer, access, urls};

/// `POST /cancel/{branch}`: cancels the build logging to `branch`, then goes back.
pub(crate) async fn post_cancel(
    State(state): State<AppState>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Path(branch): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Redirect, Error> {
    access::require(&state, &viewer, &[Role::Builder], &uri)?;
    let log = state
        .logs()
        .get(&branch)
        .ok_or_else(|| Error::NotFound(format!("Branch {branch:?} is not currently building")))?;
    log.cancel()
        .map_err(|_| Error::NotFound(format!("Branch {branch:?} cannot be cancelled")))?;
    tracing::info!(
        branch,
        user = viewer.user(),
        "build cancelled from the web UI"
    );
    Ok(Redirect::to(&destination(&state, &headers, &body, &branch)))
}

/// `POST /log/rebuild/{branch}`: asks the engine to rebuild the cache entry on `branch`.
pub(crate) async fn post_rebuild(
    State(state): State<AppState>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Path(branch): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Redirect, Error> {
    access::require(&state, &viewer, &[Role::Builder], &uri)?;
    let hook = state.rebuild_hook().ok_or(Error::RebuildUnavailable)?;
    let name = BranchName::new(branch.clone())
        .map_err(|_| Error::NotFound(format!("Invalid branch name {branch:?}")))?;
    hook(name).await.map_err(Error::RebuildFailed)?;
    tracing::info!(
        branch,
        user = viewer.user(),
        "rebuild requested from the web UI"
    );
    Ok(Redirect::to(&destination(&state, &headers, &body, &branch)))
}

/// The form's `redirect` field if it is a local path, else back to the referring page, else the
/// branch's log.
fn destination(state: &AppState, headers: &HeaderMap, body: &[u8], branch: &str) -> String {
    let redirect = form_urlencoded::parse(body)
        .find(|(name, _)| name == "redirect")
        .map(|(_, value)| value.into_owned());
    match redirect.as_deref().and_then(urls::local_path) {
        Some(path) => path.to_owned(),
        None => urls::back(headers, state.config(), urls::live_log(branch)),
    }
}
