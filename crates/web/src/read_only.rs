//! The read-only mode of a replica ([`WebConfig::read_only`](crate::WebConfig::read_only)):
//! every request that would change something is refused with `403` and the configured note,
//! before sessions or CSRF checks, so that a replica never writes a session, a password, an
//! approval or a rebuild request.
//!
//! Knows only which requests write: every method but `GET`, `HEAD` and `OPTIONS`, and the
//! `GET`s that log in (the first-run link, GitHub's login and callback).

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// Middleware: in read-only mode, refuses the requests that write.
pub(crate) async fn refuse_writes(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match state.config().read_only_note() {
        Some(note) if writes(request.method(), request.uri().path()) => (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("This web UI is read-only: {note}\n"),
        )
            .into_response(),
        _ => next.run(request).await,
    }
}

/// Whether a request with `method` on `path` changes something (or logs in).
fn writes(method: &Method, path: &str) -> bool {
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    !safe
        || path.starts_with("/auth/intro/")
        || path == "/auth/github"
        || path == "/auth/github-callback"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posts_and_logins_write_and_pages_do_not() {
        for (method, path, expected) in [
            (Method::POST, "/log/rebuild/shell-of-t-on-abc", true),
            (Method::POST, "/cancel/shell-of-t-on-abc", true),
            (Method::POST, "/approve/me/proj/ref/heads/main", true),
            (Method::POST, "/auth/login", true),
            (Method::DELETE, "/", true),
            (Method::GET, "/auth/intro/token", true),
            (Method::GET, "/auth/github-callback", true),
            (Method::GET, "/", false),
            (Method::GET, "/auth/login", false),
            (Method::HEAD, "/api/v1/targets", false),
            (Method::GET, "/log/saved/shell-of-t-on-abc/0123", false),
        ] {
            assert_eq!(writes(&method, path), expected, "{method} {path}");
        }
    }
}
