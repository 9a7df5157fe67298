//! The viewer's session (spec §2.5): who is logged in, their login-time attributes and the CSRF
//! token, on top of `tower-sessions` (memory or Redis, see `server`).
//!
//! [`Viewer`] is the extractor handlers use. The session's serialised form is private to this
//! module.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use crate::acl::UserAttrs;
use crate::auth::Auth;
use crate::csrf::AnonymousToken;
use crate::{AppState, Error, secrets};

const USER_KEY: &str = "user";
const CSRF_KEY: &str = "csrf";
const OAUTH_STATE_KEY: &str = "github_oauth_state";

/// The stored form of a logged-in user.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredUser {
    name: String,
    #[serde(default)]
    github_orgs: Vec<String>,
    #[serde(default)]
    can_read_github: Vec<(String, bool)>,
    /// A local user's password stamp at login (`Auth::stamp`): once the password changes or the
    /// user is removed, it no longer matches and the session is logged out.
    #[serde(default)]
    stamp: Option<String>,
}

/// The person making a request: their session, and the user logged in with it, if any.
///
/// An extractor; it fails (500) only if the session backend fails.
#[derive(Clone, Debug)]
pub struct Viewer {
    session: Session,
    user: Option<String>,
    attrs: UserAttrs,
    anonymous_csrf: Option<AnonymousToken>,
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Viewer, Error> {
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|(_, message)| Error::BadRequest(message.to_owned()))?;
        let mut viewer = Viewer::load(session, state.auth()).await?;
        viewer.anonymous_csrf = parts.extensions.get::<AnonymousToken>().cloned();
        Ok(viewer)
    }
}

impl Viewer {
    pub(crate) async fn load(session: Session, auth: &Auth) -> Result<Viewer, Error> {
        let stored: Option<StoredUser> = match session.get(USER_KEY).await {
            Ok(stored) => stored,
            Err(tower_sessions::session::Error::SerdeJson(error)) => {
                tracing::warn!(%error, "undecodable session data; treating as logged out");
                None
            }
            Err(error) => return Err(error.into()),
        };
        let stored = stored.filter(|stored| {
            let valid = !is_local_user(&stored.name) || auth.stamp(&stored.name) == stored.stamp;
            if !valid {
                tracing::info!(user = %stored.name, "session of a changed or removed account ended");
            }
            valid
        });
        let (user, attrs) = match stored {
            Some(stored) => (
                Some(stored.name),
                UserAttrs {
                    github_orgs: stored.github_orgs,
                    can_read_github: stored.can_read_github,
                },
            ),
            None => (None, UserAttrs::default()),
        };
        Ok(Viewer {
            session,
            user,
            attrs,
            anonymous_csrf: None,
        })
    }

    /// The logged-in user's name (`github:<login>` for GitHub users).
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// What was recorded about the user at login.
    pub fn attrs(&self) -> &UserAttrs {
        &self.attrs
    }

    /// The CSRF token every POST form must carry as the field `CSRFToken`: the session's, created
    /// (and the session saved) on first use by a logged-in user. A visitor without a session gets
    /// a token bound to a cookie instead, and no session is stored for them.
    pub async fn csrf_token(&self) -> Result<String, Error> {
        if let Some(token) = session_csrf_token(&self.session).await? {
            return Ok(token);
        }
        if self.user.is_none()
            && let Some(anonymous) = &self.anonymous_csrf
        {
            return Ok(anonymous.take());
        }
        let token = secrets::random_token(16);
        self.session.insert(CSRF_KEY, &token).await?;
        Ok(token)
    }

    /// Logs `name` in: a new session id (against fixation), then the user, attributes and (for a
    /// local user) the password stamp the session stays valid with.
    pub(crate) async fn log_in(
        &mut self,
        name: &str,
        attrs: UserAttrs,
        stamp: Option<String>,
    ) -> Result<(), Error> {
        self.session.cycle_id().await?;
        let stored = StoredUser {
            name: name.to_owned(),
            github_orgs: attrs.github_orgs.clone(),
            can_read_github: attrs.can_read_github.clone(),
            stamp,
        };
        self.session.insert(USER_KEY, stored).await?;
        self.user = Some(name.to_owned());
        self.attrs = attrs;
        Ok(())
    }

    /// A new `state` for a GitHub login, kept in the session until [`Viewer::take_oauth_state`].
    pub(crate) async fn new_oauth_state(&self) -> Result<String, Error> {
        let state = secrets::random_token(24);
        self.session.insert(OAUTH_STATE_KEY, &state).await?;
        Ok(state)
    }

    /// The GitHub login `state` this session issued, removed (usable once).
    pub(crate) async fn take_oauth_state(&self) -> Result<Option<String>, Error> {
        Ok(self.session.remove::<String>(OAUTH_STATE_KEY).await?)
    }

    /// Logs out: a new session id, without the user (the CSRF token is kept).
    pub(crate) async fn log_out(&mut self) -> Result<(), Error> {
        self.session.cycle_id().await?;
        self.session.remove_value(USER_KEY).await?;
        self.user = None;
        self.attrs = UserAttrs::default();
        Ok(())
    }
}

/// Whether `name` is a local user (from the password file), not one logged in through GitHub.
fn is_local_user(name: &str) -> bool {
    !name.starts_with("github:")
}

/// The CSRF token of `session`, if one was issued.
pub(crate) async fn session_csrf_token(session: &Session) -> Result<Option<String>, Error> {
    Ok(session.get::<String>(CSRF_KEY).await?)
}
