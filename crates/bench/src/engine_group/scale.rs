//! Figures 1 and 4: the cost of one head change with few and with many targets loaded, the time
//! to load many targets, and the memory they take.
//!
//! The refs are written straight into `github-metadata` in one store transaction (an in-process
//! bridge); each target has three cheap jobs (`Term::head(target).map(..)`), so what is measured
//! is the engine and the store, not builds. Both cases stay loaded and their head changes
//! alternate, each starting once neither store runs pack maintenance.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use prometheus_client::registry::Registry;
use tokio::sync::broadcast::{self, error::RecvError};

use datakit_ci::engine::{Engine, EngineConfig, METADATA_BRANCH, Project, StatusChange};
use datakit_ci::store::{Branch, BranchName, Store, StorePath};
use datakit_ci::term::{CommitHash, Term};

use crate::Scale;
use crate::engine_group::sys::{Background, dir_bytes, rss_bytes};
use crate::report::{Figure, Report, Target};
use crate::stats::quantile;
use crate::targets::{JOBS, REPO, check_loaded, count_successes, fake_hash, head_path};

/// The project all targets belong to.
/// The few targets of the baseline case.
const SMALL: usize = 100;
/// How much more one head change may cost with many targets than with few.
const RATIO_TARGET: f64 = 2.0;
/// The longest a load or a head change may take before the run fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(600);
/// How many times an engine that stopped with an error is restarted before the run fails.
const MAX_RESTARTS: usize = 20;

const MIB: f64 = 1024.0 * 1024.0;

/// Sizes of the scale figures.
struct Sizes {
    /// Targets of the large case.
    large: usize,
    /// Head changes timed per case. With 20, the median of the same binary moved by a tenth from
    /// one run to the next.
    changes: usize,
}

impl Sizes {
    fn new(scale: Scale) -> Self {
        match scale {
            Scale::Full => Sizes {
                large: 10_000,
                changes: 40,
            },
            Scale::Quick => Sizes {
                large: 1_000,
                changes: 10,
            },
        }
    }
}

/// Measures figures 1 (event cost vs scale, load time) and 4 (memory). Returns the stores'
/// directories, for the caller to delete once every figure is measured.
pub(super) async fn run(
    scale: Scale,
    report: &mut Report,
) -> anyhow::Result<Vec<tempfile::TempDir>> {
    let sizes = Sizes::new(scale);
    let jobs = JOBS.len();

    // Both cases stay loaded and take turns, so that neither is always timed on the state the
    // other left behind (the file system after many deletions, the allocator, the page cache).
    let mut small = Loaded::start(SMALL).await.context("load the small case")?;
    let rss_before = rss_bytes()?;
    let mut large = Loaded::start(sizes.large)
        .await
        .context("load the large case")?;
    // Let the engine's last commits (its own status commit, seen by its watch) settle.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_loaded = rss_bytes()?;
    large.store.wait_for_maintenance().await;
    let store_loaded = dir_bytes(large.store.path())?;
    let mut small_changes = Vec::with_capacity(sizes.changes);
    let mut large_changes = Vec::with_capacity(sizes.changes);
    for round in 0..sizes.changes {
        for large_turn in [round % 2 == 1, round % 2 == 0] {
            let (this, other) = if large_turn {
                (&mut large, &small)
            } else {
                (&mut small, &large)
            };
            // Each change starts on quiet stores: no pack maintenance of an earlier change (of
            // either case) runs during it.
            other.store.wait_for_maintenance().await;
            this.store.wait_for_maintenance().await;
            let time = this.head_change().await?;
            if large_turn {
                large_changes.push(time);
            } else {
                small_changes.push(time);
            }
        }
    }
    large.store.wait_for_maintenance().await;
    let store_growth = dir_bytes(large.store.path())?.saturating_sub(store_loaded);
    let (refs_time, load_time) = (large.refs_time, large.load_time);
    let stale = small.stale + large.stale;
    let engine_errors = small.engine_errors.len() + large.engine_errors.len();
    let stores = vec![small.stop().await?, large.stop().await?];

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
            "engine: statuses announced for a new head with the previous head's result, in {} head changes",
            2 * count
        ),
        stale as f64,
        "statuses",
    ));
    report.add(Figure::new(
        format!(
            "engine: times the engine stopped with an error during the {} head changes (restarted)",
            2 * count
        ),
        engine_errors as f64,
        "times",
    ));
    report.add(Figure::new(
        format!(
            "engine: process resident memory (VmRSS) with {n_large} idle targets × {jobs} jobs"
        ),
        rss_loaded as f64 / MIB,
        "MiB",
    ));
    report.add(Figure::new(
        format!(
            "engine: store growth per head change, {n_large} targets (bytes on disk after {count} changes and pack maintenance)"
        ),
        store_growth as f64 / count as f64 / 1024.0,
        "KiB",
    ));
    report.add(Figure::new(
        format!("engine: VmRSS growth from loading {n_large} targets × {jobs} jobs"),
        rss_loaded.saturating_sub(rss_before) as f64 / MIB,
        "MiB",
    ));
    Ok(stores)
}

/// An engine running on a fresh store with `targets` branches loaded and every status written.
struct Loaded {
    dir: tempfile::TempDir,
    engine: Engine,
    store: Store,
    metadata: Branch,
    events: broadcast::Receiver<StatusChange>,
    running: Background<datakit_ci::engine::Error>,
    targets: usize,
    /// Announcements for a new head that carried another head's result.
    stale: usize,
    /// Errors that stopped the engine during the head changes (it is restarted).
    engine_errors: Vec<String>,
    /// The next fake commit number.
    next_commit: u64,
    /// Head changes made so far, repeated ones included.
    rounds: usize,
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

        let started = Instant::now();
        let (engine, mut events, mut running) = spawn_engine(&store)?;
        let expected = targets * JOBS.len();
        running
            .guard(async {
                tokio::time::timeout(PATIENCE, count_successes(&mut events, expected))
                    .await
                    .with_context(|| {
                        format!("fewer than {expected} statuses written after {PATIENCE:?}")
                    })?
            })
            .await
            .context("the engine")?;
        let load_time = started.elapsed();

        check_loaded(&engine, targets)?;
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
            dir,
            engine,
            store,
            metadata,
            events,
            running,
            targets,
            stale: 0,
            engine_errors: Vec::new(),
            next_commit: targets as u64,
            rounds: 0,
            refs_time,
            load_time,
        })
    }

    /// Moves one branch (a different one each time, spread over the targets) to a new commit
    /// and returns the time from that commit to the last of its statuses being announced. If
    /// the engine stops meanwhile, restarts it and moves the branch again.
    async fn head_change(&mut self) -> anyhow::Result<Duration> {
        loop {
            self.rounds += 1;
            // Let the previous change's trailing work (its status commit seen by the watch) end.
            tokio::time::sleep(Duration::from_millis(20)).await;
            while !matches!(
                self.events.try_recv(),
                Err(broadcast::error::TryRecvError::Empty)
            ) {}
            let branch = (self.rounds * 7_919 + 13) % self.targets;
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
            let (running, events, stale) = (&mut self.running, &mut self.events, &mut self.stale);
            let waited = running
                .guard(async {
                    tokio::time::timeout(PATIENCE, wait_for_commit(events, stale, &commit))
                        .await
                        .with_context(|| format!("no statuses for {commit} after {PATIENCE:?}"))?
                })
                .await;
            match waited {
                Ok(()) => return Ok(started.elapsed()),
                Err(error)
                    if self.running.has_stopped() && self.engine_errors.len() < MAX_RESTARTS =>
                {
                    eprintln!(
                        "warning: the engine ({} targets) stopped during a head change: {error:#}; \
                         restarting it and repeating the change",
                        self.targets
                    );
                    self.engine_errors.push(format!("{error:#}"));
                    self.restart(&commit).await?;
                }
                Err(error) => return Err(error.context("the engine")),
            }
        }
    }

    /// Starts a new engine on the store after the old one stopped, and waits until it has
    /// evaluated every job, those of the target moved to `commit` included, and flushed.
    async fn restart(&mut self, commit: &str) -> anyhow::Result<()> {
        let (engine, events, running) = spawn_engine(&self.store)?;
        (self.engine, self.events, self.running) = (engine, events, running);
        let short = &commit[..8];
        let (engine, targets) = (self.engine.clone(), self.targets);
        let ready = async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let tracked = engine.targets();
                let outputs: Vec<_> = tracked.iter().flat_map(|t| &t.jobs).collect();
                let done = outputs.iter().all(|job| job.output.is_some());
                let moved = tracked
                    .iter()
                    .filter(|t| t.target.head().as_str() == commit)
                    .flat_map(|t| &t.jobs)
                    .filter(|job| {
                        job.output
                            .as_ref()
                            .is_some_and(|o| o.result.description().ends_with(short))
                    })
                    .count();
                if tracked.len() == targets && done && moved == JOBS.len() {
                    // Let the flush of those results pass.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    return anyhow::Ok(());
                }
            }
        };
        self.running
            .guard(async {
                tokio::time::timeout(PATIENCE, ready)
                    .await
                    .context("the restarted engine is not ready")?
            })
            .await
            .context("the restarted engine")
    }

    /// Stops the engine; returns the store's directory.
    async fn stop(self) -> anyhow::Result<tempfile::TempDir> {
        self.running.stop().await.context("the engine")?;
        drop(self.engine);
        Ok(self.dir)
    }
}

/// Waits until every job announced `success` for `commit` with the description of that
/// commit; counts in `stale` the announcements for `commit` that carry another
/// description (the previous head's result).
async fn wait_for_commit(
    events: &mut broadcast::Receiver<StatusChange>,
    stale: &mut usize,
    commit: &str,
) -> anyhow::Result<()> {
    let short = &commit[..8];
    let mut done = BTreeSet::new();
    while done.len() < JOBS.len() {
        let change = match events.recv().await {
            Ok(change) => change,
            Err(RecvError::Lagged(n)) => bail!("missed {n} status events"),
            Err(RecvError::Closed) => bail!("the engine stopped"),
        };
        if change.commit.as_str() != commit {
            continue;
        }
        ensure!(
            change.state == "success",
            "job {} of {} is {}: {}",
            change.job,
            change.target,
            change.state,
            change.description
        );
        if change.description == format!("{} saw {short}", change.job) {
            done.insert(change.job);
        } else {
            if *stale == 0 {
                eprintln!(
                    "warning: the engine wrote `{}` = {} \"{}\" for the new head {commit} of {}: \
                         that is the previous head's result",
                    change.job, change.state, change.description, change.target
                );
            }
            *stale += 1;
        }
    }
    Ok(())
}

/// An engine on `store` with three cheap jobs per target, running; subscribed before it starts.
#[allow(clippy::type_complexity)]
fn spawn_engine(
    store: &Store,
) -> anyhow::Result<(
    Engine,
    broadcast::Receiver<StatusChange>,
    Background<datakit_ci::engine::Error>,
)> {
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
    let engine = Engine::new(config, store.clone(), &mut Registry::default());
    let events = engine.subscribe();
    let running = Background::spawn({
        let engine = engine.clone();
        move |cancel| async move { engine.run(cancel).await }
    });
    Ok((engine, events, running))
}
