//! HTTPS: a self-signed certificate is generated in the secrets directory on first run, then
//! reused; cookies are `Secure` when the public URL is `https`.

mod common;

use std::os::unix::fs::PermissionsExt as _;

use common::{Dirs, state_builder};
use datakit_ci_log::LogManager;
use datakit_ci_web::{CERT_FILE, KEY_FILE, WebConfig, WebServer};
use reqwest::header;
use tokio_util::sync::CancellationToken;

fn https_config(dirs: &Dirs) -> anyhow::Result<WebConfig> {
    Ok(WebConfig::new(dirs.secrets())
        .name("secure-ci")
        .public_url("https://127.0.0.1:8443/".parse()?)
        .listen("https://127.0.0.1:0".parse()?))
}

/// Starts a server, fetches the login page with a client trusting only `cert`, stops the server.
async fn fetch_login(dirs: &Dirs, cert: Option<&[u8]>) -> anyhow::Result<reqwest::Response> {
    let state = state_builder(dirs.store()?, LogManager::new(), https_config(dirs)?).build()?;
    let server = WebServer::bind(state, None).await?;
    let addr = server.local_addr();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(server.run(cancel.clone()));
    let pem = match cert {
        Some(pem) => pem.to_vec(),
        None => std::fs::read(dirs.secrets().join(CERT_FILE))?,
    };
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem)?)
        .build()?;
    let response = client
        .get(format!("https://127.0.0.1:{}/auth/login", addr.port()))
        .send()
        .await;
    // A plain-HTTP request to the TLS port fails.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/auth/login", addr.port()))
        .send()
        .await;
    cancel.cancel();
    task.await??;
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status() == 400));
    Ok(response?)
}

#[tokio::test]
async fn self_signed_certificate_is_generated_then_reused() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    let response = fetch_login(&dirs, None).await?;
    assert_eq!(response.status(), 200);
    // Issue 20: on https, browsers are told to stay on https.
    assert_eq!(
        response.headers()[header::STRICT_TRANSPORT_SECURITY],
        "max-age=31536000"
    );
    let cookie = response.headers()[header::SET_COOKIE].to_str()?.to_owned();
    // An anonymous visit stores no session: the login form's CSRF token is bound to a cookie.
    assert!(
        cookie.starts_with("__ci_session-secure-ci-csrf="),
        "{cookie}"
    );
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(
            cookie.contains(attribute),
            "{attribute} missing in {cookie}"
        );
    }

    let cert = std::fs::read(dirs.secrets().join(CERT_FILE))?;
    let key = std::fs::read(dirs.secrets().join(KEY_FILE))?;
    assert!(String::from_utf8_lossy(&cert).contains("BEGIN CERTIFICATE"));
    for file in [CERT_FILE, KEY_FILE] {
        let mode = std::fs::metadata(dirs.secrets().join(file))?
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }

    // A second start reuses the pair: a client trusting the first certificate still connects.
    let response = fetch_login(&dirs, Some(&cert)).await?;
    assert_eq!(response.status(), 200);
    assert_eq!(std::fs::read(dirs.secrets().join(CERT_FILE))?, cert);
    assert_eq!(std::fs::read(dirs.secrets().join(KEY_FILE))?, key);

    // A client trusting another certificate is refused.
    let other = Dirs::new()?;
    drop(fetch_login(&other, None).await?);
    let result = fetch_login(
        &dirs,
        Some(&std::fs::read(other.secrets().join(CERT_FILE))?),
    )
    .await;
    assert!(result.is_err(), "connected with the wrong certificate");
    Ok(())
}
