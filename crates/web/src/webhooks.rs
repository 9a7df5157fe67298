//! `POST /webhooks/github`: hands a GitHub webhook delivery (headers and exact body) to the
//! [`WebhookReceiver`] the program installed, and turns its verdict into a status: `200` for an
//! accepted, replayed or ignored delivery, `401` for a missing or wrong signature, `400` for a
//! malformed payload, `413` for a body over the receiver's limit, `404` when no receiver is
//! installed. The route is authenticated by the signature, so it is outside the CSRF check.
//!
//! Knows nothing of GitHub's payloads or signatures: the receiver (the GitHub bridge, wired by
//! the binary) does; this crate owns the trait so that it depends on no forge crate.

use axum::body::{Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// A webhook delivery as received: the headers GitHub sends and the exact body.
#[derive(Clone, Debug)]
pub struct WebhookDelivery {
    /// `X-GitHub-Event`.
    pub event: Option<String>,
    /// `X-GitHub-Delivery`.
    pub delivery: Option<String>,
    /// `X-Hub-Signature-256`.
    pub signature: Option<String>,
    /// The body, byte for byte (the signature covers these bytes).
    pub body: Bytes,
}

/// What the receiver made of a delivery it accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Accepted; applied in the background.
    Accepted,
    /// Already handled (the same delivery id): ignored.
    Replayed,
    /// Nothing to do (a ping, an unmonitored repository).
    Ignored,
}

/// Why a delivery is refused; each maps to a status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookRejection {
    /// `401`: the signature is missing or wrong. Nothing was written.
    Unauthorized(String),
    /// `400`: the payload is malformed (the message names the problem).
    BadRequest(String),
    /// `413`: the body is too large.
    TooLarge(String),
}

/// Receives webhook deliveries: checks, then queues. Must answer quickly (GitHub gives up after
/// 10 s): apply the delivery in the background.
pub trait WebhookReceiver: Send + Sync + 'static {
    /// The largest body accepted; a larger one is answered `413` without reading it all.
    fn max_body_bytes(&self) -> usize;

    /// Checks and queues `delivery`.
    fn receive(&self, delivery: WebhookDelivery) -> Result<WebhookOutcome, WebhookRejection>;
}

/// `POST /webhooks/github`.
pub(crate) async fn post_github_webhook(
    State(state): State<AppState>,
    request: Request,
) -> Response {
    let Some(receiver) = state.webhook_receiver() else {
        return (
            StatusCode::NOT_FOUND,
            "No GitHub webhook receiver is configured",
        )
            .into_response();
    };
    let limit = receiver.max_body_bytes();
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Body over the limit of {limit} bytes"),
        )
            .into_response()
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    let body = match to_bytes(body, limit).await {
        Ok(body) => body,
        Err(_) => return too_large(),
    };
    let header = |headers: &HeaderMap, name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let delivery = WebhookDelivery {
        event: header(&parts.headers, "x-github-event"),
        delivery: header(&parts.headers, "x-github-delivery"),
        signature: header(&parts.headers, "x-hub-signature-256"),
        body,
    };
    match receiver.receive(delivery) {
        Ok(WebhookOutcome::Accepted) => (StatusCode::ACCEPTED, "Accepted").into_response(),
        Ok(WebhookOutcome::Replayed) => (StatusCode::OK, "Already handled").into_response(),
        Ok(WebhookOutcome::Ignored) => (StatusCode::OK, "Ignored").into_response(),
        Err(WebhookRejection::Unauthorized(message)) => {
            tracing::warn!(%message, "refused a webhook delivery");
            (StatusCode::UNAUTHORIZED, message).into_response()
        }
        Err(WebhookRejection::BadRequest(message)) => {
            (StatusCode::BAD_REQUEST, message).into_response()
        }
        Err(WebhookRejection::TooLarge(message)) => {
            (StatusCode::PAYLOAD_TOO_LARGE, message).into_response()
        }
    }
}
