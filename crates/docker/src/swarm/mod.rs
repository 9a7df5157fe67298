//! The Swarm executor: each container of a job is a `replicated-job` service on a Docker Swarm
//! cluster, behind a queue with priorities ([`queue`]).
//!
//! A job waits for a place in the queue, gets the image of its commit (`source`: its image
//! with the tree in `/src`, pushed to the registry and named by digest), and runs as a service
//! labelled with the CI instance, the job and its key (`service`). Its output streams from the
//! service's logs; its end is read from its task's state, not from the log stream (Swarm's
//! follow does not end when the task does). A node that goes down or is drained, or a task
//! without output or change of state for the stall timeout, gets the job submitted again
//! (up to [`SwarmConfig::resubmits`] times), saying why in the log. Cancel and timeout remove
//! the service. At start-up, services this instance left are reconciled (`reconcile`):
//! finished ones are collected by the job that asks for the same key, exactly once; others
//! are removed.
//!
//! Knows nothing of caches or what the job runs; builds of images stay on the manager
//! ([`Hosts`], given the manager as its one host).

mod board;
mod follow;
mod nodes;
pub(crate) mod queue;
mod reconcile;
mod service;
mod source;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use datakit_ci_git::Services;
use datakit_ci_log::LiveLog;
use datakit_ci_pool::{Holder, MonitoredPool};

use crate::executor::ContainerExecutor;
use crate::host::Hosts;
use crate::request::ContainerRequest;
use crate::{Error, SOURCE_DIR, error_chain, labels};

pub use board::{JobPhase, SwarmJob};
pub use nodes::NodeView;
pub use service::POOL_LABEL;

use board::{Board, OnBoard};
use follow::{Ending, follow_service};
use queue::FairQueue;
use reconcile::Leftovers;
use source::SourceImages;

/// How long the dashboard waits for the manager to list the nodes before it shows the last
/// reading.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// How a [`Swarm`] runs jobs.
#[derive(Clone, Debug)]
pub struct SwarmConfig {
    /// How many jobs run on the cluster at once; the others wait in the queue.
    pub jobs: usize,
    /// The registry the nodes pull from (`HOST:PORT`), where the images of jobs are pushed;
    /// `None`: images stay on the manager (a cluster of one node).
    pub registry: Option<String>,
    /// How long a running task may go without output and without a change of state before it
    /// is taken as stuck, for requests that do not say; `None`: never.
    pub stall_timeout: Option<Duration>,
    /// How many times a job is submitted again after its node was lost or its task was stuck.
    pub resubmits: u32,
    /// How often a running job's task state is read.
    pub poll: Duration,
}

impl Default for SwarmConfig {
    /// 4 jobs at once, no registry, no stall timeout, 2 resubmissions, state read every 250 ms.
    fn default() -> SwarmConfig {
        SwarmConfig {
            jobs: 4,
            registry: None,
            stall_timeout: None,
            resubmits: 2,
            poll: Duration::from_millis(250),
        }
    }
}

/// A Docker Swarm cluster as an executor. Cheap to clone.
#[derive(Clone)]
pub struct Swarm {
    inner: Arc<SwarmInner>,
}

struct SwarmInner {
    /// The manager, as the one host of these hosts: its daemon creates the services and builds
    /// the jobs' images.
    manager: Hosts,
    config: SwarmConfig,
    queue: FairQueue,
    /// The running jobs, as the dashboard shows pools.
    slots: MonitoredPool,
    sources: SourceImages,
    nodes: nodes::Nodes,
    leftovers: Leftovers,
    /// What each job is doing, for the dashboard.
    board: Board,
}

/// The cluster as the dashboard shows it: its nodes, and what each of its jobs is doing.
#[derive(Clone, Debug, Default)]
pub struct SwarmStatus {
    /// The nodes, as last read from the manager.
    pub nodes: Vec<NodeView>,
    /// Why the nodes could not be read just now (the last reading is shown), if they could not.
    pub nodes_error: Option<String>,
    /// The jobs the cluster has (queued, preparing, unplaced or running), in order of arrival.
    pub jobs: Vec<SwarmJob>,
}

impl Swarm {
    /// The cluster managed by the one host of `manager`, running jobs as `config` says, with a
    /// pool `swarm` (of `config.jobs` places) among the application's pools.
    pub fn new(manager: Hosts, config: SwarmConfig, services: &Services) -> Result<Swarm, Error> {
        if manager.specs().len() != 1 {
            return Err(Error::Hosts {
                reason: format!(
                    "a Swarm executor needs exactly one Docker host, the manager; {} given",
                    manager.specs().len()
                ),
            });
        }
        let slots = MonitoredPool::new(
            "swarm",
            config.jobs.max(1),
            &services.pool_metrics,
            &services.pools,
        )
        .map_err(|source| Error::Pool {
            host: "swarm".to_owned(),
            source,
        })?;
        Ok(Swarm {
            inner: Arc::new(SwarmInner {
                queue: FairQueue::new(config.jobs),
                slots,
                sources: SourceImages::default(),
                nodes: nodes::Nodes::new(services.health.clone()),
                leftovers: Leftovers::default(),
                board: Board::default(),
                manager,
                config,
            }),
        })
    }

    /// The nodes as last read (empty before the first job).
    pub async fn nodes(&self) -> Vec<NodeView> {
        self.inner.nodes.last()
    }

    /// How many jobs run, and how many wait for a place.
    pub fn load(&self) -> (usize, usize) {
        self.inner.queue.load()
    }

    /// The nodes (read again from the manager if the last reading is older than half a second,
    /// waiting at most a second for it) and the jobs, for the dashboard.
    pub async fn status(&self) -> SwarmStatus {
        let reading = tokio::time::timeout(STATUS_TIMEOUT, async {
            let (docker, _) = self.manager().await?;
            self.inner
                .nodes
                .current(&docker)
                .await
                .map_err(|source| Error::Api {
                    host: self.inner.manager.specs()[0].name().to_owned(),
                    action: "list the nodes".to_owned(),
                    source,
                })
        })
        .await;
        let (nodes, nodes_error) = match reading {
            Ok(Ok(nodes)) => (nodes, None),
            Ok(Err(e)) => (self.inner.nodes.last(), Some(error_chain(&e))),
            Err(_) => (
                self.inner.nodes.last(),
                Some(format!(
                    "the manager did not answer within {}",
                    humantime::format_duration(STATUS_TIMEOUT)
                )),
            ),
        };
        SwarmStatus {
            nodes,
            nodes_error,
            jobs: self
                .inner
                .board
                .jobs(|ticket| self.inner.queue.ahead(ticket)),
        }
    }

    /// Reconciles the services a previous run of this instance left, in the background (see
    /// the module's docs); a job never creates a service before this is done.
    pub fn start_reconciling(&self) {
        let swarm = self.clone();
        tokio::spawn(async move {
            if let Err(e) = swarm.reconciled().await {
                tracing::warn!(error = %error_chain(&e), "cannot reconcile the Swarm services left by a previous run");
            }
        });
    }

    /// The manager's connection.
    async fn manager(&self) -> Result<(Docker, String), Error> {
        let spec = &self.inner.manager.specs()[0];
        let host = self
            .inner
            .manager
            .host(spec.name())
            .expect("the manager is the one host");
        match host.ready().await {
            Ok((docker, _)) => Ok((docker, spec.name().to_owned())),
            Err(e) => {
                host.disconnected(&e).await;
                Err(e)
            }
        }
    }

    /// Waits for the reconciliation of what a previous run left.
    async fn reconciled(&self) -> Result<(), Error> {
        let (docker, host) = self.manager().await?;
        self.inner
            .leftovers
            .reconcile(&docker, &host, self.inner.manager.instance().as_str())
            .await
    }

    async fn run(
        &self,
        request: &ContainerRequest<'_>,
        log: &LiveLog,
        cancel: &CancellationToken,
    ) -> Result<(), Error> {
        if let Some(copy) = request.copy_out {
            // A finished task's container is on whichever node ran it, and the service's
            // removal takes it away; the manager's API cannot reach into another node's
            // containers.
            let message = "artifacts are not collected on Swarm: a finished task's container \
                           is on the node that ran it, which this CI cannot copy from";
            log.log(&format!("Note: {message}"));
            copy.sink.failed(message);
        }
        self.reconciled().await?;
        let (docker, host) = self.manager().await?;
        if let Some(service) = self.inner.leftovers.claim(&request.key) {
            let url = self.inner.manager.specs()[0].url().to_owned();
            return follow::collect(&docker, &host, &url, &service, request.argv, log).await;
        }
        let repository = request.job.target().repo().to_string();
        let ticket = self.inner.queue.join(request.priority, &repository);
        let on_board = self.inner.board.enter(
            request.job,
            &request.holder,
            request.priority,
            ticket.number(),
        );
        if let Some(ahead) = ticket.ahead() {
            log.log(&format!(
                "Waiting for a place on the Swarm cluster ({} places): {ahead} {} ahead, priority {}",
                self.inner.queue.capacity(),
                if ahead == 1 { "job" } else { "jobs" },
                request.priority.name()
            ));
        }
        let place = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(Error::Cancelled),
            place = ticket.admitted() => place,
        };
        let holder = Holder {
            job: request.job.to_string(),
            label: request.holder.clone(),
            log_branch: None,
        };
        let outcome = self
            .inner
            .slots
            .use_(
                holder,
                None,
                self.run_admitted(&docker, &host, request, &on_board, log, cancel),
            )
            .await;
        drop(place);
        outcome
    }

    /// Runs `request` once it has a place: its image, then its service, submitted again while
    /// its node is lost or its task stuck, within the budget.
    async fn run_admitted(
        &self,
        docker: &Docker,
        host: &str,
        request: &ContainerRequest<'_>,
        on_board: &OnBoard,
        log: &LiveLog,
        cancel: &CancellationToken,
    ) -> Result<(), Error> {
        let target = source::Target {
            docker,
            host,
            registry: self.inner.config.registry.as_deref(),
            instance: self.inner.manager.instance().as_str(),
        };
        let image = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(Error::Cancelled),
            image = self.inner.sources.reference(&target, request.image, request.commit, log) => image?,
        };
        let service_labels = HashMap::from([
            (
                labels::INSTANCE.to_owned(),
                self.inner.manager.instance().to_string(),
            ),
            (labels::JOB.to_owned(), request.job.to_string()),
            (labels::KEY.to_owned(), request.key.clone()),
        ]);
        let container_labels = HashMap::from([
            (labels::JOB.to_owned(), request.job.to_string()),
            (labels::KEY.to_owned(), request.key.clone()),
        ]);
        let stall_timeout = request.stall_timeout.or(self.inner.config.stall_timeout);
        let budget = self.inner.config.resubmits;
        let url = self.inner.manager.specs()[0].url().to_owned();
        let mut submission = 0;
        loop {
            let spec = service::service_spec(&service::ServiceRequest {
                name: crate::container::unique_name(request.key.as_bytes()),
                image: &image,
                argv: request.argv,
                env: request.env.clone(),
                workdir: request.workdir.unwrap_or(SOURCE_DIR),
                user: request.user,
                memory: request.memory,
                cpus: request.cpus,
                pool: request.pool,
                labels: service_labels.clone(),
                container_labels: container_labels.clone(),
            });
            let ending = follow_service(
                &follow::Follow {
                    docker,
                    host,
                    url: &url,
                    nodes: &self.inner.nodes,
                    poll: self.inner.config.poll,
                    stall_timeout,
                    timeout: request.timeout,
                    argv: request.argv,
                    image: &image,
                    pool: request.pool,
                    on_board,
                },
                spec,
                log,
                cancel,
            )
            .await?;
            let why = match ending {
                Ending::Done(outcome) => return outcome,
                Ending::NodeLost(reason) => Error::NodeLost { reason },
                Ending::Stalled(after) => Error::Stalled { after },
            };
            if submission >= budget {
                return Err(why);
            }
            submission += 1;
            log.log(&format!(
                "{}: submitting the job again ({submission} of {budget})",
                error_chain(&why)
            ));
        }
    }
}

impl ContainerExecutor for Swarm {
    fn run_container<'a>(
        &'a self,
        request: &'a ContainerRequest<'a>,
        log: &'a LiveLog,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.run(request, log, cancel))
    }
}

impl std::fmt::Debug for Swarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swarm")
            .field("manager", &self.inner.manager.specs()[0])
            .field("config", &self.inner.config)
            .finish()
    }
}
