//! The cluster's nodes as the CI sees them: ready, down or drained, read from the manager at
//! most every [`REFRESH`] however many jobs ask, and shown on the dashboard's trouble list while
//! a node is not ready.
//!
//! Knows nothing of jobs: the executor asks whether the node of a task is lost.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{Node, NodeSpecAvailabilityEnum, NodeState};

use datakit_ci_health::Health;

/// How old a reading of the nodes may be when a job asks.
const REFRESH: Duration = Duration::from_millis(500);

/// One node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// The node's id.
    pub id: String,
    /// Its host name (not unique: nodes of one machine share it).
    pub hostname: String,
    /// Its address as the manager sees it.
    pub address: String,
    /// `ready`, `down`, `disconnected` or `unknown`.
    pub state: String,
    /// `active`, `pause` or `drain`.
    pub availability: String,
    /// Its labels (e.g. `pool=gpu`).
    pub labels: HashMap<String, String>,
}

impl NodeView {
    fn of(node: &Node) -> NodeView {
        let spec = node.spec.clone().unwrap_or_default();
        let status = node.status.clone().unwrap_or_default();
        NodeView {
            id: node.id.clone().unwrap_or_default(),
            hostname: node
                .description
                .as_ref()
                .and_then(|d| d.hostname.clone())
                .unwrap_or_default(),
            address: status.addr.unwrap_or_default(),
            state: status
                .state
                .map_or("unknown", |s| match s {
                    NodeState::READY => "ready",
                    NodeState::DOWN => "down",
                    NodeState::DISCONNECTED => "disconnected",
                    NodeState::UNKNOWN => "unknown",
                })
                .to_owned(),
            availability: spec
                .availability
                .map_or("active", |a| match a {
                    NodeSpecAvailabilityEnum::PAUSE => "pause",
                    NodeSpecAvailabilityEnum::DRAIN => "drain",
                    _ => "active",
                })
                .to_owned(),
            labels: spec.labels.unwrap_or_default(),
        }
    }

    /// Why a job running on this node will not finish there, if it will not: the node is down
    /// or drained.
    pub fn lost(&self) -> Option<String> {
        if self.state != "ready" {
            Some(format!("node {} is {}", self.name(), self.state))
        } else if self.availability == "drain" {
            Some(format!("node {} was drained", self.name()))
        } else {
            None
        }
    }

    /// The node as the log names it: the first 12 characters of its id, and its address.
    pub fn name(&self) -> String {
        format!("{} ({})", &self.id[..self.id.len().min(12)], self.address)
    }
}

/// The last reading of the nodes.
pub(crate) struct Nodes {
    /// Held while the manager is asked, so that jobs asking at once share one reading.
    reading: tokio::sync::Mutex<Option<(Instant, Vec<NodeView>)>>,
    /// A copy of the last reading that never waits for a reading under way (the dashboard
    /// shows it when the manager does not answer).
    last: std::sync::Mutex<Vec<NodeView>>,
    health: Health,
}

impl Nodes {
    pub(crate) fn new(health: Health) -> Nodes {
        Nodes {
            reading: tokio::sync::Mutex::new(None),
            last: std::sync::Mutex::new(Vec::new()),
            health,
        }
    }

    /// The nodes, read again if the last reading is older than [`REFRESH`].
    pub(crate) async fn current(
        &self,
        docker: &Docker,
    ) -> Result<Vec<NodeView>, bollard::errors::Error> {
        let mut reading = self.reading.lock().await;
        if let Some((at, nodes)) = &*reading
            && at.elapsed() < REFRESH
        {
            return Ok(nodes.clone());
        }
        let nodes: Vec<NodeView> = docker
            .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
            .await?
            .iter()
            .map(NodeView::of)
            .collect();
        self.report(reading.as_ref().map(|(_, n)| n.as_slice()), &nodes);
        *reading = Some((Instant::now(), nodes.clone()));
        nodes.clone_into(
            &mut self
                .last
                .lock()
                .expect("no code panics while holding the last reading"),
        );
        Ok(nodes)
    }

    /// The last reading, without asking the manager nor waiting for a reading under way.
    pub(crate) fn last(&self) -> Vec<NodeView> {
        self.last
            .lock()
            .expect("no code panics while holding the last reading")
            .clone()
    }

    /// Shows the nodes that are not ready on the dashboard's trouble list, and clears those
    /// that are again (or are gone).
    fn report(&self, before: Option<&[NodeView]>, now: &[NodeView]) {
        for node in now {
            let key = format!("Swarm node {}", &node.id[..node.id.len().min(12)]);
            match node.lost() {
                Some(reason) => self.health.report(
                    &key,
                    format!("{reason}; its jobs are submitted again elsewhere"),
                ),
                None => self.health.resolve(&key),
            }
        }
        for gone in before
            .unwrap_or_default()
            .iter()
            .filter(|b| !now.iter().any(|n| n.id == b.id))
        {
            self.health
                .resolve(&format!("Swarm node {}", &gone.id[..gone.id.len().min(12)]));
        }
    }
}
