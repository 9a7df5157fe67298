//! Delivering events: one task per URL, in order, retried with backoff, from a bounded queue, so
//! that a slow or dead receiver never holds the engine or the other receivers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use datakit_ci_engine::StatusChange;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::{NotifyEvent, TargetResults, signature};

/// A notification could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// A `--notify` URL is not an `http://` or `https://` URL.
    #[error("--notify {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The secret file cannot be read, or is empty.
    #[error("notification secret {}: {reason}", .path.display())]
    Secret {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The HTTP client cannot be made.
    #[error("cannot make the notifications' HTTP client")]
    Client(#[source] reqwest::Error),
}

/// The key notifications are signed with. Its `Debug` does not show it.
#[derive(Clone)]
pub struct NotifySecret(Arc<[u8]>);

impl std::fmt::Debug for NotifySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NotifySecret(…)")
    }
}

impl NotifySecret {
    /// Reads the secret from `path`, without a final newline (as `echo secret > FILE` writes).
    pub fn from_file(path: &Path) -> Result<NotifySecret, NotifyError> {
        let bad = |reason: String| NotifyError::Secret {
            path: path.to_owned(),
            reason,
        };
        let mut bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        if bytes.is_empty() {
            return Err(bad("the file is empty".to_owned()));
        }
        Ok(NotifySecret(bytes.into()))
    }

    /// A secret given directly (e.g. by a test).
    pub fn new(secret: impl Into<Vec<u8>>) -> NotifySecret {
        NotifySecret(secret.into().into())
    }
}

/// Where and how notifications are sent. Its `Debug` shows the URLs' origins only.
#[derive(Clone)]
pub struct DeliveryConfig {
    /// The receivers (`--notify`).
    pub urls: Vec<String>,
    /// Signs each body (`--notify-secret-file`); unsigned without one.
    pub secret: Option<NotifySecret>,
    /// The web UI's public URL, for the events' links.
    pub web_ui: String,
    /// Attempts per event and URL before it is given up. Default 8 (about 4 minutes).
    pub max_attempts: u32,
    /// The wait after the first failed attempt; it doubles after each, up to a minute. Default 1 s.
    pub first_retry: Duration,
    /// Events waiting per URL at most; past it, new ones are dropped (and logged). Default 1,000.
    pub queue: usize,
}

impl std::fmt::Debug for DeliveryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|url| redacted(url)).collect();
        f.debug_struct("DeliveryConfig")
            .field("urls", &urls)
            .field("secret", &self.secret)
            .field("web_ui", &self.web_ui)
            .field("max_attempts", &self.max_attempts)
            .field("first_retry", &self.first_retry)
            .field("queue", &self.queue)
            .finish()
    }
}

impl DeliveryConfig {
    /// The defaults for `urls`, linking to `web_ui`.
    pub fn new(urls: Vec<String>, web_ui: impl Into<String>) -> DeliveryConfig {
        DeliveryConfig {
            urls,
            secret: None,
            web_ui: web_ui.into(),
            max_attempts: 8,
            first_retry: Duration::from_secs(1),
            queue: 1_000,
        }
    }
}

/// The longest wait between two attempts.
const MAX_RETRY: Duration = Duration::from_secs(60);
/// How long one attempt may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One event, ready to send: its body is serialised once for every URL.
#[derive(Debug)]
struct Delivery {
    id: String,
    event: &'static str,
    body: Vec<u8>,
}

/// Follows the engine's status changes and notifies every URL of each target result change.
///
/// ```no_run
/// # async fn example(engine: datakit_ci_engine::Engine) -> Result<(), datakit_ci_notifications::NotifyError> {
/// use datakit_ci_notifications::{DeliveryConfig, Notifier};
/// use tokio_util::sync::CancellationToken;
///
/// let config = DeliveryConfig::new(vec!["https://chat.example/hook".into()], "https://ci.example/");
/// let notifier = Notifier::new(config)?;
/// tokio::spawn(notifier.run(engine.subscribe(), CancellationToken::new()));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Notifier {
    config: DeliveryConfig,
    client: reqwest::Client,
}

impl Notifier {
    /// Checks the URLs and makes the HTTP client.
    pub fn new(config: DeliveryConfig) -> Result<Notifier, NotifyError> {
        for url in &config.urls {
            check_url(url)?;
        }
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("datakit-ci/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(NotifyError::Client)?;
        Ok(Notifier { config, client })
    }

    /// Runs until `cancel` fires or the engine stops; events still queued then are dropped.
    pub async fn run(
        self,
        mut events: broadcast::Receiver<StatusChange>,
        cancel: CancellationToken,
    ) {
        let config = Arc::new(self.config);
        let mut queues = Vec::new();
        let mut tasks = tokio::task::JoinSet::new();
        for url in &config.urls {
            let (sender, receiver) = mpsc::channel::<Arc<Delivery>>(config.queue.max(1));
            queues.push((url.clone(), sender));
            tasks.spawn(deliver_all(
                self.client.clone(),
                url.clone(),
                Arc::clone(&config),
                receiver,
                cancel.clone(),
            ));
        }
        let mut results = TargetResults::default();
        loop {
            let change = tokio::select! {
                change = events.recv() => change,
                () = cancel.cancelled() => break,
            };
            let change = match change {
                Ok(change) => change,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "notifications fell behind the engine; some changes were not seen"
                    );
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            };
            let Some(result) = results.observe(&change) else {
                continue;
            };
            let event = NotifyEvent::new(&result, &config.web_ui);
            let body = match serde_json::to_vec(&event) {
                Ok(body) => body,
                Err(error) => {
                    tracing::error!(%error, "cannot encode a notification");
                    continue;
                }
            };
            let delivery = Arc::new(Delivery {
                id: delivery_id(),
                event: event.event,
                body,
            });
            tracing::info!(target = %result.target, event = event.event, "notifying");
            for (url, queue) in &queues {
                if queue.try_send(Arc::clone(&delivery)).is_err() {
                    tracing::warn!(url = %redacted(url), "notification queue full; an event is dropped");
                }
            }
        }
        drop(queues);
        // Each task ends once its queue is empty (or at cancellation).
        while tasks.join_next().await.is_some() {}
    }
}

fn check_url(url: &str) -> Result<(), NotifyError> {
    let bad = |reason: &str| NotifyError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("must start with http:// or https://"));
    }
    if parsed.host().is_none() {
        return Err(bad("has no host"));
    }
    Ok(())
}

/// `url` as logs show it: its origin only, as receivers' URLs often hold a token in their path
/// (chat webhooks do).
fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => format!("{}/…", parsed.origin().ascii_serialization()),
        Err(_) => "(invalid URL)".to_owned(),
    }
}

fn delivery_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source is available");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Delivers the events of one URL in order.
async fn deliver_all(
    client: reqwest::Client,
    url: String,
    config: Arc<DeliveryConfig>,
    mut queue: mpsc::Receiver<Arc<Delivery>>,
    cancel: CancellationToken,
) {
    loop {
        let delivery = tokio::select! {
            delivery = queue.recv() => match delivery {
                Some(delivery) => delivery,
                None => return,
            },
            () = cancel.cancelled() => return,
        };
        tokio::select! {
            () = deliver_one(&client, &url, &config, &delivery) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// Sends one event to one URL, retrying what may succeed later: network errors, `5xx`, `408` and
/// `429` (after its `Retry-After`, if any).
async fn deliver_one(
    client: &reqwest::Client,
    url: &str,
    config: &DeliveryConfig,
    delivery: &Delivery,
) {
    let shown = redacted(url);
    let mut wait = config.first_retry;
    for attempt in 1..=config.max_attempts.max(1) {
        let mut request = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-DataKit-CI-Event", delivery.event)
            .header("X-DataKit-CI-Delivery", &delivery.id)
            .body(delivery.body.clone());
        if let Some(secret) = &config.secret {
            request = request.header(
                "X-DataKit-CI-Signature-256",
                signature(&secret.0, &delivery.body),
            );
        }
        let retry_after = match request.send().await {
            Ok(response) if response.status().is_success() => {
                tracing::debug!(url = %shown, id = %delivery.id, attempt, "notification delivered");
                return;
            }
            Ok(response) => {
                let status = response.status();
                let retryable = status.is_server_error()
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
                if !retryable {
                    tracing::warn!(url = %shown, id = %delivery.id, %status, "notification refused; not retried");
                    return;
                }
                tracing::info!(url = %shown, id = %delivery.id, %status, attempt, "notification failed; will retry");
                response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.trim().parse::<u64>().ok())
                    .map(Duration::from_secs)
            }
            Err(error) => {
                let error = error.without_url();
                tracing::info!(url = %shown, id = %delivery.id, %error, attempt, "notification failed; will retry");
                None
            }
        };
        if attempt == config.max_attempts {
            break;
        }
        tokio::time::sleep(retry_after.unwrap_or(wait).min(MAX_RETRY * 5)).await;
        wait = (wait * 2).min(MAX_RETRY);
    }
    tracing::warn!(url = %shown, id = %delivery.id, "notification given up after {} attempts", config.max_attempts);
}
