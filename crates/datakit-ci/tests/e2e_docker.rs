//! End-to-end tests of issue 16 through the real binary, the real Docker engine and real Git
//! repositories: tests in containers (`--test NAME@IMAGE=COMMAND`), an image built from the
//! repository (`--docker-build`) and tests in it (`--test NAME@build:STEP=COMMAND`), and the
//! containers a `kill -9` left, removed by the next start.

mod common;

use common::{Ci, Repo, State, run_to_exit, wait_until};
use datakit_ci_testkit::docker::{containers_of_instance, ensure_busybox_image, remove_instance};

/// Removes what the CI of a state directory made on the Docker engine, when the test ends.
struct Cleanup<'a>(&'a State);

impl Cleanup<'_> {
    /// The CI's instance id (recorded in the state directory once it started its Docker hosts).
    fn instance(&self) -> Option<String> {
        std::fs::read_to_string(self.0.dir().join("docker-instance"))
            .ok()
            .map(|id| id.trim().to_owned())
    }

    /// The containers of the CI's instance.
    fn containers(&self) -> Vec<String> {
        self.instance()
            .map(|instance| containers_of_instance(&instance).expect("the Docker daemon answers"))
            .unwrap_or_default()
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Some(instance) = self.instance()
            && let Err(e) = remove_instance(&instance)
        {
            eprintln!("cannot remove the test's containers: {e}");
        }
    }
}

#[test]
fn tests_run_in_images_and_in_an_image_built_from_the_repository() {
    let busybox = ensure_busybox_image().expect("the test image");
    let repo = Repo::new("boxed");
    let main = repo.rev("main");
    let dockerfile = format!("FROM {busybox}\nRUN echo built > /built\n");
    let head = repo.commit(&main, "Add a Dockerfile", &[("Dockerfile", &dockerfile)]);
    repo.set_ref("refs/heads/main", &head);
    let state = State::new();
    let cleanup = Cleanup(&state);

    let ci = Ci::start(
        &[&repo],
        &[
            (
                &format!("unit@{busybox}"),
                "test \"$PWD\" = /src && cat README",
            ),
            ("failing@datakit-ci-test/busybox:1", "exit 4"),
            ("check@build:image", "grep built /built"),
            ("shell", "true"),
        ],
        &state,
        &["--docker-build", "image=Dockerfile", "--docker-jobs", "2"],
    );

    ci.wait_for_line("local/boxed/heads/main unit: success (Passed)");
    ci.wait_for_line(
        r#"local/boxed/heads/main failing: failure (command "sh" "-c" "exit 4" exited with status 4)"#,
    );
    ci.wait_for("the image built", |line| {
        line.starts_with("local/boxed/heads/main image: success (Built ")
    });
    ci.wait_for_line("local/boxed/heads/main check: success (Passed)");
    ci.wait_for_line("local/boxed/heads/main shell: success (Passed)");
    state.wait_for_status(&ci, "local/boxed", &head, "check", "success");
    // The step's log is on its cache branch, and no container is left.
    let branches = datakit_ci_testkit::git(&state.store(), &["branch", "--list", "docker-*"]);
    assert!(branches.contains("docker-run-of-unit-in-"), "{branches}");
    assert!(branches.contains("docker-build-image-of-"), "{branches}");
    wait_until(
        "no container left",
        || cleanup.containers().is_empty().then_some(()),
        || format!("{:?}", cleanup.containers()),
    );
    drop(ci);
}

#[test]
fn containers_left_by_a_killed_ci_are_removed_at_the_next_start() {
    let busybox = ensure_busybox_image().expect("the test image");
    let repo = Repo::new("killed");
    let state = State::new();
    let cleanup = Cleanup(&state);
    let slow = format!("slow@{busybox}");

    let mut ci = Ci::start(&[&repo], &[(&slow, "echo started; sleep 600")], &state, &[]);
    let left = wait_until(
        "the container to run",
        || {
            let containers = cleanup.containers();
            (!containers.is_empty()).then_some(containers)
        },
        || "no container".to_owned(),
    );
    ci.kill();
    // The guardian kills processes, not containers: the container outlives the CI.
    assert_eq!(cleanup.containers(), left);

    // Restarted (with a quicker command): the leftover is removed and the job finishes.
    let ci = Ci::start(&[&repo], &[(&slow, "echo quick")], &state, &[]);
    ci.wait_for_line("local/killed/heads/main slow: success (Passed)");
    wait_until(
        "the leftover container to be removed",
        || cleanup.containers().is_empty().then_some(()),
        || format!("{:?}", cleanup.containers()),
    );
    drop(ci);
}

#[test]
fn stopping_the_ci_removes_its_running_containers() {
    let busybox = ensure_busybox_image().expect("the test image");
    let repo = Repo::new("stopped");
    let state = State::new();
    let cleanup = Cleanup(&state);
    let mut ci = Ci::start(
        &[&repo],
        &[(&format!("slow@{busybox}"), "sleep 600")],
        &state,
        &["-v"],
    );
    wait_until(
        "the container to run",
        || (!cleanup.containers().is_empty()).then_some(()),
        || ci.report(),
    );
    let status = ci.terminate();
    assert!(status.success(), "{status:?}\n{}", ci.report());
    assert_eq!(
        cleanup.containers(),
        Vec::<String>::new(),
        "{}",
        ci.report()
    );
}

#[test]
fn docker_usage_errors_exit_with_status_2() {
    let repo = Repo::new("usage");
    let state = State::new();
    for (extra, message) in [
        (
            &["--test", "t@build:nothing=true"][..],
            r#"datakit-ci: --test "t@build:nothing": no --docker-build nothing=DOCKERFILE"#,
        ),
        (
            &["--test", "t=true", "--docker-host", "far=ftp://x"],
            r#"datakit-ci: --docker-host "far=ftp://x": invalid Docker host URL "ftp://x""#,
        ),
    ] {
        let mut args: Vec<std::ffi::OsString> = vec!["--repo".into(), repo.path().into()];
        args.push("--state-dir".into());
        args.push(state.dir().into());
        args.extend(extra.iter().map(std::ffi::OsString::from));
        let (status, stdout, stderr) = run_to_exit(args);
        assert_eq!(status.code(), Some(2), "{extra:?}: {stderr:?}");
        assert_eq!(stdout, Vec::<String>::new());
        assert_eq!(stderr.len(), 1, "{stderr:?}");
        assert!(stderr[0].starts_with(message), "{}", stderr[0]);
    }
}
