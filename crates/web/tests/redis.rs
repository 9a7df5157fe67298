//! Sessions in a real Redis: a session survives a restart of the web server.
//!
//! Needs `redis-server` (Debian package `redis-server`); the test fails if it is missing.

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;
use common::{Dirs, Running, client, http_config, log_in, state_builder, wait_for, write_users};
use datakit_ci_log::LogManager;
use datakit_ci_web::{Acl, SessionsBackend, WebConfig};

/// A `redis-server` on a free loopback port, killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    async fn start() -> anyhow::Result<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .context("cannot run redis-server: install it (apt-get install redis-server)")?;
        let server = RedisServer { child, port };
        wait_for("redis-server to accept connections", || async {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await?;
        Ok(server)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Err(error) = self.child.kill() {
            eprintln!("cannot kill redis-server: {error}");
        }
        if let Err(error) = self.child.wait() {
            eprintln!("cannot reap redis-server: {error}");
        }
    }
}

fn config(dirs: &Dirs, backend: SessionsBackend) -> anyhow::Result<WebConfig> {
    Ok(http_config(dirs)?
        .sessions(backend)
        .can_read(Acl::username("admin")))
}

#[tokio::test]
async fn sessions_in_redis_survive_a_restart() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let backend: SessionsBackend = format!("redis://127.0.0.1:{}", redis.port).parse()?;
    let dirs = Dirs::new()?;
    write_users(&dirs.secrets(), &[("admin", "pw")])?;
    let store = dirs.store()?;
    let browser = client()?;

    let state = state_builder(
        store.clone(),
        LogManager::new(),
        config(&dirs, backend.clone())?,
    )
    .build()?;
    let server = Running::start(state).await?;
    assert_eq!(
        log_in(&browser, &server, "admin", "pw").await?.status(),
        303
    );
    assert_eq!(browser.get(server.url("/")).send().await?.status(), 200);
    server.stop().await?;

    // A new server process-state, same Redis: still logged in.
    let state = state_builder(store.clone(), LogManager::new(), config(&dirs, backend)?).build()?;
    let server = Running::start(state).await?;
    let response = browser.get(server.url("/")).send().await?;
    assert_eq!(response.status(), 200);
    assert!(response.text().await?.contains(">admin</a>"));
    server.stop().await?;

    // Control: with memory sessions, the same cookie means nothing after a restart.
    let state = state_builder(
        store,
        LogManager::new(),
        config(&dirs, SessionsBackend::Memory)?,
    )
    .build()?;
    let server = Running::start(state).await?;
    assert_eq!(browser.get(server.url("/")).send().await?.status(), 303);
    server.stop().await?;
    drop(redis);
    Ok(())
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_start_up_error() -> anyhow::Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dirs = Dirs::new()?;
    let backend: SessionsBackend = format!("redis://127.0.0.1:{port}").parse()?;
    let state = state_builder(dirs.store()?, LogManager::new(), config(&dirs, backend)?).build()?;
    let error = datakit_ci_web::WebServer::bind(state, None)
        .await
        .expect_err("no Redis there");
    let message = error.to_string();
    assert!(
        message.contains(&format!("redis://127.0.0.1:{port}")),
        "{message}"
    );
    Ok(())
}
