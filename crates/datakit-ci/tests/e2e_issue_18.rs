//! Issue 18 end to end: the binary with `--executor swarm` runs a pipeline file's steps in
//! images as services of a real multi-node swarm (the testkit's cluster, with its registry),
//! honours a step's `pool`, and after `kill -9` mid-run a restarted CI ends every job with the
//! right status exactly once.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Ci, Repo, State, free_port, http_get, wait_until};
use datakit_ci_testkit::docker::{ensure_busybox_image, remove_instance};
use datakit_ci_testkit::swarm::Cluster;

/// The CI instance of a state directory.
fn instance(state: &State) -> Option<String> {
    std::fs::read_to_string(state.dir().join("docker-instance"))
        .ok()
        .map(|id| id.trim().to_owned())
}

/// The Swarm services of `instance`.
fn services(instance: &str) -> Vec<String> {
    let output = Command::new("docker")
        .args([
            "service",
            "ls",
            "--quiet",
            "--filter",
            &format!("label=datakit-ci.instance={instance}"),
        ])
        .output()
        .expect("run docker service ls");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The Swarm services of `instance` running the pipeline step `step`.
fn services_of_step(instance: &str, step: &str) -> Vec<String> {
    let prefix = format!("pipeline-{step}-of-");
    services(instance)
        .into_iter()
        .filter(|service| {
            Command::new("docker")
                .args([
                    "service",
                    "inspect",
                    "--format",
                    "{{index .Spec.Labels \"datakit-ci.key\"}}",
                    service,
                ])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).starts_with(&prefix))
        })
        .collect()
}

/// Removes what the CI of a state directory made, when the test ends.
struct Cleanup<'a>(&'a State, &'a Cluster);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Some(instance) = instance(self.0) {
            let label = format!("datakit-ci.instance={instance}");
            if let Err(e) = self.1.remove_services(&label) {
                eprintln!("cannot remove the test's services: {e}");
            }
            if let Err(e) = remove_instance(&instance) {
                eprintln!("cannot remove the test's images: {e}");
            }
        }
    }
}

/// The saved log of the job `job` (its cache branch `pipeline-<job>-of-…`).
fn saved_log(state: &State, job: &str) -> String {
    let prefix = format!("pipeline-{job}-of-");
    let branch = state
        .branches()
        .into_iter()
        .find(|b| b.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no branch {prefix}…"));
    state.show(&branch, "log").unwrap_or_default()
}

#[test]
fn issue_18_steps_run_on_the_swarm_and_a_killed_ci_collects_them_once() {
    let cluster = Cluster::ensure(3).expect("the test swarm");
    let registry = cluster.registry().address().to_owned();
    let busybox = ensure_busybox_image().expect("the test image");
    let file = format!(
        r#"steps:
  quick:
    image: {busybox}
    run: test "$PWD" = /src && test -f README && echo quick-$((1+1))
  slow:
    image: {busybox}
    run: echo slow-$((1+1)); sleep 8; echo slow-$((2+1)); exit 0
  nowhere:
    image: {busybox}
    pool: no-such-pool
    timeout: 15s
    run: "true"
"#
    );
    let repo = Repo::new("app");
    let initial = repo.rev("main");
    let first = repo.commit(
        &initial,
        "Add the pipeline",
        &[(".datakit-ci.yml", &file), ("README", "hi\n")],
    );
    repo.set_ref("refs/heads/main", &first);
    let state = State::new();
    let _cleanup = Cleanup(&state, &cluster);
    let args = [
        "--executor",
        "swarm",
        "--registry",
        &registry,
        "--docker-jobs",
        "4",
    ];
    let mut ci = Ci::start(&[&repo], &[], &state, &args);
    assert_eq!(
        state.wait_for_description(&ci, "local/app", &first, "quick", "success"),
        "Passed"
    );
    let instance = instance(&state).expect("the CI's instance id");
    // `slow` runs as a service: kill the CI while it does.
    wait_until(
        "the slow step's service",
        || (services_of_step(&instance, "slow").len() == 1).then_some(()),
        || ci.report(),
    );
    std::thread::sleep(Duration::from_secs(2));
    ci.kill();
    // The service ends while no CI runs.
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(
        services_of_step(&instance, "slow").len(),
        1,
        "the killed CI's service is gone"
    );

    let ci = Ci::start(&[&repo], &[], &state, &args);
    assert_eq!(
        state.wait_for_description(&ci, "local/app", &first, "slow", "success"),
        "Passed"
    );
    let log = saved_log(&state, "slow");
    assert!(log.contains("Collecting Swarm service"), "{log}");
    // Swarm at times gives no log for a task that ended while nobody followed it; the
    // executor must then say so rather than show an empty log.
    assert!(
        (log.contains("slow-2") && log.contains("slow-3"))
            || log.contains("Swarm gave no log for this service"),
        "{log}"
    );
    assert!(
        !log.contains("as Swarm service"),
        "the step ran again:\n{log}"
    );

    let description = state.wait_for_description(&ci, "local/app", &first, "nowhere", "failure");
    assert!(description.contains("timed out after 15s"), "{description}");
    let log = saved_log(&state, "nowhere");
    assert!(
        log.contains("Waiting for a node: no ready node with pool=no-such-pool"),
        "{log}"
    );
    wait_until(
        "no service left",
        || services(&instance).is_empty().then_some(()),
        || ci.report(),
    );
}

#[test]
fn issue_18_the_dashboard_shows_the_nodes_and_why_jobs_wait() {
    let cluster = Cluster::ensure(3).expect("the test swarm");
    let registry = cluster.registry().address().to_owned();
    let busybox = ensure_busybox_image().expect("the test image");
    let file = format!(
        r#"steps:
  busy:
    image: {busybox}
    run: echo busy-$((1+1)); sleep 20
  nowhere:
    image: {busybox}
    pool: no-such-pool
    timeout: 60s
    run: "true"
"#
    );
    let repo = Repo::new("app");
    let initial = repo.rev("main");
    let first = repo.commit(&initial, "Add the pipeline", &[(".datakit-ci.yml", &file)]);
    repo.set_ref("refs/heads/main", &first);
    let state = State::new();
    let _cleanup = Cleanup(&state, &cluster);
    let port = free_port();
    let listen = format!("http://127.0.0.1:{port}");
    let args = [
        "--executor",
        "swarm",
        "--registry",
        &registry,
        "--docker-jobs",
        "4",
        "--listen",
        &listen,
    ];
    let ci = Ci::start(&[&repo], &[], &state, &args);
    let page = wait_until(
        "the dashboard's cluster section with a running and an unplaceable job",
        || {
            let page = http_get(port, "/")?;
            (page.contains("no ready node with pool=no-such-pool") && page.contains("running on"))
                .then_some(page)
        },
        || ci.report(),
    );
    assert!(page.contains("Cluster (Swarm)"), "{page}");
    // The manager and the workers, all ready; the job runs on one of them.
    let ready = page.matches(r#"<tr class="node-ready">"#).count();
    let nodes = Command::new("docker")
        .args(["node", "ls", "--quiet"])
        .output()
        .expect("run docker node ls");
    let listed = String::from_utf8_lossy(&nodes.stdout).lines().count();
    assert!(ready >= 3, "{ready} ready nodes shown:\n{page}");
    assert!(ready <= listed, "{ready} ready nodes shown of {listed}");
    assert_eq!(
        page.matches(r#"<td class="node-jobs">1</td>"#).count(),
        1,
        "one node runs the busy job:\n{page}"
    );
    assert!(page.contains("local/app/heads/main:busy"), "{page}");
    assert!(page.contains("local/app/heads/main:nowhere"), "{page}");
}
