//! What a job is to Swarm: the `replicated-job` service that runs one container of it (one
//! completion, no restart: retries are ours), and how to read its task's state.
//!
//! Pure: builds API values and interprets them; knows nothing of connections.

use std::collections::HashMap;

use bollard::models::{
    Limit, ResourceObject, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicatedJob, Task,
    TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum, TaskState,
};

/// The node label a step's `pool` selects: `pool: gpu` runs on nodes with
/// `node.labels.pool==gpu`.
pub const POOL_LABEL: &str = "pool";

/// One service to create.
pub(crate) struct ServiceRequest<'a> {
    pub(crate) name: String,
    /// The image, by digest where a registry is used.
    pub(crate) image: &'a str,
    pub(crate) argv: &'a [String],
    pub(crate) env: Vec<String>,
    pub(crate) workdir: &'a str,
    pub(crate) user: Option<&'a str>,
    pub(crate) memory: Option<u64>,
    pub(crate) cpus: Option<f64>,
    pub(crate) pool: Option<&'a str>,
    /// The service's labels (the CI instance, the job, the key).
    pub(crate) labels: HashMap<String, String>,
    /// The container's labels: the job and the key, not the instance (the Docker hosts'
    /// start-up removal of this instance's containers must not remove a task's container,
    /// whose logs and exit status the reconciliation reads).
    pub(crate) container_labels: HashMap<String, String>,
}

/// The service spec of `request`: a `replicated-job` of one completion, never restarted, with
/// the request's limits reserved and enforced and its pool as a placement constraint.
pub(crate) fn service_spec(request: &ServiceRequest<'_>) -> ServiceSpec {
    let memory = request.memory.map(|m| i64::try_from(m).unwrap_or(i64::MAX));
    let nano_cpus = request.cpus.map(|c| (c * 1e9) as i64);
    let constraints = request
        .pool
        .map(|pool| vec![format!("node.labels.{POOL_LABEL}=={pool}")]);
    ServiceSpec {
        name: Some(request.name.clone()),
        labels: Some(request.labels.clone()),
        mode: Some(ServiceSpecMode {
            replicated_job: Some(ServiceSpecModeReplicatedJob {
                max_concurrent: Some(1),
                total_completions: Some(1),
            }),
            ..Default::default()
        }),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(request.image.to_owned()),
                command: Some(request.argv.to_vec()),
                env: Some(request.env.clone()),
                dir: Some(request.workdir.to_owned()),
                user: request.user.map(str::to_owned),
                labels: Some(request.container_labels.clone()),
                ..Default::default()
            }),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    nano_cpus,
                    memory_bytes: memory,
                    pids: None,
                }),
                reservations: Some(ResourceObject {
                    nano_cpus,
                    memory_bytes: memory,
                    generic_resources: None,
                }),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                max_attempts: Some(0),
                ..Default::default()
            }),
            placement: constraints.map(|constraints| TaskSpecPlacement {
                constraints: Some(constraints),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Where a service's task is, as the CI reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TaskView {
    /// No task yet, or one the scheduler has not placed: with the scheduler's reason when it
    /// gave one (e.g. `no suitable node (scheduling constraints not satisfied on 3 nodes)`).
    Waiting { reason: Option<String> },
    /// Placed on `node`, being prepared, started or running.
    OnNode { node: String, state: TaskState },
    /// Ended: with its container's exit code, if it ran. `message` is the task's error, if any.
    Ended {
        node: Option<String>,
        state: TaskState,
        exit_code: Option<i64>,
        message: Option<String>,
    },
}

/// The view of the service's current task among `tasks` (the newest).
pub(crate) fn task_view(tasks: &[Task]) -> TaskView {
    let Some(task) = tasks
        .iter()
        .max_by(|a, b| a.created_at.as_ref().cmp(&b.created_at.as_ref()))
    else {
        return TaskView::Waiting { reason: None };
    };
    let status = task.status.clone().unwrap_or_default();
    let state = status.state.unwrap_or(TaskState::NEW);
    let node = task.node_id.clone().filter(|n| !n.is_empty());
    let message = status.err.clone().filter(|e| !e.is_empty());
    if is_terminal(state) {
        return TaskView::Ended {
            node,
            state,
            exit_code: status.container_status.and_then(|c| c.exit_code),
            message,
        };
    }
    match node {
        Some(node) if state >= TaskState::ASSIGNED => TaskView::OnNode { node, state },
        _ => TaskView::Waiting { reason: message },
    }
}

/// Whether a task in `state` will not change any more.
pub(crate) fn is_terminal(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::COMPLETE
            | TaskState::SHUTDOWN
            | TaskState::FAILED
            | TaskState::REJECTED
            | TaskState::REMOVE
            | TaskState::ORPHANED
    )
}

#[cfg(test)]
mod tests {
    use bollard::models::{ContainerStatus, TaskStatus};

    use super::*;

    fn request<'a>(argv: &'a [String]) -> ServiceRequest<'a> {
        ServiceRequest {
            name: "datakit-ci-x".to_owned(),
            image: "127.0.0.1:5000/src@sha256:00",
            argv,
            env: vec!["A=1".to_owned()],
            workdir: "/src",
            user: None,
            memory: Some(256 << 20),
            cpus: Some(0.5),
            pool: Some("gpu"),
            labels: HashMap::from([("datakit-ci.instance".to_owned(), "i".to_owned())]),
            container_labels: HashMap::new(),
        }
    }

    #[test]
    fn a_job_is_one_completion_never_restarted_placed_by_its_pool() {
        let argv = vec!["sh".to_owned(), "-c".to_owned(), "make".to_owned()];
        let spec = service_spec(&request(&argv));
        let job = spec
            .mode
            .and_then(|m| m.replicated_job)
            .expect("a replicated job");
        assert_eq!(
            (job.max_concurrent, job.total_completions),
            (Some(1), Some(1))
        );
        let task = spec.task_template.expect("a task template");
        let restart = task.restart_policy.expect("a restart policy");
        assert_eq!(
            restart.condition,
            Some(TaskSpecRestartPolicyConditionEnum::NONE)
        );
        assert_eq!(
            task.placement.and_then(|p| p.constraints),
            Some(vec!["node.labels.pool==gpu".to_owned()])
        );
        let limits = task.resources.and_then(|r| r.limits).expect("limits");
        assert_eq!(limits.memory_bytes, Some(256 << 20));
        assert_eq!(limits.nano_cpus, Some(500_000_000));
        let container = task.container_spec.expect("a container");
        assert_eq!(container.command, Some(argv));
        assert_eq!(container.dir.as_deref(), Some("/src"));
    }

    fn task(state: TaskState, node: Option<&str>, exit: Option<i64>, err: Option<&str>) -> Task {
        Task {
            node_id: node.map(str::to_owned),
            status: Some(TaskStatus {
                state: Some(state),
                err: err.map(str::to_owned),
                container_status: exit.map(|code| ContainerStatus {
                    exit_code: Some(code),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn task_states_are_read_as_waiting_on_a_node_or_ended() {
        assert_eq!(task_view(&[]), TaskView::Waiting { reason: None });
        let reason = "no suitable node (scheduling constraints not satisfied on 3 nodes)";
        assert_eq!(
            task_view(&[task(TaskState::PENDING, None, None, Some(reason))]),
            TaskView::Waiting {
                reason: Some(reason.to_owned())
            }
        );
        assert_eq!(
            task_view(&[task(TaskState::RUNNING, Some("n1"), None, None)]),
            TaskView::OnNode {
                node: "n1".to_owned(),
                state: TaskState::RUNNING
            }
        );
        assert_eq!(
            task_view(&[task(TaskState::FAILED, Some("n1"), Some(3), Some("exit 3"))]),
            TaskView::Ended {
                node: Some("n1".to_owned()),
                state: TaskState::FAILED,
                exit_code: Some(3),
                message: Some("exit 3".to_owned())
            }
        );
    }
}
