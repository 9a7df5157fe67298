//! A flood of anonymous visits leaves logged-in users alone (issue 20): with room for only a few
//! sessions, thousands of login-page views and failed logins store none, so none is evicted.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use datakit_ci_log::LogManager;
use datakit_ci_store::Store;
use tower::ServiceExt as _;

use crate::memory_sessions::MemorySessions;
use crate::{AppState, WebConfig};

fn form(fields: &[(&str, &str)]) -> Body {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in fields {
        serializer.append_pair(name, value);
    }
    Body::from(serializer.finish())
}

/// The first `name=value` pairs of a response's cookies.
fn cookies(response: &axum::response::Response) -> Vec<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split(';').next())
        .map(str::to_owned)
        .collect()
}

fn token(html: &str) -> String {
    let marker = "name=\"CSRFToken\" value=\"";
    let start = html.find(marker).map(|i| i + marker.len()).unwrap_or(0);
    let end = html[start..].find('"').map(|i| start + i).unwrap_or(start);
    html[start..end].to_owned()
}

#[tokio::test]
async fn anonymous_floods_evict_no_session() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets)?;
    let mut users = crate::auth::Users::default();
    users.set_password("admin", "admin-password-1")?;
    users.save(&secrets.join(crate::PASSWORD_FILE))?;
    let config = WebConfig::new(&secrets).public_url("http://127.0.0.1/".parse()?);
    let store = Store::open(&dir.path().join("state.git"))?;
    let registry = std::sync::Arc::new(std::sync::Mutex::new(Default::default()));
    let state = AppState::builder(config, store, LogManager::new(), registry).build()?;
    let sessions = MemorySessions::with_capacity(4);
    let router = super::with_sessions(&state, None, sessions.clone());
    let send = |request: Request<Body>| router.clone().oneshot(request);

    // Log in: the login page's anonymous token, with its cookie.
    let page = send(Request::get("/auth/login").body(Body::empty())?).await?;
    let nonce = cookies(&page).join("; ");
    let html = axum::body::to_bytes(page.into_body(), usize::MAX).await?;
    let csrf = token(std::str::from_utf8(&html)?);
    let login = send(
        Request::post("/auth/login")
            .header(header::COOKIE, &nonce)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form(&[
                ("CSRFToken", &csrf),
                ("user", "admin"),
                ("password", "admin-password-1"),
            ]))?,
    )
    .await?;
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let session = cookies(&login).join("; ");
    assert_eq!(sessions.len(), 1);

    // The flood: login pages and failed logins, each as a new visitor.
    for _ in 0..2_000 {
        let page = send(Request::get("/auth/login").body(Body::empty())?).await?;
        assert_eq!(page.status(), StatusCode::OK);
    }
    for _ in 0..50 {
        let failed = send(
            Request::post("/auth/login")
                .header(header::COOKIE, &nonce)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form(&[
                    ("CSRFToken", &csrf),
                    ("user", "admin"),
                    ("password", "wrong"),
                ]))?,
        )
        .await?;
        assert!(failed.status().is_client_error());
    }
    assert_eq!(sessions.len(), 1, "anonymous visits stored sessions");

    let profile = send(
        Request::get("/user/profile")
            .header(header::COOKIE, &session)
            .body(Body::empty())?,
    )
    .await?;
    assert_eq!(profile.status(), StatusCode::OK, "the user was logged out");
    Ok(())
}
