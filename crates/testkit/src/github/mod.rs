//! A fake GitHub REST API for tests (feature `github`): an axum server on 127.0.0.1, on a thread
//! and runtime of its own (so synchronous tests of the binary can use it too), serving the
//! repositories a test describes with response bodies built from the fixtures in
//! `shared/fixtures/github/` (GitHub's documented examples and recorded exchanges), and recording
//! what the CI sends.
//!
//! It serves `GET /repos/{o}/{r}` (with the test's `clone_url`), `/pulls`, `/branches`, `/tags`
//! (paginated with `Link` headers and `per_page`, with `ETag`s: a request whose `If-None-Match`
//! matches is answered `304`), `POST /repos/{o}/{r}/statuses/{sha}` (recorded; failures can be
//! scripted), `GET /repos/{o}/{r}/installation` and `POST /app/installations/{id}/access_tokens`
//! (`writes.rs`), check runs, git's smart HTTP (`git_http.rs`) and an OAuth App (`oauth.rs`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

mod git_http;
mod oauth;
mod writes;

/// The fixtures directory, `shared/fixtures/github/` beside the repository.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/github")
}

/// Reads a fixture file as JSON, e.g. `webhooks/push.branch.1.json`.
pub fn fixture(relative: &str) -> Value {
    let path = fixtures_dir().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read fixture {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse fixture {}: {e}", path.display()))
}

/// A pull request the fake lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakePr {
    /// Its number.
    pub number: u64,
    /// The head commit.
    pub head: String,
    /// The title.
    pub title: String,
    /// The author's login.
    pub user: String,
    /// The base branch.
    pub base: String,
}

/// A repository the fake serves.
#[derive(Clone, Debug, Default)]
pub struct FakeRepo {
    /// What `GET /repos/{o}/{r}` gives as `clone_url`.
    pub clone_url: String,
    /// Branches by name.
    pub branches: BTreeMap<String, String>,
    /// Tags by name (peeled commits).
    pub tags: BTreeMap<String, String>,
    /// Open pull requests by number.
    pub prs: BTreeMap<u64, FakePr>,
}

/// A status the CI posted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostedStatus {
    /// `owner/repo`.
    pub repo: String,
    /// The commit.
    pub sha: String,
    /// `context`.
    pub context: String,
    /// `state`.
    pub state: String,
    /// `description`.
    pub description: String,
    /// `target_url`, if sent.
    pub target_url: Option<String>,
}

/// A check-run request the CI sent (create or update).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckRunCall {
    /// `owner/repo`.
    pub repo: String,
    /// `POST` (create) or `PATCH` (update).
    pub method: String,
    /// The check run's id (given to a created one).
    pub id: u64,
    /// The JSON sent.
    pub body: Value,
}

/// A scripted failure for the next status POST.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Answer normally (to script a failure after it).
    Accept,
    /// Answer with this status (e.g. 502).
    Status(u16),
    /// GitHub's secondary rate limit: 403 with `Retry-After` seconds.
    SecondaryRateLimit(u64),
}

/// One request the fake answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: String,
    /// The path and query.
    pub path: String,
    /// The answer's status.
    pub status: u16,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// When it arrived.
    pub at: std::time::SystemTime,
}

#[derive(Default)]
struct Data {
    repos: HashMap<String, FakeRepo>,
    statuses: Vec<PostedStatus>,
    check_runs: Vec<CheckRunCall>,
    failures: VecDeque<Failure>,
    requests: Vec<Request>,
    tokens_issued: u64,
    token_lifetime_secs: i64,
    max_per_page: usize,
    /// The next `GET /repos/{o}/{r}` says the rate limit is exhausted until this Unix time.
    exhaust_rate_limit: Option<u64>,
    /// Repositories served over git's smart HTTP: the root and the token they need.
    git: Option<(PathBuf, String)>,
    /// The OAuth App: client id, secret, the one valid code, and the login it belongs to.
    oauth: Option<(String, String, String, String)>,
    /// Pull requests listed as not from a collaborator in the repository, by (repository,
    /// number); the others are the owner's, in the repository.
    pr_origins: HashMap<(String, u64), PrOrigin>,
    /// The OAuth user's organisations, if set (else the fixture's).
    oauth_orgs: Option<Vec<String>>,
    /// The OAuth user's token was revoked: `401` to it.
    oauth_revoked: bool,
    /// `GET /user/orgs` answers `502`.
    oauth_failing: bool,
}

/// Where a listed pull request comes from and who opened it, as `GET …/pulls` says
/// (`head.repo.full_name`, `author_association`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrOrigin {
    /// The repository of its head (`None`: a deleted fork, listed as `null`).
    pub head_repo: Option<String>,
    /// `OWNER`, `MEMBER`, `COLLABORATOR`, `CONTRIBUTOR`, `FIRST_TIME_CONTRIBUTOR`, `NONE`, …
    pub author_association: String,
}

/// The fake server. Stops when dropped.
pub struct FakeGithub {
    addr: SocketAddr,
    data: Arc<Mutex<Data>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeGithub {
    /// Starts the fake with no repositories.
    pub fn start() -> FakeGithub {
        let data = Arc::new(Mutex::new(Data {
            token_lifetime_secs: 3600,
            max_per_page: 100,
            ..Data::default()
        }));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = router(Arc::clone(&data));
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the fake GitHub");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind the fake GitHub");
                addr_tx
                    .send(listener.local_addr().expect("an address"))
                    .expect("the test waits for the address");
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("the fake GitHub serves");
            });
        });
        let addr = addr_rx.recv().expect("the fake GitHub starts");
        FakeGithub {
            addr,
            data,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The API's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn data(&self) -> MutexGuard<'_, Data> {
        self.data
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds or replaces a repository.
    pub fn set_repo(&self, name: &str, repo: FakeRepo) {
        self.data().repos.insert(name.to_owned(), repo);
    }

    /// Lists pull request `number` of repository `name` as coming from `origin` (by default, a
    /// pull request is the owner's, with its head in the repository).
    pub fn set_pr_origin(&self, name: &str, number: u64, origin: PrOrigin) {
        self.data()
            .pr_origins
            .insert((name.to_owned(), number), origin);
    }

    /// Changes a repository.
    pub fn edit_repo(&self, name: &str, edit: impl FnOnce(&mut FakeRepo)) {
        edit(self.data().repos.entry(name.to_owned()).or_default());
    }

    /// Makes the next status POSTs fail, in order.
    pub fn fail_next_statuses(&self, failures: &[Failure]) {
        self.data().failures.extend(failures.iter().copied());
    }

    /// Caps the page size (default 100, GitHub's), to make listings span pages.
    pub fn set_max_per_page(&self, max: usize) {
        self.data().max_per_page = max.max(1);
    }

    /// Serves the bare repositories under `root` over git's smart HTTP at `<url>/git/<name>`
    /// (by `git http-backend`), to requests authenticated as GitHub's are: `Basic` with the
    /// password `token`. Others get `401`.
    pub fn serve_git(&self, root: PathBuf, token: &str) {
        self.data().git = Some((root, token.to_owned()));
    }

    /// Makes the OAuth App `client_id`/`client_secret` exchange `code` for a token of `login`
    /// (`POST /login/oauth/access_token`), which `GET /user` and `/user/orgs` then answer for.
    pub fn set_oauth(&self, client_id: &str, client_secret: &str, code: &str, login: &str) {
        self.data().oauth = Some((
            client_id.to_owned(),
            client_secret.to_owned(),
            code.to_owned(),
            login.to_owned(),
        ));
    }

    /// Makes `GET /user/orgs` list `orgs` as the OAuth user's organisations (instead of the
    /// fixture's `github`).
    pub fn set_oauth_orgs(&self, orgs: &[&str]) {
        self.data().oauth_orgs = Some(orgs.iter().map(|org| (*org).to_owned()).collect());
    }

    /// Revokes the OAuth user's token: `GET /user` and `/user/orgs` answer `401` to it.
    pub fn revoke_oauth_token(&self) {
        self.data().oauth_revoked = true;
    }

    /// Makes `GET /user/orgs` answer `502` (GitHub having trouble), or not.
    pub fn fail_oauth_orgs(&self, failing: bool) {
        self.data().oauth_failing = failing;
    }

    /// Makes the next `GET /repos/{o}/{r}` answer `X-RateLimit-Remaining: 0` with
    /// `X-RateLimit-Reset` `seconds` from now (rounded up to a whole second); returns that reset
    /// time.
    pub fn exhaust_rate_limit(&self, seconds: u64) -> std::time::SystemTime {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let reset = now + seconds + 1;
        self.data().exhaust_rate_limit = Some(reset);
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(reset)
    }

    /// Forgets the scripted failures not yet used.
    pub fn clear_failures(&self) {
        self.data().failures.clear();
    }

    /// How long the installation tokens it issues live (default an hour).
    pub fn set_token_lifetime(&self, seconds: i64) {
        self.data().token_lifetime_secs = seconds;
    }

    /// The statuses accepted, in order.
    pub fn statuses(&self) -> Vec<PostedStatus> {
        self.data().statuses.clone()
    }

    /// The check-run requests accepted, in order.
    pub fn check_runs(&self) -> Vec<CheckRunCall> {
        self.data().check_runs.clone()
    }

    /// Every request answered, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.data().requests.clone()
    }

    /// How many installation tokens it issued.
    pub fn tokens_issued(&self) -> u64 {
        self.data().tokens_issued
    }
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type Shared = Arc<Mutex<Data>>;

fn lock(data: &Shared) -> MutexGuard<'_, Data> {
    data.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn router(data: Shared) -> Router {
    Router::new()
        .route("/repos/{owner}/{repo}", get(get_repo))
        .route("/repos/{owner}/{repo}/pulls", get(get_pulls))
        .route("/repos/{owner}/{repo}/branches", get(get_branches))
        .route("/repos/{owner}/{repo}/tags", get(get_tags))
        .route(
            "/repos/{owner}/{repo}/statuses/{sha}",
            post(writes::post_status),
        )
        .route(
            "/repos/{owner}/{repo}/installation",
            get(writes::get_installation),
        )
        .route(
            "/repos/{owner}/{repo}/check-runs",
            post(writes::post_check_run),
        )
        .route(
            "/repos/{owner}/{repo}/check-runs/{id}",
            axum::routing::patch(writes::patch_check_run),
        )
        .route(
            "/app/installations/{id}/access_tokens",
            post(writes::post_access_token),
        )
        .route(
            "/git/{*path}",
            get(git_http::git_http).post(git_http::git_http),
        )
        .route("/login/oauth/access_token", post(oauth::post_oauth_token))
        .route("/user", get(oauth::get_user))
        .route("/user/orgs", get(oauth::get_user_orgs))
        .with_state(data)
}

fn record(data: &Shared, method: &str, path: String, headers: &HeaderMap, status: StatusCode) {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    lock(data).requests.push(Request {
        method: method.to_owned(),
        path,
        status: status.as_u16(),
        authorization,
        at: std::time::SystemTime::now(),
    });
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert("x-ratelimit-limit", HeaderValue::from_static("5000"));
    headers.insert("x-ratelimit-remaining", HeaderValue::from_static("4999"));
    response
}

fn not_found() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
    )
}

async fn get_repo(
    State(data): State<Shared>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let name = format!("{owner}/{repo}");
    let found = lock(&data).repos.get(&name).cloned();
    let response = match found {
        None => not_found(),
        Some(fake) => {
            let mut body =
                fixture("api/get-repository/normalized-fixture.json")[0]["response"].clone();
            body["full_name"] = json!(name);
            body["name"] = json!(repo);
            body["owner"]["login"] = json!(owner);
            body["clone_url"] = json!(fake.clone_url);
            body["default_branch"] = json!("main");
            let mut response = json_response(StatusCode::OK, &body);
            if let Some(reset) = lock(&data).exhaust_rate_limit.take() {
                let headers = response.headers_mut();
                headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
                headers.insert(
                    "x-ratelimit-reset",
                    HeaderValue::from_str(&reset.to_string()).expect("a header value"),
                );
            }
            response
        }
    };
    record(
        &data,
        "GET",
        format!("/repos/{name}"),
        &headers,
        response.status(),
    );
    response
}

/// Serves `items` a page at a time, with `Link` and `ETag`, or `304`.
fn paginated(
    data: &Shared,
    path: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    items: Vec<Value>,
) -> Response {
    let per_page: usize = query
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(30)
        .clamp(1, lock(data).max_per_page);
    let page: usize = query
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let start = (page - 1) * per_page;
    let body = Value::Array(items.iter().skip(start).take(per_page).cloned().collect());
    let last = items.len().div_ceil(per_page).max(1);
    let text = body.to_string();
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    let etag = format!("\"{:016x}\"", hasher.finish());
    let mut extra = Vec::new();
    let base = format!(
        "http://{}{path}",
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1")
    );
    let mut links = Vec::new();
    let mut other: Vec<String> = query
        .iter()
        .filter(|(k, _)| k.as_str() != "page")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    other.sort();
    let url = |n: usize| format!("{base}?{}&page={n}", other.join("&"));
    if page < last {
        links.push(format!("<{}>; rel=\"next\"", url(page + 1)));
        links.push(format!("<{}>; rel=\"last\"", url(last)));
    }
    if !links.is_empty() {
        extra.push((header::LINK, links.join(", ")));
    }
    let full_path = {
        let mut q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        q.sort();
        format!("{path}?{}", q.join("&"))
    };
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag);
    let mut response = if matches {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response
            .headers_mut()
            .insert("x-ratelimit-remaining", HeaderValue::from_static("4999"));
        response
    } else {
        json_response(StatusCode::OK, &body)
    };
    for (name, value) in extra {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_str(&value).expect("a header value"));
    }
    response.headers_mut().insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("a header value"),
    );
    record(data, "GET", full_path, headers, response.status());
    response
}

async fn get_pulls(
    State(data): State<Shared>,
    Path((owner, repo)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let name = format!("{owner}/{repo}");
    let Some(fake) = lock(&data).repos.get(&name).cloned() else {
        return not_found();
    };
    let template = fixture("openapi/response-examples/pulls.list.200.json")[0].clone();
    let origins = lock(&data).pr_origins.clone();
    let items = fake
        .prs
        .values()
        .map(|pr| {
            let mut item = template.clone();
            // The template's repositories are octocat's: the listed PR is in this one.
            item["base"]["repo"]["full_name"] = json!(name);
            item["head"]["repo"]["full_name"] = json!(name);
            if let Some(origin) = origins.get(&(name.clone(), pr.number)) {
                item["head"]["repo"] = match &origin.head_repo {
                    Some(head) => {
                        let mut repo = item["head"]["repo"].clone();
                        repo["full_name"] = json!(head);
                        repo
                    }
                    None => Value::Null,
                };
                item["author_association"] = json!(origin.author_association);
            }
            item["number"] = json!(pr.number);
            item["state"] = json!("open");
            item["title"] = json!(pr.title);
            item["user"]["login"] = json!(pr.user);
            item["head"]["sha"] = json!(pr.head);
            item["head"]["ref"] = json!(format!("pr-{}", pr.number));
            item["base"]["ref"] = json!(pr.base);
            item
        })
        .collect();
    paginated(
        &data,
        &format!("/repos/{name}/pulls"),
        &query,
        &headers,
        items,
    )
}

fn named_commits(template_file: &str, entries: &BTreeMap<String, String>) -> Vec<Value> {
    let template = fixture(template_file)[0].clone();
    entries
        .iter()
        .map(|(name, sha)| {
            let mut item = template.clone();
            item["name"] = json!(name);
            item["commit"]["sha"] = json!(sha);
            item
        })
        .collect()
}

async fn get_branches(
    State(data): State<Shared>,
    Path((owner, repo)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let name = format!("{owner}/{repo}");
    let Some(fake) = lock(&data).repos.get(&name).cloned() else {
        return not_found();
    };
    let items = named_commits(
        "openapi/response-examples/repos.list-branches.200.json",
        &fake.branches,
    );
    paginated(
        &data,
        &format!("/repos/{name}/branches"),
        &query,
        &headers,
        items,
    )
}

async fn get_tags(
    State(data): State<Shared>,
    Path((owner, repo)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let name = format!("{owner}/{repo}");
    let Some(fake) = lock(&data).repos.get(&name).cloned() else {
        return not_found();
    };
    let items = named_commits(
        "openapi/response-examples/repos.list-tags.200.json",
        &fake.tags,
    );
    paginated(
        &data,
        &format!("/repos/{name}/tags"),
        &query,
        &headers,
        items,
    )
}
