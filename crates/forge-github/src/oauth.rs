//! "Log in with GitHub" (spec §2.8): the OAuth App's authorize URL ([`OAuthApp::authorize_url`])
//! and, given the code GitHub sends back, the user's login, organisations and read access to the
//! repositories the ACLs name, with the user's token ([`OAuthApp::complete`]); later, the same
//! grants read again with that token ([`UserClient::grants`]). Knows nothing of sessions or the
//! `state` parameter's binding to one (the web layer does that).

use serde::Deserialize;

use crate::{Error, Secret};

/// An OAuth App: its client id and secret, and where GitHub is.
#[derive(Clone, Debug)]
pub struct OAuthApp {
    client_id: String,
    client_secret: Secret,
    /// `https://github.com`, or a GitHub Enterprise server's root.
    web_url: String,
    user: UserClient,
}

/// Who logged in, as GitHub says.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GithubUser {
    /// The login.
    pub login: String,
    /// The organisations the user belongs to (their logins).
    pub orgs: Vec<String>,
    /// For each repository asked about, whether the user can read it.
    pub can_read: Vec<(String, bool)>,
    /// The user's OAuth token (`Debug` hides it), to read their grants again later.
    pub token: Secret,
}

/// What GitHub grants a user now: their organisations and read access to some repositories.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserGrants {
    /// The organisations the user belongs to (their logins).
    pub orgs: Vec<String>,
    /// For each repository asked about, whether the user can read it.
    pub can_read: Vec<(String, bool)>,
}

/// The REST API as a user, with their OAuth token: what they are granted.
#[derive(Clone, Debug)]
pub struct UserClient {
    /// The REST API's base URL.
    api_url: String,
    http: reqwest::Client,
}

impl UserClient {
    /// A client of the REST API at `api_url`, asking with a 10 s timeout (a web request waits
    /// for it).
    pub fn new(api_url: &str) -> Result<Self, Error> {
        if !(api_url.starts_with("http://") || api_url.starts_with("https://")) {
            return Err(Error::ApiUrl(api_url.to_owned()));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("datakit-ci/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(Error::Client)?;
        Ok(UserClient {
            api_url: api_url.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// The organisations of the user holding `token` and, for each of `repos` (`owner/repo`),
    /// whether they can read it. A refused token is [`Error::Status`] with status `401`.
    pub async fn grants(&self, token: &Secret, repos: &[String]) -> Result<UserGrants, Error> {
        let orgs: Vec<Login> = self
            .get_json(token, "user/orgs?per_page=100")
            .await?
            .unwrap_or_default();
        let mut can_read = Vec::new();
        for repo in repos {
            let readable = self
                .get_json::<serde_json::Value>(token, &format!("repos/{repo}"))
                .await?
                .is_some_and(|value| {
                    value
                        .pointer("/permissions/pull")
                        .and_then(serde_json::Value::as_bool)
                        .unwrap_or(true)
                });
            can_read.push((repo.clone(), readable));
        }
        Ok(UserGrants {
            orgs: orgs.into_iter().map(|org| org.login).collect(),
            can_read,
        })
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct Login {
    login: String,
}

impl OAuthApp {
    /// The OAuth App `client_id` with its secret, on the GitHub whose API is at `api_url` (the
    /// web root is derived: `https://api.github.com` → `https://github.com`, `…/api/v3` →
    /// `…`, anything else is taken as both).
    pub fn new(
        client_id: impl Into<String>,
        client_secret: Secret,
        api_url: &str,
    ) -> Result<Self, Error> {
        if !(api_url.starts_with("http://") || api_url.starts_with("https://")) {
            return Err(Error::ApiUrl(api_url.to_owned()));
        }
        let api_url = api_url.trim_end_matches('/').to_owned();
        let web_url = if api_url == "https://api.github.com" {
            "https://github.com".to_owned()
        } else {
            api_url
                .strip_suffix("/api/v3")
                .unwrap_or(&api_url)
                .to_owned()
        };
        Ok(OAuthApp {
            client_id: client_id.into(),
            client_secret,
            web_url,
            user: UserClient::new(&api_url)?,
        })
    }

    /// Where to send the user: GitHub's authorize page, coming back to `redirect_uri` with a
    /// code and `state`. Asks for `read:org` (private organisation memberships) and `repo`
    /// (private repositories' permissions).
    pub fn authorize_url(&self, state: &str, redirect_uri: &str) -> String {
        format!(
            "{}/login/oauth/authorize?client_id={}&redirect_uri={}&scope={}&state={}",
            self.web_url,
            encode(&self.client_id),
            encode(redirect_uri),
            encode("read:org repo"),
            encode(state)
        )
    }

    /// Exchanges `code` for the user's token, then reads the user's login, organisations and,
    /// for each of `repos` (`owner/repo`), whether the user can read it. The token is returned
    /// for [`UserClient::grants`].
    pub async fn complete(
        &self,
        code: &str,
        redirect_uri: &str,
        repos: &[String],
    ) -> Result<GithubUser, Error> {
        let url = format!("{}/login/oauth/access_token", self.web_url);
        let network = |url: &str| {
            let url = url.to_owned();
            move |source| Error::Network {
                method: "POST".to_owned(),
                url,
                source,
            }
        };
        let answer = self
            .user
            .http
            .post(&url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(
                serde_json::json!({
                    "client_id": self.client_id,
                    "client_secret": self.client_secret.expose(),
                    "code": code,
                    "redirect_uri": redirect_uri,
                })
                .to_string(),
            )
            .send()
            .await
            .map_err(network(&url))?;
        let status = answer.status();
        let body = answer.bytes().await.map_err(network(&url))?;
        let token: TokenAnswer = serde_json::from_slice(&body).map_err(|e| Error::Answer {
            url: url.clone(),
            problem: format!("{status}: {e}"),
        })?;
        let Some(token) = token.access_token.map(Secret::new) else {
            return Err(Error::Status {
                method: "POST".to_owned(),
                url,
                status: status.as_u16(),
                message: token
                    .error_description
                    .or(token.error)
                    .unwrap_or_else(|| "no access token".to_owned()),
                retry_after: None,
            });
        };
        let user: Login =
            self.user
                .get_json(&token, "user")
                .await?
                .ok_or_else(|| Error::Answer {
                    url: format!("{}/user", self.user.api_url),
                    problem: "404".to_owned(),
                })?;
        let grants = self.user.grants(&token, repos).await?;
        Ok(GithubUser {
            login: user.login,
            orgs: grants.orgs,
            can_read: grants.can_read,
            token,
        })
    }
}

impl UserClient {
    /// `GET path` with the user's token; `None` for a 404 (or 403: no access).
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        token: &Secret,
        path: &str,
    ) -> Result<Option<T>, Error> {
        let url = format!("{}/{path}", self.api_url);
        let network = |source| Error::Network {
            method: "GET".to_owned(),
            url: url.clone(),
            source,
        };
        let answer = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .bearer_auth(token.expose())
            .send()
            .await
            .map_err(network)?;
        let status = answer.status();
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::FORBIDDEN {
            return Ok(None);
        }
        let body = answer.bytes().await.map_err(network)?;
        if !status.is_success() {
            return Err(Error::Status {
                method: "GET".to_owned(),
                url,
                status: status.as_u16(),
                message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
                retry_after: None,
            });
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| Error::Answer {
                url,
                problem: e.to_string(),
            })
    }
}

/// GitHub's web root for the API at `api_url`: `https://api.github.com` → `https://github.com`,
/// a GitHub Enterprise server's `https://HOST/api/v3` → `https://HOST`, anything else (a test's
/// fake) as it is.
pub fn web_url(api_url: &str) -> String {
    let api_url = api_url.trim_end_matches('/');
    if api_url == "https://api.github.com" {
        "https://github.com".to_owned()
    } else {
        api_url
            .strip_suffix("/api/v3")
            .unwrap_or(api_url)
            .to_owned()
    }
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authorize_url_is_on_the_web_root() {
        let app = OAuthApp::new("id 1", Secret::new("s"), "https://api.github.com").expect("valid");
        assert_eq!(
            app.authorize_url("st/ate", "https://ci.example/auth/github-callback"),
            "https://github.com/login/oauth/authorize?client_id=id%201\
             &redirect_uri=https%3A%2F%2Fci.example%2Fauth%2Fgithub-callback\
             &scope=read%3Aorg%20repo&state=st%2Fate"
        );
        let enterprise =
            OAuthApp::new("id", Secret::new("s"), "https://ghe.example/api/v3").expect("valid");
        assert!(
            enterprise
                .authorize_url("s", "r")
                .starts_with("https://ghe.example/login/oauth/authorize?")
        );
    }
}
