//! `Cache<B>`: runs a [`Builder`] at most once per key, keeps the result in memory and in the
//! store, and rebuilds on request (spec §5.1).
//!
//! Lookup order: memory → the key's store branch → a new build. A build runs in the background
//! with a live log on the key's branch; while it runs, lookups return `Pending` with the top of
//! the log's pending-reason stack and a `ready` future that resolves at the next change, so terms
//! waiting on it are re-evaluated promptly.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use datakit_ci_log::{LiveLog, LiveLogSpec, LogManager};
use datakit_ci_store::{BranchName, CommitId, Snapshot, Store, StorePath};
use datakit_ci_term::{Logs, Problem, Ready, ReadySender, RebuildTrigger, SavedLog, Status, Term};

use crate::builder::{Build, Builder};
use crate::metrics::{CacheMetrics, NameLabel};

/// A cache operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store could not be read or written.
    #[error("store error on cache branch {branch:?}")]
    Store {
        /// The cache branch.
        branch: String,
        /// The store's error.
        #[source]
        source: datakit_ci_store::Error,
    },
}

/// Files of a cache branch (DESIGN §6.1).
pub(crate) const LOG_FILE: &str = "log";
/// The file marking a cache branch whose log was removed by retention
/// ([`remove_old_logs`](crate::remove_old_logs)); it holds when (RFC 3339).
pub const LOG_REMOVED_FILE: &str = "log-removed";
const FAILURE_FILE: &str = "failure";
const VALUE_DIR: &str = "value";
const REBUILD_FILE: &str = "rebuild-requested";
const RECIPE_FILE: &str = "recipe";

pub(crate) fn path(name: &str) -> StorePath {
    StorePath::new(name).expect("cache file names are valid store paths")
}

type Slot<V> = Arc<tokio::sync::Mutex<Option<Status<V>>>>;

/// Runs builds of one [`Builder`], caching their results. Cheap to clone.
///
/// See the crate documentation for an example.
pub struct Cache<B: Builder> {
    inner: Arc<Inner<B>>,
}

impl<B: Builder> Clone for Cache<B> {
    fn clone(&self) -> Self {
        Cache {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<B: Builder> {
    builder: B,
    label: NameLabel,
    store: Store,
    logs: LogManager,
    metrics: CacheMetrics,
    slots: Mutex<HashMap<BranchName, Slot<B::Value>>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl<B: Builder> Cache<B> {
    /// A cache of `builder`'s results in `store`, with live logs registered in `logs`.
    pub fn new(builder: B, store: Store, logs: LogManager, metrics: &CacheMetrics) -> Self {
        let label = NameLabel {
            name: builder.name(),
        };
        Cache {
            inner: Arc::new(Inner {
                builder,
                label,
                store,
                logs,
                metrics: metrics.clone(),
                slots: Mutex::new(HashMap::new()),
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// The builder.
    pub fn builder(&self) -> &B {
        &self.inner.builder
    }

    /// A term with the value for `key`: pending while it builds, then its result.
    pub fn find(&self, context: B::Context, key: B::Key) -> Term<B::Value> {
        let cache = self.clone();
        Term::from_status(move || {
            let cache = cache.clone();
            let context = context.clone();
            let key = key.clone();
            async move { cache.lookup(context, key).await }
        })
    }

    /// The current status for `key`, starting a build if there is no usable result. Returns
    /// without waiting for the build.
    pub async fn lookup(&self, context: B::Context, key: B::Key) -> Status<B::Value> {
        let branch = self.inner.builder.branch(&key);
        let slot = self.slot(&branch);
        let mut entry = slot.lock().await;
        if let Some(status) = &*entry {
            return status.clone();
        }
        match self.load_saved(&branch, &key).await {
            Ok(Some(status)) => {
                *entry = Some(status.clone());
                return status;
            }
            Ok(None) => {}
            Err(e) => {
                // Not remembered: the next lookup tries the store again.
                tracing::error!(branch = %branch, error = %e, "cannot read cached result");
                return Status::failure(e.to_string());
            }
        }
        self.start_build(&slot, &mut entry, branch, context, key)
    }

    /// Marks the result on `branch` as stale so that the next lookup builds again. Ignored while
    /// a build of it is running.
    pub async fn mark_for_rebuild(&self, branch: &BranchName) -> Result<(), Error> {
        let slot = self.slot(branch);
        let mut entry = slot.lock().await;
        if let Some(Status {
            result: Err(Problem::Pending { .. }),
            ..
        }) = &*entry
        {
            tracing::info!(branch = %branch, "rebuild requested while building; ignored");
            return Ok(());
        }
        mark_in_store(&self.inner.store, branch).await?;
        *entry = None;
        Ok(())
    }

    /// Cancels every running build and waits for all of them to end.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    fn slot(&self, branch: &BranchName) -> Slot<B::Value> {
        // Only map lookups/inserts happen under this lock.
        let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(slots.entry(branch.clone()).or_default())
    }

    fn rebuild_trigger(&self, branch: BranchName) -> RebuildTrigger {
        // Weak: the trigger lives inside the cache's own entries.
        let cache: Weak<Inner<B>> = Arc::downgrade(&self.inner);
        let store = self.inner.store.clone();
        RebuildTrigger::new(async move {
            let marked = match cache.upgrade() {
                // Through the cache, so that it forgets the result it remembers.
                Some(inner) => Cache { inner }.mark_for_rebuild(&branch).await,
                // The cache that made the result is gone (e.g. the program made new caches
                // over the same store): the mark in the store is all a new lookup reads.
                None => mark_in_store(&store, &branch).await,
            };
            marked.map_err(|e| format!("{e}: {}", error_chain(&e)))
        })
    }

    fn saved_log(&self, branch: &BranchName, key: &B::Key, commit: CommitId, failed: bool) -> Logs {
        Logs::Saved(SavedLog::new(
            self.inner.builder.title(key),
            commit,
            branch.clone(),
            failed,
            Some(self.rebuild_trigger(branch.clone())),
        ))
    }

    /// The stored result for `key`, unless absent, marked for rebuild, or unreadable.
    async fn load_saved(
        &self,
        branch: &BranchName,
        key: &B::Key,
    ) -> Result<Option<Status<B::Value>>, Error> {
        let store_error = |source| Error::Store {
            branch: branch.to_string(),
            source,
        };
        let Some(head) = self
            .inner
            .store
            .branch(branch)
            .head()
            .await
            .map_err(store_error)?
        else {
            return Ok(None);
        };
        let tree: Snapshot = head.tree();
        if tree.exists(&path(REBUILD_FILE)).map_err(store_error)? {
            return Ok(None);
        }
        let recorded_recipe = tree.read_file(&path(RECIPE_FILE)).map_err(store_error)?;
        if recorded_recipe.as_deref().unwrap_or_default()
            != self.inner.builder.recipe(key).as_bytes()
        {
            tracing::info!(branch = %branch, "cached result was made by another recipe; building again");
            return Ok(None);
        }
        let result = match tree.read_file(&path(FAILURE_FILE)).map_err(store_error)? {
            Some(message) => Err(Problem::Failure(
                String::from_utf8_lossy(&message).into_owned(),
            )),
            None => match self.inner.builder.load(&tree, key) {
                Ok(value) => Ok(value),
                Err(message) => {
                    tracing::warn!(
                        "Failed to load value from previously cached result {}: {message}",
                        head.id()
                    );
                    return Ok(None);
                }
            },
        };
        tracing::info!("Loaded cached result from {branch}");
        let output = self.saved_log(branch, key, head.id(), result.is_err());
        Ok(Some(Status { result, output }))
    }

    /// Starts a build in the background and records its first pending state in `entry`.
    fn start_build(
        &self,
        slot: &Slot<B::Value>,
        entry: &mut Option<Status<B::Value>>,
        branch: BranchName,
        context: B::Context,
        key: B::Key,
    ) -> Status<B::Value> {
        let inner = &self.inner;
        let title = inner.builder.title(&key);
        let cancel = inner.shutdown.child_token();
        let log = match inner.logs.create(LiveLogSpec {
            branch: branch.to_string(),
            title: title.clone(),
            pending: title.clone(),
            cancel: Some(cancel.clone()),
        }) {
            Ok(log) => log,
            Err(datakit_ci_log::Error::AlreadyActive { .. }) => {
                // Another cache builds on this branch (e.g. the same commit in another
                // repository): wait for it to finish, then look again (nothing is remembered).
                return Status {
                    result: Err(Problem::Pending {
                        reason: format!("Waiting for another build on {branch}"),
                        ready: finished(inner.logs.get(branch.as_str())),
                    }),
                    output: Logs::Empty,
                };
            }
            Err(e) => return Status::failure(e.to_string()),
        };
        inner.metrics.started.get_or_create(&inner.label).inc();
        log.heading(&title);
        log.log("Starting...");
        let (sender, ready) = Ready::channel();
        let pending = pending_status(&log, &title, ready);
        *entry = Some(pending.clone());

        let cache = self.clone();
        let slot = Arc::clone(slot);
        // Subscribe before the build can start, so that no change (not even the end of a very
        // quick build) happens unseen.
        let watch = log.pending_watch();
        inner.tasks.spawn(async move {
            let monitor = tokio::spawn(monitor_pending(
                Arc::clone(&slot),
                log.clone(),
                watch,
                title.clone(),
                sender,
            ));
            let status = cache
                .run_build(&branch, &log, &cancel, &context, &key)
                .await;
            log.finish();
            let last = monitor.await;
            // A discarded build leaves nothing behind: the next lookup builds again.
            *slot.lock().await = status;
            match last {
                Ok(sender) => sender.resolve(),
                Err(e) => tracing::error!(branch = %branch, error = %e, "pending monitor failed"),
            }
        });
        pending
    }

    /// Runs the build and records its result; `None` if the build was discarded (see
    /// [`Outcome::Discarded`]).
    async fn run_build(
        &self,
        branch: &BranchName,
        log: &LiveLog,
        cancel: &CancellationToken,
        context: &B::Context,
        key: &B::Key,
    ) -> Option<Status<B::Value>> {
        let inner = &self.inner;
        let in_progress = inner
            .metrics
            .in_progress
            .get_or_create(&inner.label)
            .clone();
        in_progress.inc();
        let start = Instant::now();
        let outcome = self
            .build_and_commit(branch, log, cancel, context, key)
            .await;
        in_progress.dec();
        inner
            .metrics
            .build_time
            .get_or_create(&inner.label)
            .observe(start.elapsed().as_secs_f64());
        match outcome {
            Ok(Outcome::Recorded(result, commit)) => {
                let output = self.saved_log(branch, key, commit, result.is_err());
                Some(Status {
                    result: result.map_err(Problem::Failure),
                    output,
                })
            }
            Ok(Outcome::Discarded) => None,
            Err(e) => {
                // The store failed, so nothing could be recorded; keep the failure in memory.
                tracing::error!(branch = %branch, error = %e, "Uncaught exception in do_build");
                inner.metrics.exceptions.get_or_create(&inner.label).inc();
                log.log(&format!("Failed to record the result: {e}"));
                Some(Status::failure(format!("{e}: {}", error_chain(&e))))
            }
        }
    }

    async fn build_and_commit(
        &self,
        branch: &BranchName,
        log: &LiveLog,
        cancel: &CancellationToken,
        context: &B::Context,
        key: &B::Key,
    ) -> Result<Outcome<B::Value>, Error> {
        let inner = &self.inner;
        let store_error = |source| Error::Store {
            branch: branch.to_string(),
            source,
        };
        let mut transaction = inner
            .store
            .branch(branch)
            .transaction()
            .await
            .map_err(store_error)?;
        for stale in [
            REBUILD_FILE,
            VALUE_DIR,
            FAILURE_FILE,
            RECIPE_FILE,
            crate::ARTIFACTS_DIR,
        ] {
            if transaction.exists(&path(stale)).map_err(store_error)? {
                transaction.remove(&path(stale)).map_err(store_error)?;
            }
        }
        transaction
            .make_dirs(&path(VALUE_DIR))
            .map_err(store_error)?;

        let build = Build {
            log,
            cancel,
            transaction: &mut transaction,
        };
        let result = AssertUnwindSafe(inner.builder.generate(build, context, key))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| Err(format!("build panicked: {}", panic_message(&panic))));
        // Read before cancelling below: was the build stopped because nothing needs it?
        let stopped_unneeded = log.was_abandoned() || inner.shutdown.is_cancelled();
        // The build is over: nothing may still be running on its behalf.
        cancel.cancel();
        if result.is_err() && stopped_unneeded {
            log.log("Not recorded: the build was stopped because nothing needed it");
            tracing::info!(branch = %branch, "build stopped unneeded; nothing recorded");
            return Ok(Outcome::Discarded);
        }

        let message = match &result {
            Ok(_) => {
                log.log("Success");
                inner.metrics.succeeded.get_or_create(&inner.label).inc();
                "Cached successful result".to_owned()
            }
            Err(failure) => {
                log.log(&format!("Failed: {failure}"));
                inner.metrics.failed.get_or_create(&inner.label).inc();
                transaction
                    .create_file(&path(FAILURE_FILE), failure)
                    .map_err(store_error)?;
                format!("Cached failure: {failure}")
            }
        };
        let recipe = inner.builder.recipe(key);
        if !recipe.is_empty() {
            transaction
                .create_file(&path(RECIPE_FILE), recipe)
                .map_err(store_error)?;
        }
        crate::save_log(&mut transaction, log.saved_reader(), result.is_err())
            .map_err(store_error)?;
        let commit = transaction.commit(&message).await.map_err(store_error)?;
        Ok(Outcome::Recorded(result, commit))
    }
}

/// How a build ended, for the cache.
enum Outcome<V> {
    /// The result was committed.
    Recorded(Result<V, String>, CommitId),
    /// The build failed after being stopped because nothing needed it any more (its live log
    /// was abandoned, or the cache shut down): that failure is not the key's result, so nothing
    /// is recorded and the next lookup builds again. A person's cancel is a result.
    Discarded,
}

/// Marks the result on `branch` as stale in the store (`rebuild-requested`): the next lookup of
/// any cache over `store` builds again.
async fn mark_in_store(store: &Store, branch: &BranchName) -> Result<(), Error> {
    let store_error = |source| Error::Store {
        branch: branch.to_string(),
        source,
    };
    let mut transaction = store
        .branch(branch)
        .transaction()
        .await
        .map_err(store_error)?;
    transaction
        .create_file(&path(REBUILD_FILE), b"")
        .map_err(store_error)?;
    transaction
        .commit("Marked for rebuild")
        .await
        .map_err(store_error)?;
    Ok(())
}

/// Resolves when `log` (if any) is finished.
fn finished(log: Option<LiveLog>) -> Ready {
    let Some(log) = log else {
        return Ready::new(async {});
    };
    let mut watch = log.pending_watch();
    Ready::new(async move {
        while !watch.borrow_and_update().finished {
            if watch.changed().await.is_err() {
                return;
            }
        }
    })
}

fn pending_status<V>(log: &LiveLog, title: &str, ready: Ready) -> Status<V> {
    let reason = log.pending_reason().unwrap_or_else(|| title.to_owned());
    Status {
        result: Err(Problem::Pending { reason, ready }),
        output: Logs::Live(log.clone()),
    }
}

/// Publishes each change of the log's pending reason as a new pending entry, resolving the
/// previous entry's `ready` afterwards so that waiters see the new entry. Returns the sender of
/// the last entry's `ready` once the log is finished.
async fn monitor_pending<V>(
    slot: Slot<V>,
    log: LiveLog,
    mut watch: tokio::sync::watch::Receiver<datakit_ci_log::PendingState>,
    title: String,
    mut sender: ReadySender,
) -> ReadySender {
    loop {
        // `borrow` (not `borrow_and_update`): a change arriving now must still wake `changed`.
        if watch.borrow().finished {
            return sender;
        }
        if watch.changed().await.is_err() || watch.borrow_and_update().finished {
            return sender;
        }
        let (next_sender, ready) = Ready::channel();
        *slot.lock().await = Some(pending_status(&log, &title, ready));
        std::mem::replace(&mut sender, next_sender).resolve();
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut source = error.source();
    while let Some(e) = source {
        parts.push(e.to_string());
        source = e.source();
    }
    parts.join(": ")
}
