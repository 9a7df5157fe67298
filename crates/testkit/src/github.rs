//! A fake GitHub REST API for tests (feature `github`): an axum server on 127.0.0.1, on a thread
//! and runtime of its own (so synchronous tests of the binary can use it too), serving the
//! repositories a test describes with response bodies built from the fixtures in
//! `shared/fixtures/github/` (GitHub's documented examples and recorded exchanges), and recording
//! what the CI sends.
//!
//! It serves `GET /repos/{o}/{r}` (with the test's `clone_url`), `/pulls`, `/branches`, `/tags`
//! (paginated with `Link` headers and `per_page`, with `ETag`s: a request whose `If-None-Match`
//! matches is answered `304`), `POST /repos/{o}/{r}/statuses/{sha}` (recorded; failures can be
//! scripted), `GET /repos/{o}/{r}/installation` and `POST /app/installations/{id}/access_tokens`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

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
    /// Repositories served over git's smart HTTP: the root and the token they need.
    git: Option<(PathBuf, String)>,
    /// The OAuth App: client id, secret, the one valid code, and the login it belongs to.
    oauth: Option<(String, String, String, String)>,
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
        .route("/repos/{owner}/{repo}/statuses/{sha}", post(post_status))
        .route("/repos/{owner}/{repo}/installation", get(get_installation))
        .route("/repos/{owner}/{repo}/check-runs", post(post_check_run))
        .route(
            "/repos/{owner}/{repo}/check-runs/{id}",
            axum::routing::patch(patch_check_run),
        )
        .route(
            "/app/installations/{id}/access_tokens",
            post(post_access_token),
        )
        .route("/git/{*path}", get(git_http).post(git_http))
        .route("/login/oauth/access_token", post(post_oauth_token))
        .route("/user", get(get_user))
        .route("/user/orgs", get(get_user_orgs))
        .with_state(data)
}

async fn post_oauth_token(State(data): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let oauth = lock(&data).oauth.clone();
    let field = |name: &str| {
        sent.get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let answer = match oauth {
        Some((id, secret, code, login))
            if field("client_id") == id
                && field("client_secret") == secret
                && field("code") == code =>
        {
            json!({"access_token": format!("gho_{login}"), "token_type": "bearer", "scope": "read:org,repo"})
        }
        _ => json!({
            "error": "bad_verification_code",
            "error_description": "The code passed is incorrect or expired.",
        }),
    };
    // GitHub answers 200 even for a bad code.
    let response = json_response(StatusCode::OK, &answer);
    record(
        &data,
        "POST",
        "/login/oauth/access_token".to_owned(),
        &headers,
        response.status(),
    );
    response
}

/// The login whose OAuth token `headers` carry.
fn oauth_login(data: &Shared, headers: &HeaderMap) -> Option<String> {
    let login = lock(data).oauth.as_ref()?.3.clone();
    let given = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    (given == format!("Bearer gho_{login}")).then_some(login)
}

async fn get_user(State(data): State<Shared>, headers: HeaderMap) -> Response {
    let response = match oauth_login(&data, &headers) {
        Some(login) => {
            let mut body = fixture(
                "openapi/response-examples/users.get-authenticated.200.response-with-public-profile-information.json",
            );
            body["login"] = json!(login);
            json_response(StatusCode::OK, &body)
        }
        None => json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"message": "Requires authentication"}),
        ),
    };
    record(
        &data,
        "GET",
        "/user".to_owned(),
        &headers,
        response.status(),
    );
    response
}

async fn get_user_orgs(State(data): State<Shared>, headers: HeaderMap) -> Response {
    let response = match oauth_login(&data, &headers) {
        Some(_) => json_response(
            StatusCode::OK,
            &fixture("openapi/response-examples/orgs.list-for-authenticated-user.200.json"),
        ),
        None => json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"message": "Requires authentication"}),
        ),
    };
    record(
        &data,
        "GET",
        "/user/orgs".to_owned(),
        &headers,
        response.status(),
    );
    response
}

/// Git's smart HTTP through `git http-backend` (CGI), for an authenticated client.
async fn git_http(
    State(data): State<Shared>,
    Path(path): Path<String>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use base64::Engine as _;
    let Some((root, token)) = lock(&data).git.clone() else {
        return not_found();
    };
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"))
    );
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if given != Some(expected.as_str()) {
        record(
            &data,
            method.as_str(),
            format!("/git/{path}"),
            &headers,
            StatusCode::UNAUTHORIZED,
        );
        let mut response = (StatusCode::UNAUTHORIZED, "Authentication required").into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"GitHub\""),
        );
        return response;
    }
    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mut command = tokio::process::Command::new("git");
    command
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", &root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", format!("/{path}"))
        .env("REQUEST_METHOD", method.as_str())
        .env("QUERY_STRING", uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header_text("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header_text("content-encoding"))
        .env("GIT_PROTOCOL", header_text("git-protocol"))
        .env("REMOTE_USER", "x-access-token")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let Ok(mut child) = command.spawn() else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot run git http-backend",
        )
            .into_response();
    };
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt as _;
        let _ = stdin.write_all(&body).await;
    }
    let Ok(output) = child.wait_with_output().await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "git http-backend failed").into_response();
    };
    // CGI: headers, a blank line, the body.
    let out = output.stdout;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, gap)) = split else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no CGI headers").into_response();
    };
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let mut response = out[end + gap..].to_vec().into_response();
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split(' ')
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(200);
            *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
        } else if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    record(
        &data,
        method.as_str(),
        format!("/git/{path}"),
        &headers,
        response.status(),
    );
    response
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
            json_response(StatusCode::OK, &body)
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
    let items = fake
        .prs
        .values()
        .map(|pr| {
            let mut item = template.clone();
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

async fn post_status(
    State(data): State<Shared>,
    Path((owner, repo, sha)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/repos/{owner}/{repo}/statuses/{sha}");
    let failure = lock(&data).failures.pop_front();
    let response = match failure.filter(|f| *f != Failure::Accept) {
        Some(Failure::Status(code)) => json_response(
            StatusCode::from_u16(code).expect("a valid status"),
            &json!({"message": "Server Error"}),
        ),
        Some(Failure::Accept) => unreachable!("filtered out above"),
        Some(Failure::SecondaryRateLimit(seconds)) => {
            let mut response = json_response(
                StatusCode::FORBIDDEN,
                &json!({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}),
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&seconds.to_string()).expect("a header value"),
            );
            response
        }
        None => match serde_json::from_slice::<Value>(&body) {
            Err(e) => json_response(StatusCode::BAD_REQUEST, &json!({"message": e.to_string()})),
            Ok(sent) => {
                let field = |name: &str| sent.get(name).and_then(Value::as_str).map(str::to_owned);
                let status = PostedStatus {
                    repo: format!("{owner}/{repo}"),
                    sha: sha.clone(),
                    context: field("context").unwrap_or_else(|| "default".to_owned()),
                    state: field("state").unwrap_or_default(),
                    description: field("description").unwrap_or_default(),
                    target_url: field("target_url"),
                };
                let valid = ["pending", "success", "failure", "error"]
                    .contains(&status.state.as_str())
                    && status.description.chars().count() <= 140;
                if valid {
                    let mut answer =
                        fixture("openapi/response-examples/repos.create-commit-status.201.json");
                    answer["state"] = json!(status.state);
                    answer["context"] = json!(status.context);
                    answer["description"] = json!(status.description);
                    answer["target_url"] = json!(status.target_url);
                    lock(&data).statuses.push(status);
                    json_response(StatusCode::CREATED, &answer)
                } else {
                    // The shape of GitHub's validation errors (fixtures `api/errors`).
                    let mut answer =
                        fixture("api/errors/normalized-fixture.json")[0]["response"].clone();
                    answer["errors"][0]["resource"] = json!("Status");
                    json_response(StatusCode::UNPROCESSABLE_ENTITY, &answer)
                }
            }
        },
    };
    record(&data, "POST", path, &headers, response.status());
    response
}

async fn post_check_run(
    State(data): State<Shared>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    check_run(data, owner, repo, None, headers, body)
}

async fn patch_check_run(
    State(data): State<Shared>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    check_run(data, owner, repo, Some(id), headers, body)
}

/// Creates (`id` = `None`) or updates a check run; only an App's installation token may.
fn check_run(
    data: Shared,
    owner: String,
    repo: String,
    id: Option<u64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_installation = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ghs_"));
    let response = match serde_json::from_slice::<Value>(&body) {
        _ if !is_installation => json_response(
            StatusCode::FORBIDDEN,
            &json!({"message": "You must authenticate via a GitHub App."}),
        ),
        Err(e) => json_response(StatusCode::BAD_REQUEST, &json!({"message": e.to_string()})),
        Ok(sent) => {
            let mut data_guard = lock(&data);
            let method = if id.is_some() { "PATCH" } else { "POST" };
            let id = id.unwrap_or(1000 + data_guard.check_runs.len() as u64);
            data_guard.check_runs.push(CheckRunCall {
                repo: format!("{owner}/{repo}"),
                method: method.to_owned(),
                id,
                body: sent.clone(),
            });
            drop(data_guard);
            let mut answer = fixture(
                "openapi/response-examples/checks.create.201.example-of-in-progress-conclusion.json",
            );
            answer["id"] = json!(id);
            answer["name"] = sent["name"].clone();
            answer["status"] = sent["status"].clone();
            json_response(StatusCode::CREATED, &answer)
        }
    };
    let method = if id.is_some() { "PATCH" } else { "POST" };
    record(
        &data,
        method,
        format!("/repos/{owner}/{repo}/check-runs"),
        &headers,
        response.status(),
    );
    response
}

async fn get_installation(
    State(data): State<Shared>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let is_jwt = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ey"));
    let response = if is_jwt {
        let mut body = fixture("openapi/response-examples/apps.get-repo-installation.200.json");
        body["id"] = json!(1);
        body["account"]["login"] = json!(owner);
        json_response(StatusCode::OK, &body)
    } else {
        json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"message": "A JSON web token could not be decoded"}),
        )
    };
    record(
        &data,
        "GET",
        format!("/repos/{owner}/{repo}/installation"),
        &headers,
        response.status(),
    );
    response
}

async fn post_access_token(
    State(data): State<Shared>,
    Path(id): Path<u64>,
    headers: HeaderMap,
) -> Response {
    let is_jwt = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ey"));
    let response = if is_jwt {
        let (n, lifetime) = {
            let mut data = lock(&data);
            data.tokens_issued += 1;
            (data.tokens_issued, data.token_lifetime_secs)
        };
        let mut body =
            fixture("openapi/response-examples/apps.create-installation-access-token.201.json");
        body["token"] = json!(format!("ghs_installation_token_{n}"));
        let expires = chrono_like_rfc3339(lifetime);
        body["expires_at"] = json!(expires);
        json_response(StatusCode::CREATED, &body)
    } else {
        json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"message": "A JSON web token could not be decoded"}),
        )
    };
    record(
        &data,
        "POST",
        format!("/app/installations/{id}/access_tokens"),
        &headers,
        response.status(),
    );
    response
}

/// Now plus `seconds`, as `YYYY-MM-DDTHH:MM:SSZ` (UTC), without a date library.
fn chrono_like_rfc3339(seconds: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let t = now + seconds;
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}
