//! Matrix expansion, job names, needs, and the job digest.

use std::time::Duration;

use datakit_ci_pipeline::{Job, RetryOn, Runner};

use crate::{names, ok, only_job};

#[test]
fn matrix_jobs_in_order_first_key_slowest() {
    let pipeline = ok(r#"steps:
  build:
    run: make
  test:
    needs: [build]
    matrix:
      os: [linux, macos]
      rust: [1.90, 1.95, true]
    env: {os: overridden, KEEP: 1}
    run: cargo test
  after:
    needs: [test]
    run: echo
"#);
    assert_eq!(
        names(&pipeline),
        [
            "build",
            "test (os=linux, rust=1.90)",
            "test (os=linux, rust=1.95)",
            "test (os=linux, rust=true)",
            "test (os=macos, rust=1.90)",
            "test (os=macos, rust=1.95)",
            "test (os=macos, rust=true)",
            "after",
        ]
    );
    let job = pipeline
        .job("test (os=macos, rust=1.95)")
        .expect("the job exists");
    assert_eq!(job.step, "test");
    assert_eq!(
        job.matrix,
        [
            ("os".to_owned(), "macos".to_owned()),
            ("rust".to_owned(), "1.95".to_owned())
        ]
    );
    // Matrix values are in the environment, over an `env` entry of the same name.
    assert_eq!(job.env["os"], "macos");
    assert_eq!(job.env["rust"], "1.95");
    assert_eq!(job.env["KEEP"], "1");
    assert_eq!(job.needs, ["build"]);
    assert_eq!(job.context(), "ci/datakit/test (os=macos, rust=1.95)");
    // Needing a matrix step is needing all its jobs, in expansion order.
    let after = pipeline.job("after").expect("the job exists");
    assert_eq!(after.needs, names(&pipeline)[1..7]);
}

#[test]
fn needs_keep_file_order_of_the_needs_list() {
    let pipeline = ok(r#"steps:
  a: {run: x}
  b: {run: x}
  c:
    run: x
    needs: [b, a, b]
"#);
    assert_eq!(
        pipeline.job("c").map(|j| j.needs.clone()),
        Some(vec!["b".into(), "a".into()])
    );
}

/// One edit of a job, for the digest tests.
type Change = Box<dyn Fn(&mut Job)>;

fn sample() -> Job {
    only_job(
        r#"steps:
  test:
    run: cargo test
    image: rust:1.95
    env: {A: "1"}
    secrets: [TOKEN]
    timeout: 10m
    retry: {attempts: 2, on: [timeout]}
    schedule: "0 3 * * *"
    artifacts: [out]
    inputs: [src]
"#,
    )
}

#[test]
fn digest_is_fixed_for_a_fixed_job() {
    // Pinned: if this changes, every job of every repository looks new to the CI.
    assert_eq!(
        sample().definition_digest(),
        "b8bb75567a269764261c8baeb5ea5cf5ec86cabc216950f7438cf11656265483"
    );
    assert_eq!(sample().definition_digest(), sample().definition_digest());
}

#[test]
fn digest_changes_with_every_field_but_when() {
    let base = sample();
    let digest = base.definition_digest();
    let mut with_when = only_job(
        r#"steps:
  test:
    run: cargo test
    image: rust:1.95
    env: {A: "1"}
    secrets: [TOKEN]
    timeout: 10m
    retry: {attempts: 2, on: [timeout]}
    schedule: "0 3 * * *"
    artifacts: [out]
    inputs: [src]
    when: {branches: [main], pull_requests: false}
"#,
    );
    assert_ne!(with_when.when, base.when);
    assert_eq!(
        with_when.definition_digest(),
        digest,
        "when is not part of the digest"
    );
    with_when.matrix = vec![("x".into(), "y".into())];
    assert_eq!(
        with_when.definition_digest(),
        digest,
        "matrix shows in name and env"
    );

    let other_schedule = only_job("steps:\n  a:\n    run: x\n    schedule: \"0 4 * * *\"\n")
        .schedule
        .expect("a schedule");
    let changes: Vec<(&str, Change)> = vec![
        ("name", Box::new(|j| j.name.push('2'))),
        ("run", Box::new(|j| j.run.push(' '))),
        ("runner host", Box::new(|j| j.runner = Runner::Host)),
        (
            "runner image",
            Box::new(|j| j.runner = Runner::Image("rust:1.96".into())),
        ),
        (
            "runner dockerfile",
            Box::new(|j| {
                j.runner = Runner::Dockerfile {
                    file: "Dockerfile".into(),
                    context: ".".into(),
                    args: Default::default(),
                }
            }),
        ),
        (
            "env value",
            Box::new(|j| drop(j.env.insert("A".into(), "2".into()))),
        ),
        (
            "env name",
            Box::new(|j| drop(j.env.insert("B".into(), "1".into()))),
        ),
        ("secrets", Box::new(|j| j.secrets.push("OTHER".into()))),
        (
            "timeout",
            Box::new(|j| j.timeout = Duration::from_secs(601)),
        ),
        ("attempts", Box::new(|j| j.retry.attempts = 3)),
        (
            "retry on",
            Box::new(|j| j.retry.on.push(RetryOn::ExitCode(1))),
        ),
        ("allow_failure", Box::new(|j| j.allow_failure = true)),
        ("manual", Box::new(|j| j.manual = true)),
        ("no schedule", Box::new(|j| j.schedule = None)),
        (
            "schedule",
            Box::new(move |j| j.schedule = Some(other_schedule.clone())),
        ),
        ("artifacts", Box::new(|j| j.artifacts.push("more".into()))),
        ("inputs", Box::new(|j| j.inputs.clear())),
        ("needs", Box::new(|j| j.needs.push("build".into()))),
        ("step", Box::new(|j| j.step.push('2'))),
    ];
    for (what, change) in changes {
        let mut job = base.clone();
        change(&mut job);
        if what == "step" {
            // The step is in the name already; it does not change the work.
            assert_eq!(job.definition_digest(), digest, "{what}");
        } else {
            assert_ne!(
                job.definition_digest(),
                digest,
                "{what} must change the digest"
            );
        }
    }
}

#[test]
fn digest_fields_cannot_run_into_each_other() {
    let mut a = sample();
    let mut b = sample();
    a.secrets = vec!["AB".into()];
    b.secrets = vec!["A".into(), "B".into()];
    assert_ne!(a.definition_digest(), b.definition_digest());
    a.run = "x\ninputs [0]".into();
    b.run = "x".into();
    assert_ne!(a.definition_digest(), b.definition_digest());
}
