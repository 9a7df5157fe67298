//! The JSON form of a job's output kept in status branches (spec §3.8.1).

use datakit_ci_log::{LiveLogSpec, LogManager};
use datakit_ci_store::{BranchName, CommitId};
use datakit_ci_term::{
    JobOutput, JobResult, Logs, Problem, RebuildStateKind, RebuildTrigger, SavedLog, Status,
};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn saved(branch: &str, failed: bool) -> SavedLog {
    let commit: CommitId = COMMIT.parse().expect("hex");
    let trigger = RebuildTrigger::new(async { Ok(()) });
    SavedLog::new(
        "Build \"x\"",
        commit,
        BranchName::new(branch).expect("valid"),
        failed,
        Some(trigger),
    )
}

#[test]
fn outputs_serialise_with_the_original_key_order() {
    let output = JobOutput {
        result: JobResult::Failure("exit 1 \"oops\"".into()),
        logs: Logs::Saved(saved("b", true)),
    };
    assert_eq!(
        output.to_json(),
        format!(
            r#"{{"result":{{"status":"failure","descr":"exit 1 \"oops\""}},"logs":{{"title":"Build \"x\"","branch":"b","commit":"{COMMIT}","failed":true}}}}"#
        )
    );
}

#[test]
fn pairs_flatten_and_live_logs_come_back_empty() -> anyhow::Result<()> {
    let manager = LogManager::new();
    let live = manager.create(LiveLogSpec {
        branch: "live".into(),
        title: "t".into(),
        pending: "p".into(),
        cancel: None,
    })?;
    let logs = Logs::Pair(
        Box::new(Logs::Pair(
            Box::new(Logs::Empty),
            Box::new(Logs::Live(live)),
        )),
        Box::new(Logs::Saved(saved("s", false))),
    );
    let output = JobOutput {
        result: JobResult::Pending("building".into()),
        logs,
    };
    let json = output.to_json();
    assert_eq!(
        json,
        format!(
            r#"{{"result":{{"status":"pending","descr":"building"}},"logs":[{{"branch":"live"}},{{"title":"Build \"x\"","branch":"s","commit":"{COMMIT}","failed":false}}]}}"#
        )
    );
    let back = JobOutput::from_json(&json)?;
    assert_eq!(back.result, JobResult::Pending("building".into()));
    let leaves = back.logs.leaves();
    assert_eq!(leaves.len(), 1, "the live log cannot be restored");
    let datakit_ci_term::LogLeaf::Saved(restored) = leaves[0] else {
        panic!("saved log expected")
    };
    assert_eq!(restored.rebuild_state(), RebuildStateKind::Archived);
    assert_eq!(restored.branch().as_str(), "s");
    // Re-serialising what was read gives the same JSON minus the live log.
    assert_eq!(
        back.to_json(),
        format!(
            r#"{{"result":{{"status":"pending","descr":"building"}},"logs":{{"title":"Build \"x\"","branch":"s","commit":"{COMMIT}","failed":false}}}}"#
        )
    );
    Ok(())
}

#[test]
fn bad_json_is_rejected_with_a_clear_error() {
    for (text, expected) in [
        ("not json", "invalid job output JSON \"not json\""),
        (
            r#"{"result":{"status":"weird","descr":""},"logs":null}"#,
            "invalid result JSON",
        ),
        (
            r#"{"result":{"status":"success","descr":"x"},"logs":[1]}"#,
            "invalid logs JSON",
        ),
        (
            r#"{"result":{"status":"success","descr":"x"}}"#,
            "invalid output JSON",
        ),
    ] {
        let error = JobOutput::from_json(text).expect_err(text).to_string();
        assert!(error.starts_with(expected), "{text}: {error}");
    }
}

#[test]
fn statuses_convert_to_outputs() {
    let ok: JobOutput = Status::ok("fine".to_owned()).into();
    assert_eq!(ok.result, JobResult::Success("fine".into()));
    let pending: JobOutput = Status::<String> {
        result: Err(Problem::pending("wait")),
        output: Logs::Empty,
    }
    .into();
    assert_eq!(
        (pending.result.status_word(), pending.result.description()),
        ("pending", "wait")
    );
}

#[tokio::test]
async fn rebuild_triggers_run_once_and_mark_the_log() {
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = runs.clone();
    let trigger = RebuildTrigger::new(async move {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    });
    let commit: CommitId = COMMIT.parse().expect("hex");
    let log = SavedLog::new(
        "t",
        commit,
        BranchName::new("b").expect("valid"),
        false,
        Some(trigger),
    );
    let copy = log.clone();
    let first = log.request_rebuild().expect("rebuildable");
    assert_eq!(
        copy.rebuild_state(),
        RebuildStateKind::Rebuilding,
        "clones share the state"
    );
    assert!(copy.request_rebuild().is_none(), "already rebuilding");
    assert_eq!(first.clone().fire().await, Ok(()));
    assert_eq!(first.fire().await, Ok(()));
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
}
