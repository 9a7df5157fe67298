//! A job's check run (as a GitHub App): the request body, the conclusion of a final state, the
//! summary, and the record of what GitHub was last told of it. Knows nothing of requests or the
//! store.

use super::Told;

/// What GitHub was last told of a check run.
pub(super) fn check_record(id: Option<u64>, told: &Told) -> String {
    serde_json::json!({
        "id": id,
        "state": told.state,
        "description": told.description,
        "target_url": told.target_url,
    })
    .to_string()
}

/// The id and state of a recorded check run.
pub(super) fn parse_check_record(bytes: &[u8]) -> Option<(Option<u64>, Told)> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let told = Told::from_record(bytes)?;
    Some((value.get("id").and_then(serde_json::Value::as_u64), told))
}

/// GitHub's limit on a check run's summary, in characters.
const MAX_SUMMARY_CHARS: usize = 65_535;

/// The body of a check run's creation or update (without `head_sha`, which only a creation has).
pub(super) fn body(context: &str, told: &Told) -> serde_json::Value {
    let completed = told.state != "pending";
    let mut body = serde_json::json!({
        "name": context,
        "external_id": context,
        "status": if completed { "completed" } else { "in_progress" },
        "output": {
            "title": if told.description.is_empty() { told.state.clone() } else { told.description.clone() },
            "summary": summary(told),
        },
    });
    if !told.target_url.is_empty() {
        body["details_url"] = serde_json::Value::String(told.target_url.clone());
    }
    if completed {
        body["conclusion"] = serde_json::Value::String(conclusion(told).to_owned());
        body["actions"] = serde_json::json!([{
            "label": "Rebuild",
            "description": "Run this job again",
            "identifier": crate::webhook::REBUILD_ACTION,
        }]);
    }
    body
}

/// A check run's conclusion for a final state.
fn conclusion(told: &Told) -> &'static str {
    let description = told.description.to_ascii_lowercase();
    match told.state.as_str() {
        "success" => "success",
        _ if description.starts_with("cancelled") || description.starts_with("canceled") => {
            "cancelled"
        }
        _ if description.starts_with("timed out") => "timed_out",
        _ => "failure",
    }
}

/// A check run's summary: the description and the link to the logs, within GitHub's limit.
fn summary(told: &Told) -> String {
    let mut text = told.description.clone();
    if !told.target_url.is_empty() {
        text.push_str(&format!("\n\n[Logs and history]({})", told.target_url));
    }
    text.chars().take(MAX_SUMMARY_CHARS).collect()
}
