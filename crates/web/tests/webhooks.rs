//! `POST /webhooks/github`, driven in-process: the receiver's verdicts become 202/200/401/400/413,
//! a body over its limit is refused before it is read whole, no CSRF token or session is needed,
//! and without a receiver the route is 404.

mod common;

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Dirs, http_config, state_builder};
use datakit_ci_log::LogManager;
use datakit_ci_web::{WebhookDelivery, WebhookOutcome, WebhookReceiver, WebhookRejection, router};
use tower::ServiceExt as _;

/// Accepts deliveries signed `good`, refuses the others as GitHub's bridge would, and records
/// what it was handed.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<WebhookDelivery>>,
}

impl WebhookReceiver for Recorder {
    fn max_body_bytes(&self) -> usize {
        1024
    }

    fn receive(&self, delivery: WebhookDelivery) -> Result<WebhookOutcome, WebhookRejection> {
        self.seen.lock().expect("lock").push(delivery.clone());
        match (delivery.signature.as_deref(), &delivery.body[..]) {
            (Some("good"), b"{}") if delivery.delivery.as_deref() == Some("again") => {
                Ok(WebhookOutcome::Replayed)
            }
            (Some("good"), b"{}") => Ok(WebhookOutcome::Accepted),
            (Some("good"), _) => Err(WebhookRejection::BadRequest(
                "malformed push payload: EOF while parsing".to_owned(),
            )),
            _ => Err(WebhookRejection::Unauthorized("bad signature".to_owned())),
        }
    }
}

async fn post(
    app: &axum::Router,
    signature: Option<&str>,
    delivery: &str,
    body: Vec<u8>,
) -> anyhow::Result<(StatusCode, String)> {
    let mut request = Request::post("/webhooks/github")
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery);
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    let response = app.clone().oneshot(request.body(Body::from(body))?).await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

#[tokio::test]
async fn verdicts_become_statuses_without_csrf() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    let receiver = Arc::new(Recorder::default());
    let state = state_builder(dirs.store()?, LogManager::new(), http_config(&dirs)?)
        .webhook_receiver(receiver.clone())
        .build()?;
    let app = router(&state, None);

    assert_eq!(
        post(&app, Some("good"), "1", b"{}".to_vec()).await?.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        post(&app, Some("good"), "again", b"{}".to_vec()).await?.0,
        StatusCode::OK
    );
    assert_eq!(
        post(&app, None, "2", b"{}".to_vec()).await?.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, message) = post(&app, Some("good"), "3", b"{\"ref".to_vec()).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(message, "malformed push payload: EOF while parsing");
    let (status, _) = post(&app, Some("good"), "4", vec![b' '; 1025]).await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let seen = receiver.seen.lock().expect("lock");
    assert_eq!(
        seen.len(),
        4,
        "the oversized body never reached the receiver"
    );
    assert_eq!(seen[0].event.as_deref(), Some("push"));
    assert_eq!(seen[0].delivery.as_deref(), Some("1"));
    assert_eq!(&seen[0].body[..], b"{}", "the exact bytes");
    Ok(())
}

#[tokio::test]
async fn without_a_receiver_the_route_is_not_found() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    let state = state_builder(dirs.store()?, LogManager::new(), http_config(&dirs)?).build()?;
    let app = router(&state, None);
    assert_eq!(
        post(&app, Some("good"), "1", b"{}".to_vec()).await?.0,
        StatusCode::NOT_FOUND
    );
    Ok(())
}
