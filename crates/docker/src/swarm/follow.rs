//! One submission of a job: create its service, stream its logs into the live log, read its
//! task's state until it ends, and remove the service — also when the job is cancelled, times
//! out, its node is lost, its task is stuck, or the run is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ServiceSpec, TaskState};
use bollard::query_parameters::{ListTasksOptions, LogsOptions};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use datakit_ci_log::LiveLog;

use super::board::{JobPhase, OnBoard};
use super::nodes::Nodes;
use super::service::{TaskView, task_view};
use crate::host::{is_connection_error, is_not_found};
use crate::{Error, display_command};

/// What a submission needs besides its spec.
pub(crate) struct Follow<'a> {
    pub(crate) docker: &'a Docker,
    pub(crate) host: &'a str,
    /// The manager's URL, to remove the service if the run is dropped.
    pub(crate) url: &'a str,
    pub(crate) nodes: &'a Nodes,
    pub(crate) poll: Duration,
    pub(crate) stall_timeout: Option<Duration>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) argv: &'a [String],
    pub(crate) image: &'a str,
    pub(crate) pool: Option<&'a str>,
    /// The job's entry on the dashboard's board.
    pub(crate) on_board: &'a OnBoard,
}

/// How a submission ended.
pub(crate) enum Ending {
    /// The task ended (or the job cannot run): this is the job's result.
    Done(Result<(), Error>),
    /// The task's node went down or was drained, as the reason says.
    NodeLost(String),
    /// The task gave no output and did not change state for this long.
    Stalled(Duration),
}

/// Submits `spec` and follows it to its end; the service is removed in every case.
pub(crate) async fn follow_service(
    follow: &Follow<'_>,
    spec: ServiceSpec,
    log: &LiveLog,
    cancel: &CancellationToken,
) -> Result<Ending, Error> {
    let api = |action: &str| {
        let (host, action) = (follow.host.to_owned(), action.to_owned());
        move |source| Error::Api {
            host,
            action,
            source,
        }
    };
    let name = spec.name.clone().unwrap_or_default();
    let mut guard = ServiceGuard {
        docker: follow.docker.clone(),
        url: follow.url.to_owned(),
        id: name,
        removed: false,
    };
    let created = match follow.docker.create_service(spec, None).await {
        Ok(created) => created,
        Err(e) if is_connection_error(&e) => {
            guard.removed = true;
            return Err(Error::Unreachable {
                url: follow.url.to_owned(),
                source: e,
            });
        }
        Err(e) => {
            guard.removed = true;
            return Err(api("create the service")(e));
        }
    };
    if let Some(id) = created.id {
        guard.id = id;
    }
    let short = guard.id[..guard.id.len().min(12)].to_owned();
    follow.on_board.set(JobPhase::Unplaced { reason: None });
    log.log(&format!(
        "Running {} as Swarm service {short} of image {}",
        display_command(follow.argv),
        short_reference(follow.image)
    ));
    let progress = Arc::new(Mutex::new(Instant::now()));
    let frames = Arc::new(AtomicUsize::new(0));
    let streaming = stream_logs(follow.docker, &guard.id, log, &progress, &frames);
    let watching = watch(follow, &guard.id, log, &progress);
    let timeout = async {
        match follow.timeout {
            Some(timeout) => tokio::time::sleep(timeout).await,
            None => std::future::pending().await,
        }
    };
    let ending = tokio::select! {
        biased;
        () = cancel.cancelled() => {
            log.log(&format!("Cancelled: removing service {short}"));
            Ending::Done(Err(Error::Cancelled))
        }
        () = timeout => {
            let timeout = follow.timeout.expect("the timer only fires with a timeout");
            log.log(&format!(
                "Timed out after {}: removing service {short}",
                humantime::format_duration(timeout)
            ));
            Ending::Done(Err(Error::Timeout { timeout }))
        }
        ending = watching => match ending {
            Ok(ending) => ending,
            Err(e) => Ending::Done(Err(e)),
        },
        () = streaming => unreachable!("the log stream is followed until the task ends"),
    };
    if let Ending::Done(outcome) = &ending
        && !matches!(outcome, Err(Error::Cancelled | Error::Timeout { .. }))
    {
        // The follow may not have delivered the last lines yet: read the whole log once more
        // and write what it did not.
        let seen = frames.load(Ordering::SeqCst);
        let _gave = write_logs(follow.docker, &guard.id, seen, log).await;
    }
    guard.remove().await;
    Ok(ending)
}

/// Follows the service's logs into `log`, counting the messages, and never returns (the
/// follow does not end when the task does; a stream that fails is left).
async fn stream_logs(
    docker: &Docker,
    id: &str,
    log: &LiveLog,
    progress: &Mutex<Instant>,
    frames: &AtomicUsize,
) {
    let mut stream = docker.service_logs(
        id,
        Some(LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            tail: "all".to_owned(),
            ..Default::default()
        }),
    );
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                log.write(&chunk.into_bytes());
                frames.fetch_add(1, Ordering::SeqCst);
                *progress.lock().expect("no code panics while holding it") = Instant::now();
            }
            Err(e) => {
                tracing::debug!(service = id, error = %e, "the service's log stream failed");
                break;
            }
        }
    }
    std::future::pending().await
}

/// The service's whole log so far, message by message; an error ends it (with what was read
/// before).
async fn read_logs(docker: &Docker, id: &str) -> (Vec<Vec<u8>>, Option<bollard::errors::Error>) {
    let mut stream = docker.service_logs(
        id,
        Some(LogsOptions {
            follow: false,
            stdout: true,
            stderr: true,
            tail: "all".to_owned(),
            ..Default::default()
        }),
    );
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => chunks.push(chunk.into_bytes().to_vec()),
            Err(e) => return (chunks, Some(e)),
        }
    }
    (chunks, None)
}

/// Writes the service's log, from message `skip` on, into `log`, saying so if it cannot be
/// read; whether Swarm gave anything (a message or an error).
async fn write_logs(docker: &Docker, id: &str, skip: usize, log: &LiveLog) -> bool {
    let (chunks, error) = read_logs(docker, id).await;
    let gave = !chunks.is_empty() || error.is_some();
    for chunk in chunks.into_iter().skip(skip) {
        log.write(&chunk);
    }
    if let Some(error) = error {
        log.log(&format!(
            "Cannot read the rest of the service's log: {error}"
        ));
    }
    gave
}

/// Reads the service's task every `poll` until it ends, its node is lost, or it is stuck.
async fn watch(
    follow: &Follow<'_>,
    id: &str,
    log: &LiveLog,
    progress: &Mutex<Instant>,
) -> Result<Ending, Error> {
    let filters = HashMap::from([("service".to_owned(), vec![id.to_owned()])]);
    let mut last: Option<TaskView> = None;
    let mut said_waiting: Option<String> = None;
    let mut placed: Option<String> = None;
    loop {
        tokio::time::sleep(follow.poll).await;
        let tasks = match follow
            .docker
            .list_tasks(Some(ListTasksOptions {
                filters: Some(filters.clone()),
            }))
            .await
        {
            Ok(tasks) => tasks,
            Err(e) if is_connection_error(&e) => {
                return Err(Error::Unreachable {
                    url: follow.url.to_owned(),
                    source: e,
                });
            }
            Err(e) => {
                return Err(Error::Api {
                    host: follow.host.to_owned(),
                    action: "read the service's task".to_owned(),
                    source: e,
                });
            }
        };
        let view = task_view(&tasks);
        if last.as_ref() != Some(&view) {
            *progress.lock().expect("no code panics while holding it") = Instant::now();
            last = Some(view.clone());
        }
        match view {
            TaskView::Waiting { reason } => {
                let reason = waiting_reason(follow, reason).await;
                follow.on_board.set(JobPhase::Unplaced {
                    reason: reason.clone(),
                });
                if let Some(reason) = reason
                    && said_waiting.as_ref() != Some(&reason)
                {
                    log.log(&format!("Waiting for a node: {reason}"));
                    said_waiting = Some(reason);
                }
            }
            TaskView::OnNode { node, state } => {
                if placed.as_ref() != Some(&node) {
                    follow
                        .on_board
                        .set(JobPhase::Running { node: node.clone() });
                    log.log(&format!(
                        "Task placed on node {}",
                        node_name(follow, &node).await
                    ));
                    placed = Some(node.clone());
                }
                if let Some(reason) = node_lost(follow, &node).await {
                    log.log(&format!("The job's {reason}"));
                    return Ok(Ending::NodeLost(reason));
                }
                if let Some(stall) = follow.stall_timeout {
                    let quiet = progress
                        .lock()
                        .expect("no code panics while holding it")
                        .elapsed();
                    if state == TaskState::RUNNING && quiet >= stall {
                        log.log(&format!(
                            "No output and no change of state for {}: the task is stuck",
                            humantime::format_duration(stall)
                        ));
                        return Ok(Ending::Stalled(stall));
                    }
                }
            }
            TaskView::Ended {
                node,
                state,
                exit_code,
                message,
            } => {
                if !matches!(state, TaskState::COMPLETE | TaskState::FAILED)
                    && let Some(node) = &node
                    && let Some(reason) = node_lost(follow, node).await
                {
                    log.log(&format!("The job's {reason}"));
                    return Ok(Ending::NodeLost(reason));
                }
                return Ok(Ending::Done(outcome_of(
                    follow.argv,
                    state,
                    exit_code,
                    message,
                )));
            }
        }
    }
}

/// Why the task waits, in words: the scheduler's reason, naming the pool when no node has it.
async fn waiting_reason(follow: &Follow<'_>, reason: Option<String>) -> Option<String> {
    let reason = reason?;
    if let Some(pool) = follow.pool
        && let Ok(nodes) = follow.nodes.current(follow.docker).await
        && !nodes.iter().any(|n| {
            n.lost().is_none() && n.labels.get(super::POOL_LABEL).map(String::as_str) == Some(pool)
        })
    {
        return Some(format!(
            "no ready node with {}={pool} ({reason})",
            super::POOL_LABEL
        ));
    }
    Some(reason)
}

/// The node `id` as the log names it.
async fn node_name(follow: &Follow<'_>, id: &str) -> String {
    let nodes = follow
        .nodes
        .current(follow.docker)
        .await
        .unwrap_or_default();
    match nodes.iter().find(|n| n.id == id) {
        Some(node) => node.name(),
        None => id[..id.len().min(12)].to_owned(),
    }
}

/// Why the node `id` will not finish the task, if it will not.
async fn node_lost(follow: &Follow<'_>, id: &str) -> Option<String> {
    match follow.nodes.current(follow.docker).await {
        Ok(nodes) => nodes.iter().find(|n| n.id == id).and_then(|n| n.lost()),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the nodes");
            None
        }
    }
}

/// The job's result from its task's end.
pub(crate) fn outcome_of(
    argv: &[String],
    state: TaskState,
    exit_code: Option<i64>,
    message: Option<String>,
) -> Result<(), Error> {
    match (state, exit_code) {
        (TaskState::COMPLETE, _) => Ok(()),
        (TaskState::FAILED, Some(code)) if code != 0 => Err(Error::Exit {
            command: display_command(argv),
            code,
        }),
        (state, _) => Err(Error::Task {
            state: format!("{state:?}").to_lowercase(),
            message: message.unwrap_or_else(|| "no message".to_owned()),
        }),
    }
}

/// Collects a service that ended while the CI was not running: its log, with a heading, and its
/// result; then removes it.
pub(crate) async fn collect(
    docker: &Docker,
    host: &str,
    url: &str,
    id: &str,
    argv: &[String],
    log: &LiveLog,
) -> Result<(), Error> {
    let mut guard = ServiceGuard {
        docker: docker.clone(),
        url: url.to_owned(),
        id: id.to_owned(),
        removed: false,
    };
    let filters = HashMap::from([("service".to_owned(), vec![id.to_owned()])]);
    let tasks = docker
        .list_tasks(Some(ListTasksOptions {
            filters: Some(filters),
        }))
        .await
        .map_err(|source| Error::Api {
            host: host.to_owned(),
            action: "read the service's task".to_owned(),
            source,
        })?;
    let TaskView::Ended {
        state,
        exit_code,
        message,
        ..
    } = task_view(&tasks)
    else {
        guard.remove().await;
        return Err(Error::Task {
            state: "lost".to_owned(),
            message: "the service left by a previous run has no ended task".to_owned(),
        });
    };
    log.log(&format!(
        "Collecting Swarm service {}, which ran {} and ended while the CI was not running",
        &id[..id.len().min(12)],
        display_command(argv)
    ));
    // The manager gathers an ended task's log from its node and at times answers with nothing
    // (seen after a restart): ask again a few times, then say so rather than show an empty log.
    let mut read = false;
    for _ in 0..3 {
        read = write_logs(docker, id, 0, log).await;
        if read {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if !read {
        log.log(
            "Swarm gave no log for this service (its node did not send it, or it printed nothing)",
        );
    }
    guard.remove().await;
    outcome_of(argv, state, exit_code, message)
}

/// Removes a service: at the end of a submission, or when the run is dropped (the CI shutting
/// down), so that no service outlives its job.
struct ServiceGuard {
    docker: Docker,
    url: String,
    /// The service's name until the manager has answered its creation, then its id.
    id: String,
    removed: bool,
}

impl ServiceGuard {
    async fn remove(&mut self) {
        match self.docker.delete_service(&self.id).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            // What could not be removed now is removed when the CI next starts.
            Err(e) => tracing::warn!(service = %self.id, error = %e, "cannot remove service"),
        }
        self.removed = true;
    }
}

impl Drop for ServiceGuard {
    /// Dropped before [`ServiceGuard::remove`] ran: the run's future was dropped (the runtime
    /// shutting down); one synchronous request removes the service.
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        match crate::container::delete_now(&self.url, &format!("/services/{}", self.id)) {
            Ok(_) => tracing::info!(service = %self.id, "removed the service of a dropped run"),
            Err(e) => tracing::warn!(service = %self.id, error = %e, "cannot remove service"),
        }
    }
}

/// An image reference as the log shows it: without a long digest.
fn short_reference(image: &str) -> &str {
    match image.split_once("@sha256:") {
        Some((name, _)) => name,
        None => image
            .strip_prefix("sha256:")
            .map_or(image, |hex| &hex[..hex.len().min(10)]),
    }
}
