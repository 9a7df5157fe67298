//! `/metrics`: the bearer token (SHA-256, compared in constant time), the HTTP metrics, and the
//! unauthenticated Prometheus listener.

mod common;

use common::{Dirs, Running, client, http_config, state_builder};
use datakit_ci_log::LogManager;
use datakit_ci_web::MetricsToken;

/// `printf secret | sha256sum`.
const SECRET_SHA256: &str = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

#[tokio::test]
async fn metrics_need_the_token() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    let config = http_config(&dirs)?
        .metrics_token(SECRET_SHA256.parse::<MetricsToken>()?)
        .prometheus_listen("127.0.0.1:0".parse()?);
    let state = state_builder(dirs.store()?, LogManager::new(), config).build()?;
    let server = Running::start(state).await?;
    let http = client()?;
    // Some traffic to count.
    assert_eq!(
        http.get(server.url("/no/such/page")).send().await?.status(),
        404
    );

    for authorization in [
        None,
        Some("Bearer guess"),
        Some("Basic c2VjcmV0"),
        Some("Bearer"),
        Some("secret"),
    ] {
        let mut request = http.get(server.url("/metrics"));
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        let response = request.send().await?;
        assert_eq!(response.status(), 403, "{authorization:?}");
        assert_eq!(response.text().await?, "Bad token");
    }

    let response = http
        .get(server.url("/metrics"))
        .header("Authorization", "bearer secret")
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let text = response.text().await?;
    for expected in [
        "DataKitCI_web_requests_total{method=\"GET\"}",
        "DataKitCI_web_responses_total{code=\"404 Not Found\"} 1",
        "DataKitCI_web_responses_total{code=\"403 Forbidden\"} 5",
        "DataKitCI_web_requests_in_progress 1",
        "DataKitCI_web_response_time_seconds_count",
        "DataKitCI_web_local_login_ok_total 0",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }

    // The Prometheus listener needs no token.
    let prometheus = server
        .prometheus
        .ok_or_else(|| anyhow::anyhow!("no Prometheus listener"))?;
    let response = http
        .get(format!("http://{prometheus}/metrics"))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await?
            .contains("DataKitCI_web_requests_total")
    );
    server.stop().await
}

#[tokio::test]
async fn metrics_are_closed_without_a_token() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    let state = state_builder(dirs.store()?, LogManager::new(), http_config(&dirs)?).build()?;
    let server = Running::start(state).await?;
    let response = client()?
        .get(server.url("/metrics"))
        .header("Authorization", "Bearer ")
        .send()
        .await?;
    assert_eq!(response.status(), 403);
    server.stop().await
}
