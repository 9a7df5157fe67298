//! Issue 17 end to end, steps in Docker images: the binary without `--test` runs a pipeline
//! file's `image` and `dockerfile` steps on the real Docker engine (the image built from the
//! repository first, and reused while its inputs do not change), and a Docker daemon that does
//! not answer fails only the steps in images; a step in an image keeps its artifacts, copied
//! out of its container.

mod common;

use common::{Ci, Repo, State, api_artifacts, free_port, http_get_bytes};
use datakit_ci_testkit::docker::{ensure_busybox_image, remove_instance};

/// Removes what the CI of a state directory made on the Docker engine, when the test ends.
struct Cleanup<'a>(&'a State);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let instance = std::fs::read_to_string(self.0.dir().join("docker-instance"))
            .ok()
            .map(|id| id.trim().to_owned());
        if let Some(instance) = instance
            && let Err(e) = remove_instance(&instance)
        {
            eprintln!("cannot remove the test's containers: {e}");
        }
    }
}

/// The description of a job of `commit` of `local/app` once it has state `wanted`.
fn description(state: &State, ci: &Ci, commit: &str, job: &str, wanted: &str) -> String {
    state.wait_for_description(ci, "local/app", commit, job, wanted)
}

#[test]
fn issue_17_steps_run_in_images_and_in_images_built_from_the_repository() {
    let busybox = ensure_busybox_image().expect("the test image");
    let file = format!(
        r#"steps:
  boxed:
    image: {busybox}
    run: test "$PWD" = /src && test -f docs/index && test "$GREETING" = hi && test -n "$DATAKIT_CI_COMMIT" && test "$DATAKIT_CI_BRANCH" = main
    env:
      GREETING: hi
  failing:
    image: {busybox}
    run: exit 3
  built:
    dockerfile:
      file: ci/Dockerfile
      context: ci
    run: grep built /built && test "$(cat /src/ci/Dockerfile | head -c 4)" = FROM
    inputs: [src]
  host:
    run: "true"
"#
    );
    let repo = Repo::new("app");
    let initial = repo.rev("main");
    let first = repo.commit(
        &initial,
        "Add the pipeline",
        &[
            (".datakit-ci.yml", &file),
            (
                "ci/Dockerfile",
                &format!("FROM {busybox}\nRUN echo built > /built\n"),
            ),
            ("docs/index", "a\n"),
        ],
    );
    repo.set_ref("refs/heads/main", &first);
    let state = State::new();
    let _cleanup = Cleanup(&state);
    let ci = Ci::start(&[&repo], &[], &state, &[]);

    for job in ["boxed", "built", "host"] {
        assert_eq!(
            description(&state, &ci, &first, job, "success"),
            "Passed",
            "{job}"
        );
    }
    let failure = description(&state, &ci, &first, "failing", "failure");
    assert!(failure.contains("exited with status 3"), "{failure}");
    // The image was built on its own cache branch, and the step's log shows the container.
    let branches = state.branches();
    assert!(
        branches
            .iter()
            .any(|b| b.starts_with("docker-build-pipeline-")),
        "{branches:?}"
    );
    let step = branches
        .iter()
        .find(|b| b.starts_with("pipeline-boxed-of-"))
        .expect("the step's cache branch");
    let log = state.show(step, "log").expect("the step's log");
    assert!(log.contains("Running \"sh\" \"-c\""), "{log}");

    // A change outside the built step's inputs and build context reuses its run (same inputs,
    // same image); a step whose inputs are the whole tree runs again.
    let docs = repo.commit(&first, "Docs", &[("docs/index", "b\n")]);
    repo.set_ref("refs/heads/main", &docs);
    assert_eq!(
        description(&state, &ci, &docs, "boxed", "success"),
        "Passed"
    );
    assert_eq!(
        description(&state, &ci, &docs, "built", "success"),
        format!("Unchanged since {}", &first[..7])
    );
}

#[test]
fn issue_17_a_docker_daemon_that_does_not_answer_fails_only_the_steps_in_images() {
    let repo = Repo::new("app");
    let initial = repo.rev("main");
    let file = "steps:
  boxed:
    image: datakit-ci-test/busybox:1
    run: \"true\"
    retry:
      attempts: 2
      on: [infrastructure]
  host:
    run: \"true\"
";
    let first = repo.commit(&initial, "Add the pipeline", &[(".datakit-ci.yml", file)]);
    repo.set_ref("refs/heads/main", &first);
    let state = State::new();
    let socket = state.dir().join("no-docker.sock");
    let host = format!("gone=unix://{}", socket.display());
    let ci = Ci::start(&[&repo], &[], &state, &["--docker-host", &host]);

    assert_eq!(
        description(&state, &ci, &first, "host", "success"),
        "Passed"
    );
    let failure = description(&state, &ci, &first, "boxed", "failure");
    assert!(
        failure.starts_with(&format!(
            "cannot reach the Docker daemon at unix://{}",
            socket.display()
        )),
        "{failure}"
    );
    // An unreachable daemon is an infrastructure failure: retried, in the same log.
    let branch = state
        .branches()
        .into_iter()
        .find(|b| b.starts_with("pipeline-boxed-of-"))
        .expect("the step's cache branch");
    let log = state.show(&branch, "log").expect("the step's log");
    assert!(
        log.contains(
            "=== Attempt 2 of 2 (after an infrastructure failure: cannot reach the Docker daemon at"
        ),
        "{log}"
    );
}

#[test]
fn issue_17_a_step_in_an_image_keeps_its_artifacts_copied_out_of_its_container() {
    let busybox = ensure_busybox_image().expect("the test image");
    let file = format!(
        r#"steps:
  boxed:
    image: {busybox}
    run: mkdir -p reports/deep && printf '\001\377box-%s\n' $((6*7)) > reports/unit.xml && echo d > reports/deep/d.xml && echo no > reports/skip.txt && ln -s /etc/passwd reports/leak.xml && exit 2
    artifacts: ["reports/**/*.xml", missing]
"#
    );
    let repo = Repo::new("app");
    let initial = repo.rev("main");
    let first = repo.commit(&initial, "Add the pipeline", &[(".datakit-ci.yml", &file)]);
    repo.set_ref("refs/heads/main", &first);
    let state = State::new();
    let _cleanup = Cleanup(&state);
    let port = free_port();
    let listen = format!("http://127.0.0.1:{port}");
    let ci = Ci::start(&[&repo], &[], &state, &["--listen", &listen]);

    // A failed step keeps its files too.
    // (The description is cut at 140 bytes, inside the long command: the log has it whole.)
    description(&state, &ci, &first, "boxed", "failure");
    let listed = api_artifacts(&ci, port, &first, "boxed", 2);
    let names: Vec<(&str, u64)> = listed.iter().map(|(n, s, _)| (n.as_str(), *s)).collect();
    assert_eq!(names, [("reports/deep/d.xml", 2), ("reports/unit.xml", 9)]);
    let (head, body) = http_get_bytes(port, &listed[1].2);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"\x01\xffbox-42\n");
    let branch = state
        .branches()
        .into_iter()
        .find(|b| b.starts_with("pipeline-boxed-of-"))
        .expect("the step's cache branch");
    let log = state.show(&branch, "log").expect("the step's log");
    assert!(
        log.contains("Artifact reports/leak.xml not kept: a link (links are never followed)"),
        "{log}"
    );
    assert!(
        log.contains("Warning: the artifact pattern \"missing\" matched no file"),
        "{log}"
    );
    assert!(log.contains("exited with status 2"), "{log}");
}
