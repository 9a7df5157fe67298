//! A real engine on a real store for the CI pages: a project whose jobs use a real cache with a
//! counting builder, metadata committed as a bridge would, and the web state on the same store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use axum::Router;
use datakit_ci_cache::{Build, Builder, Cache, CacheMetrics};
use datakit_ci_engine::{Engine, EngineConfig, Project};
use datakit_ci_log::LogManager;
use datakit_ci_pool::Pools;
use datakit_ci_store::{BranchName, Snapshot, Store, StorePath};
use datakit_ci_term::{JobResult, TargetId, Term};
use datakit_ci_web::{Acl, AppState, ci_pages};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Dirs, http_config, state_builder, wait_for, write_users};

pub const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
pub const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
pub const C: &str = "cccccccccccccccccccccccccccccccccccccccc";
pub const D: &str = "dddddddddddddddddddddddddddddddddddddddd";
pub const E: &str = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
pub const F: &str = "ffffffffffffffffffffffffffffffffffffffff";

/// A builder of steps named by their key: `fail-…` fails, `slow-…` waits for the gate (or a
/// cancel), anything else succeeds. Every run writes `run <n>` to its log and is counted.
#[derive(Clone)]
pub struct Steps {
    runs: Arc<Mutex<HashMap<String, usize>>>,
    gate: Arc<watch::Sender<bool>>,
}

impl Default for Steps {
    fn default() -> Self {
        Steps {
            runs: Arc::default(),
            gate: Arc::new(watch::channel(false).0),
        }
    }
}

impl Steps {
    /// How many times the step `key` ran.
    pub fn runs(&self, key: &str) -> usize {
        self.runs
            .lock()
            .expect("not poisoned")
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// Lets the `slow-…` steps finish.
    pub fn open_gate(&self) {
        self.gate.send_replace(true);
    }
}

impl Builder for Steps {
    type Key = String;
    type Context = ();
    type Value = String;

    fn name(&self) -> String {
        "steps".into()
    }
    fn title(&self, key: &String) -> String {
        format!("Step {key}")
    }
    fn branch(&self, key: &String) -> BranchName {
        BranchName::new(format!("step-{key}")).expect("keys are valid branch names")
    }
    async fn generate(&self, build: Build<'_>, _: &(), key: &String) -> Result<String, String> {
        let run = {
            let mut runs = self.runs.lock().expect("not poisoned");
            let count = runs.entry(key.clone()).or_default();
            *count += 1;
            *count
        };
        build.log.write_str(&format!("run {run}\n"));
        if key.starts_with("slow") {
            let mut gate = self.gate.subscribe();
            tokio::select! {
                _ = gate.wait_for(|open| *open) => {}
                _ = build.cancel.cancelled() => return Err("cancelled".to_owned()),
            }
            build.log.write_str("gate open\n");
        }
        if key.starts_with("fail") {
            return Err(format!("{key} failed"));
        }
        Ok(format!("{key} done"))
    }
    fn load(&self, _: &Snapshot, key: &String) -> Result<String, String> {
        Ok(format!("{key} done"))
    }
}

/// The tests of each target: `build` succeeds, `lint` and `test` fail; on PR 7 `build` is slow.
pub fn project(cache: Cache<Steps>) -> Project {
    Project::new("me/proj", move |target: &TargetId| {
        let step = |name: &'static str| {
            let cache = cache.clone();
            let slow = matches!(target, TargetId::Pr(_, 7)) && name == "build";
            Term::head(target.clone()).and_then(move |head| {
                let prefix = match (name, slow) {
                    (_, true) => "slow",
                    ("build", _) => "ok",
                    _ => "fail",
                };
                cache.find((), format!("{prefix}-{name}-{}", head.short(7)))
            })
        };
        vec![
            ("build".to_owned(), step("build")),
            ("lint".to_owned(), step("lint")),
            ("test".to_owned(), step("test")),
        ]
    })
    .expect("valid project")
}

/// An engine running on a store, a web state on the same store, and the users `reader`,
/// `builder` and `admin` (password `<name>-pw`).
pub struct CiFixture {
    pub dirs: Dirs,
    pub store: Store,
    pub engine: Engine,
    pub logs: LogManager,
    pub steps: Steps,
    pub pools: Pools,
    pub state: AppState,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), datakit_ci_engine::Error>>,
}

impl CiFixture {
    /// Commits `edits` to the metadata, then starts the engine.
    pub async fn start(edits: &[(&str, &str)]) -> anyhow::Result<CiFixture> {
        let dirs = Dirs::new()?;
        write_users(
            &dirs.secrets(),
            &[
                ("admin", "admin-pw"),
                ("reader", "reader-pw"),
                ("builder", "builder-pw"),
            ],
        )?;
        let store = dirs.store()?;
        edit(&store, edits).await?;
        let logs = LogManager::new();
        let steps = Steps::default();
        let mut registry = Registry::default();
        let cache = Cache::new(
            steps.clone(),
            store.clone(),
            logs.clone(),
            &CacheMetrics::new(&mut registry),
        );
        let config = EngineConfig {
            projects: vec![project(cache)],
            web_ui: "http://127.0.0.1/".into(),
            canaries: vec![],
        };
        let engine = Engine::new(config, store.clone(), &mut registry);
        let cancel = CancellationToken::new();
        let task = tokio::spawn({
            let engine = engine.clone();
            let cancel = cancel.clone();
            async move { engine.run(cancel).await }
        });
        let web = http_config(&dirs)?
            .can_read("user:reader,user:builder,user:admin".parse::<Acl>()?)
            .can_build("user:builder,user:admin".parse::<Acl>()?);
        let state = state_builder(store.clone(), logs.clone(), web)
            .engine_rebuilds(engine.clone())
            .build()?;
        Ok(CiFixture {
            dirs,
            store,
            engine,
            logs,
            steps,
            pools: Pools::new(),
            state,
            cancel,
            task,
        })
    }

    /// The CI pages.
    pub fn pages(&self) -> Router<AppState> {
        ci_pages(self.engine.clone(), self.pools.clone())
    }

    /// The whole router, driven in-process.
    pub fn router(&self) -> Router {
        datakit_ci_web::router(&self.state, Some(self.pages()))
    }

    /// Commits more metadata edits.
    pub async fn edit(&self, edits: &[(&str, &str)]) -> anyhow::Result<()> {
        edit(&self.store, edits).await
    }

    /// Waits until `count` targets are tracked and every job of every target has a final result
    /// recorded in history.
    pub async fn settled(&self, count: usize) -> anyhow::Result<()> {
        wait_for(&format!("{count} targets with final results"), || async {
            let targets = self.engine.targets();
            if targets.len() != count {
                return false;
            }
            for view in &targets {
                let done = view.jobs.iter().all(|job| {
                    job.output
                        .as_ref()
                        .is_some_and(|o| !matches!(o.result, JobResult::Pending(_)))
                });
                let recorded = self
                    .engine
                    .history()
                    .latest(&view.target.id())
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|state| {
                        state.source_commit.as_ref() == Some(view.target.head())
                            && state
                                .jobs
                                .values()
                                .all(|o| !matches!(o.result, JobResult::Pending(_)))
                    });
                if !done || !recorded {
                    return false;
                }
            }
            true
        })
        .await
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.task.await?.context("engine failed")?;
        Ok(())
    }
}

/// Commits metadata files (`<contents>\n`), as a bridge would.
pub async fn edit(store: &Store, edits: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut transaction = store
        .branch(&BranchName::new("github-metadata")?)
        .transaction()
        .await?;
    for (path, contents) in edits {
        transaction.create_file(&StorePath::new(*path)?, format!("{contents}\n"))?;
    }
    transaction.commit("test edit").await?;
    Ok(())
}
