//! Figures 1 and 4: the cost of one head change with few and with many targets loaded, the time
//! to load many targets, and the memory they take.
//!
//! The refs are written straight into `github-metadata` in one store transaction (an in-process
//! bridge); each target has three cheap jobs (`Term::head(target).map(..)`), so what is measured
//! is the engine and the store, not builds.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use prometheus_client::registry::Registry;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use datakit_ci::engine::{Engine, EngineConfig, METADATA_BRANCH, Project, StatusChange};
use datakit_ci::store::{Branch, BranchName, Store, StorePath};
use datakit_ci::term::{CommitHash, Term};

use crate::Scale;
use crate::engine_group::sys::rss_bytes;
use crate::report::{Figure, Report, Target};
use crate::stats::quantile;

/// The project all targets belong to.
const REPO: &str = "bench/repo";
/// The jobs of every target.
const JOBS: [&str; 3] = ["alpha", "beta", "gamma"];
/// The few targets of the baseline case.
const SMALL: usize = 100;
/// How much more one head change may cost with many targets than with few.
const RATIO_TARGET: f64 = 2.0;
/// The longest a load or a head change may take before the run fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(600);

const MIB: f64 = 1024.0 * 1024.0;

/// Sizes of the scale figures.
struct Sizes {
    /// Targets of the large case.
    large: usize,
    /// Head changes timed per case.
    changes: usize,
}

impl Sizes {
    fn new(scale: Scale) -> Self {
        match scale {
            Scale::Full => Sizes {
                large: 10_000,
                changes: 20,
            },
            Scale::Quick => Sizes {
                large: 1_000,
                changes: 10,
            },
        }
    }
}

/// Measures figures 1 (event cost vs scale, load time) and 4 (memory).
pub(super) async fn run(scale: Scale, report: &mut Report) -> anyhow::Result<()> {
    let sizes = Sizes::new(scale);
    let jobs = JOBS.len();

    let mut small = Loaded::start(SMALL).await.context("load the small case")?;
    let small_changes = small.head_changes(sizes.changes).await?;
    small.stop().await?;

    let rss_before = rss_bytes()?;
    let mut large = Loaded::start(sizes.large)
        .await
        .context("load the large case")?;
    // Let the engine's last commits (its own status commit, seen by its watch) settle.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_loaded = rss_bytes()?;
    let large_changes = large.head_changes(sizes.changes).await?;
    let (refs_time, load_time) = (large.refs_time, large.load_time);
    large.stop().await?;

    let (n_small, n_large) = (SMALL, sizes.large);
    let count = sizes.changes;
    let small_median = quantile(&small_changes, 0.5);
    let large_median = quantile(&large_changes, 0.5);
    report.add(Figure::seconds(
        format!("engine: write {n_large} refs into {METADATA_BRANCH} (one store transaction)"),
        refs_time,
    ));
    report.add(Figure::seconds(
        format!(
            "engine: load {n_large} targets × {jobs} jobs (engine start → all {} statuses written)",
            n_large * jobs
        ),
        load_time,
    ));
    report.add(Figure::millis(
        format!(
            "engine: one head change → its {jobs} statuses written, {n_small} targets loaded, median of {count}"
        ),
        small_median,
    ));
    report.add(Figure::millis(
        format!(
            "engine: one head change → its {jobs} statuses written, {n_large} targets loaded, median of {count}"
        ),
        large_median,
    ));
    report.add(Figure::millis(
        format!(
            "engine: one head change → its {jobs} statuses written, {n_large} targets loaded, p90 of {count}"
        ),
        quantile(&large_changes, 0.9),
    ));
    report.add(
        Figure::new(
            format!("engine: head-change cost, {n_large} targets vs {n_small} (ratio of medians)"),
            large_median.as_secs_f64() / small_median.as_secs_f64(),
            "×",
        )
        .target(Target::AtMost(RATIO_TARGET)),
    );
    report.add(Figure::new(
        format!(
            "engine: process resident memory (VmRSS) with {n_large} idle targets × {jobs} jobs"
        ),
        rss_loaded as f64 / MIB,
        "MiB",
    ));
    report.add(Figure::new(
        format!("engine: VmRSS growth from loading {n_large} targets × {jobs} jobs"),
        rss_loaded.saturating_sub(rss_before) as f64 / MIB,
        "MiB",
    ));
    Ok(())
}

/// An engine running on a fresh store with `targets` branches loaded and every status written.
struct Loaded {
    _dir: tempfile::TempDir,
    engine: Engine,
    metadata: Branch,
    events: broadcast::Receiver<StatusChange>,
    cancel: CancellationToken,
    running: JoinHandle<Result<(), datakit_ci::engine::Error>>,
    targets: usize,
    /// The next fake commit number.
    next_commit: u64,
    refs_time: Duration,
    load_time: Duration,
}

impl Loaded {
    async fn start(targets: usize) -> anyhow::Result<Loaded> {
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

        let project = Project::new(REPO, |target| {
            JOBS.iter()
                .map(|job| {
                    let term = Term::head(target.clone())
                        .map(move |head: CommitHash| format!("{job} saw {}", head.short(8)));
                    ((*job).to_owned(), term)
                })
                .collect()
        })?;
        let config = EngineConfig {
            projects: vec![project],
            web_ui: "https://ci.example/".to_owned(),
            canaries: Vec::new(),
        };
        let engine = Engine::new(config, store, &mut Registry::default());
        let mut events = engine.subscribe();
        let cancel = CancellationToken::new();

        let started = Instant::now();
        let running = tokio::spawn({
            let (engine, cancel) = (engine.clone(), cancel.clone());
            async move { engine.run(cancel).await }
        });
        let expected = targets * JOBS.len();
        tokio::time::timeout(PATIENCE, count_successes(&mut events, expected))
            .await
            .with_context(|| {
                format!("fewer than {expected} statuses written after {PATIENCE:?}")
            })??;
        let load_time = started.elapsed();

        let tracked = engine.targets();
        ensure!(
            tracked.len() == targets,
            "the engine tracks {} targets, {targets} were written",
            tracked.len()
        );
        let missing = tracked
            .iter()
            .flat_map(|t| &t.jobs)
            .filter(|job| job.output.is_none())
            .count();
        ensure!(missing == 0, "{missing} jobs have no output after the load");
        let head = metadata.head().await?.context("no metadata head")?;
        let commits = head
            .tree()
            .read_dir(&StorePath::new(format!("{REPO}/commit"))?)?
            .map_or(0, |entries| entries.len());
        ensure!(
            commits == targets,
            "statuses are written for {commits} commits, expected {targets}"
        );
        Ok(Loaded {
            _dir: dir,
            engine,
            metadata,
            events,
            cancel,
            running,
            targets,
            next_commit: targets as u64,
            refs_time,
            load_time,
        })
    }

    /// Moves `count` branches (spread over the targets) to new commits, one at a time, and
    /// returns the time from each commit to the last of its statuses being announced.
    async fn head_changes(&mut self, count: usize) -> anyhow::Result<Vec<Duration>> {
        let mut times = Vec::with_capacity(count);
        for round in 0..count {
            // Let the previous round's trailing work (its status commit seen by the watch) end.
            tokio::time::sleep(Duration::from_millis(20)).await;
            while !matches!(
                self.events.try_recv(),
                Err(broadcast::error::TryRecvError::Empty)
            ) {}
            let branch = (round * 7_919 + 13) % self.targets;
            let commit = fake_hash(self.next_commit);
            self.next_commit += 1;

            let started = Instant::now();
            let mut transaction = self.metadata.transaction().await?;
            transaction.create_file(&head_path(branch)?, format!("{commit}\n"))?;
            transaction
                .commit(&format!(
                    "Updating existing branch b{branch:05} to {commit}"
                ))
                .await?;
            tokio::time::timeout(PATIENCE, self.wait_for_commit(&commit))
                .await
                .with_context(|| format!("no statuses for {commit} after {PATIENCE:?}"))??;
            times.push(started.elapsed());
        }
        Ok(times)
    }

    /// Waits until every job announced `success` for `commit`.
    async fn wait_for_commit(&mut self, commit: &str) -> anyhow::Result<()> {
        let mut done = BTreeSet::new();
        while done.len() < JOBS.len() {
            match self.events.recv().await {
                Ok(change) => {
                    if change.commit.as_str() == commit {
                        ensure!(
                            change.state == "success",
                            "job {} of {} is {}: {}",
                            change.job,
                            change.target,
                            change.state,
                            change.description
                        );
                        done.insert(change.job);
                    }
                }
                Err(RecvError::Lagged(n)) => bail!("missed {n} status events"),
                Err(RecvError::Closed) => bail!("the engine stopped"),
            }
        }
        Ok(())
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.running
            .await
            .context("the engine task")?
            .context("the engine")?;
        drop(self.engine);
        Ok(())
    }
}

/// Counts `success` announcements until `expected`. Announcements the receiver was too slow for
/// (the engine writes them in one burst, the channel holds 4,096) are counted as `Lagged`; the
/// caller checks the store afterwards.
async fn count_successes(
    events: &mut broadcast::Receiver<StatusChange>,
    expected: usize,
) -> anyhow::Result<()> {
    let mut seen = 0;
    while seen < expected {
        match events.recv().await {
            Ok(change) => {
                ensure!(
                    change.state == "success",
                    "job {} of {} is {}: {}",
                    change.job,
                    change.target,
                    change.state,
                    change.description
                );
                seen += 1;
            }
            Err(RecvError::Lagged(n)) => seen += n as usize,
            Err(RecvError::Closed) => bail!("the engine stopped after {seen} statuses"),
        }
    }
    Ok(())
}

/// `bench/repo/ref/heads/b<i>/head`.
fn head_path(i: usize) -> anyhow::Result<StorePath> {
    Ok(StorePath::new(format!("{REPO}/ref/heads/b{i:05}/head"))?)
}

/// A distinct 40-digit lowercase hex commit hash for `n` (the commits need not exist).
fn fake_hash(n: u64) -> String {
    let mixed = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1_e995;
    format!("{mixed:016x}{n:024x}")
}
