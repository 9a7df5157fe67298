//! "Log in with GitHub" (spec §2.8): `GET /auth/github` sends the viewer to GitHub's authorize
//! page with a fresh `state` stored in their session; `GET /auth/github-callback` accepts the
//! answer only if its `state` matches the session's (compared in constant time, usable once),
//! then asks the [`GithubLogin`] the program installed who the user is, and logs them in as
//! `github:<login>` with their organisations and read access to the repositories the ACLs name.
//!
//! The OAuth App's client id and secret are set by the admin at `/settings/github-auth` and kept
//! in the secrets directory (files [`OAUTH_CLIENT_ID_FILE`] and [`OAUTH_CLIENT_SECRET_FILE`],
//! mode 0600), read at each login, so a change needs no restart.
//!
//! Knows nothing of GitHub's OAuth endpoints: the program's [`GithubLogin`] (the GitHub
//! bridge's `OAuthApp`, wired by the binary) does; this crate owns the trait.

use std::path::Path;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use futures::future::BoxFuture;
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use crate::acl::UserAttrs;
use crate::{AppState, Error, Viewer};

/// The file of the secrets directory holding the OAuth App's client id.
pub const OAUTH_CLIENT_ID_FILE: &str = "github-oauth-client-id";
/// The file of the secrets directory holding the OAuth App's client secret.
pub const OAUTH_CLIENT_SECRET_FILE: &str = "github-oauth-client-secret";

/// An OAuth App's client id and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthClient {
    /// The client id (public).
    pub id: String,
    /// The client secret.
    pub secret: String,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The OAuth App configured in `secrets_dir`, if both files are there and not empty.
pub(crate) fn read_client(secrets_dir: &Path) -> Option<OAuthClient> {
    let read = |name: &str| {
        std::fs::read_to_string(secrets_dir.join(name))
            .ok()
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty())
    };
    Some(OAuthClient {
        id: read(OAUTH_CLIENT_ID_FILE)?,
        secret: read(OAUTH_CLIENT_SECRET_FILE)?,
    })
}

/// Who GitHub says logged in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GithubIdentity {
    /// The GitHub login (the user becomes `github:<login>`).
    pub login: String,
    /// Their organisations and readable repositories, for the ACLs.
    pub attrs: UserAttrs,
    /// The user's OAuth token, kept in their server-side session to ask GitHub again once the
    /// grants are older than [`GithubGrantTimes::ttl`](crate::GithubGrantTimes).
    pub token: GithubToken,
}

/// A GitHub user's OAuth token. Its `Debug` form hides it, so that it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct GithubToken(String);

impl GithubToken {
    /// Wraps the token `token`.
    pub fn new(token: impl Into<String>) -> GithubToken {
        GithubToken(token.into())
    }

    /// The token itself, for the request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for GithubToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GithubToken(<redacted>)")
    }
}

/// Why GitHub's grants could not be read again ([`GithubLogin::recheck`]).
#[derive(Debug, thiserror::Error)]
pub enum RecheckError {
    /// GitHub refused the token (`401`: revoked, expired, or the OAuth App removed): the
    /// GitHub-derived grants are dropped.
    #[error("GitHub refused the user's token")]
    Rejected,
    /// GitHub could not be asked (network error, timeout, `5xx`): the previous grants are kept
    /// for a grace time.
    #[error("GitHub could not be reached: {0}")]
    Unreachable(String),
}

/// GitHub's side of the login.
pub trait GithubLogin: Send + Sync + 'static {
    /// GitHub's authorize page of OAuth App `client_id` for `state`, coming back to
    /// `redirect_uri`.
    fn authorize_url(&self, client_id: &str, state: &str, redirect_uri: &str) -> String;

    /// Who holds `code` (issued to `client`), with their organisations and, for each of `repos`,
    /// whether they can read it. An `Err` holds a message for the user.
    fn complete(
        &self,
        client: OAuthClient,
        code: String,
        redirect_uri: String,
        repos: Vec<String>,
    ) -> BoxFuture<'static, Result<GithubIdentity, String>>;

    /// The organisations and, for each of `repos`, read access of the user holding `token`,
    /// asked again once the grants read at login (or at the last re-check) are too old.
    fn recheck(
        &self,
        token: GithubToken,
        repos: Vec<String>,
    ) -> BoxFuture<'static, Result<UserAttrs, RecheckError>>;
}

/// The query of `GET /auth/github`.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    /// Where to go once logged in: a path on this site, else ignored.
    redirect: Option<String>,
}

/// The query of `GET /auth/github-callback`.
#[derive(Debug, Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
}

fn callback_url(state: &AppState) -> String {
    state.config().public().join("/auth/github-callback")
}

/// `GET /auth/github`.
pub(crate) async fn get_github_login(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<LoginQuery>,
) -> Result<Response, Error> {
    let (Some(login), Some(client)) = (state.github_login(), read_client(state.secrets_dir()))
    else {
        return Ok((StatusCode::NOT_FOUND, "GitHub login is not configured").into_response());
    };
    // Only a path on this site: the callback redirects there.
    let back = query
        .redirect
        .as_deref()
        .and_then(crate::urls::local_path)
        .filter(|path| !path.starts_with("/auth/"));
    let oauth_state = viewer.new_oauth_state(back).await?;
    let url = login.authorize_url(&client.id, &oauth_state, &callback_url(&state));
    Ok(Redirect::to(&url).into_response())
}

/// `GET /auth/github-callback`.
pub(crate) async fn get_github_callback(
    State(state): State<AppState>,
    mut viewer: Viewer,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, Error> {
    let (Some(login), Some(client)) = (
        state.github_login().cloned(),
        read_client(state.secrets_dir()),
    ) else {
        return Ok((StatusCode::NOT_FOUND, "GitHub login is not configured").into_response());
    };
    // Used once, whatever the outcome.
    let expected = viewer.take_oauth_state().await?;
    let given = query.state.unwrap_or_default();
    let matches = expected
        .as_deref()
        .is_some_and(|expected| bool::from(expected.as_bytes().ct_eq(given.as_bytes())));
    if !matches {
        tracing::warn!("refused a GitHub login with a state this session did not issue");
        return Err(Error::Forbidden(
            "Invalid OAuth state: start again from the login page".to_owned(),
        ));
    }
    let code = query
        .code
        .filter(|code| !code.is_empty())
        .ok_or_else(|| Error::BadRequest("Missing code".to_owned()))?;
    let repos = state.config().access().github_repos();
    let identity = login
        .complete(client, code, callback_url(&state), repos)
        .await
        .map_err(|message| Error::Forbidden(format!("GitHub login failed: {message}")))?;
    let name = format!("github:{}", identity.login);
    tracing::info!(user = %name, "logged in with GitHub");
    // The token is kept only if the ACLs need GitHub asked again.
    let keep_token = state.config().access().uses_github();
    viewer
        .log_in_with_github(&name, identity.attrs, identity.token, keep_token)
        .await?;
    let back = viewer
        .take_return_path()
        .await?
        .unwrap_or_else(|| "/".to_owned());
    Ok(Redirect::to(&back).into_response())
}

/// Whether the login page offers "Log in with GitHub".
pub(crate) fn is_available(state: &AppState) -> bool {
    state.github_login().is_some() && read_client(state.secrets_dir()).is_some()
}
