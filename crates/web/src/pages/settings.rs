//! The settings index `/settings` (spec §1.5.10), for the admin.

use axum::Form;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Chrome, Tab, field, page, post_form};
use crate::acl::Role;
use crate::github_login::{OAUTH_CLIENT_ID_FILE, OAUTH_CLIENT_SECRET_FILE, read_client};
use crate::{AppState, Error, Viewer, access, secrets};

/// `GET /settings` (role `Admin`).
pub(crate) async fn get_settings(
    State(state): State<AppState>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
) -> Result<Markup, Error> {
    access::require(&state, &viewer, &[Role::Admin], &uri)?;
    let config = state.config();
    let content = html! {
        h2 { "Settings" }
        table.table.settings {
            tr { th { "Public URL" } td { (config.public()) } }
            tr { th { "Listening on" } td { (config.listen_addr()) } }
            tr { th { "Sessions" } td { (config.sessions_backend()) } }
            tr { th { "Readers" } td { code { (config.access().can_read) } } }
            tr { th { "Builders" } td { code { (config.access().can_build) } } }
            tr { th { "/metrics" } td { (if config.metrics().is_some() { "open to the token's bearer" } else { "closed (no token configured)" }) } }
        }
        p { a href="/settings/users" { "Users" } ": add and remove local users, reset passwords." }
        p { a href="/settings/github-auth" { "GitHub authentication" } }
    };
    Ok(page(
        &Chrome::new(&state, &viewer),
        "Settings",
        Tab::Settings,
        content,
    ))
}

/// The form of `POST /settings/github-auth`.
#[derive(Debug, Deserialize)]
pub(crate) struct GithubAuthForm {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
}

/// `GET /settings/github-auth` (role `Admin`): the OAuth App's client id (the secret is never
/// shown) and the form to set both.
pub(crate) async fn get_github_auth(
    State(state): State<AppState>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
) -> Result<Markup, Error> {
    access::require(&state, &viewer, &[Role::Admin], &uri)?;
    github_auth_page(&state, &viewer, None).await
}

async fn github_auth_page(
    state: &AppState,
    viewer: &Viewer,
    message: Option<&str>,
) -> Result<Markup, Error> {
    let csrf = viewer.csrf_token().await?;
    let current = read_client(state.secrets_dir());
    let callback = state.config().public().join("/auth/github-callback");
    let controls = html! {
        (field("Client ID", "text", "client_id", current.as_ref().map_or("", |c| c.id.as_str()), None))
        (field("Client secret", "password", "client_secret", "", None))
        div { button.btn.btn-primary type="submit" { "Save" } }
    };
    let content = html! {
        h2 { "GitHub authentication" }
        @if let Some(message) = message { div.alert.alert-info { (message) } }
        p {
            "Register an OAuth App on GitHub with the callback URL " code { (callback) }
            ", then enter its client ID and secret. "
            (if current.is_some() { "GitHub login is configured." } else { "GitHub login is off." })
        }
        (post_form("github-auth-form", "/settings/github-auth", &csrf, controls))
    };
    Ok(page(
        &Chrome::new(state, viewer),
        "GitHub authentication",
        Tab::Settings,
        content,
    ))
}

/// `POST /settings/github-auth` (role `Admin`, CSRF-checked): writes both files, mode 0600.
pub(crate) async fn post_github_auth(
    State(state): State<AppState>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Form(form): Form<GithubAuthForm>,
) -> Result<Response, Error> {
    access::require(&state, &viewer, &[Role::Admin], &uri)?;
    let id = form.client_id.trim();
    let secret = form.client_secret.trim();
    if id.is_empty() || secret.is_empty() || id.contains(char::is_whitespace) {
        let page = github_auth_page(
            &state,
            &viewer,
            Some("Both the client ID and the secret are needed"),
        )
        .await?;
        return Ok((StatusCode::BAD_REQUEST, page).into_response());
    }
    let dir = state.secrets_dir().to_owned();
    let (id, secret) = (format!("{id}\n"), format!("{secret}\n"));
    tokio::task::spawn_blocking(move || {
        secrets::write_private_file(&dir.join(OAUTH_CLIENT_ID_FILE), id.as_bytes())?;
        secrets::write_private_file(&dir.join(OAUTH_CLIENT_SECRET_FILE), secret.as_bytes())
    })
    .await??;
    tracing::info!(user = viewer.user(), "GitHub OAuth App configured");
    Ok(github_auth_page(
        &state,
        &viewer,
        Some("Saved: GitHub login uses this OAuth App now"),
    )
    .await?
    .into_response())
}
