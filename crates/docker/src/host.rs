//! Docker hosts: where containers run. `Hosts` owns, per daemon, its connection (made on first
//! use, with the API version negotiated down to the daemon's), its pool of job slots, whether
//! it answered last time, and the one-time removal of what a previous run of this CI instance
//! left there.
//!
//! Knows nothing of caches, commits or what a container runs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};

use tokio_util::sync::CancellationToken;

use datakit_ci_git::Services;
use datakit_ci_health::Health;
use datakit_ci_log::LiveLog;
use datakit_ci_pool::{Holder, MonitoredPool};
use datakit_ci_store::Store;

use crate::instance::Instance;
use crate::resolve::{RESOLUTION_TTL, Resolutions};
use crate::{Error, labels};

/// The seconds a Docker API request may take to answer (not counting a streamed body).
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// How long a host that did not answer is passed over before steps try it again.
const DOWN_RETRY: Duration = Duration::from_secs(30);

/// The default Docker daemon: the local socket.
const DEFAULT_URL: &str = "unix:///var/run/docker.sock";

/// A Docker daemon the CI may use: a name (for pools, logs and the dashboard) and a URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSpec {
    name: String,
    url: String,
}

impl HostSpec {
    /// The daemon at `url` (`unix:///PATH` or `tcp://HOST:PORT`, plain HTTP), called `name`
    /// (ASCII letters, digits, `.`, `_` and `-`).
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Result<HostSpec, Error> {
        let (name, url) = (name.into(), url.into());
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !name_ok {
            return Err(Error::InvalidHostName { name });
        }
        let url_ok = match (url.strip_prefix("unix://"), url.strip_prefix("tcp://")) {
            (Some(path), _) => path.starts_with('/'),
            (_, Some(address)) => !address.is_empty() && !address.contains('/'),
            _ => false,
        };
        if !url_ok {
            return Err(Error::InvalidUrl { url });
        }
        Ok(HostSpec { name, url })
    }

    /// The local daemon, `local=unix:///var/run/docker.sock`.
    pub fn local_default() -> HostSpec {
        HostSpec {
            name: "local".to_owned(),
            url: DEFAULT_URL.to_owned(),
        }
    }

    /// The host's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The daemon's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The Docker hosts of a CI, with a pool of job slots each. Cheap to clone.
#[derive(Clone)]
pub struct Hosts {
    inner: Arc<HostsInner>,
}

struct HostsInner {
    hosts: Vec<Host>,
    instance: Instance,
    /// Where the cache entries are, to tell which built images are still referenced.
    store: Store,
    /// The age after which unreferenced built images are removed; unset: never.
    prune_after: OnceLock<Duration>,
    /// The most bytes unreferenced built images may take on a host; unset: no limit.
    prune_size: OnceLock<u64>,
    /// Published names recently resolved to image ids.
    resolutions: Resolutions,
    /// The task of [`Hosts::start_reaping`]: it holds the hosts while it runs, and ends.
    reaping: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// One Docker daemon, as [`Hosts`] keeps it.
pub(crate) struct Host {
    spec: HostSpec,
    pool: MonitoredPool,
    instance: Instance,
    /// The connection, made on first use; dropped when the daemon stops answering, so that the
    /// next use connects again.
    client: tokio::sync::Mutex<Option<Docker>>,
    /// Set once the containers a previous run left here are removed.
    reaped: tokio::sync::OnceCell<()>,
    /// Why the daemon did not answer last time, and since when; `None` when it did (or was not
    /// asked yet).
    down: Mutex<Option<(String, Instant)>>,
    /// Where a host that is down is shown (the dashboard's trouble), until it answers again.
    health: Health,
}

impl Hosts {
    /// The hosts of `specs` (at least one, with distinct names), each with a pool of
    /// `jobs_per_host` slots named `docker-<name>` in the application's pools; everything they
    /// make is labelled with `instance`.
    ///
    /// No daemon is contacted here: each is on its first use, so that a host that is down does
    /// not stop the CI from starting.
    pub fn new(
        specs: Vec<HostSpec>,
        jobs_per_host: usize,
        instance: Instance,
        services: &Services,
    ) -> Result<Hosts, Error> {
        if specs.is_empty() {
            return Err(Error::Hosts {
                reason: "no host given".to_owned(),
            });
        }
        let mut hosts: Vec<Host> = Vec::with_capacity(specs.len());
        for spec in specs {
            if hosts.iter().any(|h| h.spec.name == spec.name) {
                return Err(Error::Hosts {
                    reason: format!("the name {:?} is used twice", spec.name),
                });
            }
            let pool = MonitoredPool::new(
                format!("docker-{}", spec.name),
                jobs_per_host,
                &services.pool_metrics,
                &services.pools,
            )
            .map_err(|source| Error::Pool {
                host: spec.name.clone(),
                source,
            })?;
            hosts.push(Host {
                spec,
                pool,
                instance: instance.clone(),
                client: tokio::sync::Mutex::new(None),
                reaped: tokio::sync::OnceCell::new(),
                down: Mutex::new(None),
                health: services.health.clone(),
            });
        }
        Ok(Hosts {
            inner: Arc::new(HostsInner {
                hosts,
                instance,
                store: services.store.clone(),
                prune_after: OnceLock::new(),
                prune_size: OnceLock::new(),
                resolutions: Resolutions::new(RESOLUTION_TTL),
                reaping: Mutex::new(None),
            }),
        })
    }

    /// These hosts, removing the images this instance built that no cache entry refers to any
    /// more (a rebuild replaced them) once they are older than `older_than`, at start-up
    /// ([`Hosts::start_reaping`]) and when [`Hosts::prune_images`] is called. Without it, they
    /// are kept. (Not after each build: an image whose build has not recorded it yet would look
    /// unreferenced.)
    #[must_use]
    pub fn with_image_pruning(self, older_than: Duration) -> Hosts {
        // Set once: the hosts are configured before they are shared.
        let _first = self.inner.prune_after.set(older_than);
        self
    }

    /// These hosts, removing, when the images this instance built that no cache entry refers to
    /// any more take more than `max_bytes` on a host (each image's size as the engine reports
    /// it), the oldest of them until they take less, at start-up ([`Hosts::start_reaping`]) and
    /// when [`Hosts::prune_images`] is called. An image a container uses is never removed.
    /// Combines with [`Hosts::with_image_pruning`]: the age limit applies first.
    #[must_use]
    pub fn with_image_size_limit(self, max_bytes: u64) -> Hosts {
        // Set once: the hosts are configured before they are shared.
        let _first = self.inner.prune_size.set(max_bytes);
        self
    }

    /// Removes, on every host that answers, the images this instance built that no cache entry
    /// refers to any more: those older than the age given to [`Hosts::with_image_pruning`],
    /// then, oldest first, those over the size given to [`Hosts::with_image_size_limit`] (none
    /// without either). Returns how many were removed.
    pub async fn prune_images(&self) -> usize {
        let mut removed = 0;
        for host in &self.inner.hosts {
            removed += self.prune_on(host).await;
        }
        removed
    }

    /// [`Hosts::prune_images`] on `host` only.
    async fn prune_on(&self, host: &Host) -> usize {
        let limits = crate::prune::Limits {
            older_than: self.inner.prune_after.get().copied(),
            max_size: self.inner.prune_size.get().copied(),
        };
        if limits == crate::prune::Limits::default() {
            return 0;
        }
        let result = match host.ready().await {
            Ok((docker, _)) => {
                crate::prune::prune_images(
                    &docker,
                    host.spec.name(),
                    self.inner.instance.as_str(),
                    &self.inner.store,
                    limits,
                )
                .await
            }
            Err(e) => Err(e),
        };
        result.unwrap_or_else(|e| {
            tracing::warn!(host = %host.spec.name, error = %crate::error_chain(&e), "cannot prune images");
            0
        })
    }

    /// The instance whose label everything made here carries.
    pub fn instance(&self) -> &Instance {
        &self.inner.instance
    }

    /// The hosts, in the order given.
    pub fn specs(&self) -> Vec<HostSpec> {
        self.inner.hosts.iter().map(|h| h.spec.clone()).collect()
    }

    /// The hosts that did not answer last time they were used, with the reason.
    pub fn down(&self) -> Vec<(String, String)> {
        self.inner
            .hosts
            .iter()
            .filter_map(|h| h.down_reason().map(|reason| (h.spec.name.clone(), reason)))
            .collect()
    }

    /// Removes, on every host, the containers labelled with this instance: what a previous run
    /// left (e.g. killed with `kill -9` while containers ran). Each host does this by itself
    /// before its first container; calling it at start-up does it at once. Returns how many
    /// containers were removed; a host that does not answer is skipped (and marked down).
    pub async fn reap_leftovers(&self) -> usize {
        let mut removed = 0;
        for host in &self.inner.hosts {
            match host.ready().await {
                Ok((_, count)) => removed += count,
                Err(e) => tracing::warn!(
                    host = %host.spec.name,
                    error = %crate::error_chain(&e),
                    "cannot remove leftover containers"
                ),
            }
        }
        removed
    }

    /// Starts [`Hosts::reap_leftovers`], then [`Hosts::prune_images`], in the background (a task of the current runtime,
    /// owned by these hosts), so that leftovers are removed at start-up rather than when each
    /// host is first used; a container is never started on a host before its removal is done.
    pub fn start_reaping(&self) {
        let hosts = self.clone();
        let task = tokio::spawn(async move {
            hosts.reap_leftovers().await;
            hosts.prune_images().await;
        });
        let mut reaping = self
            .inner
            .reaping
            .lock()
            .expect("no code panics while holding the reaping task");
        if let Some(previous) = reaping.replace(task) {
            previous.abort();
        }
    }

    /// The id of the published image `name` (see [`Image::of_published`](crate::Image)): on
    /// the first host that answers, in the order given (a published image is expected on every
    /// host, with the same id). A name's id is looked up again once the last look is 2 s old,
    /// so that the steps using it in one evaluation ask once and a re-tagged name is seen at
    /// the next. An image the host does not have is [`Error::UnknownImage`]; no host answering,
    /// [`Error::Unreachable`].
    pub async fn resolve_published(&self, name: &str) -> Result<String, Error> {
        self.inner
            .resolutions
            .resolve(name, || async {
                let host = self.first_answering().await?;
                let (docker, _) = host.ready().await?;
                crate::resolve::image_id(&docker, host.spec().name(), name).await
            })
            .await
    }

    /// The first host that answers, in the order given (the same every time, so that what it
    /// says of an image is stable); the last error if none does.
    pub(crate) async fn first_answering(&self) -> Result<&Host, Error> {
        let mut last_error = None;
        for host in &self.inner.hosts {
            match host.ready().await {
                Ok(_) => return Ok(host),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("Hosts has at least one host"))
    }

    /// The host called `name`.
    pub(crate) fn host(&self, name: &str) -> Option<&Host> {
        self.inner.hosts.iter().find(|h| h.spec.name == name)
    }

    /// The host a new step should go to: among those not known to be down (all of them if
    /// every one is; a host is tried again [`DOWN_RETRY`] after it failed) and not in `exclude`, the one with the fewest steps running or queued
    /// relative to its capacity; the first such in the given order on a tie.
    pub(crate) fn choose(&self, exclude: &[String]) -> Option<&Host> {
        let candidates: Vec<&Host> = self
            .inner
            .hosts
            .iter()
            .filter(|h| !exclude.contains(&h.spec.name))
            .collect();
        let up: Vec<&Host> = candidates
            .iter()
            .copied()
            .filter(|h| !h.recently_down())
            .collect();
        let pick_from = if up.is_empty() { candidates } else { up };
        pick_from.into_iter().min_by(|a, b| {
            // load(a) / cap(a) < load(b) / cap(b), without division.
            let load = |h: &Host| h.pool.active() + h.pool.qlen();
            (load(a) * b.pool.capacity()).cmp(&(load(b) * a.pool.capacity()))
        })
    }
}

impl std::fmt::Debug for Hosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosts")
            .field("hosts", &self.specs())
            .field("instance", &self.inner.instance)
            .finish()
    }
}

impl Host {
    /// The host's name and URL.
    pub(crate) fn spec(&self) -> &HostSpec {
        &self.spec
    }

    /// Runs `work` holding one of the host's slots, as `holder`, with the wait shown on `log`.
    /// A cancel while queued gives up the place at once; once `work` has started, it sees the
    /// cancel itself (and cleans up after itself, e.g. removes its container).
    pub(crate) async fn use_slot<T>(
        &self,
        holder: Holder,
        log: &LiveLog,
        cancel: &CancellationToken,
        work: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let started = AtomicBool::new(false);
        let work = self.pool.use_(holder, Some(log), async {
            started.store(true, Ordering::SeqCst);
            work.await
        });
        tokio::pin!(work);
        let mut cancel_seen = false;
        loop {
            tokio::select! {
                biased;
                outcome = &mut work => return outcome,
                () = cancel.cancelled(), if !cancel_seen => {
                    if !started.load(Ordering::SeqCst) {
                        return Err(Error::Cancelled);
                    }
                    cancel_seen = true;
                }
            }
        }
    }

    fn down_reason(&self) -> Option<String> {
        self.down
            .lock()
            .expect("no code panics while holding a host's state")
            .as_ref()
            .map(|(reason, _)| reason.clone())
    }

    /// Whether the host failed to answer less than [`DOWN_RETRY`] ago.
    fn recently_down(&self) -> bool {
        self.down
            .lock()
            .expect("no code panics while holding a host's state")
            .as_ref()
            .is_some_and(|(_, since)| since.elapsed() < DOWN_RETRY)
    }

    fn set_down(&self, reason: Option<String>) {
        let mut down = self
            .down
            .lock()
            .expect("no code panics while holding a host's state");
        match (&*down, &reason) {
            (None, Some(reason)) => {
                tracing::warn!(host = %self.spec.name, %reason, "Docker host is down");
            }
            (Some(_), None) => tracing::info!(host = %self.spec.name, "Docker host is up again"),
            _ => {}
        }
        let key = format!("Docker host {}", self.spec.name);
        match &reason {
            Some(reason) => self.health.report(
                &key,
                format!("not answering: {reason}; its jobs go to other hosts"),
            ),
            None => self.health.resolve(&key),
        }
        *down = reason.map(|reason| (reason, Instant::now()));
    }

    /// A connection to the daemon, once the containers a previous run left are removed; with
    /// how many were removed by this call.
    pub(crate) async fn ready(&self) -> Result<(Docker, usize), Error> {
        let docker = self.client().await?;
        let mut removed = 0;
        self.reaped
            .get_or_try_init(|| async {
                removed = self.remove_labelled(&docker).await?;
                if removed > 0 {
                    tracing::warn!(
                        host = %self.spec.name,
                        "removed {removed} containers left by a previous run"
                    );
                }
                Ok::<(), Error>(())
            })
            .await?;
        Ok((docker, removed))
    }

    /// Records that a request to the daemon failed because it did not answer.
    pub(crate) async fn disconnected(&self, error: &Error) {
        self.set_down(Some(crate::error_chain(error)));
        *self.client.lock().await = None;
    }

    async fn client(&self) -> Result<Docker, Error> {
        let mut client = self.client.lock().await;
        if let Some(docker) = &*client {
            return Ok(docker.clone());
        }
        match connect(&self.spec.url).await {
            Ok(docker) => {
                self.set_down(None);
                *client = Some(docker.clone());
                Ok(docker)
            }
            Err(e) => {
                self.set_down(Some(crate::error_chain(&e)));
                Err(e)
            }
        }
    }

    /// Force-removes every container labelled with this instance.
    async fn remove_labelled(&self, docker: &Docker) -> Result<usize, Error> {
        let api = |action: &str| {
            let (host, action) = (self.spec.name.clone(), action.to_owned());
            move |source| Error::Api {
                host,
                action,
                source,
            }
        };
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{}={}", labels::INSTANCE, self.instance)],
        )]);
        let containers = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(api("list containers"))?;
        let mut removed = 0;
        for container in containers {
            let Some(id) = container.id else { continue };
            let options = RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            };
            match docker.remove_container(&id, Some(options)).await {
                Ok(()) => removed += 1,
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(api(&format!("remove the container {id}"))(e)),
            }
        }
        Ok(removed)
    }
}

/// Connects to the daemon at `url` and negotiates the API version (which also checks that it
/// answers).
pub(crate) async fn connect(url: &str) -> Result<Docker, Error> {
    let unreachable = |source| Error::Unreachable {
        url: url.to_owned(),
        source,
    };
    let docker = if url.starts_with("unix://") {
        Docker::connect_with_unix(url, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
    } else if let Some(address) = url.strip_prefix("tcp://") {
        Docker::connect_with_http(
            &format!("http://{address}"),
            REQUEST_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        )
    } else {
        return Err(Error::InvalidUrl {
            url: url.to_owned(),
        });
    }
    .map_err(unreachable)?;
    docker.negotiate_version().await.map_err(unreachable)
}

/// Whether the daemon answered 404 (no such container or image).
pub(crate) fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Whether `error` means the daemon did not answer at all (as opposed to refusing a request).
pub(crate) fn is_connection_error(error: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as E;
    matches!(
        error,
        E::SocketNotFoundError(_)
            | E::HyperResponseError { .. }
            | E::HyperLegacyError { .. }
            | E::IOError { .. }
            | E::RequestTimeoutError
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_and_urls_are_checked() {
        assert!(HostSpec::new("a-1.b_c", "unix:///var/run/docker.sock").is_ok());
        assert!(HostSpec::new("remote", "tcp://10.0.0.2:2375").is_ok());
        for (name, url, message) in [
            ("", DEFAULT_URL, "invalid Docker host name \"\""),
            ("a b", DEFAULT_URL, "invalid Docker host name \"a b\""),
            ("x", "http://h:1", "invalid Docker host URL \"http://h:1\""),
            ("x", "unix://relative", "invalid Docker host URL"),
            ("x", "tcp://", "invalid Docker host URL"),
        ] {
            let error = HostSpec::new(name, url).expect_err(url).to_string();
            assert!(error.starts_with(message), "{error}");
        }
    }
}
