//! The route table (spec §1.2, DESIGN §6.2) and the middleware stack around it: panics → 500,
//! metrics, sessions, CSRF.
//!
//! Engine-facing pages are merged in as a `Router<AppState>`; without them, `/` is a placeholder.

use axum::Router;
use axum::http::StatusCode;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::cookie::time::Duration;
use tower_sessions::{Expiry, SessionManagerLayer, SessionStore};

use crate::memory_sessions::MemorySessions;

#[cfg(test)]
mod tests;
use crate::pages::{accounts, auth, errors, home, settings};
use crate::{
    AppState, actions, artifacts, csrf, github_login, logs, metrics, read_only, static_files,
    webhooks,
};

/// How long an unused session lives.
const SESSION_LIFETIME: Duration = Duration::days(7);

/// The web UI's router with sessions kept in memory (at most 100,000, expired ones dropped),
/// whatever the configuration says (the server uses the configured backend). For driving the routes in-process, e.g. with
/// `tower::ServiceExt::oneshot`.
///
/// `pages` are the engine-facing pages (dashboard, target and commit pages…); they must include
/// `/`. Without them, `/` is a placeholder saying that no engine is attached.
pub fn router(state: &AppState, pages: Option<Router<AppState>>) -> Router {
    with_sessions(state, pages, MemorySessions::default())
}

/// The router with sessions in `store`.
pub(crate) fn with_sessions<S: SessionStore + Clone>(
    state: &AppState,
    pages: Option<Router<AppState>>,
    store: S,
) -> Router {
    let config = state.config();
    let sessions = SessionManagerLayer::new(store)
        .with_name(config.cookie_name())
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(config.public().is_https())
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(SESSION_LIFETIME));
    // The webhook route is authenticated by its signature, not a session: outside the CSRF check.
    let webhooks = Router::new()
        .route("/webhooks/github", post(webhooks::post_github_webhook))
        .with_state(state.clone());
    let router = routes(pages)
        .with_state(state.clone())
        .layer(middleware::from_fn_with_state(state.clone(), csrf::check))
        .merge(webhooks)
        .layer(sessions)
        // Outside the sessions and the CSRF check: a replica stores no session at all.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            read_only::refuse_writes,
        ))
        .layer(middleware::from_fn_with_state(
            state.metrics().clone(),
            metrics::track,
        ))
        .layer(CatchPanicLayer::new())
        .layer(RequestBodyTimeoutLayer::new(
            config.connections().body_read_timeout,
        ))
        .layer(security_header(header::X_FRAME_OPTIONS, "SAMEORIGIN"))
        .layer(security_header(header::REFERRER_POLICY, "same-origin"))
        .layer(security_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(security_header(
            header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY,
        ));
    if config.public().is_https() {
        router.layer(security_header(
            header::STRICT_TRANSPORT_SECURITY,
            STRICT_TRANSPORT_SECURITY,
        ))
    } else {
        router
    }
}

/// The pages use only this site's style sheet and no script: anything else a page could be made
/// to load (an injected `<script>`, `<img>` or `<form>` to elsewhere) is refused by the browser.
/// Log pages and live pages add their one inline script, by its hash (`crate::csp`).
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'self'; base-uri 'none'";

/// On https, browsers are told to use https only for this host, for a year.
const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// Sets `name: value` on every response that does not set it itself.
fn security_header(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

/// The routes, before state and middleware.
fn routes(pages: Option<Router<AppState>>) -> Router<AppState> {
    let router = Router::new()
        .route("/auth/intro/{token}", get(auth::get_intro))
        .route("/auth/setup", get(auth::get_setup).post(auth::post_setup))
        .route("/auth/login", get(auth::get_login).post(auth::post_login))
        .route("/auth/logout", post(auth::post_logout))
        .route("/auth/github", get(github_login::get_github_login))
        .route(
            "/auth/github-callback",
            get(github_login::get_github_callback),
        )
        .route("/user/profile", get(accounts::get_profile))
        .route(
            "/user/profile/password",
            post(accounts::post_change_password),
        )
        .route(
            "/settings/users",
            get(accounts::get_users).post(accounts::post_add_user),
        )
        .route(
            "/settings/users/{name}/password",
            post(accounts::post_reset_password),
        )
        .route(
            "/settings/users/{name}/remove",
            post(accounts::post_remove_user),
        )
        .route("/log/live/{branch}", get(logs::get_live_log))
        .route("/log/saved/{branch}/{commit}", get(logs::get_saved_log))
        .route(
            "/api/v1/artifacts/{branch}/{commit}/{*path}",
            get(artifacts::get_artifact),
        )
        .route("/log/rebuild/{branch}", post(actions::post_rebuild))
        .route("/cancel/{branch}", post(actions::post_cancel))
        .route("/settings", get(settings::get_settings))
        .route(
            "/settings/github-auth",
            get(settings::get_github_auth).post(settings::post_github_auth),
        )
        .route("/error/{id}", get(errors::get_error))
        .route("/metrics", get(metrics::get_metrics))
        .route("/css/{name}", get(static_files::get_css))
        .fallback(errors::get_not_found);
    match pages {
        Some(pages) => router.merge(pages),
        None => router.route("/", get(home::get_home)),
    }
}

/// The router of the unauthenticated Prometheus listener: `/metrics` only.
pub(crate) fn prometheus_router(state: &AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::get_metrics_open))
        .fallback(|| async { (StatusCode::NOT_FOUND, "Not found") })
        .with_state(state.clone())
}
