//! The JSON body of a notification, and its signature.

use hmac::{Hmac, Mac as _};
use serde::Serialize;
use sha2::Sha256;

use datakit_ci_engine::commit_page_url;

use crate::ResultChange;

/// The body POSTed for a [`ResultChange`], e.g.:
///
/// ```json
/// {"event":"failed","target":"me/proj/heads/main","commit":"1f2e…",
///  "url":"https://ci.example/me/proj/commit/1f2e…","time":"2026-12-07T16:00:00Z",
///  "jobs":[{"name":"build","state":"failure","description":"exited with status 1"}]}
/// ```
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct NotifyEvent {
    /// `failed`, `fixed` or `cancelled`.
    pub event: &'static str,
    /// The target (`USER/REPO/heads/BRANCH`, `…/tags/TAG`, `…/prs/N`).
    pub target: String,
    /// The commit the result is about.
    pub commit: String,
    /// The commit's page in the web UI.
    pub url: String,
    /// When the change was seen (RFC 3339, UTC).
    pub time: String,
    /// Every job of the target.
    pub jobs: Vec<NotifyJob>,
}

/// One job in a [`NotifyEvent`].
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct NotifyJob {
    /// The test's name.
    pub name: String,
    /// `success`, `pending` or `failure`.
    pub state: String,
    /// Its description.
    pub description: String,
}

impl NotifyEvent {
    /// The event for `change`, linking to the web UI at `web_ui`.
    pub fn new(change: &ResultChange, web_ui: &str) -> NotifyEvent {
        NotifyEvent {
            event: change.kind.as_str(),
            target: change.target.to_string(),
            commit: change.commit.to_string(),
            url: commit_page_url(web_ui, change.target.repo(), &change.commit),
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            jobs: change
                .jobs
                .iter()
                .map(|(name, (state, description))| NotifyJob {
                    name: name.clone(),
                    state: state.clone(),
                    description: description.clone(),
                })
                .collect(),
        }
    }
}

/// The value of the `X-DataKit-CI-Signature-256` header of `body`: `sha256=` and the hex
/// HMAC-SHA256 of the body under `secret`, as GitHub's `X-Hub-Signature-256`. A receiver
/// recomputes it and compares in constant time.
///
/// ```
/// let header = datakit_ci_notifications::signature(b"It's a Secret to Everybody", b"Hello, World!");
/// assert_eq!(
///     header,
///     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
/// );
/// ```
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256={hex}")
}
