//! A job's check run (as a GitHub App): the request body, the conclusion of a state, the
//! summary (with the end of a failed job's log), and the record of what GitHub was last told of
//! it. Knows nothing of requests or the store.

use super::Told;

/// A failure description starting with this is a job that did not run because a job it needs
/// failed: its check run's conclusion is `skipped`.
pub const SKIPPED_PREFIX: &str = "Skipped: ";

/// A success description starting with this is a job that failed but is allowed to: its check
/// run's conclusion is `neutral` (the commit status stays `success`).
pub const ALLOWED_FAILURE_PREFIX: &str = "Failed (allowed): ";

/// A pending description starting with this is a job waiting for someone to approve it: its
/// check run is completed with the conclusion `action_required`, pointing at the job's page
/// (GitHub shows `details_url` as the place to act; without a link the check run stays
/// `in_progress`). The commit status stays `pending`.
pub const APPROVAL_PREFIX: &str = "Waiting for approval";

/// A failure description starting with this (or containing `cancelled`, in any case) is a
/// cancelled job: conclusion `cancelled`.
pub const CANCELLED_PREFIX: &str = "Cancelled";

/// A failure description containing this (in any case) is a job stopped by its timeout:
/// conclusion `timed_out`.
pub const TIMED_OUT_PHRASE: &str = "timed out after";

/// The process plugin's word for a command stopped by its timeout (`exceeded timeout of 10s`),
/// also read as `timed_out`.
const PROCESS_TIMEOUT_PHRASE: &str = "exceeded timeout of";

/// GitHub's limit on a check run's summary, in characters.
const MAX_SUMMARY_CHARS: usize = 65_535;

/// How many lines of a failed job's log its summary shows.
pub(super) const LOG_LINES: usize = 30;

/// How many bytes of the end of a log are asked for: enough for [`LOG_LINES`] long lines.
pub(super) const LOG_TAIL_BYTES: usize = 64 * 1024;

/// The most characters of one log line shown (a minified file or a progress bar on one line).
const MAX_LINE_CHARS: usize = 1_000;

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

/// A check run's conclusion, or `None` while it is still running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Conclusion {
    Success,
    Failure,
    Neutral,
    Skipped,
    Cancelled,
    TimedOut,
    ActionRequired,
}

impl Conclusion {
    /// The state's conclusion; `None` for a job still running (or waiting for approval without
    /// a page to approve it on).
    pub(super) fn of(told: &Told) -> Option<Conclusion> {
        let description = told.description.as_str();
        let lower = description.to_lowercase();
        match told.state.as_str() {
            "pending"
                if description.starts_with(APPROVAL_PREFIX) && !told.target_url.is_empty() =>
            {
                Some(Conclusion::ActionRequired)
            }
            "pending" => None,
            "success" if description.starts_with(ALLOWED_FAILURE_PREFIX) => {
                Some(Conclusion::Neutral)
            }
            "success" => Some(Conclusion::Success),
            _ if description.starts_with(SKIPPED_PREFIX) => Some(Conclusion::Skipped),
            _ if description.starts_with(CANCELLED_PREFIX)
                || lower.contains("cancelled")
                || lower.starts_with("canceled") =>
            {
                Some(Conclusion::Cancelled)
            }
            _ if lower.contains(TIMED_OUT_PHRASE)
                || lower.contains(PROCESS_TIMEOUT_PHRASE)
                || lower.starts_with("timed out") =>
            {
                Some(Conclusion::TimedOut)
            }
            _ => Some(Conclusion::Failure),
        }
    }

    /// GitHub's word for it.
    fn as_str(self) -> &'static str {
        match self {
            Conclusion::Success => "success",
            Conclusion::Failure => "failure",
            Conclusion::Neutral => "neutral",
            Conclusion::Skipped => "skipped",
            Conclusion::Cancelled => "cancelled",
            Conclusion::TimedOut => "timed_out",
            Conclusion::ActionRequired => "action_required",
        }
    }

    /// Whether the job ran and failed, so that its log explains why.
    pub(super) fn shows_log(self) -> bool {
        matches!(
            self,
            Conclusion::Failure
                | Conclusion::Neutral
                | Conclusion::Cancelled
                | Conclusion::TimedOut
        )
    }
}

/// The body of a check run's creation or update (without `head_sha`, which only a creation
/// has). `log` is the end of the job's log, shown in the summary of a failed job.
pub(super) fn body(context: &str, told: &Told, log: Option<&[u8]>) -> serde_json::Value {
    let conclusion = Conclusion::of(told);
    let mut body = serde_json::json!({
        "name": context,
        "external_id": context,
        "status": if conclusion.is_some() { "completed" } else { "in_progress" },
        "output": {
            "title": if told.description.is_empty() { told.state.clone() } else { told.description.clone() },
            "summary": summary(told, log.filter(|_| conclusion.is_some_and(Conclusion::shows_log))),
        },
    });
    if !told.target_url.is_empty() {
        body["details_url"] = serde_json::Value::String(told.target_url.clone());
    }
    if let Some(conclusion) = conclusion {
        body["conclusion"] = serde_json::Value::String(conclusion.as_str().to_owned());
        // Approving happens on the job's page (`details_url`), not by rebuilding.
        if conclusion != Conclusion::ActionRequired {
            body["actions"] = serde_json::json!([{
                "label": "Rebuild",
                "description": "Run this job again",
                "identifier": crate::webhook::REBUILD_ACTION,
            }]);
        }
    }
    body
}

/// A check run's summary: the description, the last [`LOG_LINES`] lines of `log` (escape
/// sequences removed) in a code block, and the link to the logs, within GitHub's limit.
fn summary(told: &Told, log: Option<&[u8]>) -> String {
    let mut text = told.description.clone();
    let link = if told.target_url.is_empty() {
        String::new()
    } else {
        format!("\n\n[Logs and history]({})", told.target_url)
    };
    if let Some(log) = log {
        let lines = last_lines(log, LOG_LINES);
        if !lines.is_empty() {
            // The room left for the log, keeping the description and the link whole.
            let room =
                MAX_SUMMARY_CHARS.saturating_sub(text.chars().count() + link.chars().count() + 64);
            let block = fenced(&lines, room);
            if !block.is_empty() {
                text.push_str(&format!("\n\nThe end of the log:\n\n{block}"));
            }
        }
    }
    text.push_str(&link);
    text.chars().take(MAX_SUMMARY_CHARS).collect()
}

/// `lines` in a Markdown code block whose fence no line can close, dropping the first lines
/// until it fits in `room` characters (empty if not even one line fits).
fn fenced(lines: &[String], room: usize) -> String {
    let longest_run = lines
        .iter()
        .map(|line| longest_backtick_run(line))
        .max()
        .unwrap_or(0);
    let fence = "`".repeat(longest_run.max(2) + 1);
    let mut first = 0;
    loop {
        let shown = &lines[first..];
        if shown.is_empty() {
            return String::new();
        }
        let block = format!("{fence}\n{}\n{fence}", shown.join("\n"));
        if block.chars().count() <= room {
            return block;
        }
        first += 1;
    }
}

fn longest_backtick_run(line: &str) -> usize {
    line.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// The last `count` lines of `log` as a terminal would show them: escape sequences removed,
/// a carriage return starting its line again, each line cut to [`MAX_LINE_CHARS`], trailing
/// blank lines dropped.
pub(super) fn last_lines(log: &[u8], count: usize) -> Vec<String> {
    let mut screen = Screen::default();
    let mut parser = vte::Parser::new();
    parser.advance(&mut screen, log);
    screen.lines.push(std::mem::take(&mut screen.line));
    while screen
        .lines
        .last()
        .is_some_and(|line| line.trim().is_empty())
    {
        screen.lines.pop();
    }
    let start = screen.lines.len().saturating_sub(count);
    screen.lines.split_off(start)
}

/// The lines of a log being parsed.
#[derive(Default)]
struct Screen {
    lines: Vec<String>,
    line: String,
    /// How many characters `line` has.
    line_chars: usize,
    /// A carriage return was seen: the next character starts the line again.
    carriage_return: bool,
}

impl vte::Perform for Screen {
    fn print(&mut self, c: char) {
        if self.carriage_return {
            self.line.clear();
            self.line_chars = 0;
            self.carriage_return = false;
        }
        if self.line_chars < MAX_LINE_CHARS {
            self.line.push(c);
            self.line_chars += 1;
        }
    }

    fn execute(&mut self, byte: u8) {
        match byte {
            b'\n' => {
                self.carriage_return = false;
                self.line_chars = 0;
                self.lines.push(std::mem::take(&mut self.line));
            }
            b'\r' => self.carriage_return = true,
            b'\t' => self.print('\t'),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
