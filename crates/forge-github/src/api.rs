//! The REST client ([`Client`]): one `reqwest` client per bridge, authenticated per repository
//! owner, with conditional requests (an `ETag` per URL, `If-None-Match`, so an unchanged listing
//! is answered `304` and costs no rate limit), `Link`-header pagination, and the rate limit:
//! while `X-RateLimit-Remaining` is 0, requests wait for `X-RateLimit-Reset`. Retrying is the
//! caller's choice ([`Error::is_transient`]). Knows nothing of the store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use datakit_ci_term::RepoId;

use crate::Error;
use crate::auth::{self, Credentials, Installation, InstallationToken, Secret, TokenCache};

/// GitHub's media type for the REST API.
const ACCEPT: &str = "application/vnd.github+json";

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How many ETags are remembered (one per page of each listing).
const MAX_ETAGS: usize = 10_000;

/// A remembered page: its ETag, body and `next` link.
struct CachedPage {
    etag: String,
    body: Vec<u8>,
    next: Option<String>,
}

/// A page of a listing as the client fetched it.
pub(crate) struct Page {
    pub(crate) body: Vec<u8>,
    pub(crate) next: Option<String>,
    pub(crate) not_modified: bool,
}

/// What the client counted since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiCounts {
    /// Requests sent (each retry counts).
    pub requests: u64,
    /// Answers `304 Not Modified` (free of rate limit).
    pub not_modified: u64,
    /// The last `X-RateLimit-Remaining` seen, if any.
    pub rate_limit_remaining: Option<u64>,
}

/// The REST client.
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
    tokens: tokio::sync::Mutex<TokenCache>,
    etags: Mutex<HashMap<String, CachedPage>>,
    /// Unix time (s) until which requests wait: the rate limit is exhausted.
    paused_until: AtomicU64,
    requests: AtomicU64,
    not_modified: AtomicU64,
    /// `u64::MAX`: not seen yet.
    remaining: AtomicU64,
}

impl Client {
    pub(crate) fn new(api_url: &str, credentials: Credentials) -> Result<Client, Error> {
        if !(api_url.starts_with("http://") || api_url.starts_with("https://")) {
            return Err(Error::ApiUrl(api_url.to_owned()));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("datakit-ci/", env!("CARGO_PKG_VERSION")))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(Error::Client)?;
        Ok(Client {
            http,
            base: api_url.trim_end_matches('/').to_owned(),
            credentials,
            tokens: tokio::sync::Mutex::new(TokenCache::default()),
            etags: Mutex::new(HashMap::new()),
            paused_until: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            not_modified: AtomicU64::new(0),
            remaining: AtomicU64::new(u64::MAX),
        })
    }

    /// The API's base URL, without a trailing `/`.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn counts(&self) -> ApiCounts {
        let remaining = self.remaining.load(Ordering::Relaxed);
        ApiCounts {
            requests: self.requests.load(Ordering::Relaxed),
            not_modified: self.not_modified.load(Ordering::Relaxed),
            rate_limit_remaining: (remaining != u64::MAX).then_some(remaining),
        }
    }

    /// `GET path` (relative to the API, or a full URL) as `owner`, decoded.
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        repo: &RepoId,
        path: &str,
    ) -> Result<T, Error> {
        let url = self.url(path);
        let auth = self.authorization(repo).await?;
        let response = self.send(Method::GET, &url, &auth, None, None).await?;
        let body = response.body;
        decode(&url, &body)
    }

    /// `POST path` with a JSON body about `repo`; the answer's body is returned.
    pub(crate) async fn post(
        &self,
        repo: &RepoId,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Vec<u8>, Error> {
        self.send_json(Method::POST, repo, path, body).await
    }

    /// `PATCH path` with a JSON body about `repo`; the answer's body is returned.
    pub(crate) async fn patch(
        &self,
        repo: &RepoId,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Vec<u8>, Error> {
        self.send_json(Method::PATCH, repo, path, body).await
    }

    async fn send_json(
        &self,
        method: Method,
        repo: &RepoId,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Vec<u8>, Error> {
        let url = self.url(path);
        let auth = self.authorization(repo).await?;
        let body = serde_json::to_vec(body).expect("a JSON value serializes");
        self.send(method, &url, &auth, Some(body), None)
            .await
            .map(|answer| answer.body)
    }

    /// Whether the client acts as a GitHub App (which may create check runs).
    pub(crate) fn is_app(&self) -> bool {
        matches!(self.credentials, Credentials::App { .. })
    }

    /// One page of a listing as `owner`, conditionally: a page answered `304` is the remembered
    /// one.
    pub(crate) async fn page(&self, repo: &RepoId, url: &str) -> Result<Page, Error> {
        let auth = self.authorization(repo).await?;
        let etag = self.lock_etags().get(url).map(|cached| cached.etag.clone());
        let response = self
            .send(Method::GET, url, &auth, None, etag.as_deref())
            .await?;
        if response.status == StatusCode::NOT_MODIFIED {
            self.not_modified.fetch_add(1, Ordering::Relaxed);
            if let Some(cached) = self.lock_etags().get(url) {
                return Ok(Page {
                    body: cached.body.clone(),
                    next: cached.next.clone(),
                    not_modified: true,
                });
            }
            return Err(Error::Answer {
                url: url.to_owned(),
                problem: "304 Not Modified for a page never fetched".to_owned(),
            });
        }
        let next = next_link(&response.headers);
        if let Some(etag) = response
            .headers
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
        {
            let mut etags = self.lock_etags();
            if etags.len() >= MAX_ETAGS {
                // Crude but bounded: start again; the next sync pays full price once.
                etags.clear();
            }
            etags.insert(
                url.to_owned(),
                CachedPage {
                    etag: etag.to_owned(),
                    body: response.body.clone(),
                    next: next.clone(),
                },
            );
        }
        Ok(Page {
            body: response.body,
            next,
            not_modified: false,
        })
    }

    /// Every item of a listing starting at `path`, following `Link: <…>; rel="next"`. Returns the
    /// items and whether every page was answered `304`.
    pub(crate) async fn list<T: DeserializeOwned>(
        &self,
        repo: &RepoId,
        path: &str,
    ) -> Result<(Vec<T>, bool), Error> {
        let mut url = Some(self.url(path));
        let mut items = Vec::new();
        let mut unchanged = true;
        let mut pages = 0;
        while let Some(current) = url.take() {
            pages += 1;
            if pages > 1000 {
                return Err(Error::Answer {
                    url: current,
                    problem: "more than 1000 pages".to_owned(),
                });
            }
            let page = self.page(repo, &current).await?;
            unchanged &= page.not_modified;
            let mut batch: Vec<T> = decode(&current, &page.body)?;
            items.append(&mut batch);
            url = page.next;
        }
        Ok((items, unchanged))
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}/{}", self.base, path.trim_start_matches('/'))
        }
    }

    fn lock_etags(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedPage>> {
        self.etags
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The `Authorization` header value for requests about `repo`.
    async fn authorization(&self, repo: &RepoId) -> Result<Secret, Error> {
        let token = self.token(repo).await?;
        Ok(Secret::new(format!("Bearer {}", token.expose())))
    }

    /// The token for requests about `repo`: the configured one, or the installation token of
    /// `repo`'s owner (an App's tokens are per owner), made or renewed as needed.
    pub(crate) async fn token(&self, repo: &RepoId) -> Result<Secret, Error> {
        let owner = repo.user();
        match &self.credentials {
            Credentials::Token(token) => Ok(token.clone()),
            Credentials::App { app_id, key } => {
                let mut tokens = self.tokens.lock().await;
                if let Some(token) = tokens.get(owner, SystemTime::now()) {
                    return Ok(token);
                }
                let jwt = Secret::new(format!(
                    "Bearer {}",
                    auth::app_jwt(*app_id, key, SystemTime::now())?
                ));
                let installation = self.installation_of(repo, &jwt).await?;
                tokens.insert_installation(owner, installation.id);
                let url = self.url(&format!(
                    "app/installations/{}/access_tokens",
                    installation.id
                ));
                let response = self.send(Method::POST, &url, &jwt, None, None).await?;
                let token: InstallationToken = decode(&url, &response.body)?;
                tracing::info!(
                    owner,
                    installation = installation.id,
                    "got an installation token"
                );
                let secret = Secret::new(token.token.clone());
                tokens.insert(owner, token);
                Ok(secret)
            }
        }
    }

    /// The id of the App's installation that this CI uses for `repo`'s owner (asked of GitHub
    /// once, then remembered until a token is refused or [`forget_installations`]), or `None`
    /// with a token: there is no installation then.
    ///
    /// [`forget_installations`]: Self::forget_installations
    pub(crate) async fn installation_id(&self, repo: &RepoId) -> Result<Option<u64>, Error> {
        let Credentials::App { app_id, key } = &self.credentials else {
            return Ok(None);
        };
        let mut tokens = self.tokens.lock().await;
        if let Some(id) = tokens.installation(repo.user()) {
            return Ok(Some(id));
        }
        let jwt = Secret::new(format!(
            "Bearer {}",
            auth::app_jwt(*app_id, key, SystemTime::now())?
        ));
        let installation = self.installation_of(repo, &jwt).await?;
        tokens.insert_installation(repo.user(), installation.id);
        Ok(Some(installation.id))
    }

    /// Forgets every owner's installation id (an `installation` event: the App was installed
    /// or removed somewhere).
    pub(crate) async fn forget_installations(&self) {
        self.tokens.lock().await.installations.clear();
    }

    /// The App's installation on `repo` (the same for all the repositories of its owner).
    async fn installation_of(&self, repo: &RepoId, jwt: &Secret) -> Result<Installation, Error> {
        let url = self.url(&format!("repos/{repo}/installation"));
        let response = self.send(Method::GET, &url, jwt, None, None).await?;
        decode(&url, &response.body)
    }

    /// Forgets the installation token of `owner`, so the next request gets a new one.
    pub(crate) async fn token_refused(&self, repo: &RepoId) {
        self.tokens.lock().await.forget(repo.user());
    }

    /// Sends one request, after waiting out an exhausted rate limit. A status other than 2xx
    /// or 304 is an [`Error::Status`].
    async fn send(
        &self,
        method: Method,
        url: &str,
        authorization: &Secret,
        body: Option<Vec<u8>>,
        etag: Option<&str>,
    ) -> Result<Answer, Error> {
        self.wait_for_rate_limit().await;
        let mut request = self
            .http
            .request(method.clone(), url)
            .header(header::ACCEPT, ACCEPT)
            .header("X-GitHub-Api-Version", "2022-11-28");
        let mut auth =
            HeaderValue::from_str(authorization.expose()).map_err(|_| Error::Answer {
                url: url.to_owned(),
                problem: "the credentials hold characters a header cannot".to_owned(),
            })?;
        auth.set_sensitive(true);
        request = request.header(header::AUTHORIZATION, auth);
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let network = |source| Error::Network {
            method: method.to_string(),
            url: url.to_owned(),
            source,
        };
        let response = request.send().await.map_err(network)?;
        let status = response.status();
        let headers = response.headers().clone();
        self.note_rate_limit(&headers);
        let body = response.bytes().await.map_err(network)?.to_vec();
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            return Ok(Answer {
                status,
                headers,
                body,
            });
        }
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
        let retry_after = retry_after(status, &headers);
        Err(Error::Status {
            method: method.to_string(),
            url: url.to_owned(),
            status: status.as_u16(),
            message,
            retry_after,
        })
    }

    fn note_rate_limit(&self, headers: &HeaderMap) {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let Some(remaining) = number("x-ratelimit-remaining") {
            self.remaining.store(remaining, Ordering::Relaxed);
            if remaining == 0
                && let Some(reset) = number("x-ratelimit-reset")
            {
                tracing::warn!(
                    reset,
                    "GitHub rate limit exhausted; pausing requests until it resets"
                );
                self.paused_until.store(reset, Ordering::Relaxed);
            }
        }
    }

    async fn wait_for_rate_limit(&self) {
        let until = self.paused_until.load(Ordering::Relaxed);
        let now = unix_now();
        if until > now {
            tokio::time::sleep(Duration::from_secs(until - now)).await;
        }
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How long GitHub asks us to wait: `Retry-After` (secondary rate limits, 429, some 5xx), or
/// until `X-RateLimit-Reset` when a 403/429 says the primary limit is exhausted.
fn retry_after(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let Some(seconds) = number("retry-after") {
        return Some(Duration::from_secs(seconds));
    }
    let limited = status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS;
    if limited && number("x-ratelimit-remaining") == Some(0) {
        let reset = number("x-ratelimit-reset").unwrap_or(0);
        return Some(Duration::from_secs(reset.saturating_sub(unix_now()).max(1)));
    }
    None
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get(header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"");
        let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| url.to_owned())
    })
}

fn decode<T: DeserializeOwned>(url: &str, body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::Answer {
        url: url.to_owned(),
        problem: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_is_found() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::LINK,
            HeaderValue::from_static(
                "<https://api.github.com/repositories/1000/issues?per_page=3&page=2>; rel=\"next\", \
                 <https://api.github.com/repositories/1000/issues?per_page=3&page=5>; rel=\"last\"",
            ),
        );
        assert_eq!(
            next_link(&headers).as_deref(),
            Some("https://api.github.com/repositories/1000/issues?per_page=3&page=2")
        );
        headers.insert(
            header::LINK,
            HeaderValue::from_static("<https://x/?page=1>; rel=\"prev\""),
        );
        assert_eq!(next_link(&headers), None);
    }

    #[test]
    fn secondary_rate_limits_say_how_long_to_wait() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(
            retry_after(StatusCode::FORBIDDEN, &headers),
            Some(Duration::from_secs(7))
        );
        assert_eq!(retry_after(StatusCode::FORBIDDEN, &HeaderMap::new()), None);
    }
}
