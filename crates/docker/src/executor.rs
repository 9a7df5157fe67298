//! The executor seam: where a job's containers run. Steps ([`Command`](crate::Command), the
//! pipeline file's steps in images) hand a [`ContainerRequest`] to an [`Executor`] and know
//! nothing of what is behind it: the Docker hosts' pools ([`Hosts`]) or a Swarm cluster
//! ([`Swarm`](crate::Swarm)).

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use datakit_ci_log::LiveLog;

use crate::Error;
use crate::host::Hosts;
use crate::request::ContainerRequest;

/// Runs the containers of jobs.
pub trait ContainerExecutor: Send + Sync + std::fmt::Debug {
    /// Runs `request` in a fresh container, streaming its output into `log`, and removes what
    /// it made in every case. A non-zero exit is [`Error::Exit`]; an OOM kill
    /// [`Error::OutOfMemory`]; the request's timeout [`Error::Timeout`]; a cancel
    /// [`Error::Cancelled`]; a machine that cannot run it [`Error::Unreachable`].
    fn run_container<'a>(
        &'a self,
        request: &'a ContainerRequest<'a>,
        log: &'a LiveLog,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// The id the published image `name` stands for now: a step records it with its result,
    /// so that a re-tagged name runs the step again. `Ok(None)` (the default) when this
    /// executor cannot tell: then results are kept per name.
    fn resolve_published<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, Error>> {
        let _ = name;
        Box::pin(async { Ok(None) })
    }
}

/// A shared executor, as steps hold it.
pub type Executor = Arc<dyn ContainerExecutor>;

impl ContainerExecutor for Hosts {
    fn run_container<'a>(
        &'a self,
        request: &'a ContainerRequest<'a>,
        log: &'a LiveLog,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(Hosts::run_container(self, request, log, cancel))
    }

    fn resolve_published<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, Error>> {
        Box::pin(async move { Hosts::resolve_published(self, name).await.map(Some) })
    }
}

impl From<Hosts> for Executor {
    fn from(hosts: Hosts) -> Executor {
        Arc::new(hosts)
    }
}
