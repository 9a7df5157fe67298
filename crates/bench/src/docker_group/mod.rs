//! The `docker` group (issue 16): the Docker plugin's cost against the `docker` command doing
//! the same containers, measured in the same run on the same engine and image.
//!
//! - **one step** — a containerised `true` step that misses the cache (a `Command` of a new label
//!   each time: `git archive` of the commit into `/src`, create, attach, start, wait, inspect,
//!   remove, the result committed to the store), against `docker run --rm IMAGE true`, taken in
//!   turns; medians. Target: ≤ 1.15×.
//! - **50 branches** — one containerised `true` step on each of 50 commits (10 with `--quick`),
//!   4 slots on the host, against the same number of `docker run --rm IMAGE true` with at most 4
//!   at once. Target: ≤ 1.3×.
//! - **containers left** — containers labelled with the bench's instance after both. Target: 0.
//!
//! The commits are fetched into the plugin's repository before the timing: a fetch is the Git
//! plugin's cost, not the Docker plugin's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use prometheus_client::registry::Registry;

use datakit_ci::cache::CacheMetrics;
use datakit_ci::docker::{Command, CommandConfig, HostSpec, Hosts, Image, Instance};
use datakit_ci::git::{Commit, Repo, Services};
use datakit_ci::log::LogManager;
use datakit_ci::pool::{PoolMetrics, Pools};
use datakit_ci::store::{BranchName, Snapshot, Store, StorePath};
use datakit_ci::term::{JobId, RefName, TargetId, Term};
use datakit_ci_testkit::docker::{containers_of_instance, ensure_busybox_image, remove_instance};

use crate::Scale;
use crate::git::git;
use crate::report::{Figure, Report, Target};
use crate::stats::quantile;

/// Slots on the host for the many-branches figure.
const JOBS: usize = 4;

/// Measures the group's figures, adding them to `report`.
pub(crate) async fn run(scale: Scale, report: &mut Report) -> anyhow::Result<()> {
    let (rounds, branches) = match scale {
        Scale::Full => (10, 50),
        Scale::Quick => (3, 10),
    };
    let image = ensure_busybox_image().map_err(anyhow::Error::msg)?;
    let bench = Bench::new(branches).await?;
    let result = bench.measure(image, rounds, branches, report).await;
    let left = containers_of_instance(bench.instance.as_str()).map_err(anyhow::Error::msg);
    remove_instance(bench.instance.as_str()).map_err(anyhow::Error::msg)?;
    result?;
    report.add(
        Figure::new(
            "docker: containers left after the run",
            left?.len() as f64,
            "containers",
        )
        .target(Target::AtMost(0.0)),
    );
    Ok(())
}

/// A repository with a branch per commit, its metadata, and the plugin's services.
struct Bench {
    _dir: tempfile::TempDir,
    services: Services,
    repo: Repo,
    snapshot: Snapshot,
    instance: Instance,
    targets: Vec<TargetId>,
}

impl Bench {
    async fn new(branches: usize) -> anyhow::Result<Bench> {
        let dir = tempfile::tempdir().context("make a temporary directory")?;
        let origin = dir.path().join("origin");
        std::fs::create_dir(&origin)?;
        git(&origin, &["init", "--quiet", "--initial-branch=main"]).await?;
        std::fs::write(origin.join("README"), "bench\n")?;
        let mut metadata = Vec::new();
        let mut targets = Vec::new();
        for i in 0..branches {
            std::fs::write(origin.join("file.txt"), format!("commit {i}\n"))?;
            git(&origin, &["add", "--all"]).await?;
            git(
                &origin,
                &["commit", "--quiet", "-m", &format!("commit {i}")],
            )
            .await?;
            let hash = git(&origin, &["rev-parse", "HEAD"]).await?;
            let name = format!("b{i:03}");
            metadata.push((format!("bench/docker/ref/heads/{name}/head"), hash));
            targets.push(TargetId::Ref(
                "bench/docker".parse()?,
                RefName::branch(&name)?,
            ));
        }
        let mut registry = Registry::default();
        let services = Services {
            store: Store::open(&dir.path().join("state.git"))?,
            logs: LogManager::new(),
            cache_metrics: CacheMetrics::new(&mut registry),
            pool_metrics: PoolMetrics::new(&mut registry),
            pools: Pools::new(),
            temp_dir: None,
            health: Default::default(),
        };
        let branch = services.store.branch(&BranchName::new("github-metadata")?);
        let mut transaction = branch.transaction().await?;
        for (path, hash) in &metadata {
            transaction.create_file(&StorePath::new(path.as_str())?, hash.trim())?;
        }
        transaction.commit("bench branches").await?;
        let snapshot = branch.head().await?.context("no metadata")?.tree();
        let remote = origin.to_string_lossy().into_owned();
        let repo = Repo::open(&dir.path().join("local"), Some(&remote), &services).await?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let instance = Instance::new(format!("bench-{}-{nanos}", std::process::id()))?;
        Ok(Bench {
            _dir: dir,
            services,
            repo,
            snapshot,
            instance,
            targets,
        })
    }

    /// Evaluates `term` as a job on `target` until it settles; fails on a failed result.
    async fn eval<T: Clone + Send + Sync + 'static>(
        &self,
        target: &TargetId,
        term: &Term<T>,
    ) -> anyhow::Result<T> {
        let job = JobId::new(target.clone(), "bench");
        let status = term
            .evaluate_until_settled(job, Some(self.snapshot.clone()))
            .await
            .status;
        status
            .result
            .map_err(|problem| anyhow::anyhow!("the step did not succeed: {problem:?}"))
    }

    async fn measure(
        &self,
        image: &str,
        rounds: usize,
        branches: usize,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let hosts = Hosts::new(
            vec![HostSpec::local_default()],
            JOBS,
            self.instance.clone(),
            &self.services,
        )?;
        let heads: Vec<Term<Commit>> = self
            .targets
            .iter()
            .map(|t| self.repo.fetch_head(t.clone()))
            .collect();
        let commits = self.eval(&self.targets[0], &Term::all(heads)).await?;
        let image = Image::of_published(image);
        let step = |label: &str| {
            Command::new(
                &hosts,
                label,
                vec!["true".to_owned()],
                CommandConfig::default(),
                &self.services,
            )
        };
        // Warm-ups, not counted: the first container of the engine and of the plugin.
        docker_run(image.reference()).await?;
        self.eval(
            &self.targets[0],
            &step("warm-up")?.run_on(&image, &commits[0]),
        )
        .await?;

        let (mut bare, mut ours) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let started = Instant::now();
            docker_run(image.reference()).await?;
            bare.push(started.elapsed());
            let command = step(&format!("one-{round}"))?;
            let started = Instant::now();
            self.eval(&self.targets[0], &command.run_on(&image, &commits[0]))
                .await?;
            ours.push(started.elapsed());
        }
        let (bare, ours) = (quantile(&bare, 0.5), quantile(&ours, 0.5));
        report.add(Figure::millis(
            format!("docker: `docker run --rm IMAGE true`, median of {rounds}"),
            bare,
        ));
        report.add(Figure::millis(
            format!("docker: containerised `true` step missing the cache, median of {rounds}"),
            ours,
        ));
        report.add(
            Figure::new(
                "docker: one step over `docker run --rm` (medians)",
                ours.as_secs_f64() / bare.as_secs_f64(),
                "×",
            )
            .target(Target::AtMost(1.15)),
        );

        let started = Instant::now();
        let slots = Arc::new(tokio::sync::Semaphore::new(JOBS));
        let runs = (0..branches).map(|_| {
            let slots = Arc::clone(&slots);
            let image = image.reference().to_owned();
            async move {
                let _slot = slots.acquire().await?;
                docker_run(&image).await
            }
        });
        for result in futures::future::join_all(runs).await {
            result?;
        }
        let bare = started.elapsed();
        let command = step("many")?;
        let steps = Term::all(commits.iter().map(|c| command.run_on(&image, c)));
        let started = Instant::now();
        let done = self.eval(&self.targets[0], &steps).await?;
        let ours = started.elapsed();
        ensure!(done.len() == branches, "{} steps of {branches}", done.len());
        report.add(Figure::seconds(
            format!("docker: {branches} × `docker run --rm IMAGE true`, {JOBS} at once"),
            bare,
        ));
        report.add(Figure::seconds(
            format!("docker: {branches} branches × a containerised `true` step, {JOBS} slots"),
            ours,
        ));
        report.add(
            Figure::new(
                format!("docker: {branches} steps over {branches} `docker run --rm`"),
                ours.as_secs_f64() / bare.as_secs_f64(),
                "×",
            )
            .target(Target::AtMost(1.3)),
        );
        Ok(())
    }
}

/// `docker run --rm <image> true` (the `docker` command, as a user would run it).
async fn docker_run(image: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let output = tokio::process::Command::new("docker")
        .args(["run", "--rm", image, "true"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("run the `docker` command")?;
    ensure!(
        output.status.success(),
        "docker run failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(started.elapsed())
}
