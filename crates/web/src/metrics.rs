//! Prometheus metrics of the web UI (spec §6) and the `/metrics` endpoint (spec §2.10).
//!
//! [`WebMetrics`] registers the original's web metrics on the application's registry; the `track`
//! middleware counts and times every request; `get_metrics` encodes the whole registry for a
//! bearer of the configured token, `get_metrics_open` for the unauthenticated Prometheus listener.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::{AppState, Error};

/// The OpenMetrics content type that `prometheus-client` encodes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

/// The web UI's metrics, registered on the application's registry.
///
/// The original's response-time summary is a histogram here (prometheus-client has no summary);
/// its `_sum` and `_count` series are the same.
#[derive(Clone, Debug)]
pub struct WebMetrics {
    requests: Family<MethodLabel, Counter>,
    responses: Family<CodeLabel, Counter>,
    in_progress: Gauge,
    pub(crate) connections_open: Gauge,
    response_time: Histogram,
    pub(crate) local_login_ok: Counter,
    pub(crate) local_login_rejected: Counter,
    github_login_ok: Counter,
    github_login_rejected: Counter,
}

impl WebMetrics {
    /// Creates the metrics and registers them on `registry`.
    pub fn new(registry: &mut Registry) -> WebMetrics {
        let metrics = WebMetrics {
            requests: Family::default(),
            responses: Family::default(),
            in_progress: Gauge::default(),
            connections_open: Gauge::default(),
            response_time: Histogram::new(exponential_buckets(0.001, 4.0, 9)),
            local_login_ok: Counter::default(),
            local_login_rejected: Counter::default(),
            github_login_ok: Counter::default(),
            github_login_rejected: Counter::default(),
        };
        registry.register(
            "DataKitCI_web_requests",
            "HTTP requests to web UI",
            metrics.requests.clone(),
        );
        registry.register(
            "DataKitCI_web_responses",
            "HTTP responses from web UI",
            metrics.responses.clone(),
        );
        registry.register(
            "DataKitCI_web_connections_open",
            "HTTP connections open to the web UI (bounded by its connection limit)",
            metrics.connections_open.clone(),
        );
        registry.register(
            "DataKitCI_web_requests_in_progress",
            "HTTP requests currently being handled by the web UI",
            metrics.in_progress.clone(),
        );
        registry.register(
            "DataKitCI_web_response_time_seconds",
            "Time to handle one web request",
            metrics.response_time.clone(),
        );
        registry.register(
            "DataKitCI_web_local_login_ok",
            "Number of successful local login attempts",
            metrics.local_login_ok.clone(),
        );
        registry.register(
            "DataKitCI_web_local_login_rejected",
            "Number of unsuccessful local login attempts",
            metrics.local_login_rejected.clone(),
        );
        registry.register(
            "DataKitCI_web_github_login_ok",
            "Number of successful GitHub login attempts",
            metrics.github_login_ok.clone(),
        );
        registry.register(
            "DataKitCI_web_github_login_rejected",
            "Number of unsuccessful GitHub login attempts",
            metrics.github_login_rejected.clone(),
        );
        metrics
    }
}

/// Middleware: counts, times and logs every request.
pub(crate) async fn track(
    State(metrics): State<WebMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    metrics
        .requests
        .get_or_create(&MethodLabel {
            method: method.clone(),
        })
        .inc();
    metrics.in_progress.inc();
    let start = Instant::now();
    let response = next.run(request).await;
    metrics.response_time.observe(start.elapsed().as_secs_f64());
    metrics.in_progress.dec();
    let status = response.status();
    let code = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    metrics.responses.get_or_create(&CodeLabel { code }).inc();
    tracing::info!("{} - {method} {path}", status.as_u16());
    response
}

/// `GET /metrics` with `Authorization: Bearer <token>`.
pub(crate) async fn get_metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let allowed = match (state.config().metrics(), token) {
        (Some(expected), Some(token)) => expected.matches(token.as_bytes()),
        _ => false,
    };
    if !allowed {
        tracing::info!("refused /metrics: missing or wrong bearer token");
        return Err(Error::Forbidden("Bad token".to_owned()));
    }
    Ok(encode(state.registry()))
}

/// `GET /metrics` on the unauthenticated Prometheus listener.
pub(crate) async fn get_metrics_open(State(state): State<AppState>) -> Response {
    encode(state.registry())
}

fn encode(registry: &Arc<Mutex<Registry>>) -> Response {
    let mut text = String::new();
    let result = {
        let registry = registry.lock().unwrap_or_else(PoisonError::into_inner);
        prometheus_client::encoding::text::encode(&mut text, &registry)
    };
    match result {
        Ok(()) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
