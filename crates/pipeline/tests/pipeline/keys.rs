//! Every key, read right.

use std::collections::BTreeMap;
use std::time::Duration;

use datakit_ci_pipeline::{FILE_NAME, Retry, RetryOn, Runner, json_schema};

use crate::{ok, only_job};

#[test]
fn a_step_with_only_run_has_the_defaults() {
    let job = only_job("steps:\n  build:\n    run: make\n");
    assert_eq!(job.name, "build");
    assert_eq!(job.step, "build");
    assert_eq!(job.run, "make");
    assert_eq!(job.runner, Runner::Host);
    assert!(job.matrix.is_empty());
    assert!(job.needs.is_empty());
    assert!(job.env.is_empty());
    assert!(job.secrets.is_empty());
    assert_eq!(job.timeout, Duration::from_secs(3600));
    assert_eq!(
        job.retry,
        Retry {
            attempts: 1,
            on: vec![]
        }
    );
    assert_eq!(job.when, Default::default());
    assert!(!job.allow_failure);
    assert!(!job.manual);
    assert_eq!(job.schedule, None);
    assert!(job.artifacts.is_empty());
    assert!(job.inputs.is_empty());
    assert_eq!(job.context(), "ci/datakit/build");
    assert_eq!(FILE_NAME, ".datakit-ci.yml");
}

#[test]
fn every_key_is_read() {
    let job = only_job(
        r#"steps:
  test:
    run: |
      cargo test
      echo done
    image: rust:1.95
    env: {RUST_BACKTRACE: 1, PROFILE: release, DEBUG: false, RATIO: 1.50}
    secrets: [CRATES_IO_TOKEN, _other]
    timeout: 1h 30m
    retry: {attempts: 3, on: [timeout, infrastructure, 137]}
    when: {branches: [main], tags: ["v*"], pull_requests: false, paths: ["src/**"]}
    allow_failure: true
    manual: true
    schedule: "0 3 * * MON-FRI"
    artifacts: [target/release/app, "reports/*.xml"]
    inputs: [src, Cargo.toml]
    pool: gpu
    stall_timeout: 10m
"#,
    );
    assert_eq!(job.run, "cargo test\necho done\n");
    assert_eq!(job.pool.as_deref(), Some("gpu"));
    assert_eq!(job.stall_timeout, Some(Duration::from_secs(600)));
    assert_eq!(job.runner, Runner::Image("rust:1.95".into()));
    let env: BTreeMap<String, String> = [
        ("DEBUG", "false"),
        ("PROFILE", "release"),
        ("RATIO", "1.50"),
        ("RUST_BACKTRACE", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(job.env, env);
    assert_eq!(job.secrets, ["CRATES_IO_TOKEN", "_other"]);
    assert_eq!(job.timeout, Duration::from_secs(90 * 60));
    assert_eq!(
        job.retry,
        Retry {
            attempts: 3,
            on: vec![
                RetryOn::Timeout,
                RetryOn::Infrastructure,
                RetryOn::ExitCode(137)
            ]
        }
    );
    assert_eq!(job.when.branches(), Some(&["main".to_owned()][..]));
    assert_eq!(job.when.tags(), Some(&["v*".to_owned()][..]));
    assert!(!job.when.pull_requests());
    assert_eq!(job.when.paths(), Some(&["src/**".to_owned()][..]));
    assert!(job.allow_failure);
    assert!(job.manual);
    assert_eq!(
        job.schedule.as_ref().map(|s| s.text()),
        Some("0 3 * * MON-FRI")
    );
    assert_eq!(job.artifacts, ["target/release/app", "reports/*.xml"]);
    assert_eq!(job.inputs, ["src", "Cargo.toml"]);
}

#[test]
fn scalars_in_text_keys_are_taken_as_written() {
    // `y` is a boolean to YAML 1.1 and `1.10` a number; as a script or value they are text.
    let job = only_job("steps:\n  a:\n    run: y\n    env: {V: 1.10, W: yes}\n");
    assert_eq!(job.run, "y");
    assert_eq!(job.env["V"], "1.10");
    assert_eq!(job.env["W"], "yes");
}

#[test]
fn dockerfile_as_a_path_builds_in_the_repository_root() {
    let job = only_job("steps:\n  a:\n    run: make\n    dockerfile: ci/Dockerfile\n");
    assert_eq!(
        job.runner,
        Runner::Dockerfile {
            file: "ci/Dockerfile".into(),
            context: ".".into(),
            args: BTreeMap::new()
        }
    );
}

#[test]
fn dockerfile_as_a_mapping() {
    let job = only_job(
        "steps:\n  a:\n    run: make\n    dockerfile:\n      file: ci/Dockerfile\n      context: ci\n      args: {RUST: 1.95, BASE: debian}\n",
    );
    let args = [("BASE", "debian"), ("RUST", "1.95")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(
        job.runner,
        Runner::Dockerfile {
            file: "ci/Dockerfile".into(),
            context: "ci".into(),
            args
        }
    );
    let job = only_job("steps:\n  a:\n    run: make\n    dockerfile: {file: Dockerfile}\n");
    assert_eq!(
        job.runner,
        Runner::Dockerfile {
            file: "Dockerfile".into(),
            context: ".".into(),
            args: BTreeMap::new()
        }
    );
}

#[test]
fn timeouts_in_range_are_read() {
    for (text, seconds) in [
        ("90s", 90),
        ("30m", 1800),
        ("1h", 3600),
        ("24h", 86400),
        ("1s", 1),
    ] {
        let job = only_job(&format!("steps:\n  a:\n    run: x\n    timeout: {text}\n"));
        assert_eq!(job.timeout, Duration::from_secs(seconds), "{text}");
    }
}

#[test]
fn retry_on_alone_keeps_one_attempt() {
    let job = only_job("steps:\n  a:\n    run: x\n    retry: {on: [1, 255]}\n");
    assert_eq!(
        job.retry,
        Retry {
            attempts: 1,
            on: vec![RetryOn::ExitCode(1), RetryOn::ExitCode(255)]
        }
    );
    let job = only_job("steps:\n  a:\n    run: x\n    retry: {attempts: 10}\n");
    assert_eq!(job.retry.attempts, 10);
}

#[test]
fn a_file_with_comments_and_an_anchor_is_read() {
    let pipeline = ok("# CI\nsteps:\n  a: &base\n    run: make\n  b: *base # the same\n");
    assert_eq!(pipeline.jobs().len(), 2);
    assert_eq!(pipeline.job("b").map(|j| j.run.as_str()), Some("make"));
    assert!(pipeline.job("c").is_none());
}

#[test]
fn json_schema_describes_the_steps() {
    let schema = json_schema();
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["required"], serde_json::json!(["steps"]));
    let step_ref = &schema["properties"]["steps"]["additionalProperties"]["$ref"];
    assert_eq!(step_ref, "#/$defs/Step");
    let step = &schema["$defs"]["Step"];
    assert_eq!(step["required"], serde_json::json!(["run"]));
    assert_eq!(step["additionalProperties"], false);
    let mut keys: Vec<&str> = step["properties"]
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "allow_failure",
            "artifacts",
            "dockerfile",
            "env",
            "image",
            "inputs",
            "manual",
            "matrix",
            "needs",
            "pool",
            "retry",
            "run",
            "schedule",
            "secrets",
            "stall_timeout",
            "timeout",
            "when"
        ]
    );
    // It round-trips as JSON text, as an editor would load it.
    let text = serde_json::to_string(&schema).expect("a JSON value serializes");
    let again: serde_json::Value = serde_json::from_str(&text).expect("the schema is valid JSON");
    assert_eq!(again, schema);
}

#[test]
fn windows_line_endings_and_a_byte_order_mark() {
    let job = only_job("\u{feff}steps:\r\n  a:\r\n    run: x\r\n    matrix: {V: [1.10]}\r\n");
    assert_eq!(job.name, "a (V=1.10)");
    assert_eq!(job.env["V"], "1.10");
    crate::check_err(
        "steps:\r\n  a:\r\n    run: x\r\n    nedds: [b]\r\n",
        r#"4:5: unknown key "nedds", did you mean "needs"?"#,
    );
}
