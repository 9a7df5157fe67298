//! Helpers shared by the integration tests: a store and secrets directory in a temporary
//! directory, local users, a server on a free loopback port, a cookie-keeping in-process agent.
#![allow(dead_code, unreachable_pub)]

pub mod chrome;
pub mod ci;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher as _, SaltString};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, header};
use datakit_ci_log::LogManager;
use datakit_ci_store::Store;
use datakit_ci_web::{AppState, AppStateBuilder, PASSWORD_FILE, WebConfig, WebServer};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// A temporary directory holding `state.git` and `secrets/`.
pub struct Dirs {
    pub tmp: tempfile::TempDir,
}

impl Dirs {
    pub fn new() -> anyhow::Result<Dirs> {
        Ok(Dirs {
            tmp: tempfile::tempdir()?,
        })
    }

    pub fn secrets(&self) -> std::path::PathBuf {
        self.tmp.path().join("secrets")
    }

    pub fn store(&self) -> anyhow::Result<Store> {
        Ok(Store::open(&self.tmp.path().join("state.git"))?)
    }
}

/// Writes a password file with `users` (name, password), as an operator would.
pub fn write_users(secrets: &Path, users: &[(&str, &str)]) -> anyhow::Result<()> {
    std::fs::create_dir_all(secrets)?;
    let mut text = String::new();
    for (name, password) in users {
        let salt = SaltString::generate(&mut OsRng);
        let hash = argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        text.push_str(&format!("{name}:{hash}\n"));
    }
    std::fs::write(secrets.join(PASSWORD_FILE), text)?;
    Ok(())
}

/// An application state with `config` and a fresh registry; returns the builder for more settings.
pub fn state_builder(store: Store, logs: LogManager, config: WebConfig) -> AppStateBuilder {
    let registry = Arc::new(Mutex::new(Registry::default()));
    AppState::builder(config, store, logs, registry)
}

/// The base configuration of tests: plain HTTP on a free loopback port.
pub fn http_config(dirs: &Dirs) -> anyhow::Result<WebConfig> {
    Ok(WebConfig::new(dirs.secrets())
        .public_url("http://127.0.0.1/".parse()?)
        .listen("http://127.0.0.1:0".parse()?))
}

/// A server running in the background.
pub struct Running {
    pub addr: SocketAddr,
    pub prometheus: Option<SocketAddr>,
    pub state: AppState,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), datakit_ci_web::Error>>,
}

impl Running {
    pub async fn start(state: AppState) -> anyhow::Result<Running> {
        Running::start_with(state, None).await
    }

    /// A server with `pages` (e.g. the CI pages).
    pub async fn start_with(
        state: AppState,
        pages: Option<Router<AppState>>,
    ) -> anyhow::Result<Running> {
        let server = WebServer::bind(state.clone(), pages).await?;
        let addr = server.local_addr();
        let prometheus = server.prometheus_addr();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(server.run(cancel.clone()));
        Ok(Running {
            addr,
            prometheus,
            state,
            cancel,
            task,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .context("server did not stop")???;
        Ok(())
    }
}

/// A reqwest client keeping cookies and not following redirects.
pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// The CSRF token in a page's form.
pub fn csrf_token(html: &str) -> anyhow::Result<String> {
    let marker = "name=\"CSRFToken\" value=\"";
    let start = html.find(marker).context("no CSRF token in page")? + marker.len();
    let end = html[start..].find('"').context("unterminated token")?;
    Ok(html[start..start + end].to_owned())
}

/// The path of the setup URL (`/auth/intro/<token>`).
pub fn setup_path(state: &AppState) -> anyhow::Result<String> {
    let url = state.setup_url().context("no setup URL")?;
    let index = url
        .find("/auth/intro/")
        .context("setup URL without /auth/intro/")?;
    Ok(url[index..].to_owned())
}

/// Logs in over HTTP with the login form.
pub async fn log_in(
    client: &reqwest::Client,
    server: &Running,
    user: &str,
    password: &str,
) -> anyhow::Result<reqwest::Response> {
    let page = client
        .get(server.url("/auth/login"))
        .send()
        .await?
        .text()
        .await?;
    let csrf = csrf_token(&page)?;
    Ok(client
        .post(server.url("/auth/login"))
        .form(&[
            ("CSRFToken", csrf.as_str()),
            ("user", user),
            ("password", password),
            ("redirect", "/"),
        ])
        .send()
        .await?)
}

/// Drives a router in-process, keeping its session cookie.
pub struct Agent {
    router: Router,
    /// The cookies set so far, by name (the session's, and the CSRF nonce of an anonymous visit).
    cookies: std::collections::BTreeMap<String, String>,
}

impl Agent {
    pub fn new(router: Router) -> Agent {
        Agent {
            router,
            cookies: std::collections::BTreeMap::new(),
        }
    }

    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        form: Option<&[(&str, &str)]>,
    ) -> anyhow::Result<Response<Body>> {
        let mut request = Request::builder().method(method).uri(path);
        if !self.cookies.is_empty() {
            let cookie = self
                .cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("; ");
            request = request.header(header::COOKIE, cookie);
        }
        let body = match form {
            Some(fields) => {
                request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                let mut serializer = form_urlencoded::Serializer::new(String::new());
                for (name, value) in fields {
                    serializer.append_pair(name, value);
                }
                Body::from(serializer.finish())
            }
            None => Body::empty(),
        };
        let response = self.router.clone().oneshot(request.body(body)?).await?;
        for set in response.headers().get_all(header::SET_COOKIE) {
            let pair = set.to_str()?.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Ok(response)
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<Response<Body>> {
        self.send("GET", path, None).await
    }

    pub async fn text(response: Response<Body>) -> anyhow::Result<String> {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
        Ok(String::from_utf8(bytes.to_vec())?)
    }

    /// The session's CSRF token, from the login page.
    pub async fn csrf(&mut self) -> anyhow::Result<String> {
        let page = self.get("/auth/login").await?;
        csrf_token(&Agent::text(page).await?)
    }

    pub async fn log_in(&mut self, user: &str, password: &str) -> anyhow::Result<()> {
        let csrf = self.csrf().await?;
        let response = self
            .send(
                "POST",
                "/auth/login",
                Some(&[("CSRFToken", &csrf), ("user", user), ("password", password)]),
            )
            .await?;
        anyhow::ensure!(
            response.status() == 303,
            "login as {user} failed: {}",
            response.status()
        );
        Ok(())
    }
}

/// Polls `condition` until it holds, failing after a generous deadline.
pub async fn wait_for<F, Fut>(what: &str, mut condition: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !condition().await {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
