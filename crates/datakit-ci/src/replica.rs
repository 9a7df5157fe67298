//! A read-only web UI over a published store (`--read-only-store URL`): a second process, on
//! another machine or beside the CI, serves the web UI from its own clone of what the CI
//! publishes (`--publish-store`), and runs nothing: no bridge, no evaluation, no build, no write
//! to the remote.
//!
//! The clone is `<state-dir>/replica.git` (never `state.git`, so a replica pointed at a CI's
//! state directory cannot overwrite its store), opened as a [`Store`] like the CI's and
//! refreshed every `--refresh` by `git fetch --prune` of every branch. The web UI's pages need an
//! [`Engine`]: the replica has one that is never run, with a project per repository the
//! published metadata monitors (`<user>/<repo>/.monitor`) when the replica starts; after each
//! fetch it is told which branches moved ([`Engine::refresh_view`]) and shows each target's
//! latest recorded state, read from its history. The web UI is
//! [read-only](datakit_ci_web::WebConfig::read_only): rebuilds, cancels, approvals and logins are
//! refused with a message saying so. A failing fetch is shown on the dashboard (health key
//! [`HEALTH_REPLICA`]) and retried at the next refresh.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use datakit_ci_engine::{Engine, EngineConfig, METADATA_BRANCH, Project};
use datakit_ci_git::error_chain;
use datakit_ci_health::Health;
use datakit_ci_log::LogManager;
use datakit_ci_pool::Pools;
use datakit_ci_store::{BranchName, Store, StorePath};
use datakit_ci_term::RepoId;
use datakit_ci_web::{AppState, WebConfig, WebServer};

use crate::local::{RunError, StartError};
use crate::remote::{GitError, REMOTE, RemoteUrl};

/// The health key under which a failing refresh is shown.
pub const HEALTH_REPLICA: &str = "published store";

/// The clone's directory, under the state directory.
pub const REPLICA_DIR: &str = "replica.git";

/// What a read-only web UI reads, and how often.
#[derive(Clone, Debug)]
pub struct ReadOnlyOptions {
    /// Where the store is published (`--read-only-store URL`).
    pub remote: RemoteUrl,
    /// How often the clone is refreshed (`--refresh`).
    pub refresh: Duration,
}

/// A running read-only web UI; see the [module docs](self).
pub struct ReplicaCi {
    engine: Engine,
    replica: Replica,
    web: Option<WebServer>,
    refresh: Duration,
    /// Branches moved by a fetch whose view update failed: tried again after the next fetch.
    unviewed: BTreeSet<BranchName>,
}

impl ReplicaCi {
    /// Opens (or makes) the clone in `<state_dir>/replica.git`, fetches once (a failure is shown
    /// and retried: what an earlier run fetched is served meanwhile), and binds the web UI.
    pub async fn start(
        state_dir: &Path,
        web_ui: String,
        web: Option<WebConfig>,
        options: ReadOnlyOptions,
    ) -> Result<Self, StartError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StartError::StateDir {
            path: state_dir.to_owned(),
            source,
        })?;
        let store = Store::open(&state_dir.join(REPLICA_DIR))?;
        let health = Health::default();
        let mut replica = Replica {
            store: store.clone(),
            remote: options.remote.clone(),
            health: health.clone(),
            refs: BTreeMap::new(),
        };
        let changed = replica.refresh().await;
        let projects = monitored_projects(&store).await?;
        if projects.is_empty() {
            tracing::warn!(
                remote = %options.remote,
                "the published store monitors no repository yet: restart the read-only server once it does"
            );
        }
        let mut registry = Registry::default();
        let engine = Engine::with_health(
            EngineConfig {
                projects,
                web_ui,
                canaries: Vec::new(),
            },
            store.clone(),
            &mut registry,
            health,
        );
        let mut unviewed = BTreeSet::new();
        if let Err(error) = engine.refresh_view(&changed).await {
            replica.view_failed(&error);
            unviewed = changed;
        }
        let web = match web {
            Some(config) => {
                let note = format!(
                    "it shows the state published at {}, refreshed every {}; rebuilds, cancels, \
                     approvals and logins happen on the CI that publishes it",
                    options.remote,
                    humantime::format_duration(options.refresh)
                );
                let state = AppState::builder(
                    config.read_only(note),
                    store,
                    LogManager::new(),
                    Arc::new(Mutex::new(registry)),
                )
                .build()?;
                let pages = datakit_ci_web::ci_pages(engine.clone(), Pools::new());
                Some(WebServer::bind(state, Some(pages)).await?)
            }
            None => None,
        };
        Ok(ReplicaCi {
            engine,
            replica,
            web,
            refresh: options.refresh,
            unviewed,
        })
    }

    /// The engine whose view the web UI shows (its status changes are the replica's).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The web server, if one was configured.
    pub fn web(&self) -> Option<&WebServer> {
        self.web.as_ref()
    }

    /// Refreshes the clone every `--refresh` and serves the web UI until `cancel` fires or the
    /// web server fails.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), RunError> {
        let ReplicaCi {
            engine,
            mut replica,
            web,
            refresh,
            mut unviewed,
        } = self;
        let stop_all = cancel.child_token();
        let refresher = async {
            loop {
                tokio::select! {
                    () = stop_all.cancelled() => return,
                    () = tokio::time::sleep(refresh) => {}
                }
                unviewed.extend(replica.refresh().await);
                if unviewed.is_empty() {
                    continue;
                }
                match engine.refresh_view(&unviewed).await {
                    Ok(()) => unviewed.clear(),
                    Err(error) => replica.view_failed(&error),
                }
            }
        };
        let web = async {
            let Some(web) = web else { return Ok(()) };
            let result = web.run(stop_all.clone()).await;
            stop_all.cancel();
            result
        };
        let ((), web) = tokio::join!(refresher, web);
        web?;
        Ok(())
    }
}

/// The clone and what its branches pointed at after the last fetch.
struct Replica {
    store: Store,
    remote: RemoteUrl,
    health: Health,
    /// Branch name → commit id, as `git for-each-ref` listed them.
    refs: BTreeMap<String, String>,
}

impl Replica {
    /// Fetches every branch of the remote into the clone (removing those the remote no longer
    /// has) and returns the branches that moved since the last refresh. A failed fetch is shown
    /// on the dashboard and changes nothing; the next refresh tries again.
    async fn refresh(&mut self) -> BTreeSet<BranchName> {
        let path = self.store.path().to_owned();
        let fetched = self
            .remote
            .git(
                &path,
                &[
                    "fetch",
                    "--prune",
                    "--no-tags",
                    "--quiet",
                    "--no-write-fetch-head",
                    REMOTE,
                    "+refs/heads/*:refs/heads/*",
                ],
            )
            .await;
        if let Err(error) = &fetched {
            self.report(error);
            // What an earlier run fetched is still worth showing at start.
            if !self.refs.is_empty() {
                return BTreeSet::new();
            }
        }
        let listing = match self
            .remote
            .git(&path, &["for-each-ref", LIST_FORMAT, "refs/heads/"])
            .await
        {
            Ok(listing) => listing,
            Err(error) => {
                self.report(&error);
                return BTreeSet::new();
            }
        };
        if fetched.is_ok() {
            self.health.resolve(HEALTH_REPLICA);
        }
        let refs: BTreeMap<String, String> = listing
            .lines()
            .filter_map(|line| line.split_once(' '))
            .map(|(id, name)| (name.to_owned(), id.to_owned()))
            .collect();
        let moved = refs
            .iter()
            .filter(|(name, id)| self.refs.get(*name) != Some(*id))
            .map(|(name, _)| name)
            .chain(self.refs.keys().filter(|name| !refs.contains_key(*name)))
            .filter_map(|name| BranchName::new(name.as_str()).ok())
            .collect();
        self.refs = refs;
        moved
    }

    fn report(&self, error: &GitError) {
        let error = error_chain(error);
        tracing::warn!(remote = %self.remote, "cannot refresh the published store: {error}");
        self.health.report(
            HEALTH_REPLICA,
            format!(
                "cannot fetch the published store from {}: {error}; retrying",
                self.remote
            ),
        );
    }

    fn view_failed(&self, error: &datakit_ci_engine::Error) {
        let error = error_chain(error);
        tracing::warn!("cannot show the published store: {error}");
        self.health.report(
            HEALTH_REPLICA,
            format!("cannot read the published store: {error}; retrying"),
        );
    }
}

/// `git for-each-ref`'s format: `<id> <branch name>`.
const LIST_FORMAT: &str = "--format=%(objectname) %(refname:lstrip=2)";

/// A project (with no tests: the replica runs none) per repository the metadata monitors.
async fn monitored_projects(store: &Store) -> Result<Vec<Project>, StartError> {
    let metadata = store.branch(&BranchName::new(METADATA_BRANCH).expect("a valid name"));
    let Some(head) = metadata.head().await? else {
        return Ok(Vec::new());
    };
    let tree = head.tree();
    let mut projects = Vec::new();
    for user in tree.read_dir(&StorePath::root())?.unwrap_or_default() {
        let Ok(user_dir) = StorePath::new(user.as_str()) else {
            continue;
        };
        for repo in tree.read_dir(&user_dir)?.unwrap_or_default() {
            let Ok(id) = RepoId::new(&user, &repo) else {
                continue;
            };
            if tree.exists(&StorePath::new(format!("{id}/.monitor"))?)? {
                projects.push(Project::new(&id.to_string(), |_| Vec::new())?);
            }
        }
    }
    Ok(projects)
}
