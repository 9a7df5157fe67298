//! What the dashboard shows of a cluster that runs jobs (the binary's is a Docker Swarm): its
//! nodes, with their state and how many jobs each runs, and every job the cluster has with
//! where it is or why it waits. This crate owns the trait so that it depends on no executor.

use futures::future::BoxFuture;

use datakit_ci_term::JobId;

/// Describes a cluster for the dashboard.
pub trait ClusterStatus: Send + Sync + 'static {
    /// The cluster now. Should answer within a second or so: the dashboard waits for it.
    fn snapshot(&self) -> BoxFuture<'_, ClusterSnapshot>;
}

/// A cluster at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterSnapshot {
    /// The cluster's kind, as shown (`Swarm`).
    pub name: String,
    /// Its nodes.
    pub nodes: Vec<ClusterNode>,
    /// Why the nodes could not be read just now (the last reading is shown), if they could not.
    pub nodes_error: Option<String>,
    /// Its jobs, in order of arrival.
    pub jobs: Vec<ClusterJob>,
}

/// A node of a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    /// Its id, as the cluster names it.
    pub id: String,
    /// Its address.
    pub address: String,
    /// Whether it takes jobs.
    pub state: NodeState,
    /// Its labels as `key=value` (e.g. `pool=gpu`), sorted.
    pub labels: Vec<String>,
}

/// Whether a node takes jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Up and taking jobs.
    Ready,
    /// Up, but taking no new jobs (`drain` or `pause`, as named).
    Drained(String),
    /// Not reachable (`down`, `disconnected`, `unknown`, as named).
    Down(String),
}

/// A job of a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterJob {
    /// The job.
    pub job: JobId,
    /// What it runs, e.g. `Run unit in debian:bookworm`.
    pub label: String,
    /// Its priority's name (`pull request`, `branch or tag`, `bulk`).
    pub priority: String,
    /// Where it is.
    pub place: JobPlace,
}

/// Where a job of a cluster is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobPlace {
    /// Running on the node of this id.
    Running(String),
    /// Not running yet, for this reason in words (e.g. `waiting for 3 earlier jobs`, `no ready
    /// node with pool=gpu`).
    Waiting(String),
}

impl ClusterSnapshot {
    /// How many of the jobs run on the node `id`.
    pub(crate) fn running_on(&self, id: &str) -> usize {
        self.jobs
            .iter()
            .filter(|job| matches!(&job.place, JobPlace::Running(node) if node == id))
            .count()
    }
}
