//! Figure 4, the cache: lookups per second of an already-built key. Also provides the trivial
//! [`Double`] builder and [`BuiltCache`], which the terms figure uses for its `Cache::find` leaves.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use prometheus_client::registry::Registry;

use datakit_ci_cache::{Build, Builder, Cache, CacheMetrics};
use datakit_ci_log::LogManager;
use datakit_ci_store::{BranchName, Snapshot, Store, StorePath};
use datakit_ci_term::Problem;

use crate::Scale;
use crate::report::{Figure, Report, Target};

/// Lookups per second the cache should sustain on a built key.
const LOOKUPS_TARGET: f64 = 100_000.0;
/// Lookups between two looks at the clock.
const BATCH: u32 = 10_000;
/// Where [`Double`] keeps its value.
const VALUE_FILE: &str = "value/double";

/// Measures the cache figure.
pub(super) async fn run(scale: Scale, report: &mut Report) -> anyhow::Result<()> {
    let duration = match scale {
        Scale::Full => Duration::from_secs(2),
        Scale::Quick => Duration::from_millis(300),
    };
    let built = BuiltCache::new(1).await?;
    let key = 0;
    let expected = Double::double(key);
    let mut lookups = 0_u64;
    let started = Instant::now();
    while started.elapsed() < duration {
        for _ in 0..BATCH {
            let status = built.cache.lookup((), key).await;
            if status.result.as_ref().ok() != Some(&expected) {
                bail!(
                    "lookup of built key {key} returned {:?}, not Ok({expected})",
                    status.result
                );
            }
        }
        lookups += u64::from(BATCH);
    }
    let elapsed = started.elapsed();
    built.cache.shutdown().await;
    report.add(
        Figure::new(
            "cache: lookups of an already-built key",
            lookups as f64 / elapsed.as_secs_f64(),
            "lookups/s",
        )
        .target(Target::AtLeast(LOOKUPS_TARGET)),
    );
    Ok(())
}

/// A trivial build: doubles its key, and stores the result under `value/`.
pub(super) struct Double;

impl Double {
    /// The value built for `key`.
    pub(super) fn double(key: u32) -> u64 {
        u64::from(key) * 2
    }
}

impl Builder for Double {
    type Key = u32;
    type Context = ();
    type Value = u64;

    fn name(&self) -> String {
        "bench-double".to_owned()
    }

    fn title(&self, key: &u32) -> String {
        format!("Double {key}")
    }

    fn branch(&self, key: &u32) -> BranchName {
        BranchName::new(format!("bench-double-of-{key}"))
            .expect("a prefix and a number make a valid branch name")
    }

    async fn generate(&self, build: Build<'_>, _: &(), key: &u32) -> Result<u64, String> {
        let value = Double::double(*key);
        let path = StorePath::new(VALUE_FILE).map_err(|e| e.to_string())?;
        build
            .transaction
            .create_file(&path, value.to_string())
            .map_err(|e| e.to_string())?;
        Ok(value)
    }

    fn load(&self, tree: &Snapshot, _: &u32) -> Result<u64, String> {
        let path = StorePath::new(VALUE_FILE).map_err(|e| e.to_string())?;
        let bytes = tree
            .read_file(&path)
            .map_err(|e| e.to_string())?
            .ok_or("no value file")?;
        String::from_utf8_lossy(&bytes)
            .parse()
            .map_err(|e| format!("bad value: {e}"))
    }
}

/// A cache of [`Double`] in a temporary store, with keys `0..keys` built.
pub(super) struct BuiltCache {
    pub(super) cache: Cache<Double>,
    /// Keeps the store's directory until the cache is gone.
    _dir: tempfile::TempDir,
}

/// How a build ended, as seen through `Cache::lookup`.
enum Outcome {
    /// The lookup returns the value.
    Built,
    /// The result is committed to the key's branch, but the lookup still says pending and its
    /// `ready` does not resolve: the cache lost the end of the build (see [`BuiltCache::new`]).
    StuckPending,
}

impl BuiltCache {
    /// Builds keys `0..keys` and waits until every build is done.
    ///
    /// `Cache` can lose the end of a fast build: its pending monitor subscribes to the log's
    /// pending watch only when its task first runs, so if the build finishes before that, the
    /// monitor waits forever and the key stays pending. When that happens the builds are
    /// nevertheless committed, so this warns and measures a fresh `Cache` on the same store,
    /// which loads those results (lookups of built keys then take the same in-memory path).
    pub(super) async fn new(keys: u32) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("make a temporary directory")?;
        let store = Store::open(&dir.path().join("state.git")).context("open the store")?;
        let mut registry = Registry::default();
        let metrics = CacheMetrics::new(&mut registry);
        let cache = Cache::new(Double, store.clone(), LogManager::new(), &metrics);
        // Start every build first, so that they overlap.
        for key in 0..keys {
            drop(cache.lookup((), key).await);
        }
        let mut stuck = Vec::new();
        for key in 0..keys {
            if let Outcome::StuckPending = wait_until_built(&cache, &store, key).await? {
                stuck.push(key);
            }
        }
        if stuck.is_empty() {
            return Ok(BuiltCache { cache, _dir: dir });
        }
        eprintln!(
            "warning: {} of {keys} finished builds stayed pending in datakit_ci_cache (keys {stuck:?}): \
             the pending monitor missed the end of the build; measuring a fresh Cache that loads \
             the committed results",
            stuck.len()
        );
        // The stuck builds' tasks never end, so the old cache is dropped without `shutdown`.
        let fresh = Cache::new(Double, store.clone(), LogManager::new(), &metrics);
        for key in 0..keys {
            if let Outcome::StuckPending = wait_until_built(&fresh, &store, key).await? {
                bail!("key {key} is still pending in a fresh cache of its committed result");
            }
        }
        Ok(BuiltCache {
            cache: fresh,
            _dir: dir,
        })
    }
}

/// Waits until `key` is built in `cache`, or until it is clearly stuck pending.
async fn wait_until_built(
    cache: &Cache<Double>,
    store: &Store,
    key: u32,
) -> anyhow::Result<Outcome> {
    /// A committed build whose `ready` has not resolved after this long is stuck.
    const STUCK_AFTER: Duration = Duration::from_millis(250);
    /// A build still pending and uncommitted after this long is an error.
    const TIMEOUT: Duration = Duration::from_secs(30);
    let started = Instant::now();
    loop {
        let status = cache.lookup((), key).await;
        match status.result {
            Ok(value) if value == Double::double(key) => return Ok(Outcome::Built),
            Ok(value) => bail!("key {key} was built as {value}"),
            Err(Problem::Failure(message)) => bail!("build of key {key} failed: {message}"),
            Err(Problem::Pending { ready, .. }) => {
                if tokio::time::timeout(STUCK_AFTER, ready.wait())
                    .await
                    .is_ok()
                {
                    continue;
                }
                let head = store.branch(&Double.branch(&key)).head().await?;
                if let Some(head) = head
                    && Double.load(&head.tree(), &key) == Ok(Double::double(key))
                {
                    return Ok(Outcome::StuckPending);
                }
                ensure!(
                    started.elapsed() < TIMEOUT,
                    "build of key {key} still pending after {TIMEOUT:?}"
                );
            }
        }
    }
}
