//! The viewer's session (spec §2.5): who is logged in, their login-time attributes and the CSRF
//! token, on top of `tower-sessions` (memory or Redis, see `server`).
//!
//! [`Viewer`] is the extractor handlers use. The session's serialised form is private to this
//! module. A GitHub user's session also holds their OAuth token and when their grants were read
//! (see `github_grants`), when the ACLs use GitHub at all: only in the session store (memory, or
//! Redis), never in the cookie (which carries the session id only), a page or a log.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use crate::acl::UserAttrs;
use crate::csrf::AnonymousToken;
use crate::github_grants::{self, GrantClock, Outcome};
use crate::github_login::GithubToken;
use crate::{AppState, Error, secrets};

const USER_KEY: &str = "user";
const CSRF_KEY: &str = "csrf";
const OAUTH_STATE_KEY: &str = "github_oauth_state";
const RETURN_PATH_KEY: &str = "github_return_path";

/// The stored form of a GitHub user's token and grant times.
#[derive(Clone, Default, Serialize, Deserialize)]
struct StoredGithub {
    token: String,
    /// When GitHub last answered with the grants (ms since the epoch).
    fetched_at: u64,
    /// Not before this time after a failed re-check (ms since the epoch; 0: none failed).
    #[serde(default)]
    retry_at: u64,
}

impl std::fmt::Debug for StoredGithub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredGithub")
            .field("token", &"<redacted>")
            .field("fetched_at", &self.fetched_at)
            .field("retry_at", &self.retry_at)
            .finish()
    }
}

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
    /// A GitHub user's token and grant times, when the ACLs use GitHub.
    #[serde(default)]
    github: Option<StoredGithub>,
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
        let mut viewer = Viewer::load(session, state).await?;
        viewer.anonymous_csrf = parts.extensions.get::<AnonymousToken>().cloned();
        Ok(viewer)
    }
}

impl Viewer {
    pub(crate) async fn load(session: Session, state: &AppState) -> Result<Viewer, Error> {
        let stored: Option<StoredUser> = match session.get(USER_KEY).await {
            Ok(stored) => stored,
            Err(tower_sessions::session::Error::SerdeJson(error)) => {
                tracing::warn!(%error, "undecodable session data; treating as logged out");
                None
            }
            Err(error) => return Err(error.into()),
        };
        let auth = state.auth();
        let stored = stored.filter(|stored| {
            let valid = !is_local_user(&stored.name) || auth.stamp(&stored.name) == stored.stamp;
            if !valid {
                tracing::info!(user = %stored.name, "session of a changed or removed account ended");
            }
            valid
        });
        let stored = match stored {
            Some(stored) if !is_local_user(&stored.name) => {
                refresh_github_grants(&session, state, stored).await?
            }
            other => other,
        };
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
            github: None,
        };
        self.session.insert(USER_KEY, stored).await?;
        self.user = Some(name.to_owned());
        self.attrs = attrs;
        Ok(())
    }

    /// Logs the GitHub user `name` in with the grants GitHub gave at login; their `token` is
    /// kept in the session (not the cookie) to ask GitHub again later, when the ACLs use GitHub.
    pub(crate) async fn log_in_with_github(
        &mut self,
        name: &str,
        attrs: UserAttrs,
        token: GithubToken,
        keep_token: bool,
    ) -> Result<(), Error> {
        self.session.cycle_id().await?;
        let stored = StoredUser {
            name: name.to_owned(),
            github_orgs: attrs.github_orgs.clone(),
            can_read_github: attrs.can_read_github.clone(),
            stamp: None,
            github: keep_token.then(|| StoredGithub {
                token: token.expose().to_owned(),
                fetched_at: github_grants::millis(std::time::SystemTime::now()),
                retry_at: 0,
            }),
        };
        self.session.insert(USER_KEY, stored).await?;
        self.user = Some(name.to_owned());
        self.attrs = attrs;
        Ok(())
    }

    /// A new `state` for a GitHub login, kept in the session until [`Viewer::take_oauth_state`],
    /// with the local path to come back to after the login, if any.
    pub(crate) async fn new_oauth_state(&self, back: Option<&str>) -> Result<String, Error> {
        let state = secrets::random_token(24);
        self.session.insert(OAUTH_STATE_KEY, &state).await?;
        match back {
            Some(back) => self.session.insert(RETURN_PATH_KEY, back).await?,
            None => {
                self.session.remove_value(RETURN_PATH_KEY).await?;
            }
        }
        Ok(state)
    }

    /// Where a GitHub login goes back to (a local path checked when it was stored), removed.
    pub(crate) async fn take_return_path(&self) -> Result<Option<String>, Error> {
        Ok(self
            .session
            .remove::<String>(RETURN_PATH_KEY)
            .await?
            .filter(|path| crate::urls::local_path(path).is_some()))
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

/// A GitHub user's session as it should be now: grants asked for again if they are too old
/// (see `github_grants`), or `None` once the GitHub login ended. Saves what changed.
async fn refresh_github_grants(
    session: &Session,
    state: &AppState,
    mut stored: StoredUser,
) -> Result<Option<StoredUser>, Error> {
    let policy = state.config().access();
    if !policy.uses_github() {
        // The grants decide nothing: no need to ask GitHub.
        return Ok(Some(stored));
    }
    let (Some(github), Some(login)) = (stored.github.clone(), state.github_login()) else {
        // A session from before grants were re-checked (no token), or GitHub login no longer
        // configured: the grants can never be checked again, so the GitHub login ends.
        tracing::info!(user = %stored.name, "GitHub grants that cannot be re-checked; logged out");
        end_login(session).await?;
        return Ok(None);
    };
    let current = UserAttrs {
        github_orgs: std::mem::take(&mut stored.github_orgs),
        can_read_github: std::mem::take(&mut stored.can_read_github),
    };
    let clock = GrantClock {
        fetched_at: github.fetched_at,
        retry_at: github.retry_at,
    };
    let now = github_grants::millis(std::time::SystemTime::now());
    let outcome = github_grants::recheck(
        login.as_ref(),
        GithubToken::new(github.token.clone()),
        policy.github_repos(),
        state.config().github_grant_times(),
        clock,
        &current,
        now,
    )
    .await;
    let (attrs, github) = match outcome {
        Outcome::Unchanged => {
            stored.github_orgs = current.github_orgs;
            stored.can_read_github = current.can_read_github;
            return Ok(Some(stored));
        }
        Outcome::Ended => {
            tracing::info!(user = %stored.name, "GitHub refused the user's token; logged out");
            end_login(session).await?;
            return Ok(None);
        }
        Outcome::Renewed(attrs) => {
            tracing::debug!(user = %stored.name, "GitHub grants re-checked");
            (
                attrs,
                StoredGithub {
                    fetched_at: now,
                    retry_at: 0,
                    ..github
                },
            )
        }
        Outcome::Kept { retry_at } => (current, StoredGithub { retry_at, ..github }),
        Outcome::Dropped { attrs, retry_at } => (attrs, StoredGithub { retry_at, ..github }),
    };
    stored.github_orgs = attrs.github_orgs;
    stored.can_read_github = attrs.can_read_github;
    stored.github = Some(github);
    session.insert(USER_KEY, &stored).await?;
    Ok(Some(stored))
}

/// Ends the session's login (a new id, without the user; the CSRF token is kept).
async fn end_login(session: &Session) -> Result<(), Error> {
    session.cycle_id().await?;
    session.remove_value(USER_KEY).await?;
    Ok(())
}

/// Whether `name` is a local user (from the password file), not one logged in through GitHub.
fn is_local_user(name: &str) -> bool {
    !name.starts_with("github:")
}

/// The CSRF token of `session`, if one was issued.
pub(crate) async fn session_csrf_token(session: &Session) -> Result<Option<String>, Error> {
    Ok(session.get::<String>(CSRF_KEY).await?)
}
