//! Check-run bodies, conclusions and summaries.

use super::*;

fn told(state: &str, description: &str, target_url: &str) -> Told {
    Told {
        state: state.to_owned(),
        description: description.to_owned(),
        target_url: target_url.to_owned(),
    }
}

/// The `status`, `conclusion` and action identifiers of the body for a state.
fn check(state: &str, description: &str, target_url: &str, expect: (&str, Option<&str>, &[&str])) {
    let body = body(
        "ci/datakit/test",
        &told(state, description, target_url),
        None,
    );
    let actions: Vec<&str> = body["actions"]
        .as_array()
        .map(|actions| {
            actions
                .iter()
                .filter_map(|a| a["identifier"].as_str())
                .collect()
        })
        .unwrap_or_default();
    let found = (
        body["status"].as_str().expect("a status"),
        body["conclusion"].as_str(),
        actions.as_slice(),
    );
    assert_eq!(found, expect, "{state} {description:?} {target_url:?}");
}

const URL: &str = "http://ci.example/job";

#[test]
fn conclusions() {
    let rebuild: &[&str] = &["rebuild"];
    check(
        "success",
        "Passed",
        URL,
        ("completed", Some("success"), rebuild),
    );
    check(
        "failure",
        "Failed: exit 1",
        URL,
        ("completed", Some("failure"), rebuild),
    );
    check("pending", "Running", URL, ("in_progress", None, &[]));
    check(
        "failure",
        &format!("{SKIPPED_PREFIX}build failed"),
        URL,
        ("completed", Some("skipped"), rebuild),
    );
    check(
        "success",
        &format!("{ALLOWED_FAILURE_PREFIX}exit 1"),
        URL,
        ("completed", Some("neutral"), rebuild),
    );
    check(
        "pending",
        &format!("{APPROVAL_PREFIX} from a maintainer"),
        URL,
        ("completed", Some("action_required"), &[]),
    );
    // GitHub sends people to `details_url` to act: without one, still running.
    check("pending", APPROVAL_PREFIX, "", ("in_progress", None, &[]));
    check(
        "failure",
        "Cancelled",
        URL,
        ("completed", Some("cancelled"), rebuild),
    );
    check(
        "failure",
        "Docker build: cancelled",
        URL,
        ("completed", Some("cancelled"), rebuild),
    );
    check(
        "failure",
        "Build timed out after 10m",
        URL,
        ("completed", Some("timed_out"), rebuild),
    );
    check(
        "failure",
        "command \"sh\" \"-c\" \"sleep 9\": exceeded timeout of 1s",
        URL,
        ("completed", Some("timed_out"), rebuild),
    );
    // Only failures are cancelled or timed out; a prefix elsewhere means nothing.
    check(
        "success",
        "Nothing cancelled",
        URL,
        ("completed", Some("success"), rebuild),
    );
    check(
        "pending",
        &format!("{SKIPPED_PREFIX}soon"),
        URL,
        ("in_progress", None, &[]),
    );
    check(
        "failure",
        &format!("{ALLOWED_FAILURE_PREFIX}x"),
        URL,
        ("completed", Some("failure"), rebuild),
    );
}

#[test]
fn action_required_points_at_the_job() {
    let body = body(
        "ci/datakit/deploy",
        &told("pending", "Waiting for approval", URL),
        None,
    );
    assert_eq!(body["details_url"], URL);
    assert_eq!(body["output"]["title"], "Waiting for approval");
}

#[test]
fn a_failed_job_shows_the_end_of_its_log() {
    let log: String = (1..=40)
        .map(|i| format!("\x1b[31mline {i}\x1b[0m\n"))
        .collect();
    let body = body(
        "ci/datakit/test",
        &told("failure", "Failed: exit 1", URL),
        Some(log.as_bytes()),
    );
    let lines: Vec<String> = (11..=40).map(|i| format!("line {i}")).collect();
    assert_eq!(
        body["output"]["summary"],
        format!(
            "Failed: exit 1\n\nThe end of the log:\n\n```\n{}\n```\n\n[Logs and history]({URL})",
            lines.join("\n")
        )
    );
}

#[test]
fn only_failed_jobs_show_their_log() {
    for (state, description, shown) in [
        ("success", "Passed", false),
        ("pending", "Running", false),
        ("failure", "Skipped: build failed", false),
        ("success", "Failed (allowed): exit 1", true),
        ("failure", "Cancelled", true),
        ("failure", "Failed", true),
    ] {
        let body = body(
            "ci/datakit/test",
            &told(state, description, URL),
            Some(b"the log\n"),
        );
        let summary = body["output"]["summary"].as_str().expect("a summary");
        assert_eq!(summary.contains("the log"), shown, "{state} {description}");
    }
}

#[test]
fn terminal_lines() {
    let check = |log: &str, expect: &[&str]| {
        assert_eq!(last_lines(log.as_bytes(), 3), expect, "{log:?}");
    };
    check("", &[]);
    check("a\nb\n", &["a", "b"]);
    check("a\nb", &["a", "b"]);
    check("1\n2\n3\n4\n\n\n", &["2", "3", "4"]);
    check("\x1b[1;32mok\x1b[m\n", &["ok"]);
    check("\x1b]0;title\x07text\n", &["text"]);
    check("10%\r50%\r100%\ndone\r\n", &["100%", "done"]);
    check("a\tb\x07\n", &["a\tb"]);
    let long = "x".repeat(5_000);
    assert_eq!(last_lines(long.as_bytes(), 1)[0].len(), MAX_LINE_CHARS);
}

#[test]
fn a_fence_is_longer_than_any_backtick_run_in_the_log() {
    let lines = vec!["```rust".to_owned(), "code".to_owned(), "````".to_owned()];
    assert_eq!(fenced(&lines, 1_000), "`````\n```rust\ncode\n````\n`````");
}

#[test]
fn summaries_fit_githubs_limit() {
    let description = "d".repeat(100);
    let line = "y".repeat(MAX_LINE_CHARS);
    let log = format!("{line}\n").repeat(100);
    let body = body(
        "ci/datakit/test",
        &told("failure", &description, URL),
        Some(log.as_bytes()),
    );
    let summary = body["output"]["summary"].as_str().expect("a summary");
    assert!(summary.chars().count() <= MAX_SUMMARY_CHARS);
    // 30 lines of 1,000 characters fit: all are there, and the link too.
    assert_eq!(summary.matches(&line).count(), LOG_LINES);
    assert!(summary.ends_with(&format!("[Logs and history]({URL})")));
    // A block too big drops its first lines, never the link.
    let lines = vec![line.clone(); 3];
    let block = fenced(&lines, 2_100);
    assert_eq!(block.matches(&line).count(), 2);
    assert_eq!(fenced(&lines, 10), "");
}
