//! Bulk rebuilds (role `Builder`, CSRF checked by the middleware): `POST /rebuild-failed/…` with
//! a target's or a commit's page path asks the engine to rebuild every failed, rebuildable saved
//! log of the live jobs there, then goes back to that page (`303`).

use std::collections::BTreeSet;

use axum::extract::{Extension, OriginalUri, RawPathParams, State};
use axum::response::Redirect;

use datakit_ci_store::BranchName;
use datakit_ci_term::TargetId;

use super::commit::commit_of;
use super::{Ci, model, pr_target, ref_target};
use crate::acl::Role;
use crate::{AppState, Error, Viewer, access, urls};

/// `POST /rebuild-failed/{user}/{repo}/pr/{number}`.
pub(crate) async fn post_rebuild_failed_pr(
    State(state): State<AppState>,
    Extension(ci): Extension<Ci>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    params: RawPathParams,
) -> Result<Redirect, Error> {
    access::require(&state, &viewer, &[Role::Builder], &uri)?;
    let id = pr_target(&params)?;
    rebuild_target(&ci, &viewer, &id).await
}

/// `POST /rebuild-failed/{user}/{repo}/ref/{*path}`.
pub(crate) async fn post_rebuild_failed_ref(
    State(state): State<AppState>,
    Extension(ci): Extension<Ci>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    params: RawPathParams,
) -> Result<Redirect, Error> {
    access::require(&state, &viewer, &[Role::Builder], &uri)?;
    let id = ref_target(&params)?;
    rebuild_target(&ci, &viewer, &id).await
}

/// `POST /rebuild-failed/{user}/{repo}/commit/{hash}`: every live target on that commit.
pub(crate) async fn post_rebuild_failed_commit(
    State(state): State<AppState>,
    Extension(ci): Extension<Ci>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    params: RawPathParams,
) -> Result<Redirect, Error> {
    access::require(&state, &viewer, &[Role::Builder], &uri)?;
    let (repo, hash) = commit_of(&params)?;
    let mut branches = BTreeSet::new();
    for id in ci.engine.targets_of_commit(&repo, &hash) {
        if let Some(view) = ci.engine.target(&id) {
            branches.extend(model::failed_rebuildable(&model::live_jobs(&view)));
        }
    }
    rebuild(&ci, &viewer, &urls::commit(&repo, &hash), branches).await?;
    Ok(Redirect::to(&urls::commit(&repo, &hash)))
}

async fn rebuild_target(ci: &Ci, viewer: &Viewer, id: &TargetId) -> Result<Redirect, Error> {
    let view = ci
        .engine
        .target(id)
        .ok_or_else(|| Error::NotFound(format!("No live target {id}")))?;
    let branches = model::failed_rebuildable(&model::live_jobs(&view));
    let page = urls::target(id);
    rebuild(ci, viewer, &page, branches).await?;
    Ok(Redirect::to(&page))
}

/// Asks the engine to rebuild each branch. A branch no job uses any more (its job moved on since
/// the page was rendered) is skipped.
async fn rebuild(
    ci: &Ci,
    viewer: &Viewer,
    page: &str,
    branches: BTreeSet<BranchName>,
) -> Result<(), Error> {
    for branch in &branches {
        match ci.engine.rebuild(branch).await {
            Ok(()) => {}
            Err(datakit_ci_engine::Error::NothingToRebuild { .. }) => {
                tracing::info!(%branch, "no job uses this branch any more; not rebuilt");
            }
            Err(error) => return Err(error.into()),
        }
    }
    tracing::info!(
        page,
        count = branches.len(),
        user = viewer.user(),
        "failed jobs rebuilt from the web UI"
    );
    Ok(())
}
