//! Approving a `manual` job (role `Builder`, CSRF checked by the middleware):
//! `POST /approve/<target path>` with the form field `job` records the approval on the target's
//! current head through the engine (`Engine::approve`), then goes back to the target's page
//! (`303`). The job's description then names who approved it, so its history records that.
//!
//! The job `.pull-request` (`metadata::PULL_REQUEST_APPROVAL`) approves the current head of an
//! untrusted pull request, for all its jobs (`Engine::approve_pull_request`); approving a job of
//! such a pull request whose head nobody approved yet does the same.

use axum::Form;
use axum::extract::{Extension, OriginalUri, RawPathParams, State};
use axum::response::Redirect;
use serde::Deserialize;

use datakit_ci_term::TargetId;

use super::{Ci, pr_target, ref_target};
use crate::acl::Role;
use crate::{AppState, Error, Viewer, access, urls};

/// The approval form.
#[derive(Debug, Deserialize)]
pub(crate) struct ApproveForm {
    job: String,
}

/// `POST /approve/{user}/{repo}/pr/{number}`.
pub(crate) async fn post_approve_pr(
    State(state): State<AppState>,
    Extension(ci): Extension<Ci>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    params: RawPathParams,
    Form(form): Form<ApproveForm>,
) -> Result<Redirect, Error> {
    access::require(&state, &viewer, &[Role::Builder], &uri)?;
    approve(&ci, &viewer, &pr_target(&params)?, &form.job).await
}

/// `POST /approve/{user}/{repo}/ref/{*path}`.
pub(crate) async fn post_approve_ref(
    State(state): State<AppState>,
    Extension(ci): Extension<Ci>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    params: RawPathParams,
    Form(form): Form<ApproveForm>,
) -> Result<Redirect, Error> {
    access::require(&state, &viewer, &[Role::Builder], &uri)?;
    approve(&ci, &viewer, &ref_target(&params)?, &form.job).await
}

async fn approve(ci: &Ci, viewer: &Viewer, id: &TargetId, job: &str) -> Result<Redirect, Error> {
    // Builders who are not logged in (`--can-build everyone`) approve as `anonymous`.
    let user = viewer.user().unwrap_or("anonymous");
    let approved = if job == datakit_ci_term::metadata::PULL_REQUEST_APPROVAL {
        ci.engine.approve_pull_request(id, user).await
    } else {
        ci.engine.approve(id, job, user).await
    };
    match approved {
        Ok(head) => {
            tracing::info!(target = %id, job, user, head = %head, "job approved");
            Ok(Redirect::to(&urls::target(id)))
        }
        Err(e @ datakit_ci_engine::Error::NotApprovable { .. }) => {
            Err(Error::NotFound(e.to_string()))
        }
        Err(e) => Err(Error::Engine(e)),
    }
}
