//! `when` on branches, tags, pull requests and changed paths; `jobs_for`; schedules.

use std::time::SystemTime;

use datakit_ci_pipeline::TargetKind;

use crate::{ok, only_job};

fn branch(name: &str) -> TargetKind {
    TargetKind::Branch(name.into())
}

fn tag(name: &str) -> TargetKind {
    TargetKind::Tag(name.into())
}

fn pr() -> TargetKind {
    TargetKind::PullRequest {
        number: 7,
        base: "main".into(),
    }
}

fn applies(when: &str, target: &TargetKind, changed: Option<&[&str]>) -> bool {
    let job = only_job(&format!("steps:\n  a:\n    run: x\n    when: {when}\n"));
    let changed: Option<Vec<String>> = changed.map(|c| c.iter().map(|s| s.to_string()).collect());
    job.when.applies(target, changed.as_deref())
}

#[test]
fn no_when_applies_everywhere() {
    let job = only_job("steps:\n  a:\n    run: x\n");
    for target in [branch("main"), tag("v1"), pr()] {
        assert!(job.when.applies(&target, None));
        assert!(job.when.applies(&target, Some(&[])));
    }
    assert!(applies("{}", &branch("x"), None));
}

#[test]
fn branches_are_globs_within_one_level() {
    let when = r#"{branches: [main, "release/*"]}"#;
    assert!(applies(when, &branch("main"), None));
    assert!(applies(when, &branch("release/1.2"), None));
    assert!(!applies(when, &branch("release/1.2/hotfix"), None));
    assert!(!applies(when, &branch("feature"), None));
    // Tags and pull requests are not restricted by `branches`.
    assert!(applies(when, &tag("v1"), None));
    assert!(applies(when, &pr(), None));
    assert!(applies(
        r#"{branches: ["release/**"]}"#,
        &branch("release/1.2/hotfix"),
        None
    ));
}

#[test]
fn an_empty_list_means_none() {
    assert!(!applies("{branches: []}", &branch("main"), None));
    assert!(applies("{branches: []}", &tag("v1"), None));
    assert!(!applies("{tags: []}", &tag("v1"), None));
    assert!(applies("{tags: []}", &branch("main"), None));
}

#[test]
fn tags_and_pull_requests() {
    let when = r#"{tags: ["v*"], pull_requests: false}"#;
    assert!(applies(when, &tag("v1.2.0"), None));
    assert!(!applies(when, &tag("nightly"), None));
    assert!(!applies(when, &pr(), None));
    assert!(applies(when, &branch("main"), None));
    assert!(applies("{pull_requests: true}", &pr(), None));
}

#[test]
fn paths_match_changed_files() {
    let one_level = r#"{paths: ["src/*"]}"#;
    assert!(applies(
        one_level,
        &branch("main"),
        Some(&["README", "src/lib.rs"])
    ));
    assert!(!applies(one_level, &branch("main"), Some(&["src/a/b.rs"])));
    assert!(!applies(one_level, &branch("main"), Some(&[])));
    // Unknown changes restrict nothing.
    assert!(applies(one_level, &branch("main"), None));
    let any_depth = r#"{paths: ["src/**"]}"#;
    assert!(applies(any_depth, &branch("main"), Some(&["src/a/b.rs"])));
    assert!(!applies(
        any_depth,
        &branch("main"),
        Some(&["docs/src/a.rs"])
    ));
    assert!(applies(
        r#"{paths: ["**/*.rs"]}"#,
        &pr(),
        Some(&["a/b/c.rs"])
    ));
    // Both kinds of restriction must pass.
    let both = r#"{branches: [main], paths: ["src/**"]}"#;
    assert!(!applies(both, &branch("dev"), Some(&["src/a.rs"])));
    assert!(!applies(both, &branch("main"), Some(&["docs/a.md"])));
    assert!(applies(both, &branch("main"), Some(&["src/a.rs"])));
}

#[test]
fn jobs_for_keeps_a_job_whose_need_does_not_apply() {
    let pipeline = ok(r#"steps:
  build:
    run: make
    when: {branches: [main]}
  test:
    run: make test
    needs: [build]
  docs:
    run: make docs
    when: {paths: ["docs/**"]}
"#);
    let names = |target: &TargetKind, changed: Option<&[String]>| -> Vec<String> {
        pipeline
            .jobs_for(target, changed)
            .iter()
            .map(|j| j.name.clone())
            .collect()
    };
    assert_eq!(names(&branch("main"), None), ["build", "test", "docs"]);
    assert_eq!(
        names(&branch("dev"), Some(&["src/a.rs".to_owned()])),
        ["test"]
    );
    // The need stays on the job; callers drop needs on jobs not returned.
    let jobs = pipeline.jobs_for(&branch("dev"), None);
    assert_eq!(jobs[0].needs, ["build"]);
}

fn time(text: &str) -> SystemTime {
    humantime::parse_rfc3339(text).expect("a valid time")
}

fn show(time: Option<SystemTime>) -> String {
    time.map(|t| humantime::format_rfc3339(t).to_string())
        .unwrap_or_default()
}

#[test]
fn schedule_latest_and_next() {
    let job = only_job("steps:\n  a:\n    run: x\n    schedule: \"0 3 * * *\"\n");
    let schedule = job.schedule.expect("a schedule");
    let noon = time("2026-12-07T12:00:00Z");
    assert_eq!(
        show(schedule.latest_at_or_before(noon)),
        "2026-12-07T03:00:00Z"
    );
    assert_eq!(show(schedule.next_after(noon)), "2026-12-08T03:00:00Z");
    // At the very time, `latest_at_or_before` includes it and `next_after` does not.
    let three = time("2026-12-07T03:00:00Z");
    assert_eq!(
        show(schedule.latest_at_or_before(three)),
        "2026-12-07T03:00:00Z"
    );
    assert_eq!(show(schedule.next_after(three)), "2026-12-08T03:00:00Z");
    // Seconds and fractions past the minute do not move the answer.
    let later = time("2026-12-07T03:00:30.5Z");
    assert_eq!(
        show(schedule.latest_at_or_before(later)),
        "2026-12-07T03:00:00Z"
    );
    assert_eq!(show(schedule.next_after(later)), "2026-12-08T03:00:00Z");

    let job = only_job("steps:\n  a:\n    run: x\n    schedule: \"30 1 * * MON\"\n");
    let schedule = job.schedule.expect("a schedule");
    // 2026-12-07 is a Monday.
    assert_eq!(
        show(schedule.latest_at_or_before(noon)),
        "2026-12-07T01:30:00Z"
    );
    assert_eq!(show(schedule.next_after(noon)), "2026-12-14T01:30:00Z");
    assert_eq!(
        show(schedule.latest_at_or_before(time("2026-12-07T01:29:59Z"))),
        "2026-11-30T01:30:00Z"
    );
}
