//! A real multi-node Docker Swarm on this machine, for the Swarm executor's tests and benchmark
//! (issue 18): the host's daemon is the manager, each worker is a `dockerd` of its own in a
//! network namespace of its own, and a real registry ([`Registry`]) serves images to every
//! node by digest.
//!
//! ```no_run
//! use datakit_ci_testkit::swarm::{Cluster, Registry};
//! let cluster = Cluster::ensure(3)?;
//! let image = Registry::ensure()?.push(datakit_ci_testkit::docker::ensure_busybox_image()?)?;
//! let w1 = cluster.worker(1)?;
//! println!("{} at {} ({})", w1.node_id(), w1.address(), w1.socket().display());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **Layout.** The manager advertises `10.231.0.1` (port 2377), an address the harness puts on
//! the host's end of each worker's veth pair. Worker `wN` lives in network namespace `dkcs-wN`
//! at `10.231.0.(10+N)`, with its socket at `/run/datakit-ci-swarm/wN/docker.sock`, exec root,
//! pid file and configuration under `/run/datakit-ci-swarm/wN/`, data root
//! `/var/lib/datakit-ci-swarm/wN`, and cgroup parent `datakit-ci-swarm-wN`. Its node carries
//! the label `datakit-ci-test=wN`; `w2` also carries `pool=gpu`. The manager's node carries
//! `datakit-ci-test=manager`: that label is how the harness knows it made the swarm (it never
//! touches a swarm it did not make). Every node shares the machine's hostname, so address nodes
//! by id or label. A worker's bridge and iptables rules live in its namespace: its tasks have a
//! network, NATed to the host, which they reach at `10.231.0.1`. The swarm's dispatcher heartbeat is 1 s (Docker's default is 5 s), so that a
//! lost node is seen down within seconds. The registry listens on the host's
//! `127.0.0.1:35731`; a `socat` on the host's `10.231.0.1:35731` and one on each worker's own
//! `127.0.0.1:35731` forward to it, so the same reference works on every node.
//!
//! **Sharing.** [`Cluster::ensure`] and [`Cluster::teardown`] hold an exclusive `flock` on
//! `/tmp/datakit-ci-swarm.lock`, so test programs running at once share one cluster; the
//! cluster outlives them (`.ci/run` tears it down at the end, with the `datakit-ci-swarm down`
//! program of this crate). The rule for tests: **workers `w1` and `w2` are shared and must stay
//! up and active**; a test that stops, drains or otherwise disturbs a worker first takes a
//! [`WorkerLease`] on it ([`Cluster::lease`]; the tests use `w3`, so a cluster for them has
//! three workers), which waits for other holders, makes `ensure` leave that worker alone while
//! it is held, and on drop brings the worker back up and active.

mod registry;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use registry::{REGISTRY_PORT, Registry};

use crate::dockerd::Layout;
use crate::error::HarnessError;
use crate::host::{self, Daemon, Lock};

/// The lock every change to the cluster holds.
const LOCK_FILE: &str = "/tmp/datakit-ci-swarm.lock";
/// Sockets, configurations, pid files, logs and the state file.
const RUN_DIR: &str = "/run/datakit-ci-swarm";
/// The workers' data roots and the registry's storage.
const DATA_DIR: &str = "/var/lib/datakit-ci-swarm";
/// The manager's address, on the host's end of every worker's veth pair.
pub const MANAGER_ADDRESS: &str = "10.231.0.1";
/// The node label naming a node of the harness: `manager`, `w1`, `w2`, ….
pub const NODE_LABEL: &str = "datakit-ci-test";
/// The label tests put on the services they make, with the test's name as value, to remove them.
pub const SERVICE_LABEL: &str = "datakit-ci-test.service";
/// The most workers a cluster can have (their addresses are `10.231.0.11`… `10.231.0.60`).
pub const MAX_WORKERS: usize = 50;

/// The swarm of the tests, up: the host's daemon as manager and `w1`…`wN`.
#[derive(Debug, Clone)]
pub struct Cluster {
    manager_id: String,
    workers: Vec<Worker>,
    registry: Registry,
}

/// A worker node of the [`Cluster`].
#[derive(Debug, Clone)]
pub struct Worker {
    index: usize,
    node_id: String,
}

impl Worker {
    /// Its number: 1 for `w1`.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Its name, `wN`: the value of its node label `datakit-ci-test`.
    pub fn name(&self) -> String {
        format!("w{}", self.index)
    }

    /// Its swarm node id (constant across restarts: it keeps its data root).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Its address, which it advertises to the swarm.
    pub fn address(&self) -> String {
        worker_address(self.index)
    }

    /// Its daemon's Unix socket.
    pub fn socket(&self) -> PathBuf {
        worker_dir(self.index).join("docker.sock")
    }

    /// `unix://` and its socket, for `docker -H` and `DOCKER_HOST`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Its network namespace (`/var/run/netns/NAME`).
    pub fn netns(&self) -> String {
        netns_name(self.index)
    }
}

impl Cluster {
    /// Brings the cluster up with at least `workers` workers, or reuses the one that runs
    /// (across test programs and processes), repairing what is missing: a worker whose daemon
    /// died is restarted and rejoins, unless a test holds a [`WorkerLease`] on it. Also ensures
    /// the [`Registry`]. Fails, changing nothing, if the host's daemon is in a swarm the harness
    /// did not make.
    pub fn ensure(workers: usize) -> Result<Cluster, HarnessError> {
        if workers > MAX_WORKERS {
            return Err(HarnessError::TooManyWorkers {
                asked: workers,
                max: MAX_WORKERS,
            });
        }
        host::check_programs(host::DOCKERD_PROGRAMS)?;
        host::check_programs(host::SWARM_PROGRAMS)?;
        host::create_dir(Path::new(RUN_DIR))?;
        let _lock = Lock::acquire(Path::new(LOCK_FILE))?;
        let (state, node) = host_swarm_state()?;
        let ours = match state.as_str() {
            "inactive" => false,
            "active" => {
                if manager_label(&node)? != "manager" {
                    return Err(HarnessError::ForeignSwarm {
                        node,
                        state,
                        label: NODE_LABEL,
                    });
                }
                true
            }
            _ => {
                return Err(HarnessError::ForeignSwarm {
                    node,
                    state,
                    label: NODE_LABEL,
                });
            }
        };
        let count = workers.max(existing_workers());
        // The manager's address lives on the workers' veth pairs: make them first.
        for index in 1..=count {
            if !host::netns_exists(&netns_name(index)) {
                make_worker_netns(index)?;
            }
        }
        let manager_id = if ours { node } else { init_swarm()? };
        let registry = Registry::ensure_locked()?;
        ensure_forwarder(None)?;
        let join_token = host::run("docker", &["swarm", "join-token", "-q", "worker"])?;
        let mut list = Vec::with_capacity(count);
        for index in 1..=count {
            // A leased worker is a fault test's to stop and start: leave it as it is.
            let node_id = match Lock::try_acquire(&lease_file(index))? {
                Some(_lease) => ensure_worker(index, &join_token)?,
                None => recorded_node_id(index)?,
            };
            list.push(Worker { index, node_id });
        }
        Ok(Cluster {
            manager_id,
            workers: list,
            registry,
        })
    }

    /// The manager's (the host daemon's) node id.
    pub fn manager_id(&self) -> &str {
        &self.manager_id
    }

    /// The manager's socket: the host daemon's.
    pub fn manager_socket(&self) -> PathBuf {
        PathBuf::from("/var/run/docker.sock")
    }

    /// The manager's address, which it advertises to the swarm.
    pub fn manager_address(&self) -> &'static str {
        MANAGER_ADDRESS
    }

    /// The workers, `w1` first.
    pub fn workers(&self) -> &[Worker] {
        &self.workers
    }

    /// Worker `wN` (`index` N, from 1).
    pub fn worker(&self, index: usize) -> Result<&Worker, HarnessError> {
        self.workers
            .get(index.wrapping_sub(1))
            .ok_or(HarnessError::NoSuchWorker {
                index,
                workers: self.workers.len(),
            })
    }

    /// The registry every node pulls from.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The manager's view of node `node_id`: its state (`ready`, `down`, `unknown`) and
    /// availability (`active`, `pause`, `drain`).
    pub fn node_status(&self, node_id: &str) -> Result<(String, String), HarnessError> {
        node_status(node_id)
    }

    /// Waits (at most `limit`) until the manager sees node `node_id` in `state` (`ready`,
    /// `down`).
    pub fn wait_for_node(
        &self,
        node_id: &str,
        state: &str,
        limit: Duration,
    ) -> Result<(), HarnessError> {
        wait_node_state(node_id, state, limit)
    }

    /// Removes every service labelled `label` (`KEY=VALUE`, e.g. [`SERVICE_LABEL`]`=my-test`)
    /// and returns how many there were: what a test made, even if it failed half-way.
    pub fn remove_services(&self, label: &str) -> Result<usize, HarnessError> {
        let filter = format!("label={label}");
        let services = host::run("docker", &["service", "ls", "-q", "--filter", &filter])?;
        let ids: Vec<&str> = services.lines().filter(|id| !id.is_empty()).collect();
        if !ids.is_empty() {
            let mut args = vec!["service", "rm"];
            args.extend(&ids);
            host::run("docker", &args)?;
        }
        Ok(ids.len())
    }

    /// Takes worker `wN` for a test that disturbs it (waiting for any other holder): while the
    /// lease is held, [`Cluster::ensure`] leaves the worker alone; when it is dropped, the
    /// worker is started and activated again.
    pub fn lease(&self, index: usize) -> Result<WorkerLease, HarnessError> {
        let worker = self.worker(index)?.clone();
        let lock = Lock::acquire(&lease_file(index))?;
        Ok(WorkerLease {
            worker,
            _lock: lock,
        })
    }

    /// Removes everything the harness made: each worker leaves, its daemons stop, its network
    /// namespace, veth pair and data root go; the registry stops and its storage goes; the
    /// host's daemon leaves the swarm only if the harness made it. Services that tests made are
    /// the tests' to remove.
    pub fn teardown() -> Result<(), HarnessError> {
        host::create_dir(Path::new(RUN_DIR))?;
        let _lock = Lock::acquire(Path::new(LOCK_FILE))?;
        for index in 1..=existing_workers().max(worker_dirs()) {
            remove_worker(index)?;
        }
        let (state, node) = host_swarm_state()?;
        if state == "active" && manager_label(&node)? == "manager" {
            host::run("docker", &["swarm", "leave", "--force"])?;
            // The swarm made the host's docker_gwbridge network unless it was there before.
            let made_gwbridge = std::fs::read_to_string(state_file())
                .map(|s| s.contains("made-gwbridge=yes"))
                .unwrap_or(false);
            if made_gwbridge {
                let _ = host::run("docker", &["network", "rm", "docker_gwbridge"]);
            }
        }
        if let Some(pid) = forwarder(None).pid() {
            let _ = host::run("kill", &["-KILL", &pid.to_string()]);
        }
        registry::remove()?;
        for dir in [DATA_DIR, RUN_DIR] {
            let dir = Path::new(dir);
            host::unmount_under(dir)?;
            if dir.exists() {
                std::fs::remove_dir_all(dir).map_err(|source| HarnessError::Io {
                    what: format!("remove {}", dir.display()),
                    source,
                })?;
            }
        }
        Ok(())
    }
}

/// A test's hold on one worker, to stop, start, drain and activate it without disturbing the
/// tests that share the cluster; the worker is brought back up and active when it is dropped.
#[derive(Debug)]
pub struct WorkerLease {
    worker: Worker,
    _lock: Lock,
}

impl WorkerLease {
    /// The leased worker.
    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    /// Kills the worker's `dockerd`, its `containerd`, its containers and its forwarder with
    /// SIGKILL, as a machine that is lost; returns at once (the manager sees the node down
    /// after a few missed heartbeats: [`Cluster::wait_for_node`] with `down`).
    pub fn stop(&self) -> Result<(), HarnessError> {
        tracing::info!(worker = %self.worker.name(), "killing the worker node");
        host::kill_node(&self.worker.netns())
    }

    /// Starts the worker again with the same data root (so the same node id), and waits until
    /// the manager sees it ready.
    pub fn start(&self) -> Result<(), HarnessError> {
        let token = host::run("docker", &["swarm", "join-token", "-q", "worker"])?;
        ensure_worker(self.worker.index, &token).map(|_| ())
    }

    /// `docker node update --availability drain`: the manager moves its tasks elsewhere.
    pub fn drain(&self) -> Result<(), HarnessError> {
        set_availability(&self.worker.node_id, "drain")
    }

    /// `docker node update --availability active`.
    pub fn activate(&self) -> Result<(), HarnessError> {
        set_availability(&self.worker.node_id, "active")
    }
}

impl Drop for WorkerLease {
    fn drop(&mut self) {
        if let Err(error) = self.start().and_then(|()| self.activate()) {
            tracing::error!(worker = %self.worker.name(), %error, "cannot restore the worker");
        }
    }
}

fn set_availability(node_id: &str, availability: &str) -> Result<(), HarnessError> {
    host::run(
        "docker",
        &["node", "update", "--availability", availability, node_id],
    )
    .map(|_| ())
}

fn netns_name(index: usize) -> String {
    format!("dkcs-w{index}")
}

fn host_interface(index: usize) -> String {
    format!("dkcs-h{index}")
}

fn worker_address(index: usize) -> String {
    format!("10.231.0.{}", 10 + index)
}

fn worker_dir(index: usize) -> PathBuf {
    Path::new(RUN_DIR).join(format!("w{index}"))
}

fn data_root(index: usize) -> PathBuf {
    Path::new(DATA_DIR).join(format!("w{index}"))
}

fn cgroup_parent(index: usize) -> String {
    format!("datakit-ci-swarm-w{index}")
}

fn lease_file(index: usize) -> PathBuf {
    PathBuf::from(format!("/tmp/datakit-ci-swarm-w{index}.lock"))
}

fn state_file() -> PathBuf {
    Path::new(RUN_DIR).join("state")
}

/// Where worker `wN`'s `dockerd` keeps its state; it runs in the worker's namespace. Its
/// bridge and iptables rules there give tasks what they have on the manager: a network, with
/// the host reachable at `MANAGER_ADDRESS` through the NAT.
fn worker_layout(index: usize) -> Layout {
    Layout {
        run_dir: worker_dir(index),
        data_root: data_root(index),
        netns: netns_name(index),
        cgroup_parent: cgroup_parent(index),
    }
}

fn docker_daemon(index: usize) -> Daemon {
    worker_layout(index).process()
}

/// The `socat` that forwards a node's `127.0.0.1:REGISTRY_PORT` to the registry: on the host,
/// from `MANAGER_ADDRESS` (what the workers reach) to the registry's loopback address; on a
/// worker (`Some(index)`), from its own loopback to the host's `MANAGER_ADDRESS`.
fn forwarder(index: Option<usize>) -> Daemon {
    let dir = index.map_or_else(|| PathBuf::from(RUN_DIR), worker_dir);
    Daemon {
        program: "socat",
        pidfile: dir.join("socat.pid"),
        log: dir.join("socat.log"),
    }
}

fn ensure_forwarder(index: Option<usize>) -> Result<(), HarnessError> {
    let daemon = forwarder(index);
    if daemon.pid().is_some() {
        return Ok(());
    }
    let (listen, to) = match index {
        None => (MANAGER_ADDRESS, "127.0.0.1"),
        Some(_) => ("127.0.0.1", MANAGER_ADDRESS),
    };
    let listen = format!("TCP-LISTEN:{REGISTRY_PORT},bind={listen},reuseaddr,fork");
    let to = format!("TCP:{to}:{REGISTRY_PORT}");
    let netns = index.map(netns_name);
    daemon.start(netns.as_deref(), &["socat", &listen, &to])
}

/// The host daemon's local swarm state (`inactive`, `active`, `pending`, `error`, `locked`)
/// and node id.
fn host_swarm_state() -> Result<(String, String), HarnessError> {
    let info = host::run(
        "docker",
        &[
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}}",
        ],
    )?;
    let (state, node) = info.split_once(' ').unwrap_or((info.as_str(), ""));
    Ok((state.to_owned(), node.to_owned()))
}

/// The value of the manager node's `datakit-ci-test` label, empty if none (or if the node
/// cannot be inspected: then it is no manager of ours either).
fn manager_label(node: &str) -> Result<String, HarnessError> {
    let format = format!("{{{{index .Spec.Labels \"{NODE_LABEL}\"}}}}");
    Ok(host::run("docker", &["node", "inspect", node, "--format", &format]).unwrap_or_default())
}

fn init_swarm() -> Result<String, HarnessError> {
    let had_gwbridge = host::run("docker", &["network", "inspect", "docker_gwbridge"]).is_ok();
    let listen = format!("{MANAGER_ADDRESS}:2377");
    tracing::info!("making the test swarm: the host's daemon becomes its manager");
    host::run(
        "docker",
        &[
            "swarm",
            "init",
            "--advertise-addr",
            MANAGER_ADDRESS,
            "--listen-addr",
            &listen,
            "--dispatcher-heartbeat",
            "1s",
        ],
    )?;
    let (_, node) = host_swarm_state()?;
    let label = format!("{NODE_LABEL}=manager");
    host::run("docker", &["node", "update", "--label-add", &label, &node])?;
    host::write_file(
        &state_file(),
        &format!(
            "manager={node}\nmade-gwbridge={}\n",
            if had_gwbridge { "no" } else { "yes" }
        ),
    )?;
    Ok(node)
}

/// How many workers exist (network namespaces `dkcs-w1`, `dkcs-w2`, … without a gap).
fn existing_workers() -> usize {
    (1..=MAX_WORKERS)
        .take_while(|index| host::netns_exists(&netns_name(*index)))
        .count()
}

/// How many worker directories exist (a worker whose namespace went may have left one).
fn worker_dirs() -> usize {
    (1..=MAX_WORKERS)
        .take_while(|index| worker_dir(*index).exists() || data_root(*index).exists())
        .count()
}

fn make_worker_netns(index: usize) -> Result<(), HarnessError> {
    host::make_netns(
        &netns_name(index),
        &host_interface(index),
        MANAGER_ADDRESS,
        &worker_address(index),
    )
}

fn worker_docker(index: usize, args: &[&str]) -> Result<String, HarnessError> {
    worker_layout(index).docker(args)
}

/// Worker `wN`'s node id as recorded when it was last brought up (its daemon may be down).
fn recorded_node_id(index: usize) -> Result<String, HarnessError> {
    let file = worker_dir(index).join("node-id");
    std::fs::read_to_string(&file)
        .map(|id| id.trim().to_owned())
        .map_err(|source| HarnessError::Io {
            what: format!("read {}", file.display()),
            source,
        })
}

/// Worker `wN`'s node id, from its own daemon.
fn worker_node_id(index: usize) -> Result<String, HarnessError> {
    worker_docker(index, &["info", "--format", "{{.Swarm.NodeID}}"])
}

/// Brings worker `wN` up: its namespace, its `dockerd`, its membership of the swarm (joining
/// again if the swarm it knew is gone), its labels and its registry forwarder; returns its node
/// id once the manager sees it ready.
fn ensure_worker(index: usize, join_token: &str) -> Result<String, HarnessError> {
    if !host::netns_exists(&netns_name(index)) {
        make_worker_netns(index)?;
    }
    let daemon = docker_daemon(index);
    if daemon.pid().is_none() {
        worker_layout(index).start()?;
    }
    let state = worker_docker(index, &["info", "--format", "{{.Swarm.LocalNodeState}}"])?;
    let mut node_id = worker_node_id(index)?;
    let known = !node_id.is_empty() && node_status(&node_id).is_ok();
    if state != "active" || !known {
        if state != "inactive" {
            worker_docker(index, &["swarm", "leave", "--force"])?;
        }
        let address = worker_address(index);
        let listen = format!("{address}:2377");
        let manager = format!("{MANAGER_ADDRESS}:2377");
        worker_docker(
            index,
            &[
                "swarm",
                "join",
                "--token",
                join_token,
                "--advertise-addr",
                &address,
                "--listen-addr",
                &listen,
                &manager,
            ],
        )?;
        node_id = worker_node_id(index)?;
    }
    remove_stale_nodes(index, &node_id)?;
    host::write_file(&worker_dir(index).join("node-id"), &node_id)?;
    let mut labels = vec![format!("{NODE_LABEL}=w{index}")];
    if index == 2 {
        labels.push("pool=gpu".to_owned());
    }
    let mut args = vec!["node", "update"];
    for label in &labels {
        args.extend(["--label-add", label.as_str()]);
    }
    args.push(&node_id);
    host::run("docker", &args)?;
    ensure_forwarder(Some(index))?;
    wait_node_state(&node_id, "ready", Duration::from_secs(60))?;
    Ok(node_id)
}

/// Removes the manager's entries for earlier incarnations of worker `wN` (a worker that joined
/// again has a new node id; the old one stays down forever).
fn remove_stale_nodes(index: usize, current: &str) -> Result<(), HarnessError> {
    let filter = format!("node.label={NODE_LABEL}=w{index}");
    let nodes = host::run("docker", &["node", "ls", "-q", "--filter", &filter])?;
    for node in nodes.lines().filter(|n| !n.is_empty() && *n != current) {
        let _ = host::run("docker", &["node", "rm", "--force", node]);
    }
    Ok(())
}

fn node_status(node_id: &str) -> Result<(String, String), HarnessError> {
    let status = host::run(
        "docker",
        &[
            "node",
            "inspect",
            node_id,
            "--format",
            "{{.Status.State}} {{.Spec.Availability}}",
        ],
    )?;
    let (state, availability) = status
        .split_once(' ')
        .ok_or_else(|| HarnessError::Unexpected {
            what: format!("status of node {node_id}"),
            got: status.clone(),
        })?;
    Ok((state.to_owned(), availability.to_owned()))
}

fn wait_node_state(node_id: &str, state: &str, limit: Duration) -> Result<(), HarnessError> {
    host::wait_until(limit, &format!("node {node_id} to be {state}"), || {
        Ok(node_status(node_id)?.0 == state)
    })
}

/// Worker `wN` leaves and goes: its processes, its node entry, its namespace, its files.
fn remove_worker(index: usize) -> Result<(), HarnessError> {
    let node_id = if docker_daemon(index).pid().is_some() {
        let id = worker_node_id(index).unwrap_or_default();
        let _ = worker_docker(index, &["swarm", "leave", "--force"]);
        id
    } else {
        String::new()
    };
    host::kill_node(&netns_name(index))?;
    if !node_id.is_empty() {
        let _ = host::run("docker", &["node", "rm", "--force", &node_id]);
    }
    let _ = remove_stale_nodes(index, "");
    host::delete_netns(&netns_name(index), Some(&host_interface(index)));
    for dir in [data_root(index), worker_dir(index)] {
        host::unmount_under(&dir)?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|source| HarnessError::Io {
                what: format!("remove {}", dir.display()),
                source,
            })?;
        }
    }
    Ok(())
}
