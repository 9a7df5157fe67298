//! CSRF protection (spec §2.6): every POST must carry the session's token, as the form field
//! `CSRFToken` (how our forms send it), the query parameter `CSRFToken` (the original's way) or
//! the header `X-CSRF-Token`. Anything else is refused with `403` before any handler runs.
//!
//! Knows nothing of routes: it is one middleware over the whole router.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq as _;
use tower_sessions::Session;

use crate::Error;
use crate::session::session_csrf_token;

/// The form field, query parameter and (as `X-CSRF-Token`) header carrying the token.
pub const CSRF_FIELD: &str = "CSRFToken";

/// The largest form body read to find the token.
const MAX_FORM_BYTES: usize = 1 << 20;

/// Middleware: refuses unsafe requests without the session's CSRF token.
pub(crate) async fn check(request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    match verify(request).await {
        Ok(request) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

async fn verify(request: Request) -> Result<Request, Error> {
    let session = request
        .extensions()
        .get::<Session>()
        .cloned()
        .ok_or_else(|| Error::Forbidden("Missing session".to_owned()))?;
    let mut given = query_token(request.uri().query());
    if given.is_none() {
        given = request
            .headers()
            .get("x-csrf-token")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    let request = if given.is_none() && is_form {
        let (parts, body) = request.into_parts();
        let bytes = to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| Error::BadRequest("Form too large or unreadable".to_owned()))?;
        given = form_urlencoded::parse(&bytes)
            .find(|(name, _)| name == CSRF_FIELD)
            .map(|(_, value)| value.into_owned());
        Request::from_parts(parts, Body::from(bytes))
    } else {
        request
    };
    let given = given.ok_or_else(|| Error::Forbidden("Missing CSRFToken".to_owned()))?;
    let expected = session_csrf_token(&session).await?;
    match expected {
        Some(expected) if bool::from(expected.as_bytes().ct_eq(given.as_bytes())) => Ok(request),
        _ => {
            tracing::info!("refused a request with an incorrect CSRF token");
            Err(Error::Forbidden("Incorrect CSRFToken".to_owned()))
        }
    }
}

fn query_token(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == CSRF_FIELD)
        .map(|(_, value)| value.into_owned())
}
