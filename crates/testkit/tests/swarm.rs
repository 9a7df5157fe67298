//! The swarm harness against the real thing: the host's daemon as manager, three `dockerd`
//! workers in network namespaces, Debian's registry. Workers `w1` and `w2` are shared by every
//! test (and by other test programs); the tests that disturb a worker lease `w3`.

use std::process::Command;
use std::time::{Duration, Instant};

use datakit_ci_testkit::docker::{BUSYBOX_IMAGE, ensure_busybox_image};
use datakit_ci_testkit::swarm::{
    Cluster, NODE_LABEL, REGISTRY_PORT, Registry, SERVICE_LABEL, Worker,
};

const WORKERS: usize = 3;
/// The worker the fault tests lease.
const FAULT_WORKER: usize = 3;

fn docker(host: Option<&str>, args: &[&str]) -> Result<String, String> {
    let mut command = Command::new("docker");
    if let Some(host) = host {
        command.args(["-H", host]);
    }
    let output = command
        .args(args)
        .output()
        .map_err(|e| format!("run docker: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "docker {args:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn manager(args: &[&str]) -> String {
    docker(None, args).unwrap_or_else(|e| panic!("{e}"))
}

fn cluster() -> Cluster {
    Cluster::ensure(WORKERS).unwrap_or_else(|e| panic!("cannot bring the test swarm up: {e}"))
}

fn busybox_by_digest() -> String {
    let image = ensure_busybox_image().unwrap_or_else(|e| panic!("{e}"));
    Registry::ensure()
        .and_then(|registry| registry.push(image))
        .unwrap_or_else(|e| panic!("cannot push {image}: {e}"))
}

/// A `replicated-job` service made by a test, removed when dropped.
struct Job {
    name: String,
}

impl Job {
    /// Creates a one-shot job running `command` in `image` on the node `constraint` selects.
    fn create(test: &str, image: &str, constraint: &str, command: &[&str]) -> Job {
        let name = format!("dkcs-{test}-{}", std::process::id());
        let label = format!("{SERVICE_LABEL}={test}");
        let mut args = vec![
            "service",
            "create",
            "--detach",
            "--name",
            &name,
            "--label",
            &label,
            "--mode",
            "replicated-job",
            "--restart-condition",
            "none",
            "--constraint",
            constraint,
            image,
        ];
        args.extend_from_slice(command);
        manager(&args);
        Job { name }
    }

    /// The state of the job's task and the node it was given to, once it has one.
    fn task(&self) -> Option<(String, String, String)> {
        let tasks = manager(&["service", "ps", "-q", "--no-trunc", &self.name]);
        let task = tasks.lines().next()?;
        let info = manager(&[
            "inspect",
            task,
            "--format",
            "{{.Status.State}}|{{.NodeID}}|{{.Status.Err}}",
        ]);
        let mut parts = info.splitn(3, '|');
        Some((
            parts.next()?.to_owned(),
            parts.next()?.to_owned(),
            parts.next()?.to_owned(),
        ))
    }

    /// Waits for the task to end; returns its final state and node.
    fn wait(&self, limit: Duration) -> (String, String) {
        let start = Instant::now();
        loop {
            if let Some((state, node, err)) = self.task() {
                match state.as_str() {
                    "complete" => return (state, node),
                    "failed" | "rejected" | "orphaned" | "remove" | "shutdown" => {
                        panic!("job {} ended {state} on {node}: {err}", self.name)
                    }
                    _ => {}
                }
            }
            assert!(
                start.elapsed() < limit,
                "job {} not done after {limit:?}: {:?}",
                self.name,
                self.task()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the job's task runs.
    fn wait_running(&self, limit: Duration) {
        let start = Instant::now();
        while self.task().map(|(state, _, _)| state) != Some("running".to_owned()) {
            assert!(
                start.elapsed() < limit,
                "job {} not running after {limit:?}: {:?}",
                self.name,
                self.task()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What the job printed, as the manager streams it.
    fn logs(&self) -> String {
        manager(&["service", "logs", "--raw", &self.name])
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = docker(None, &["service", "rm", &self.name]);
    }
}

#[test]
fn the_cluster_has_a_manager_and_three_ready_workers_with_their_labels() {
    let cluster = cluster();
    assert_eq!(cluster.workers().len(), WORKERS);
    let nodes = manager(&[
        "node",
        "ls",
        "--format",
        "{{.ID}} {{.Status}} {{.ManagerStatus}}",
    ]);
    let leader = format!("{} Ready Leader", cluster.manager_id());
    assert!(
        nodes.lines().any(|l| l == leader),
        "no ready leader {leader} in:\n{nodes}"
    );
    let format = format!("{{{{index .Spec.Labels \"{NODE_LABEL}\"}}}}");
    assert_eq!(
        manager(&["node", "inspect", cluster.manager_id(), "--format", &format]),
        "manager"
    );
    for worker in cluster.workers() {
        let (state, availability) = cluster.node_status(worker.node_id()).expect("node status");
        if worker.index() != FAULT_WORKER {
            assert_eq!((state.as_str(), availability.as_str()), ("ready", "active"));
        }
        assert_eq!(
            manager(&["node", "inspect", worker.node_id(), "--format", &format]),
            worker.name()
        );
        // The worker's own daemon agrees on who it is and where it is.
        if worker.index() != FAULT_WORKER {
            let info = docker(
                Some(&worker.docker_host()),
                &["info", "--format", "{{.Swarm.NodeID}} {{.Swarm.NodeAddr}}"],
            )
            .expect("worker info");
            assert_eq!(info, format!("{} {}", worker.node_id(), worker.address()));
        }
    }
    let pool = manager(&["node", "ls", "-q", "--filter", "node.label=pool=gpu"]);
    let w2 = cluster.worker(2).expect("w2").node_id().to_owned();
    assert_eq!(pool.lines().collect::<Vec<_>>(), [w2.as_str()]);
    assert!(cluster.worker(WORKERS + 1).is_err());
}

#[test]
fn a_job_runs_on_each_shared_worker_by_node_id_and_its_log_reaches_the_manager() {
    let cluster = cluster();
    let image = busybox_by_digest();
    for worker in cluster
        .workers()
        .iter()
        .filter(|w| w.index() != FAULT_WORKER)
    {
        let constraint = format!("node.id=={}", worker.node_id());
        let message = format!("hello from {}", worker.name());
        // The task has a network, as on the manager: it reaches the host (the registry's
        // forwarder on the manager's address; `/v2/` answers `{}`).
        let script = format!(
            "echo '{message}'; wget -q -O - http://{}:{}/v2/",
            cluster.manager_address(),
            REGISTRY_PORT
        );
        let job = Job::create(
            &format!("job-{}", worker.name()),
            &image,
            &constraint,
            &["sh", "-c", &script],
        );
        let (_, node) = job.wait(Duration::from_secs(60));
        assert_eq!(node, worker.node_id());
        assert_eq!(job.logs(), format!("{message}\n{{}}"));
        assert_ran_on(worker, &job.name);
    }
}

/// The worker's own daemon ran a container of the service.
fn assert_ran_on(worker: &Worker, service: &str) {
    let filter = format!("label=com.docker.swarm.service.name={service}");
    let containers = docker(
        Some(&worker.docker_host()),
        &["ps", "-a", "-q", "--filter", &filter],
    )
    .expect("list the worker's containers");
    assert!(
        !containers.is_empty(),
        "no container of {service} on {}",
        worker.name()
    );
}

#[test]
fn an_image_pushed_by_the_host_is_pulled_by_digest_on_a_worker() {
    let cluster = cluster();
    let reference = busybox_by_digest();
    let registry = cluster.registry().address();
    assert!(
        reference.starts_with(&format!("{registry}/datakit-ci-test/busybox@sha256:")),
        "{reference}"
    );
    let w1 = cluster.worker(1).expect("w1");
    let host = w1.docker_host();
    docker(Some(&host), &["pull", "--quiet", &reference]).expect("pull on w1 by digest");
    // Same bytes: the worker's image has the host's image id (the digest of its configuration).
    let host_id = manager(&["image", "inspect", "--format", "{{.Id}}", BUSYBOX_IMAGE]);
    let worker_id = docker(
        Some(&host),
        &["image", "inspect", "--format", "{{.Id}}", &reference],
    )
    .expect("inspect on w1");
    assert_eq!(worker_id, host_id);
    // The registry, not a cache, answers: a digest it does not have is not found.
    let missing = format!(
        "{registry}/datakit-ci-test/busybox@sha256:{}",
        "0".repeat(64)
    );
    let error = docker(Some(&host), &["pull", &missing]).expect_err("pull of a missing digest");
    assert!(
        error.contains("not found") || error.contains("unknown"),
        "{error}"
    );
}

#[test]
fn a_stopped_worker_goes_down_and_comes_back_ready_with_the_same_node_id() {
    let cluster = cluster();
    let image = busybox_by_digest();
    let lease = cluster.lease(FAULT_WORKER).expect("lease the fault worker");
    let worker = lease.worker().clone();
    lease.start().expect("the worker starts");
    // Lost mid-job, like a machine: the job's process goes with the node.
    let long = Job::create(
        "lost-mid-job",
        &image,
        &format!("node.id=={}", worker.node_id()),
        &["sleep", "3607"],
    );
    long.wait_running(Duration::from_secs(60));
    lease.stop().expect("the worker stops");
    let started = Instant::now();
    cluster
        .wait_for_node(worker.node_id(), "down", Duration::from_secs(30))
        .expect("the manager sees the node down");
    eprintln!("node down after {:?}", started.elapsed());
    assert!(
        docker(Some(&worker.docker_host()), &["version"]).is_err(),
        "the worker's daemon still answers"
    );
    assert!(
        !std::fs::read_dir("/proc")
            .expect("list /proc")
            .flatten()
            .any(|p| {
                std::fs::read(p.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x003607\0")
            }),
        "the job's process survived its node"
    );
    lease.start().expect("the worker starts again");
    assert_eq!(
        cluster.node_status(worker.node_id()).expect("status").0,
        "ready"
    );
    // The restarted daemon keeps its data root: it knows the container it lost.
    let filter = format!("label=com.docker.swarm.service.name={}", long.name);
    let lost = docker(
        Some(&worker.docker_host()),
        &["ps", "-a", "-q", "--filter", &filter],
    )
    .expect("list the worker's containers");
    assert!(
        !lost.is_empty(),
        "the worker forgot the lost job's container"
    );
    let running = docker(
        Some(&worker.docker_host()),
        &["ps", "-q", "--filter", &filter],
    )
    .expect("list the worker's running containers");
    assert!(running.is_empty(), "the lost job runs again: {running}");
    drop(long);
    let job = Job::create(
        "after-restart",
        &image,
        &format!("node.id=={}", worker.node_id()),
        &["echo", "back"],
    );
    let (_, node) = job.wait(Duration::from_secs(60));
    assert_eq!(node, worker.node_id());
    assert_eq!(job.logs(), "back");
}

#[test]
fn a_drained_worker_takes_no_job_until_it_is_active_again() {
    let cluster = cluster();
    let image = busybox_by_digest();
    let lease = cluster.lease(FAULT_WORKER).expect("lease the fault worker");
    let worker = lease.worker().clone();
    lease.start().expect("the worker starts");
    lease.drain().expect("drain");
    assert_eq!(
        cluster.node_status(worker.node_id()).expect("status"),
        ("ready".to_owned(), "drain".to_owned())
    );
    let job = Job::create(
        "drained",
        &image,
        &format!("node.id=={}", worker.node_id()),
        &["echo", "drained"],
    );
    std::thread::sleep(Duration::from_secs(3));
    let (state, _, _) = job.task().expect("the job has a task");
    assert_eq!(state, "pending", "a job ran on a drained node");
    lease.activate().expect("activate");
    let (_, node) = job.wait(Duration::from_secs(60));
    assert_eq!(node, worker.node_id());
    // The lease on w3 keeps other programs' runs of this test away from the label meanwhile.
    let label = format!("{SERVICE_LABEL}=drained");
    assert_eq!(cluster.remove_services(&label).expect("remove"), 1);
    let filter = format!("label={label}");
    assert_eq!(manager(&["service", "ls", "-q", "--filter", &filter]), "");
}
