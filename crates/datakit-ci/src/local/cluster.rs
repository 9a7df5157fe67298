//! The Swarm executor as the dashboard's cluster section: its nodes and its jobs, each waiting
//! job with its reason in words.

use std::future::Future;
use std::pin::Pin;

use datakit_ci_docker::{JobPhase, NodeView, Swarm, SwarmJob, SwarmStatus};
use datakit_ci_web::{
    ClusterJob, ClusterNode, ClusterSnapshot, ClusterStatus, JobPlace, NodeState,
};

/// Shows a [`Swarm`] on the dashboard.
pub(crate) struct SwarmCluster(pub(crate) Swarm);

impl ClusterStatus for SwarmCluster {
    fn snapshot(&self) -> Pin<Box<dyn Future<Output = ClusterSnapshot> + Send + '_>> {
        Box::pin(async move { snapshot(self.0.status().await) })
    }
}

fn snapshot(status: SwarmStatus) -> ClusterSnapshot {
    ClusterSnapshot {
        name: "Swarm".to_owned(),
        nodes: status.nodes.iter().map(node).collect(),
        nodes_error: status.nodes_error,
        jobs: status.jobs.into_iter().map(job).collect(),
    }
}

fn node(node: &NodeView) -> ClusterNode {
    let state = if node.state != "ready" {
        NodeState::Down(node.state.clone())
    } else if node.availability != "active" {
        NodeState::Drained(node.availability.clone())
    } else {
        NodeState::Ready
    };
    let mut labels: Vec<String> = node
        .labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    labels.sort();
    ClusterNode {
        id: node.id.clone(),
        address: node.address.clone(),
        state,
        labels,
    }
}

fn job(job: SwarmJob) -> ClusterJob {
    let place = match job.phase {
        JobPhase::Running { node } => JobPlace::Running(node),
        JobPhase::Queued { ahead: 0 } => {
            JobPlace::Waiting("next in the queue, for a free place".to_owned())
        }
        JobPhase::Queued { ahead: 1 } => JobPlace::Waiting("waiting for 1 earlier job".to_owned()),
        JobPhase::Queued { ahead } => {
            JobPlace::Waiting(format!("waiting for {ahead} earlier jobs"))
        }
        JobPhase::Preparing => {
            JobPlace::Waiting("getting its image ready (the commit's tree in /src)".to_owned())
        }
        JobPhase::Unplaced { reason: None } => {
            JobPlace::Waiting("submitted, not yet placed on a node".to_owned())
        }
        JobPhase::Unplaced {
            reason: Some(reason),
        } => JobPlace::Waiting(reason),
    };
    ClusterJob {
        job: job.job,
        label: job.label,
        priority: job.priority.name().to_owned(),
        place,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use datakit_ci_docker::Priority;
    use datakit_ci_term::{JobId, RefName, RepoId, TargetId};

    use super::*;

    fn view(state: &str, availability: &str) -> NodeView {
        NodeView {
            id: "abcdef0123456789".to_owned(),
            hostname: "h".to_owned(),
            address: "10.0.0.1".to_owned(),
            state: state.to_owned(),
            availability: availability.to_owned(),
            labels: HashMap::from([("pool".to_owned(), "gpu".to_owned())]),
        }
    }

    #[test]
    fn node_states_read_as_ready_drained_or_down() {
        assert_eq!(node(&view("ready", "active")).state, NodeState::Ready);
        assert_eq!(
            node(&view("ready", "drain")).state,
            NodeState::Drained("drain".to_owned())
        );
        assert_eq!(
            node(&view("down", "active")).state,
            NodeState::Down("down".to_owned())
        );
        assert_eq!(node(&view("ready", "active")).labels, ["pool=gpu"]);
    }

    #[test]
    fn waiting_jobs_say_why() {
        let repo = RepoId::new("me", "proj").expect("a valid repository");
        let main = RefName::new(["heads", "main"]).expect("a valid ref");
        let of = |phase| {
            job(SwarmJob {
                job: JobId::new(TargetId::Ref(repo.clone(), main.clone()), "unit"),
                label: "Run unit".to_owned(),
                priority: Priority::Ref,
                phase,
            })
        };
        assert_eq!(
            of(JobPhase::Queued { ahead: 3 }).place,
            JobPlace::Waiting("waiting for 3 earlier jobs".to_owned())
        );
        assert_eq!(
            of(JobPhase::Unplaced {
                reason: Some("no ready node with pool=gpu".to_owned())
            })
            .place,
            JobPlace::Waiting("no ready node with pool=gpu".to_owned())
        );
        let running = of(JobPhase::Running {
            node: "n1".to_owned(),
        });
        assert_eq!(running.place, JobPlace::Running("n1".to_owned()));
        assert_eq!(running.priority, "branch or tag");
    }
}
