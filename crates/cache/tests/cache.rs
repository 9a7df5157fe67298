//! The cache against a real store: building, persistence, rebuild, pending reasons, sharing,
//! cancellation, panics and metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datakit_ci_cache::{Build, Builder, Cache, CacheMetrics};
use datakit_ci_log::LogManager;
use datakit_ci_store::{BranchName, Snapshot, Store, StorePath};
use datakit_ci_term::{Logs, Problem, Status};
use prometheus_client::registry::Registry;
use tokio::sync::Notify;

/// Behaviour is chosen by the key's prefix: `ok-`, `fail-`, `panic-`, `pause-`, `cancel-`.
#[derive(Clone, Default)]
struct TestBuilder {
    runs: Arc<Mutex<HashMap<String, usize>>>,
    /// Released by the test to let `pause-` builds move on, one step at a time.
    step: Arc<Notify>,
}

impl TestBuilder {
    fn runs(&self, key: &str) -> usize {
        self.runs
            .lock()
            .expect("not poisoned")
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

impl Builder for TestBuilder {
    type Key = String;
    type Context = ();
    type Value = String;

    fn name(&self) -> String {
        "test-builder".into()
    }

    fn title(&self, key: &String) -> String {
        format!("Build {key}")
    }

    fn branch(&self, key: &String) -> BranchName {
        BranchName::new(format!("test-{key}")).expect("test keys are valid")
    }

    async fn generate(&self, build: Build<'_>, _: &(), key: &String) -> Result<String, String> {
        *self
            .runs
            .lock()
            .expect("not poisoned")
            .entry(key.clone())
            .or_default() += 1;
        build.log.write_str(&format!("building {key}\n"));
        if key.starts_with("fail-") {
            return Err("failed on purpose".into());
        }
        if key.starts_with("panic-") {
            panic!("the builder blew up");
        }
        if key.starts_with("pause-") {
            build
                .log
                .with_pending_reason("Paused", self.step.notified())
                .await;
            self.step.notified().await;
        }
        if key.starts_with("cancel-") {
            build.cancel.cancelled().await;
            return Err("Cancelled".into());
        }
        let path = StorePath::new("value/x").map_err(|e| e.to_string())?;
        build
            .transaction
            .create_file(&path, key.as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(key.to_uppercase())
    }

    fn load(&self, tree: &Snapshot, _: &String) -> Result<String, String> {
        let path = StorePath::new("value/x").map_err(|e| e.to_string())?;
        let bytes = tree
            .read_file(&path)
            .map_err(|e| e.to_string())?
            .ok_or("no value/x")?;
        Ok(String::from_utf8_lossy(&bytes).to_uppercase())
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    store: Option<Store>,
    builder: TestBuilder,
    logs: LogManager,
    registry: Registry,
    metrics: CacheMetrics,
}

impl Fixture {
    fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("state.git"))?;
        let mut registry = Registry::default();
        let metrics = CacheMetrics::new(&mut registry);
        Ok(Fixture {
            dir,
            store: Some(store),
            builder: TestBuilder::default(),
            logs: LogManager::new(),
            registry,
            metrics,
        })
    }

    fn store(&self) -> Store {
        self.store.clone().expect("store is open")
    }

    fn cache(&self) -> Cache<TestBuilder> {
        Cache::new(
            self.builder.clone(),
            self.store(),
            self.logs.clone(),
            &self.metrics,
        )
    }

    async fn file(&self, branch: &str, path: &str) -> anyhow::Result<Option<String>> {
        let head = self
            .store()
            .branch(&BranchName::new(branch)?)
            .head()
            .await?;
        let Some(head) = head else { return Ok(None) };
        let bytes = head.tree().read_file(&StorePath::new(path)?)?;
        Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.store = None;
        if !std::thread::panicking() {
            datakit_ci_testkit::assert_fsck_clean(&self.dir.path().join("state.git"));
        }
    }
}

/// Looks `key` up until it is no longer pending, waiting on each `ready` in between.
async fn settle(cache: &Cache<TestBuilder>, key: &str) -> Status<String> {
    let wait = async {
        loop {
            let status = cache.lookup((), key.to_owned()).await;
            match &status.result {
                Err(Problem::Pending { ready, .. }) => ready.clone().wait().await,
                _ => return status,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("the build settles")
}

fn reason(status: &Status<String>) -> Option<&str> {
    match &status.result {
        Err(Problem::Pending { reason, .. }) => Some(reason),
        _ => None,
    }
}

#[tokio::test]
async fn a_build_is_recorded_in_the_store_and_reused_by_a_new_cache() -> anyhow::Result<()> {
    let fixture = Fixture::new()?;
    let status = settle(&fixture.cache(), "ok-a").await;
    assert_eq!(status.result, Ok("OK-A".to_owned()));
    let Logs::Saved(saved) = &status.output else {
        panic!("saved log expected: {:?}", status.output)
    };
    assert_eq!(
        (saved.branch().as_str(), saved.title(), saved.failed()),
        ("test-ok-a", "Build ok-a", false)
    );

    let log = fixture.file("test-ok-a", "log").await?.expect("log file");
    assert!(log.starts_with("=== Build ok-a\n"), "{log}");
    assert!(
        log.contains("Starting...\n")
            && log.contains("building ok-a\n")
            && log.ends_with("Success\n"),
        "{log}"
    );
    assert_eq!(
        fixture.file("test-ok-a", "value/x").await?.as_deref(),
        Some("ok-a")
    );
    assert_eq!(fixture.file("test-ok-a", "failure").await?, None);
    let head = fixture
        .store()
        .branch(&BranchName::new("test-ok-a")?)
        .head()
        .await?
        .expect("head");
    assert_eq!(head.message(), "Cached successful result");

    // A brand-new cache on the same store loads the result instead of building.
    let again = fixture.cache().lookup((), "ok-a".to_owned()).await;
    assert_eq!(again.result, Ok("OK-A".to_owned()));
    assert_eq!(fixture.builder.runs("ok-a"), 1);
    Ok(())
}

#[tokio::test]
async fn failures_are_recorded_and_rebuilt_on_request() -> anyhow::Result<()> {
    let fixture = Fixture::new()?;
    let cache = fixture.cache();
    let status = settle(&cache, "fail-b").await;
    assert_eq!(status.result, Err(Problem::failure("failed on purpose")));
    assert_eq!(
        fixture.file("test-fail-b", "failure").await?.as_deref(),
        Some("failed on purpose")
    );
    let log = fixture.file("test-fail-b", "log").await?.expect("log");
    assert!(log.ends_with("Failed: failed on purpose\n"), "{log}");

    // Reused from memory, then from the store by a new cache: no second run.
    assert_eq!(
        settle(&cache, "fail-b").await.result,
        Err(Problem::failure("failed on purpose"))
    );
    assert_eq!(
        settle(&fixture.cache(), "fail-b").await.result,
        Err(Problem::failure("failed on purpose"))
    );
    assert_eq!(fixture.builder.runs("fail-b"), 1);

    // The saved log's trigger marks the branch; the next lookup builds again.
    let Logs::Saved(saved) = &status.output else {
        panic!("saved log expected")
    };
    saved
        .request_rebuild()
        .expect("rebuildable")
        .fire()
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(
        fixture
            .file("test-fail-b", "rebuild-requested")
            .await?
            .as_deref(),
        Some("")
    );
    assert_eq!(
        settle(&cache, "fail-b").await.result,
        Err(Problem::failure("failed on purpose"))
    );
    assert_eq!(fixture.builder.runs("fail-b"), 2);
    assert_eq!(
        fixture.file("test-fail-b", "rebuild-requested").await?,
        None
    );
    Ok(())
}

#[tokio::test]
async fn pending_reasons_follow_the_build_and_concurrent_lookups_share_it() -> anyhow::Result<()> {
    let fixture = Fixture::new()?;
    let cache = fixture.cache();
    let key = "pause-c".to_owned();
    let (first, second) =
        tokio::join!(cache.lookup((), key.clone()), cache.lookup((), key.clone()));
    assert_eq!(reason(&first), Some("Build pause-c"));
    assert_eq!(reason(&second), Some("Build pause-c"));
    assert!(
        matches!(first.output, Logs::Live(_)),
        "a running build shows its live log"
    );

    let mut seen = vec!["Build pause-c".to_owned()];
    let mut status = first;
    while let Err(Problem::Pending { ready, .. }) = &status.result {
        // Let the build move on once it is paused, and once it has resumed.
        if seen.last().map(String::as_str) == Some("Paused") || seen.len() == 3 {
            fixture.builder.step.notify_one();
        }
        tokio::time::timeout(Duration::from_secs(30), ready.clone().wait()).await?;
        status = cache.lookup((), key.clone()).await;
        if let Some(r) = reason(&status)
            && seen.last().map(String::as_str) != Some(r)
        {
            seen.push(r.to_owned());
        }
    }
    assert_eq!(seen, ["Build pause-c", "Paused", "Build pause-c"]);
    assert_eq!(status.result, Ok("PAUSE-C".to_owned()));
    assert_eq!(
        fixture.builder.runs("pause-c"),
        1,
        "both lookups shared one build"
    );
    Ok(())
}

#[tokio::test]
async fn rebuild_while_building_is_ignored() -> anyhow::Result<()> {
    let fixture = Fixture::new()?;
    let cache = fixture.cache();
    let branch = BranchName::new("test-pause-d")?;
    let first = cache.lookup((), "pause-d".to_owned()).await;
    assert!(reason(&first).is_some());
    cache.mark_for_rebuild(&branch).await?;
    fixture.builder.step.notify_one();
    fixture.builder.step.notify_one();
    // Notify permits are not queued for a waiter that is not there yet, so keep stepping.
    let done = async {
        loop {
            let status = cache.lookup((), "pause-d".to_owned()).await;
            if reason(&status).is_none() {
                return status;
            }
            fixture.builder.step.notify_one();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let status = tokio::time::timeout(Duration::from_secs(30), done).await?;
    assert_eq!(status.result, Ok("PAUSE-D".to_owned()));
    assert_eq!(
        fixture.file("test-pause-d", "rebuild-requested").await?,
        None
    );
    assert_eq!(fixture.builder.runs("pause-d"), 1);
    Ok(())
}

#[tokio::test]
async fn cancelling_the_live_log_stops_the_build_as_a_recorded_failure() -> anyhow::Result<()> {
    let fixture = Fixture::new()?;
    let cache = fixture.cache();
    let first = cache.lookup((), "cancel-e".to_owned()).await;
    assert!(reason(&first).is_some());
    let log = fixture
        .logs
        .get("test-cancel-e")
        .expect("the build has a live log");
    assert!(log.can_cancel());
    log.cancel()?;
    let status = settle(&cache, "cancel-e").await;
    assert_eq!(status.result, Err(Problem::failure("Cancelled")));
    let saved_log = fixture.file("test-cancel-e", "log").await?.expect("log");
    assert!(
        saved_log.contains("Cancelled at user's request"),
        "{saved_log}"
    );
    assert!(
        fixture.logs.get("test-cancel-e").is_none(),
        "the live log is finished"
    );
    Ok(())
}

#[tokio::test]
async fn a_panicking_builder_becomes_a_recorded_rebuildable_failure() -> anyhow::Result<()> {
    let fixture = Fixture::new()?;
    let cache = fixture.cache();
    let status = settle(&cache, "panic-f").await;
    assert_eq!(
        status.result,
        Err(Problem::failure("build panicked: the builder blew up"))
    );
    assert_eq!(
        fixture.file("test-panic-f", "failure").await?.as_deref(),
        Some("build panicked: the builder blew up")
    );
    let Logs::Saved(saved) = &status.output else {
        panic!("saved log expected")
    };
    assert!(saved.request_rebuild().is_some(), "panics can be rebuilt");
    Ok(())
}

#[tokio::test]
async fn metrics_count_builds_by_builder_name() -> anyhow::Result<()> {
    let fixture = Fixture::new()?;
    let cache = fixture.cache();
    settle(&cache, "ok-g").await;
    settle(&cache, "fail-g").await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &fixture.registry)?;
    for line in [
        r#"DataKitCI_cache_builds_started_total{name="test-builder"} 2"#,
        r#"DataKitCI_cache_builds_succeeded_total{name="test-builder"} 1"#,
        r#"DataKitCI_cache_builds_failed_total{name="test-builder"} 1"#,
        r#"DataKitCI_cache_builds_in_progress{name="test-builder"} 0"#,
        r#"DataKitCI_cache_build_time_count{name="test-builder"} 2"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    Ok(())
}

/// Regression: the pending monitor subscribed to the log only once its task ran, so a build that
/// finished first stayed pending forever (found by the benchmark, 1 in ~16 quick builds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_builds_never_stay_pending() -> anyhow::Result<()> {
    let fixture = Fixture::new()?;
    let cache = fixture.cache();
    let keys: Vec<String> = (0..64).map(|i| format!("ok-quick{i}")).collect();
    let statuses = futures::future::join_all(keys.iter().map(|k| settle(&cache, k))).await;
    for (key, status) in keys.iter().zip(statuses) {
        assert_eq!(status.result, Ok(key.to_uppercase()));
    }
    Ok(())
}

/// Two caches sharing a store and a log manager (e.g. the same commit in two repositories) may
/// want the same branch at once: the second waits for the first instead of failing.
#[tokio::test]
async fn a_second_cache_on_the_same_branch_waits_for_the_first() -> anyhow::Result<()> {
    let fixture = Fixture::new()?;
    let (first, second) = (fixture.cache(), fixture.cache());
    let building = first.lookup((), "pause-h".to_owned()).await;
    assert_eq!(reason(&building), Some("Build pause-h"));
    let waiting = second.lookup((), "pause-h".to_owned()).await;
    assert_eq!(
        reason(&waiting),
        Some("Waiting for another build on test-pause-h")
    );
    let Err(Problem::Pending { ready, .. }) = waiting.result else {
        unreachable!("checked above")
    };
    fixture.builder.step.notify_one();
    fixture.builder.step.notify_one();
    let stepping = async {
        let finished = ready.wait();
        tokio::pin!(finished);
        loop {
            tokio::select! {
                _ = &mut finished => return,
                _ = tokio::task::yield_now() => fixture.builder.step.notify_one(),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), stepping).await?;
    assert_eq!(
        settle(&second, "pause-h").await.result,
        Ok("PAUSE-H".to_owned())
    );
    assert_eq!(
        fixture.builder.runs("pause-h"),
        1,
        "the second cache loaded the first one's result"
    );
    Ok(())
}
