//! The handlers of `/api/v1/` (see the table in [`api`](crate::api)): role checks as on the
//! pages, errors as JSON.

use std::fmt::Write as _;

use axum::extract::{Extension, OriginalUri, Query, RawPathParams, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use datakit_ci_term::TargetId;

use super::{
    ArtifactJson, ErrorJson, JobDetail, ProjectJson, Projects, RecordedState, TargetDetail,
    TargetHistory, TargetSummary, Targets, UnreadableJson, target_info,
};
use crate::acl::{Decision, Role};
use crate::ci::filter::{Cursor, ListQuery, failing_rank};
use crate::ci::model::{self, API_HISTORY};
use crate::ci::queue::QueuePlaces;
use crate::ci::{Ci, pr_target, ref_target};
use crate::{AppState, Error, Viewer, access};

/// The routes of the JSON API.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/projects", get(get_projects))
        .route("/api/v1/targets", get(get_targets))
        .route("/api/v1/events", get(super::events::get_events))
        .route(
            "/api/v1/targets/{user}/{repo}/pr/{number}",
            get(get_pr_target),
        )
        .route(
            "/api/v1/targets/{user}/{repo}/ref/{*path}",
            get(get_ref_target),
        )
        .route(
            "/api/v1/history/{user}/{repo}/pr/{number}",
            get(get_pr_history),
        )
        .route(
            "/api/v1/history/{user}/{repo}/ref/{*path}",
            get(get_ref_history),
        )
}

/// An error of the API: the status of [`Error`], with a JSON body; a viewer who must log in gets
/// `401` rather than a redirect to the login form.
pub(crate) struct ApiError(Error);

impl<E: Into<Error>> From<E> for ApiError {
    fn from(error: E) -> Self {
        ApiError(error.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match &self.0 {
            Error::LoginRequired { .. } => (StatusCode::UNAUTHORIZED, "Login required".to_owned()),
            Error::Denied { .. } => (StatusCode::FORBIDDEN, "Permission denied".to_owned()),
            error if error.status().is_server_error() => {
                tracing::error!(error = %crate::error::ErrorChain(error), "API request failed");
                (error.status(), "Internal server error".to_owned())
            }
            error => (error.status(), error.to_string()),
        };
        (status, Json(ErrorJson { error: message })).into_response()
    }
}

async fn get_projects(
    State(state): State<AppState>,
    Extension(ci): Extension<Ci>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Projects>, ApiError> {
    access::require(&state, &viewer, &[Role::Reader], &uri)?;
    Ok(Json(Projects {
        projects: ci.engine.projects().map(ProjectJson::from).collect(),
    }))
}

async fn get_targets(
    State(state): State<AppState>,
    Extension(ci): Extension<Ci>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<ListQuery>,
) -> Result<Json<Targets>, ApiError> {
    access::require(&state, &viewer, &[Role::Reader], &uri)?;
    let filter = query.filter()?;
    let limit = query.limit()?;
    let after = query.after()?;
    // First the keys of the selected targets after the cursor, then summaries of one page's
    // worth, made while visiting the targets in place: no job output is copied.
    let mut keys = Vec::new();
    let mut name = String::new();
    ci.engine.visit_targets(|id, target, jobs| {
        let state = model::worst_state(model::live_job_lines(jobs).map(|(_, state, _)| state));
        name.clear();
        match id {
            TargetId::Pr(_, number) => write!(name, "{number}"),
            TargetId::Ref(_, ref_name) => write!(name, "{ref_name}"),
        }
        .expect("writing to a String cannot fail");
        if !filter.matches(&name, model::title(target), state) {
            return;
        }
        let rank = if filter.failing_first {
            failing_rank(state)
        } else {
            0
        };
        if after
            .as_ref()
            .is_some_and(|after| (rank, id) <= (after.rank, &after.id))
        {
            return;
        }
        keys.push(Cursor {
            rank,
            id: id.clone(),
        });
    });
    keys.sort();
    let next = (keys.len() > limit).then(|| keys[limit - 1].to_param());
    keys.truncate(limit);
    let wanted: std::collections::HashMap<&TargetId, usize> = keys
        .iter()
        .enumerate()
        .map(|(index, key)| (&key.id, index))
        .collect();
    let mut targets: Vec<Option<TargetSummary>> = keys.iter().map(|_| None).collect();
    ci.engine.visit_targets(|id, target, jobs| {
        if let Some(index) = wanted.get(id) {
            targets[*index] = Some(TargetSummary::of_live(id, target, jobs));
        }
    });
    let unreadable = if after.is_some() {
        Vec::new()
    } else {
        ci.engine
            .unreadable_targets()
            .into_iter()
            .map(|target| UnreadableJson {
                id: target.id.to_string(),
                url: crate::urls::target(&target.id),
                error: target.reason,
            })
            .collect()
    };
    Ok(Json(Targets {
        // A target removed between the two visits is left out.
        targets: targets.into_iter().flatten().collect(),
        next,
        unreadable,
    }))
}

async fn get_pr_target(
    State(state): State<AppState>,
    Extension(ci): Extension<Ci>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    params: RawPathParams,
) -> Result<Json<TargetDetail>, ApiError> {
    access::require(&state, &viewer, &[Role::Reader], &uri)?;
    target_detail(&state, &viewer, &ci, &pr_target(&params)?).await
}

async fn get_ref_target(
    State(state): State<AppState>,
    Extension(ci): Extension<Ci>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    params: RawPathParams,
) -> Result<Json<TargetDetail>, ApiError> {
    access::require(&state, &viewer, &[Role::Reader], &uri)?;
    target_detail(&state, &viewer, &ci, &ref_target(&params)?).await
}

async fn get_pr_history(
    State(state): State<AppState>,
    Extension(ci): Extension<Ci>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    params: RawPathParams,
) -> Result<Json<TargetHistory>, ApiError> {
    access::require(&state, &viewer, &[Role::Reader], &uri)?;
    target_history(&ci, &pr_target(&params)?).await
}

async fn get_ref_history(
    State(state): State<AppState>,
    Extension(ci): Extension<Ci>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    params: RawPathParams,
) -> Result<Json<TargetHistory>, ApiError> {
    access::require(&state, &viewer, &[Role::Reader], &uri)?;
    target_history(&ci, &ref_target(&params)?).await
}

fn check_project(ci: &Ci, id: &TargetId) -> Result<(), ApiError> {
    if ci.engine.projects().any(|p| p.id() == id.repo()) {
        Ok(())
    } else {
        Err(Error::NotFound(format!("No such project {}", id.repo())).into())
    }
}

async fn target_detail(
    state: &AppState,
    viewer: &Viewer,
    ci: &Ci,
    id: &TargetId,
) -> Result<Json<TargetDetail>, ApiError> {
    check_project(ci, id)?;
    let may_build = state
        .config()
        .access()
        .check(Role::Builder, viewer.user(), viewer.attrs())
        == Decision::Yes;
    let error = ci.engine.unreadable_target(id);
    let queues = QueuePlaces::of_pools(&ci.pools);
    let shown = match model::shown_state(&ci.engine, id, None).await? {
        Some(shown) => shown,
        None if error.is_some() => model::Shown::default(),
        None => return Err(Error::NotFound(format!("No target {id}")).into()),
    };
    let artifacts = crate::artifacts::of_jobs(state.store(), &shown.jobs).await;
    Ok(Json(TargetDetail {
        target: target_info(
            id,
            shown.target.as_ref(),
            shown.head.as_ref().map(ToString::to_string),
            &shown.jobs,
        ),
        tracked: shown.target.is_some(),
        error,
        history_url: crate::urls::api_history(id),
        jobs: shown
            .jobs
            .iter()
            .zip(artifacts)
            .map(|(job, artifacts)| {
                let mut detail = JobDetail::new(job, &shown.jobs, may_build, &queues);
                detail.artifacts = artifacts.into_iter().map(ArtifactJson::from_link).collect();
                detail
            })
            .collect(),
    }))
}

async fn target_history(ci: &Ci, id: &TargetId) -> Result<Json<TargetHistory>, ApiError> {
    check_project(ci, id)?;
    let history = ci.engine.history();
    let latest = history.latest(id).await?.and_then(|state| state.commit);
    if latest.is_none() && ci.engine.target(id).is_none() {
        return Err(Error::NotFound(format!("No target {id}")).into());
    }
    let (states, _) = model::walk_history(history, latest, API_HISTORY).await?;
    Ok(Json(TargetHistory {
        target: id.to_string(),
        states: states.iter().map(|s| RecordedState::new(id, s)).collect(),
    }))
}
