//! Credentials: [`Secret`] (a value read from a file, redacted when printed), [`Credentials`]
//! (a token, or a GitHub App's id and private key) and, for an App, the installation tokens per
//! repository owner, made from an RS256 JWT and renewed before they expire. Knows nothing of
//! what the requests are for.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::Error;

/// A secret value (token, webhook secret, private key), read from a file. Its `Debug` prints
/// `Secret(<redacted>)`, so a secret never reaches a log by way of a struct holding it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// A secret holding `value` (for programs that get it elsewhere; prefer [`Secret::from_file`]).
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// Reads a secret from `path`, without the surrounding white space (a trailing newline).
    /// An empty file is an error.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::SecretFile {
            path: path.to_owned(),
            source,
        })?;
        let value = text.trim();
        if value.is_empty() {
            return Err(Error::EmptySecret {
                path: path.to_owned(),
            });
        }
        Ok(Secret(value.to_owned()))
    }

    /// The value. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// How the bridge authenticates to the REST API.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// A personal access token or any other bearer token (`--github-token-file`).
    Token(Secret),
    /// A GitHub App (`--github-app-id`, `--github-app-key`): each request uses an installation
    /// token of the repository's owner.
    App {
        /// The App's id.
        app_id: u64,
        /// The App's private key (PEM).
        key: Secret,
    },
}

/// An App's JWT lives at most 10 minutes (GitHub's limit); ours 9, issued 60 s in the past
/// against clock drift, as GitHub recommends.
const JWT_LIFETIME: Duration = Duration::from_secs(9 * 60);
const JWT_BACKDATE: Duration = Duration::from_secs(60);

/// An installation token is renewed this long before it expires (they live an hour).
pub(crate) const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);

#[derive(Serialize)]
struct Claims {
    iat: u64,
    exp: u64,
    iss: String,
}

/// The App's JWT, signed with its key (RS256).
pub(crate) fn app_jwt(app_id: u64, key: &Secret, now: SystemTime) -> Result<String, Error> {
    let key =
        jsonwebtoken::EncodingKey::from_rsa_pem(key.expose().as_bytes()).map_err(Error::AppKey)?;
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let claims = Claims {
        iat: (now - JWT_BACKDATE.min(now)).as_secs(),
        exp: (now + JWT_LIFETIME).as_secs(),
        iss: app_id.to_string(),
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .map_err(Error::Jwt)
}

/// What `POST /app/installations/{id}/access_tokens` answers.
#[derive(Deserialize)]
pub(crate) struct InstallationToken {
    pub(crate) token: String,
    pub(crate) expires_at: String,
}

/// What `GET /repos/{owner}/{repo}/installation` answers.
#[derive(Deserialize)]
pub(crate) struct Installation {
    pub(crate) id: u64,
}

/// An installation token and when it must be renewed.
pub(crate) struct CachedToken {
    pub(crate) token: Secret,
    pub(crate) renew_at: SystemTime,
}

/// The installation tokens of an App, and its installations' ids, by owner.
#[derive(Default)]
pub(crate) struct TokenCache {
    pub(crate) tokens: HashMap<String, CachedToken>,
    /// The App's installation for each owner, as GitHub last said.
    pub(crate) installations: HashMap<String, u64>,
}

impl TokenCache {
    /// The token of `owner` if it is still good at `now`.
    pub(crate) fn get(&self, owner: &str, now: SystemTime) -> Option<Secret> {
        self.tokens
            .get(&owner.to_ascii_lowercase())
            .filter(|cached| now < cached.renew_at)
            .map(|cached| cached.token.clone())
    }

    pub(crate) fn insert(&mut self, owner: &str, token: InstallationToken) {
        let expires = chrono::DateTime::parse_from_rfc3339(&token.expires_at)
            .ok()
            .and_then(|t| u64::try_from(t.timestamp()).ok())
            .map(|secs| UNIX_EPOCH + Duration::from_secs(secs));
        // An unreadable expiry: assume GitHub's hour from now.
        let expires = expires.unwrap_or_else(|| SystemTime::now() + Duration::from_secs(3600));
        let renew_at = expires
            .checked_sub(RENEW_BEFORE)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        self.tokens.insert(
            owner.to_ascii_lowercase(),
            CachedToken {
                token: Secret(token.token),
                renew_at,
            },
        );
    }

    /// Forgets the token of `owner` and its installation (GitHub refused the token: the App
    /// may have been installed again, with a new id).
    pub(crate) fn forget(&mut self, owner: &str) {
        self.tokens.remove(&owner.to_ascii_lowercase());
        self.installations.remove(&owner.to_ascii_lowercase());
    }

    /// The installation of `owner`, if known.
    pub(crate) fn installation(&self, owner: &str) -> Option<u64> {
        self.installations.get(&owner.to_ascii_lowercase()).copied()
    }

    pub(crate) fn insert_installation(&mut self, owner: &str, id: u64) {
        self.installations.insert(owner.to_ascii_lowercase(), id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_when_printed() {
        let credentials = Credentials::Token(Secret::new("ghp_very_secret"));
        let printed = format!("{credentials:?}");
        assert!(!printed.contains("ghp_very_secret"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
    }

    #[test]
    fn tokens_are_renewed_five_minutes_before_they_expire() {
        let mut cache = TokenCache::default();
        cache.insert(
            "Me",
            InstallationToken {
                token: "t".to_owned(),
                expires_at: "2030-01-01T01:00:00Z".to_owned(),
            },
        );
        let expiry = UNIX_EPOCH + Duration::from_secs(1_893_459_600);
        assert!(cache.get("me", expiry - Duration::from_secs(301)).is_some());
        assert!(cache.get("me", expiry - Duration::from_secs(299)).is_none());
    }
}
