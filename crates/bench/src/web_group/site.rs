//! The site every web figure is measured on: a fresh store with `targets` branches written
//! straight into `github-metadata` in one store transaction, an engine giving each three cheap
//! jobs (`Term::head(target).map(..)`, as in the engine group) whose statuses are all written
//! before anything is measured, and the web UI with the CI pages, readable by everyone, on an
//! ephemeral port of 127.0.0.1.
//!
//! The web server runs on a runtime of its own (two workers, threads named
//! [`SERVER_THREADS`]), so that its CPU time can be told apart from the clients' and the
//! engine's, which stay on the bench's runtime.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use prometheus_client::registry::Registry;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use datakit_ci::engine::{Engine, EngineConfig, METADATA_BRANCH, Project};
use datakit_ci::log::LogManager;
use datakit_ci::pool::Pools;
use datakit_ci::store::{BranchName, Store};
use datakit_ci::term::{CommitHash, Term};
use datakit_ci_web::{Acl, AppState, WebConfig, WebServer};

use crate::report::{Figure, Report};

use super::cpu::SERVER_THREADS;
pub(super) use crate::targets::{JOBS, REPO, branch_name};
use crate::targets::{check_loaded, count_successes, fake_hash, head_path};

/// The longest the load may take before the run fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(600);

/// A running store + engine + web server.
pub(super) struct Site {
    _dir: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub(super) base: String,
    /// The live logs the web server follows.
    pub(super) logs: LogManager,
    /// The engine the pages show.
    pub(super) engine: Engine,
    /// The state store the engine and the web server share.
    pub(super) store: Store,
    /// Targets loaded.
    pub(super) targets: usize,
    refs_time: Duration,
    load_time: Duration,
    cancel: CancellationToken,
    engine_task: JoinHandle<anyhow::Result<()>>,
    web_task: JoinHandle<anyhow::Result<()>>,
    /// Declared last: shut down after the tasks above are done with.
    _web_runtime: ServerRuntime,
}

/// The web server's runtime; shut down without blocking when dropped (dropping a runtime
/// normally blocks, which an async context forbids).
struct ServerRuntime(Option<tokio::runtime::Runtime>);

impl Drop for ServerRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Site {
    /// Loads `targets` branches, waits until all their statuses are written, then starts the web
    /// server.
    pub(super) async fn start(targets: usize) -> anyhow::Result<Site> {
        let dir = tempfile::tempdir().context("make a temporary directory")?;
        let store = Store::open(&dir.path().join("state.git")).context("open the store")?;
        let metadata = store.branch(&BranchName::new(METADATA_BRANCH)?);

        let started = Instant::now();
        let mut transaction = metadata.transaction().await?;
        for i in 0..targets {
            transaction.create_file(&head_path(i)?, format!("{}\n", fake_hash(i as u64)))?;
        }
        transaction
            .commit(&format!("Track {targets} branches"))
            .await?;
        let refs_time = started.elapsed();

        let registry = Arc::new(Mutex::new(Registry::default()));
        let project = Project::new(REPO, |target| {
            JOBS.iter()
                .map(|job| {
                    let term = Term::head(target.clone())
                        .map(move |head: CommitHash| format!("{job} saw {}", head.short(8)));
                    ((*job).to_owned(), term)
                })
                .collect()
        })?
        .dashboards([branch_name(0), branch_name(1)])?;
        let config = EngineConfig {
            projects: vec![project],
            web_ui: "http://127.0.0.1/".to_owned(),
            canaries: Vec::new(),
        };
        let engine = {
            let mut registry = registry.lock().unwrap_or_else(|e| e.into_inner());
            Engine::new(config, store.clone(), &mut registry)
        };
        let cancel = CancellationToken::new();

        let started = Instant::now();
        let mut events = engine.subscribe();
        let mut engine_task = tokio::spawn({
            let (engine, cancel) = (engine.clone(), cancel.clone());
            async move { engine.run(cancel).await.context("the engine") }
        });
        let expected = targets * JOBS.len();
        tokio::select! {
            loaded = tokio::time::timeout(PATIENCE, count_successes(&mut events, expected)) => {
                loaded.with_context(|| {
                    format!("fewer than {expected} statuses written after {PATIENCE:?}")
                })??;
            }
            stopped = &mut engine_task => {
                stopped.context("the engine panicked")??;
                bail!("the engine stopped during the load");
            }
        }
        let load_time = started.elapsed();
        check_loaded(&engine, targets)?;
        // Let the engine's own status commit come back through its watch and settle.
        tokio::time::sleep(Duration::from_millis(300)).await;

        let logs = LogManager::new();
        let web = WebConfig::new(dir.path().join("secrets"))
            .listen("http://127.0.0.1:0".parse()?)
            .public_url("http://127.0.0.1/".parse()?)
            .can_read(Acl::everyone());
        let state = AppState::builder(web, store.clone(), logs.clone(), registry)
            .engine_rebuilds(engine.clone())
            .build()?;
        let pages = datakit_ci_web::ci_pages(engine.clone(), Pools::new());
        let web_runtime = ServerRuntime(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name(SERVER_THREADS)
                .enable_all()
                .build()
                .context("start the web server's runtime")?,
        ));
        let runtime = web_runtime.0.as_ref().expect("just made");
        // Bound on its own runtime, so that its sockets are driven there.
        let server = runtime
            .spawn(async move { WebServer::bind(state, Some(pages)).await })
            .await
            .context("binding the web server panicked")??;
        let base = format!("http://{}", server.local_addr());
        let web_task = runtime.spawn({
            let cancel = cancel.clone();
            async move { server.run(cancel).await.context("the web server") }
        });
        Ok(Site {
            _dir: dir,
            base,
            logs,
            engine,
            store,
            targets,
            refs_time,
            load_time,
            cancel,
            engine_task,
            web_task,
            _web_runtime: web_runtime,
        })
    }

    /// `http://127.0.0.1:<port><path>`.
    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Fails if the engine or the web server stopped by itself.
    pub(super) fn check_running(&self) -> anyhow::Result<()> {
        ensure!(!self.engine_task.is_finished(), "the engine stopped");
        ensure!(!self.web_task.is_finished(), "the web server stopped");
        Ok(())
    }

    /// Stops the web server and the engine; their errors, if any.
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        let web = self.web_task.await.context("the web server panicked")?;
        let engine = self.engine_task.await.context("the engine panicked")?;
        web.and(engine)
    }
}

/// Adds the figures of the load (reported only).
pub(super) fn report_load(site: &Site, report: &mut Report) {
    let (targets, jobs) = (site.targets, JOBS.len());
    report.add(Figure::seconds(
        format!("web: setup: write {targets} refs into {METADATA_BRANCH} (one store transaction)"),
        site.refs_time,
    ));
    report.add(Figure::seconds(
        format!(
            "web: setup: load {targets} targets × {jobs} jobs (engine start → all {} statuses written)",
            targets * jobs
        ),
        site.load_time,
    ));
}
