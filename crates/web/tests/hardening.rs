//! The hardened HTTP server (issue 20), over real TCP: connections that send half a header or sit
//! idle are closed, the number of open connections is bounded, and anonymous visits store no
//! session.

mod common;

use std::time::Duration;

use anyhow::Context as _;
use common::{Dirs, Running, client, csrf_token, http_config, log_in, state_builder, write_users};
use datakit_ci_log::LogManager;
use datakit_ci_web::{Acl, ConnectionLimits, WebConfig};
use reqwest::header;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// How long the tests wait at most for something that should happen at once.
const PATIENCE: Duration = Duration::from_secs(30);

async fn start(dirs: &Dirs, limits: ConnectionLimits) -> anyhow::Result<Running> {
    let config: WebConfig = http_config(dirs)?
        .can_read(Acl::everyone())
        .prometheus_listen("127.0.0.1:0".parse()?)
        .connection_limits(limits);
    let state = state_builder(dirs.store()?, LogManager::new(), config).build()?;
    Running::start(state).await
}

/// Opens a connection and sends the start of a request header, never its end.
async fn half_header(server: &Running) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(server.addr).await?;
    stream
        .write_all(b"GET /auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await?;
    Ok(stream)
}

/// Reads until the server closes `stream` (end of file or reset), at most [`PATIENCE`].
async fn closed_by_server(mut stream: TcpStream) -> anyhow::Result<()> {
    let mut buffer = [0; 4096];
    tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .context("the server kept the connection open")
}

/// The value of the open-connections gauge, from the Prometheus listener (which the bound does
/// not cover).
async fn open_connections(server: &Running) -> anyhow::Result<i64> {
    let url = format!(
        "http://{}/metrics",
        server.prometheus.context("no Prometheus listener")?
    );
    let text = reqwest::get(url).await?.text().await?;
    let line = text
        .lines()
        .find(|line| line.starts_with("DataKitCI_web_connections_open "))
        .context("no connections gauge")?;
    Ok(line.rsplit(' ').next().unwrap_or_default().parse()?)
}

async fn wait_for_open_connections(server: &Running, expected: i64) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let open = open_connections(server).await?;
        if open == expected {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{open} connections open, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn slow_headers_and_idle_connections_are_closed() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(1),
        ..ConnectionLimits::default()
    };
    let server = start(&dirs, limits).await?;

    // Half a header, and a connection that never says anything.
    let mut slow = Vec::new();
    for _ in 0..50 {
        slow.push(half_header(&server).await?);
    }
    let silent = TcpStream::connect(server.addr).await?;
    wait_for_open_connections(&server, 51).await?;

    // A keep-alive connection that finished a request and then sits idle.
    let mut idle = TcpStream::connect(server.addr).await?;
    idle.write_all(b"GET /css/style.css HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut start = [0; 12];
    idle.read_exact(&mut start).await?;
    assert_eq!(&start, b"HTTP/1.1 200");

    for stream in slow {
        closed_by_server(stream).await?;
    }
    closed_by_server(silent).await?;
    closed_by_server(idle).await?;
    wait_for_open_connections(&server, 0).await?;

    // The server still serves.
    let response = client()?.get(server.url("/auth/login")).send().await?;
    assert_eq!(response.status(), 200);
    server.stop().await
}

#[tokio::test]
async fn open_connections_are_bounded() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(600),
        max_connections: Some(8),
        ..ConnectionLimits::default()
    };
    let server = start(&dirs, limits).await?;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(half_header(&server).await?);
    }
    wait_for_open_connections(&server, 8).await?;

    // A ninth client waits in the backlog: it is not served while the eight are held.
    let url = server.url("/auth/login");
    let ninth = tokio::spawn(async move { reqwest::get(url).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!ninth.is_finished(), "a ninth connection was served");
    assert_eq!(open_connections(&server).await?, 8);

    // Once one of them goes, it is.
    drop(held.pop());
    let response = tokio::time::timeout(PATIENCE, ninth).await???;
    assert_eq!(response.status(), 200);
    drop(held);
    server.stop().await
}

#[tokio::test]
async fn anonymous_visits_store_no_session() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    write_users(&dirs.secrets(), &[("admin", "admin-password-1")])?;
    let server = start(&dirs, ConnectionLimits::default()).await?;
    let cookie_name = server.state.config().cookie_name();
    let user = client()?;
    assert_eq!(
        log_in(&user, &server, "admin", "admin-password-1")
            .await?
            .status(),
        303
    );

    // Anonymous visitors (no cookies kept) get a CSRF cookie of their own, but no session.
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    for path in ["/auth/login", "/", "/user/profile", "/no/such/page"] {
        for _ in 0..200 {
            let response = anonymous.get(server.url(path)).send().await?;
            for cookie in response.headers().get_all(header::SET_COOKIE) {
                let cookie = cookie.to_str()?;
                assert!(
                    !cookie.starts_with(&format!("{cookie_name}=")),
                    "{path} stored a session: {cookie}"
                );
            }
        }
    }

    // A login form's token works only with the cookie it came with.
    let page = anonymous.get(server.url("/auth/login")).send().await?;
    let nonce = page
        .headers()
        .get(header::SET_COOKIE)
        .context("no CSRF cookie")?
        .to_str()?
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(
        nonce.starts_with(&format!("{cookie_name}-csrf=")),
        "{nonce}"
    );
    let token = csrf_token(&page.text().await?)?;
    let form = [
        ("CSRFToken", token.as_str()),
        ("user", "admin"),
        ("password", "admin-password-1"),
    ];
    let without_cookie = anonymous
        .post(server.url("/auth/login"))
        .form(&form)
        .send()
        .await?;
    assert_eq!(without_cookie.status(), 403);
    let other_nonce = format!("{cookie_name}-csrf=AAAAAAAAAAAAAAAAAAAAAA");
    let wrong_cookie = anonymous
        .post(server.url("/auth/login"))
        .header(header::COOKIE, other_nonce)
        .form(&form)
        .send()
        .await?;
    assert_eq!(wrong_cookie.status(), 403);
    let forged = anonymous
        .post(server.url("/auth/login"))
        .header(header::COOKIE, &nonce)
        .form(&[
            ("CSRFToken", "forged"),
            ("user", "admin"),
            ("password", "admin-password-1"),
        ])
        .send()
        .await?;
    assert_eq!(forged.status(), 403);
    let with_cookie = anonymous
        .post(server.url("/auth/login"))
        .header(header::COOKIE, &nonce)
        .form(&form)
        .send()
        .await?;
    assert_eq!(with_cookie.status(), 303);
    let session = with_cookie
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.starts_with(&format!("{cookie_name}=")));
    assert!(session, "logging in stored no session");

    // The logged-in user was never disturbed.
    let profile = user.get(server.url("/user/profile")).send().await?;
    assert_eq!(profile.status(), 200);
    server.stop().await
}
