//! A job's recorded output — its result in words plus its logs — and the JSON form kept in
//! status branches (spec §3.8.1). This module is the only place that knows that format.

use serde_json::Value;

use datakit_ci_store::{BranchName, CommitId};

use crate::logs::{Logs, SavedLog};
use crate::status::{Problem, Status};

/// A job's result as recorded in history and reported to the forge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobResult {
    /// Passed, with the description to show.
    Success(String),
    /// Still running, with the reason.
    Pending(String),
    /// Failed, with the message.
    Failure(String),
}

impl JobResult {
    /// The status word: `success`, `pending` or `failure`.
    pub fn status_word(&self) -> &'static str {
        match self {
            JobResult::Success(_) => "success",
            JobResult::Pending(_) => "pending",
            JobResult::Failure(_) => "failure",
        }
    }

    /// The description, pending reason or failure message.
    pub fn description(&self) -> &str {
        match self {
            JobResult::Success(d) | JobResult::Pending(d) | JobResult::Failure(d) => d,
        }
    }
}

/// A job's output: its result and the logs that explain it.
#[derive(Clone, Debug)]
pub struct JobOutput {
    /// The result in words.
    pub result: JobResult,
    /// The logs.
    pub logs: Logs,
}

impl From<Status<String>> for JobOutput {
    fn from(status: Status<String>) -> Self {
        let result = match status.result {
            Ok(description) => JobResult::Success(description),
            Err(Problem::Pending { reason, .. }) => JobResult::Pending(reason),
            Err(Problem::Failure(message)) => JobResult::Failure(message),
        };
        JobOutput {
            result,
            logs: status.output,
        }
    }
}

/// A status-branch `output` file that could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Not JSON at all.
    #[error("invalid job output JSON {text:?}")]
    NotJson {
        /// The text that was read.
        text: String,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// JSON of an unexpected shape.
    #[error("invalid {what} JSON: {json}")]
    Shape {
        /// Which part had the wrong shape.
        what: &'static str,
        /// The offending JSON.
        json: String,
    },
}

impl JobOutput {
    /// The compact JSON recorded in status branches, keys in the original's order.
    ///
    /// ```
    /// use datakit_ci_term::{JobOutput, JobResult, Logs};
    /// let output = JobOutput { result: JobResult::Success("ok".into()), logs: Logs::Empty };
    /// assert_eq!(output.to_json(), r#"{"result":{"status":"success","descr":"ok"},"logs":null}"#);
    /// ```
    pub fn to_json(&self) -> String {
        format!(
            r#"{{"result":{{"status":"{}","descr":{}}},"logs":{}}}"#,
            self.result.status_word(),
            json_string(self.result.description()),
            logs_to_json(&self.logs)
        )
    }

    /// Reads the JSON written by [`JobOutput::to_json`]. Live logs come back as empty (they cannot
    /// be restored) and saved logs as archived (no rebuild from history).
    pub fn from_json(text: &str) -> Result<Self, FormatError> {
        let value: Value = serde_json::from_str(text).map_err(|source| FormatError::NotJson {
            text: text.to_owned(),
            source,
        })?;
        let shape = |what| FormatError::Shape {
            what,
            json: text.to_owned(),
        };
        let object = value
            .as_object()
            .filter(|o| o.len() == 2)
            .ok_or_else(|| shape("output"))?;
        let result = object
            .get("result")
            .and_then(Value::as_object)
            .ok_or_else(|| shape("result"))?;
        let status = result.get("status").and_then(Value::as_str);
        let descr = result.get("descr").and_then(Value::as_str);
        let result = match (status, descr, result.len()) {
            (Some("success"), Some(d), 2) => JobResult::Success(d.to_owned()),
            (Some("pending"), Some(d), 2) => JobResult::Pending(d.to_owned()),
            (Some("failure"), Some(d), 2) => JobResult::Failure(d.to_owned()),
            _ => return Err(shape("result")),
        };
        let logs = object.get("logs").ok_or_else(|| shape("output"))?;
        let logs = logs_from_json(logs).ok_or_else(|| shape("logs"))?;
        Ok(JobOutput { result, logs })
    }
}

/// Two outputs are equal when their recorded JSON is.
impl PartialEq for JobOutput {
    fn eq(&self, other: &Self) -> bool {
        self.to_json() == other.to_json()
    }
}

fn json_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

fn logs_to_json(logs: &Logs) -> String {
    match logs {
        Logs::Empty => "null".to_owned(),
        Logs::Live(live) => format!(r#"{{"branch":{}}}"#, json_string(live.branch())),
        Logs::Saved(saved) => format!(
            r#"{{"title":{},"branch":{},"commit":"{}","failed":{}}}"#,
            json_string(saved.title()),
            json_string(saved.branch().as_str()),
            saved.commit(),
            saved.failed()
        ),
        Logs::Pair(a, b) => match (a.is_empty(), b.is_empty()) {
            (true, _) => logs_to_json(b),
            (_, true) => logs_to_json(a),
            _ => format!("[{},{}]", logs_to_json(a), logs_to_json(b)),
        },
    }
}

fn logs_from_json(value: &Value) -> Option<Logs> {
    match value {
        Value::Null => Some(Logs::Empty),
        Value::Array(items) => match items.as_slice() {
            [a, b] => Some(Logs::pair(logs_from_json(a)?, logs_from_json(b)?)),
            _ => None,
        },
        Value::Object(object) if object.len() == 1 => {
            object.get("branch")?.as_str().map(|_| Logs::Empty)
        }
        Value::Object(object) if object.len() == 4 => {
            let title = object.get("title")?.as_str()?;
            let branch = BranchName::new(object.get("branch")?.as_str()?).ok()?;
            let commit: CommitId = object.get("commit")?.as_str()?.parse().ok()?;
            let failed = object.get("failed")?.as_bool()?;
            Some(Logs::Saved(SavedLog::new(
                title, commit, branch, failed, None,
            )))
        }
        _ => None,
    }
}
