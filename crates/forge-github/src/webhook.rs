//! Webhook deliveries: the `X-Hub-Signature-256` check ([`verify_signature`]), the memory of
//! delivery ids already handled ([`Deliveries`]) and the parsing of payloads into [`Event`]s.
//! Knows nothing of HTTP servers or the store: the web layer hands in the headers and body, the
//! bridge applies the events.

use std::collections::{HashSet, VecDeque};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::WebhookError;

/// The largest body accepted: GitHub caps payloads at 25 MB and drops larger ones itself.
pub const MAX_PAYLOAD_BYTES: usize = 25 * 1024 * 1024;

/// How many delivery ids are remembered for replay detection (a few hundred kilobytes).
const REMEMBERED_DELIVERIES: usize = 10_000;

/// Checks `signature` (the `X-Hub-Signature-256` value, `sha256=<64 hex digits>`) against the
/// HMAC-SHA256 of `body` with `secret`, in constant time (`Mac::verify_slice`).
pub fn verify_signature(
    secret: &[u8],
    signature: Option<&str>,
    body: &[u8],
) -> Result<(), WebhookError> {
    let signature = signature.ok_or(WebhookError::MissingSignature)?;
    let hex = signature
        .trim()
        .strip_prefix("sha256=")
        .ok_or(WebhookError::BadSignature)?;
    let expected = decode_hex(hex).ok_or(WebhookError::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| WebhookError::BadSignature)
}

/// `sha256=<hex>` for `body` signed with `secret`, as GitHub computes it (for tests and tools).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

/// The delivery ids seen lately, oldest forgotten first (bounded memory).
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl Deliveries {
    /// Whether `id` was recorded.
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.seen.contains(id)
    }

    /// Records `id`; `false` if it was already recorded (a replay).
    pub(crate) fn insert(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() >= REMEMBERED_DELIVERIES
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

/// What a delivery asks of the bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A branch or tag moved, appeared (`head` set) or was deleted (`head` is `None`).
    Ref {
        /// `owner/repo` as GitHub spells it.
        repo: String,
        /// `heads/<name>` or `tags/<name>`.
        name: String,
        /// The commit, or `None` for a deletion.
        head: Option<String>,
    },
    /// A pull request's current state.
    Pr {
        /// `owner/repo` of the base repository.
        repo: String,
        /// Its files.
        pr: PrFields,
    },
    /// Something changed that the event does not describe fully (a ref created without its
    /// commit, an installation): the repository (or all, for `None`) is synced from the API.
    Resync {
        /// `owner/repo`, or `None` for every monitored repository.
        repo: Option<String>,
    },
    /// A check run or suite asks to be run again.
    Rerun {
        /// `owner/repo`.
        repo: String,
        /// The commit.
        head_sha: String,
        /// The check run's name (our job), or `None` for the whole suite (its failed jobs).
        check_name: Option<String>,
        /// The App installation the event was sent for (`installation.id`), if it says.
        installation: Option<u64>,
    },
    /// Nothing to do (a ping, an action we do not follow).
    Nothing,
}

/// The metadata files of a pull request (DESIGN §6.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PrFields {
    pub(crate) number: u64,
    pub(crate) head: String,
    /// `open` or `closed`.
    pub(crate) state: String,
    pub(crate) title: String,
    pub(crate) owner: String,
    pub(crate) base: String,
    /// When GitHub last changed the PR (`updated_at`), if it says.
    pub(crate) updated_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The `trust` file: whether its code runs without a Builder's approval, and why
    /// ([`crate::trust::classify`]).
    pub(crate) trust: String,
}

#[derive(Deserialize)]
struct RepoPayload {
    full_name: String,
}

#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    #[serde(default)]
    deleted: bool,
    head_commit: Option<CommitPayload>,
    repository: RepoPayload,
}

#[derive(Deserialize)]
struct CommitPayload {
    id: String,
}

#[derive(Deserialize)]
struct RefPayload {
    #[serde(rename = "ref")]
    git_ref: String,
    ref_type: String,
    repository: RepoPayload,
}

#[derive(Deserialize)]
struct PullRequestPayload {
    action: String,
    pull_request: PullRequest,
    repository: RepoPayload,
}

/// A pull request as the webhooks and `GET /repos/{owner}/{repo}/pulls` describe it.
#[derive(Deserialize)]
pub(crate) struct PullRequest {
    pub(crate) number: u64,
    pub(crate) state: String,
    #[serde(default)]
    pub(crate) title: Option<String>,
    pub(crate) user: Option<User>,
    pub(crate) head: Branch,
    pub(crate) base: Branch,
    #[serde(default)]
    pub(crate) updated_at: Option<String>,
    /// `OWNER`, `MEMBER`, `COLLABORATOR`, `CONTRIBUTOR`, … (absent from some GitHub Enterprise
    /// versions' payloads: then untrusted).
    #[serde(default)]
    pub(crate) author_association: Option<String>,
}

impl PullRequest {
    /// Its metadata files; `repo` is the base repository (`owner/repo`), which the head's
    /// repository is compared with to tell a fork.
    pub(crate) fn into_fields(self, repo: &str) -> PrFields {
        let trust = crate::trust::classify(&crate::trust::TrustFacts {
            base_repo: repo,
            head_repo: self.head.repo.as_ref().map(|head| head.full_name.as_str()),
            association: self.author_association.as_deref(),
            author: self.user.as_ref().map_or("", |user| user.login.as_str()),
        });
        PrFields {
            trust,
            number: self.number,
            head: self.head.sha,
            state: if self.state == "open" {
                "open".to_owned()
            } else {
                "closed".to_owned()
            },
            title: self.title.unwrap_or_default(),
            owner: self.user.map(|user| user.login).unwrap_or_default(),
            base: self.base.git_ref,
            updated_at: self
                .updated_at
                .as_deref()
                .and_then(crate::pr_clock::parse_time),
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct User {
    pub(crate) login: String,
}

#[derive(Deserialize)]
pub(crate) struct Branch {
    #[serde(rename = "ref")]
    pub(crate) git_ref: String,
    pub(crate) sha: String,
    /// The repository holding the branch: `null` for a deleted fork.
    #[serde(default)]
    pub(crate) repo: Option<BranchRepo>,
}

/// The repository of a pull request's branch.
#[derive(Deserialize)]
pub(crate) struct BranchRepo {
    pub(crate) full_name: String,
}

#[derive(Deserialize)]
struct CheckRunPayload {
    action: String,
    check_run: CheckRun,
    #[serde(default)]
    requested_action: Option<RequestedAction>,
    repository: RepoPayload,
    #[serde(default)]
    installation: Option<InstallationPayload>,
}

/// The App installation an event is sent for.
#[derive(Deserialize)]
struct InstallationPayload {
    id: u64,
}

#[derive(Deserialize)]
struct CheckRun {
    name: String,
    head_sha: String,
}

#[derive(Deserialize)]
struct RequestedAction {
    identifier: String,
}

#[derive(Deserialize)]
struct CheckSuitePayload {
    action: String,
    check_suite: CheckSuite,
    repository: RepoPayload,
    #[serde(default)]
    installation: Option<InstallationPayload>,
}

#[derive(Deserialize)]
struct CheckSuite {
    head_sha: String,
}

/// The id of the check-run button that rebuilds the job.
pub(crate) const REBUILD_ACTION: &str = "rebuild";

/// Parses the payload of `event`.
pub(crate) fn parse(event: &str, body: &[u8]) -> Result<Event, WebhookError> {
    let malformed = |e: serde_json::Error| WebhookError::Malformed {
        event: event.to_owned(),
        problem: e.to_string(),
    };
    // Whatever the event, the body must be JSON: a truncated body is refused, not ignored.
    let value: serde_json::Value = serde_json::from_slice(body).map_err(malformed)?;
    let event = match event {
        "push" => {
            let push: PushPayload = serde_json::from_value(value).map_err(malformed)?;
            let Some(name) = short_ref(&push.git_ref) else {
                return Ok(Event::Nothing);
            };
            let head = if push.deleted {
                None
            } else if name.starts_with("tags/") {
                // `after` is the tag object for an annotated tag; the commit is `head_commit`.
                Some(push.head_commit.map_or(push.after, |commit| commit.id))
            } else {
                Some(push.after)
            };
            Event::Ref {
                repo: push.repository.full_name,
                name,
                head,
            }
        }
        "create" | "delete" => {
            let payload: RefPayload = serde_json::from_value(value).map_err(malformed)?;
            let kind = match payload.ref_type.as_str() {
                "branch" => "heads",
                "tag" => "tags",
                _ => return Ok(Event::Nothing),
            };
            if event == "delete" {
                Event::Ref {
                    repo: payload.repository.full_name,
                    name: format!("{kind}/{}", payload.git_ref),
                    head: None,
                }
            } else {
                // A `create` payload has no commit: ask the API (the `push` that comes with it
                // usually got there first, and the sync then changes nothing).
                Event::Resync {
                    repo: Some(payload.repository.full_name),
                }
            }
        }
        "pull_request" => {
            let payload: PullRequestPayload = serde_json::from_value(value).map_err(malformed)?;
            match payload.action.as_str() {
                "opened" | "synchronize" | "reopened" | "closed" | "edited" => Event::Pr {
                    pr: payload
                        .pull_request
                        .into_fields(&payload.repository.full_name),
                    repo: payload.repository.full_name,
                },
                _ => Event::Nothing,
            }
        }
        "check_run" => {
            let payload: CheckRunPayload = serde_json::from_value(value).map_err(malformed)?;
            let rerun = match payload.action.as_str() {
                "rerequested" => true,
                "requested_action" => payload
                    .requested_action
                    .is_some_and(|action| action.identifier == REBUILD_ACTION),
                _ => false,
            };
            if rerun {
                Event::Rerun {
                    repo: payload.repository.full_name,
                    head_sha: payload.check_run.head_sha,
                    check_name: Some(payload.check_run.name),
                    installation: payload.installation.map(|i| i.id),
                }
            } else {
                Event::Nothing
            }
        }
        "check_suite" => {
            let payload: CheckSuitePayload = serde_json::from_value(value).map_err(malformed)?;
            if payload.action == "rerequested" {
                Event::Rerun {
                    repo: payload.repository.full_name,
                    head_sha: payload.check_suite.head_sha,
                    check_name: None,
                    installation: payload.installation.map(|i| i.id),
                }
            } else {
                Event::Nothing
            }
        }
        "installation" | "installation_repositories" => Event::Resync { repo: None },
        _ => Event::Nothing,
    };
    Ok(event)
}

/// `heads/x` for `refs/heads/x`, `tags/v` for `refs/tags/v`; `None` for other refs.
fn short_ref(git_ref: &str) -> Option<String> {
    let short = git_ref.strip_prefix("refs/")?;
    (short.starts_with("heads/") || short.starts_with("tags/")).then(|| short.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked() {
        let body = br#"{"zen":"Keep it logically awesome."}"#;
        let good = sign(b"secret", body);
        assert!(verify_signature(b"secret", Some(&good), body).is_ok());
        assert!(matches!(
            verify_signature(b"other", Some(&good), body),
            Err(WebhookError::BadSignature)
        ));
        assert!(matches!(
            verify_signature(b"secret", Some(&good), &body[..10]),
            Err(WebhookError::BadSignature)
        ));
        assert!(matches!(
            verify_signature(b"secret", None, body),
            Err(WebhookError::MissingSignature)
        ));
        for bad in ["sha1=00", "sha256=zz", "sha256=", &good[..20]] {
            assert!(matches!(
                verify_signature(b"secret", Some(bad), body),
                Err(WebhookError::BadSignature)
            ));
        }
    }

    #[test]
    fn deliveries_are_remembered_up_to_a_bound() {
        let mut deliveries = Deliveries::default();
        assert!(deliveries.insert("a"));
        assert!(!deliveries.insert("a"));
        for n in 0..REMEMBERED_DELIVERIES {
            assert!(deliveries.insert(&n.to_string()));
        }
        assert_eq!(deliveries.seen.len(), REMEMBERED_DELIVERIES);
        assert!(deliveries.insert("a"), "the oldest id was forgotten");
    }

    fn fixture(name: &str) -> serde_json::Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/github/webhooks")
            .join(name);
        let text = std::fs::read_to_string(&path).expect("the fixture exists");
        serde_json::from_str(&text).expect("the fixture is JSON")
    }

    #[test]
    fn only_the_rebuild_action_reruns() {
        let mut payload = fixture("check_run.requested_action.1.json");
        let body = serde_json::to_vec(&payload).expect("JSON");
        assert_eq!(
            parse("check_run", &body).expect("valid"),
            Event::Nothing,
            "lgtm|26764"
        );
        payload["requested_action"]["identifier"] = "rebuild".into();
        let body = serde_json::to_vec(&payload).expect("JSON");
        assert_eq!(
            parse("check_run", &body).expect("valid"),
            Event::Rerun {
                repo: "electron/electron".to_owned(),
                head_sha: payload["check_run"]["head_sha"]
                    .as_str()
                    .expect("a sha")
                    .to_owned(),
                check_name: Some("API Review".to_owned()),
                installation: Some(690_857),
            }
        );
    }

    #[test]
    fn a_branch_deletion_removes_the_ref() {
        let body = br#"{"ref":"refs/heads/gone","after":"0000000000000000000000000000000000000000",
            "deleted":true,"head_commit":null,"repository":{"full_name":"me/proj"}}"#;
        assert_eq!(
            parse("push", body).expect("valid"),
            Event::Ref {
                repo: "me/proj".to_owned(),
                name: "heads/gone".to_owned(),
                head: None
            }
        );
    }

    #[test]
    fn malformed_payloads_name_the_problem() {
        let error = parse("push", b"{\"ref\": 3").expect_err("truncated");
        assert!(
            error.to_string().starts_with("malformed push payload: "),
            "{error}"
        );
        let error = parse("pull_request", b"{}").expect_err("no fields");
        assert!(error.to_string().contains("missing field"), "{error}");
    }
}
