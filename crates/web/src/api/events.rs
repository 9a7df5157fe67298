//! `GET /api/v1/events` (issue 20): the engine's job state changes as server-sent events, for
//! tools and live pages. Each is an event `status` whose data is a [`StatusEvent`]; a client too
//! slow to keep up gets an event `lagged` (`{"missed": n}`) and should re-read `/api/v1/targets`.
//! The stream ends when the server stops.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Extension, OriginalUri, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use datakit_ci_engine::StatusChange;

use super::routes::ApiError;
use crate::acl::Role;
use crate::ci::Ci;
use crate::{AppState, Viewer, access};

/// How often an idle stream sends a comment, so that proxies and clients see it is alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The data of a `status` event.
#[derive(Debug, Serialize)]
pub struct StatusEvent {
    /// The target, e.g. `user/repo/heads/main` or `user/repo/prs/3`.
    pub target: String,
    /// The job (test) name.
    pub job: String,
    /// The commit the status is about.
    pub commit: String,
    /// `pending`, `success` or `failure`.
    pub state: &'static str,
    /// The status's description.
    pub description: String,
}

impl From<&StatusChange> for StatusEvent {
    fn from(change: &StatusChange) -> StatusEvent {
        StatusEvent {
            target: change.target.to_string(),
            job: change.job.clone(),
            commit: change.commit.to_string(),
            state: change.state,
            description: change.description.clone(),
        }
    }
}

/// `GET /api/v1/events` (role `Reader`).
pub(crate) async fn get_events(
    State(state): State<AppState>,
    Extension(ci): Extension<Ci>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    access::require(&state, &viewer, &[Role::Reader], &uri)?;
    let changes = ci.engine.subscribe();
    let shutdown = state.shutdown_token().clone();
    Ok(Sse::new(events(changes, shutdown)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

fn events(
    changes: broadcast::Receiver<StatusChange>,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold((changes, shutdown), |(mut changes, shutdown)| async move {
        let received = tokio::select! {
            received = changes.recv() => received,
            () = shutdown.cancelled() => return None,
        };
        let event = match received {
            Ok(change) => Event::default()
                .event("status")
                .json_data(StatusEvent::from(&change)),
            Err(broadcast::error::RecvError::Lagged(missed)) => Event::default()
                .event("lagged")
                .json_data(serde_json::json!({ "missed": missed })),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        match event {
            Ok(event) => Some((Ok(event), (changes, shutdown))),
            Err(error) => {
                tracing::error!(%error, "cannot encode an event");
                None
            }
        }
    })
}
