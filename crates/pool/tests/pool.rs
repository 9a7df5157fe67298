//! Integration tests of `datakit-ci-pool`: queueing, holders, pending reasons and metrics.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use datakit_ci_log::{LiveLog, LiveLogSpec, LogManager};
use datakit_ci_pool::{Error, Holder, MonitoredPool, PoolMetrics, Pools};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;

fn holder(job: &str) -> Holder {
    Holder {
        job: job.into(),
        label: "build".into(),
        log_branch: None,
    }
}

fn setup() -> (Registry, PoolMetrics, Pools) {
    let mut registry = Registry::default();
    let metrics = PoolMetrics::new(&mut registry);
    (registry, metrics, Pools::new())
}

fn live_log(manager: &LogManager, branch: &str) -> Result<LiveLog> {
    Ok(manager.create(LiveLogSpec {
        branch: branch.into(),
        title: branch.into(),
        pending: "starting".into(),
        cancel: None,
    })?)
}

/// Polls `condition` until it holds, failing after a generous deadline.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        if Instant::now() > deadline {
            bail!("timed out waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn metrics_text(registry: &Registry) -> Result<String> {
    let mut text = String::new();
    encode(&mut text, registry)?;
    Ok(text)
}

#[tokio::test]
async fn third_user_queues_fifo_with_a_visible_reason() -> Result<()> {
    let (registry, metrics, pools) = setup();
    let pool = MonitoredPool::new("Docker", 2, &metrics, &pools)?;
    let manager = LogManager::new();
    let order = Arc::new(Mutex::new(Vec::new()));

    // Each user records its start and holds its slot until told to release it.
    let mut releases = Vec::new();
    let mut tasks = Vec::new();
    let mut logs = Vec::new();
    for (index, job) in ["a", "b", "c", "d"].into_iter().enumerate() {
        let (release, released) = oneshot::channel::<()>();
        releases.push(release);
        let log = live_log(&manager, job)?;
        logs.push(log.clone());
        tasks.push(tokio::spawn({
            let pool = pool.clone();
            let order = Arc::clone(&order);
            async move {
                pool.use_(holder(job), Some(&log), async {
                    order.lock().expect("not poisoned").push(job);
                    released.await.ok();
                })
                .await;
            }
        }));
        // Let each user enter the pool before the next, so the queue order is known.
        if index < 2 {
            wait_until("the user runs", || {
                order.lock().expect("not poisoned").len() == index + 1
            })
            .await?;
        } else {
            wait_until("the user is queued", || pool.qlen() == index - 1).await?;
        }
    }

    assert_eq!(pool.active(), 2);
    assert_eq!(pool.qlen(), 2);
    assert_eq!(*order.lock().expect("not poisoned"), ["a", "b"]);
    let holders = pool.holders();
    let jobs: Vec<&str> = holders.iter().map(|h| h.job.as_str()).collect();
    assert_eq!(jobs, ["b", "a"], "most recent first");
    assert_eq!(
        holders[0].log_branch.as_deref(),
        Some("b"),
        "taken from the log"
    );
    let waiting = r#"Waiting for resource in "Docker""#;
    assert_eq!(logs[2].pending_reason().as_deref(), Some(waiting));
    assert_eq!(logs[3].pending_reason().as_deref(), Some(waiting));
    assert_eq!(logs[0].pending_reason().as_deref(), Some("starting"));
    // Issue 20: the queue, in order, for the UI to show each one's place.
    let queue: Vec<String> = pool.queue().into_iter().map(|h| h.job).collect();
    assert_eq!(queue, ["c", "d"]);

    let text = metrics_text(&registry)?;
    assert!(
        text.contains("DataKitCI_pool_qlen{name=\"Docker\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("DataKitCI_pool_resources_in_use{name=\"Docker\"} 2\n"),
        "{text}"
    );

    // Releasing "a" admits "c" (FIFO), whose reason is popped.
    let mut releases = releases.into_iter();
    releases.next().expect("four releases").send(()).ok();
    wait_until("c holds a slot", || pool.qlen() == 1).await?;
    wait_until("c has started", || {
        order.lock().expect("not poisoned").len() == 3
    })
    .await?;
    assert_eq!(*order.lock().expect("not poisoned"), ["a", "b", "c"]);
    assert_eq!(logs[2].pending_reason().as_deref(), Some("starting"));
    // "d" moved up.
    let queue: Vec<String> = pool.queue().into_iter().map(|h| h.job).collect();
    assert_eq!(queue, ["d"]);
    let jobs: Vec<String> = pool.holders().into_iter().map(|h| h.job).collect();
    assert_eq!(jobs, ["c", "b"]);

    for release in releases {
        release.send(()).ok();
    }
    for task in tasks {
        task.await?;
    }
    assert_eq!(*order.lock().expect("not poisoned"), ["a", "b", "c", "d"]);
    assert_eq!((pool.active(), pool.qlen()), (0, 0));
    assert!(pool.holders().is_empty());
    Ok(())
}

#[tokio::test]
async fn dropping_a_queued_user_leaves_the_queue_once() -> Result<()> {
    let (registry, metrics, pools) = setup();
    let pool = MonitoredPool::new("git", 1, &metrics, &pools)?;
    let manager = LogManager::new();
    let log = live_log(&manager, "queued")?;
    let (release, released) = oneshot::channel::<()>();
    let holding = tokio::spawn({
        let pool = pool.clone();
        async move {
            pool.use_(holder("a"), None, async { released.await.ok() })
                .await
        }
    });
    wait_until("a holds the slot", || pool.active() == 1).await?;

    let queued = tokio::spawn({
        let pool = pool.clone();
        let log = log.clone();
        async move { pool.use_(holder("b"), Some(&log), async {}).await }
    });
    wait_until("b is queued", || pool.qlen() == 1).await?;
    assert!(log.pending_reason().is_some_and(|r| r.contains("\"git\"")));
    queued.abort();
    assert!(queued.await.is_err_and(|e| e.is_cancelled()));
    assert_eq!(pool.qlen(), 0);
    assert_eq!(log.pending_reason().as_deref(), Some("starting"));

    // The abandoned user did not take the slot: the next user gets it after "a".
    release.send(()).ok();
    holding.await?;
    pool.use_(holder("c"), None, async {}).await;
    assert_eq!((pool.active(), pool.qlen()), (0, 0));
    let text = metrics_text(&registry)?;
    assert!(
        text.contains("DataKitCI_pool_qlen{name=\"git\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("DataKitCI_pool_wait_time_seconds_count{name=\"git\"} 2\n"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn dropping_a_running_user_releases_its_slot() -> Result<()> {
    let (_registry, metrics, pools) = setup();
    let pool = MonitoredPool::new("one", 1, &metrics, &pools)?;
    let running = tokio::spawn({
        let pool = pool.clone();
        async move {
            pool.use_(holder("a"), None, std::future::pending::<()>())
                .await
        }
    });
    wait_until("a holds the slot", || pool.active() == 1).await?;
    running.abort();
    assert!(running.await.is_err_and(|e| e.is_cancelled()));
    assert!(pool.holders().is_empty());
    assert_eq!(pool.use_(holder("b"), None, async { 7 }).await, 7);
    Ok(())
}

#[tokio::test]
async fn metrics_are_exported_per_pool() -> Result<()> {
    let (registry, metrics, pools) = setup();
    let docker = MonitoredPool::new("Docker", 3, &metrics, &pools)?;
    let _git = MonitoredPool::new("/repos/datakit", 1, &metrics, &pools)?;
    docker.use_(holder("a"), None, async {}).await;
    docker.use_(holder("b"), None, async {}).await;

    let text = metrics_text(&registry)?;
    for expected in [
        "# HELP DataKitCI_pool_qlen Number of users waiting for a resource.\n",
        "# TYPE DataKitCI_pool_qlen gauge\n",
        "DataKitCI_pool_qlen{name=\"Docker\"} 0\n",
        "# HELP DataKitCI_pool_capacity Total pool capacity.\n",
        "DataKitCI_pool_capacity{name=\"Docker\"} 3\n",
        "DataKitCI_pool_capacity{name=\"/repos/datakit\"} 1\n",
        "DataKitCI_pool_resources_in_use{name=\"Docker\"} 0\n",
        "# HELP DataKitCI_pool_wait_time_seconds Time spent waiting for a resource.\n",
        "DataKitCI_pool_wait_time_seconds_count{name=\"Docker\"} 2\n",
        "DataKitCI_pool_wait_time_seconds_sum{name=\"Docker\"} ",
        "# HELP DataKitCI_pool_use_time_seconds Time spent using a resource.\n",
        "DataKitCI_pool_use_time_seconds_count{name=\"Docker\"} 2\n",
        "DataKitCI_pool_use_time_seconds_sum{name=\"Docker\"} ",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    Ok(())
}

#[tokio::test]
async fn pools_are_listed_by_name_and_unique() -> Result<()> {
    let (_registry, metrics, pools) = setup();
    MonitoredPool::new("git", 1, &metrics, &pools)?;
    MonitoredPool::new("Docker", 2, &metrics, &pools)?;
    let names: Vec<String> = pools.list().iter().map(|p| p.name().to_owned()).collect();
    assert_eq!(names, ["Docker", "git"]);

    let error = MonitoredPool::new("git", 5, &metrics, &pools).expect_err("duplicate name");
    assert!(matches!(error, Error::DuplicateName { .. }), "{error:?}");
    assert_eq!(error.to_string(), r#"a pool named "git" already exists"#);
    assert_eq!(pools.list().len(), 2);
    assert_eq!(pools.list()[1].capacity(), 1, "the original pool is kept");

    let error = MonitoredPool::new("empty", 0, &metrics, &pools).expect_err("capacity 0");
    assert_eq!(
        error.to_string(),
        r#"pool "empty" must have a capacity of at least 1"#
    );

    // A separate set of pools is independent (no global state).
    let other = Pools::new();
    MonitoredPool::new("git", 1, &metrics, &other)?;
    assert_eq!(other.list().len(), 1);
    Ok(())
}
