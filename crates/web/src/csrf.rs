//! CSRF protection (spec §2.6): every POST must carry the session's token, as the form field
//! `CSRFToken` (how our forms send it), the query parameter `CSRFToken` (the original's way) or
//! the header `X-CSRF-Token`. Anything else is refused with `403` before any handler runs.
//!
//! A visitor without a session (anyone opening the login page) is not given one: storing a
//! session per anonymous visit let a flood of them evict every logged-in user (issue 20). Their
//! forms carry an [`AnonymousToken`] instead: the HMAC, under a key of this process, of a random
//! nonce kept in a cookie of its own (a signed double-submit cookie). A page from another site
//! can neither read that cookie nor compute the token, and nothing is stored on the server.
//!
//! Knows nothing of routes: it is one middleware over the whole router.

use std::sync::{Arc, OnceLock};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use tower_sessions::Session;

use crate::session::session_csrf_token;
use crate::{AppState, Error};

/// The bytes of an anonymous visitor's nonce.
const NONCE_BYTES: usize = 16;

/// The key signing anonymous visitors' tokens: random per process, so a restart only invalidates
/// login forms that were open then.
pub(crate) struct CsrfKey([u8; 32]);

impl CsrfKey {
    pub(crate) fn random() -> CsrfKey {
        let mut key = [0; 32];
        getrandom::fill(&mut key).expect("the operating system's random source is available");
        CsrfKey(key)
    }

    fn sign(&self, nonce: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any size");
        mac.update(nonce.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

/// The CSRF token of a visitor without a session, put in the request by [`check`] for
/// [`Viewer::csrf_token`](crate::Viewer::csrf_token). Computed only when a page asks for it
/// (most requests never do); then, if the visitor had no nonce, one is made and the response
/// sets its cookie.
#[derive(Clone)]
pub(crate) struct AnonymousToken {
    state: AppState,
    /// The nonce the request's cookie carries, if any.
    given: Option<String>,
    /// The nonce made for a visitor without one, once a page asked for a token.
    issued: Arc<OnceLock<String>>,
}

impl std::fmt::Debug for AnonymousToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnonymousToken").finish_non_exhaustive()
    }
}

impl AnonymousToken {
    pub(crate) fn take(&self) -> String {
        let nonce = match &self.given {
            Some(nonce) => nonce,
            None => self
                .issued
                .get_or_init(|| crate::secrets::random_token(NONCE_BYTES)),
        };
        self.state.csrf_key().sign(nonce)
    }
}

/// The name of the cookie holding an anonymous visitor's nonce.
fn nonce_cookie_name(state: &AppState) -> String {
    format!("{}-csrf", state.config().cookie_name())
}

/// The visitor's nonce, if their request carries a well-formed one.
fn request_nonce(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
        .filter(|value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(value)
                .is_ok_and(|bytes| bytes.len() == NONCE_BYTES)
        })
}

/// The form field, query parameter and (as `X-CSRF-Token`) header carrying the token.
pub const CSRF_FIELD: &str = "CSRFToken";

/// The largest form body read to find the token.
const MAX_FORM_BYTES: usize = 1 << 20;

/// Middleware: refuses unsafe requests without the session's (or the anonymous visitor's) CSRF
/// token, and hands the anonymous token to the handlers.
pub(crate) async fn check(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let cookie_name = nonce_cookie_name(&state);
    let given_nonce = request_nonce(request.headers(), &cookie_name);
    let anonymous = AnonymousToken {
        state: state.clone(),
        given: given_nonce.clone(),
        issued: Arc::new(OnceLock::new()),
    };
    request.extensions_mut().insert(anonymous.clone());
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let mut response = if safe {
        next.run(request).await
    } else {
        let expected_anonymous = given_nonce.as_ref().map(|_| anonymous.take());
        match verify(request, expected_anonymous.as_deref()).await {
            Ok(request) => next.run(request).await,
            Err(error) => error.into_response(),
        }
    };
    if let Some(nonce) = anonymous.issued.get() {
        let secure = if state.config().public().is_https() {
            "; Secure"
        } else {
            ""
        };
        let cookie = format!("{cookie_name}={nonce}; Path=/; HttpOnly; SameSite=Lax{secure}");
        match HeaderValue::from_str(&cookie) {
            Ok(value) => {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            Err(error) => tracing::warn!(%error, "cannot set the CSRF cookie"),
        }
    }
    response
}

/// Checks the request's token against the session's, or else against `anonymous` (the token of
/// the nonce the request's cookie carries).
async fn verify(request: Request, anonymous: Option<&str>) -> Result<Request, Error> {
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
    let matches = |expected: &str| bool::from(expected.as_bytes().ct_eq(given.as_bytes()));
    match (expected, anonymous) {
        (Some(expected), _) if matches(&expected) => Ok(request),
        (_, Some(anonymous)) if matches(anonymous) => Ok(request),
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
