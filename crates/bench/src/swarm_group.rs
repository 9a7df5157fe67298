//! The `swarm` group (issue 18): the Swarm executor on the testkit's real cluster (the host's
//! daemon as manager, three worker `dockerd`s in network namespaces, Debian's registry).
//!
//! - **dispatch** — one job running `true` through the executor (queue, service, log stream,
//!   task state, removal), against `docker service create --mode replicated-job
//!   --restart-condition none --detach=false` of the same image by digest followed by
//!   `docker service rm`, taken in turns; medians. Target: ≤ 1.2×.
//! - **makespan** — 200 jobs (30 with `--quick`) of `sleep 1` with 3 places, against 200/3 ×
//!   one such job's time through the executor. Target: ≤ 1.5×.
//! - **node loss** — a job running on worker `w3` (kept there by a pool label) when `w3`'s
//!   daemon is killed: the time until the job's task is placed on another node. Target:
//!   ≤ 10 s.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use prometheus_client::registry::Registry as Metrics;
use tokio_util::sync::CancellationToken;

use datakit_ci::cache::CacheMetrics;
use datakit_ci::docker::{
    ContainerExecutor, ContainerRequest, HostSpec, Hosts, Image, Instance, Priority, Swarm,
    SwarmConfig, container_environment,
};
use datakit_ci::git::{Commit, JobEnvironment, Repo, Services};
use datakit_ci::log::{LiveLog, LiveLogSpec, LogManager};
use datakit_ci::pool::{PoolMetrics, Pools};
use datakit_ci::store::{BranchName, Store, StorePath};
use datakit_ci::term::{JobId, RefName, TargetId};
use datakit_ci_testkit::docker::ensure_busybox_image;
use datakit_ci_testkit::swarm::Cluster;

use crate::Scale;
use crate::git::git;
use crate::report::{Figure, Report, Target};
use crate::stats::quantile;

/// The places of the makespan figure: one per worker.
const PLACES: usize = 3;

/// Measures the group's figures, adding them to `report`.
pub(crate) async fn run(scale: Scale, report: &mut Report) -> anyhow::Result<()> {
    let (rounds, jobs) = match scale {
        Scale::Full => (10, 200),
        Scale::Quick => (3, 30),
    };
    let cluster = tokio::task::spawn_blocking(|| Cluster::ensure(3)).await??;
    let busybox = ensure_busybox_image().map_err(anyhow::Error::msg)?;
    let bench = Bench::new(&cluster).await?;
    let result = bench.measure(&cluster, busybox, rounds, jobs, report).await;
    cluster
        .remove_services(&format!("datakit-ci.instance={}", bench.instance))
        .map_err(anyhow::Error::msg)?;
    result
}

struct Bench {
    _dir: tempfile::TempDir,
    services: Services,
    instance: Instance,
    commit: Commit,
    job: JobId,
    registry: String,
}

impl Bench {
    async fn new(cluster: &Cluster) -> anyhow::Result<Bench> {
        let dir = tempfile::tempdir().context("make a temporary directory")?;
        let origin = dir.path().join("origin");
        std::fs::create_dir(&origin)?;
        git(&origin, &["init", "--quiet", "--initial-branch=main"]).await?;
        std::fs::write(origin.join("README"), "bench\n")?;
        git(&origin, &["add", "--all"]).await?;
        git(&origin, &["commit", "--quiet", "-m", "bench"]).await?;
        let hash = git(&origin, &["rev-parse", "HEAD"]).await?;
        let mut metrics = Metrics::default();
        let services = Services {
            store: Store::open(&dir.path().join("state.git"))?,
            logs: LogManager::new(),
            cache_metrics: CacheMetrics::new(&mut metrics),
            pool_metrics: PoolMetrics::new(&mut metrics),
            pools: Pools::new(),
            temp_dir: None,
            health: Default::default(),
        };
        let branch = services.store.branch(&BranchName::new("github-metadata")?);
        let mut transaction = branch.transaction().await?;
        transaction.create_file(
            &StorePath::new("bench/swarm/ref/heads/main/head")?,
            hash.trim(),
        )?;
        transaction.commit("bench branch").await?;
        let snapshot = branch.head().await?.context("no metadata")?.tree();
        let remote = origin.to_string_lossy().into_owned();
        let repo = Repo::open(&dir.path().join("local"), Some(&remote), &services).await?;
        let target = TargetId::Ref("bench/swarm".parse()?, RefName::branch("main")?);
        let job = JobId::new(target.clone(), "bench");
        let commit = repo
            .fetch_head(target)
            .evaluate_until_settled(job.clone(), Some(snapshot))
            .await
            .status
            .result
            .map_err(|problem| anyhow::anyhow!("cannot fetch the commit: {problem:?}"))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let instance = Instance::new(format!("bench-{}-{nanos}", std::process::id()))?;
        Ok(Bench {
            _dir: dir,
            services,
            instance,
            commit,
            job,
            registry: cluster.registry().address().to_owned(),
        })
    }

    /// A Swarm executor of the bench's instance with `places`, and pools of its own.
    fn swarm(&self, places: usize) -> anyhow::Result<Swarm> {
        let services = Services {
            pools: Pools::new(),
            ..self.services.clone()
        };
        let manager = Hosts::new(
            vec![HostSpec::local_default()],
            2,
            self.instance.clone(),
            &services,
        )?;
        let config = SwarmConfig {
            jobs: places,
            registry: Some(self.registry.clone()),
            ..SwarmConfig::default()
        };
        Ok(Swarm::new(manager, config, &services)?)
    }

    fn log(&self, name: &str) -> anyhow::Result<LiveLog> {
        Ok(self.services.logs.create(LiveLogSpec {
            branch: name.to_owned(),
            title: name.to_owned(),
            pending: "starting".to_owned(),
            cancel: None,
        })?)
    }

    fn request<'a>(
        &'a self,
        image: &'a Image,
        argv: &'a [String],
        key: &str,
    ) -> ContainerRequest<'a> {
        ContainerRequest {
            job: &self.job,
            holder: key.to_owned(),
            key: key.to_owned(),
            image,
            argv,
            env: container_environment(&JobEnvironment::default(), &self.job, &self.commit),
            commit: &self.commit,
            workdir: None,
            user: None,
            memory: None,
            cpus: None,
            timeout: Some(Duration::from_secs(300)),
            priority: Priority::of_job(&self.job),
            pool: None,
            stall_timeout: None,
            copy_out: None,
        }
    }

    /// Runs `argv` once through `swarm`; its duration.
    async fn run_one(
        &self,
        swarm: &Swarm,
        image: &Image,
        argv: &[String],
        key: &str,
    ) -> anyhow::Result<Duration> {
        let log = self.log(key)?;
        let request = self.request(image, argv, key);
        let started = Instant::now();
        swarm
            .run_container(&request, &log, &CancellationToken::new())
            .await
            .with_context(|| {
                format!(
                    "job {key}: {}",
                    String::from_utf8_lossy(&log.contents().unwrap_or_default())
                )
            })?;
        Ok(started.elapsed())
    }

    async fn measure(
        &self,
        cluster: &Cluster,
        busybox: &str,
        rounds: usize,
        jobs: usize,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let image = Image::of_published(busybox);
        let by_digest = {
            let registry = cluster.registry().clone();
            let busybox = busybox.to_owned();
            tokio::task::spawn_blocking(move || registry.push(&busybox)).await??
        };
        let swarm = self.swarm(4)?;
        let truth = vec!["true".to_owned()];
        // Warm-ups, not counted: the job's image is made and pushed once per commit, and each
        // node pulls it once.
        bare_job(&by_digest).await?;
        for i in 0..4 {
            self.run_one(&swarm, &image, &truth, &format!("warm-{i}"))
                .await?;
        }
        let (mut bare, mut ours) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            bare.push(bare_job(&by_digest).await?);
            ours.push(
                self.run_one(&swarm, &image, &truth, &format!("one-{round}"))
                    .await?,
            );
        }
        let (bare, ours) = (quantile(&bare, 0.5), quantile(&ours, 0.5));
        report.add(Figure::millis(
            format!(
                "swarm: `docker service create --mode replicated-job` of `true`, median of {rounds}"
            ),
            bare,
        ));
        report.add(Figure::millis(
            format!("swarm: a job of `true` through the executor, median of {rounds}"),
            ours,
        ));
        report.add(
            Figure::new(
                "swarm: dispatch, executor over a bare replicated-job service (medians)",
                ours.as_secs_f64() / bare.as_secs_f64(),
                "×",
            )
            .target(Target::AtMost(1.2)),
        );

        let sleep = vec!["sh".to_owned(), "-c".to_owned(), "sleep 1".to_owned()];
        let mut singles = Vec::new();
        for i in 0..3 {
            singles.push(
                self.run_one(&swarm, &image, &sleep, &format!("single-{i}"))
                    .await?,
            );
        }
        let single = quantile(&singles, 0.5);
        let swarm = self.swarm(PLACES)?;
        let started = Instant::now();
        let keys: Vec<String> = (0..jobs).map(|i| format!("many-{i}")).collect();
        let runs = keys
            .iter()
            .map(|key| self.run_one(&swarm, &image, &sleep, key));
        for outcome in futures::future::join_all(runs).await {
            outcome?;
        }
        let makespan = started.elapsed();
        let ideal = single.mul_f64(jobs as f64 / PLACES as f64);
        report.add(Figure::seconds(
            "swarm: one job of `sleep 1`, median of 3",
            single,
        ));
        report.add(Figure::seconds(
            format!("swarm: {jobs} jobs of `sleep 1`, {PLACES} places, makespan"),
            makespan,
        ));
        report.add(
            Figure::new(
                format!("swarm: {jobs} jobs' makespan over {jobs}/{PLACES} × one job"),
                makespan.as_secs_f64() / ideal.as_secs_f64(),
                "×",
            )
            .target(Target::AtMost(1.5)),
        );

        let moved = self.node_loss(cluster, &image).await?;
        report.add(
            Figure::seconds(
                "swarm: a lost node's job placed on another node after",
                moved,
            )
            .target(Target::AtMost(10.0)),
        );
        Ok(())
    }

    /// Kills `w3`'s daemon under a job and measures how long until the job's task is placed
    /// on another node.
    async fn node_loss(&self, cluster: &Cluster, image: &Image) -> anyhow::Result<Duration> {
        let lease = {
            let cluster = cluster.clone();
            tokio::task::spawn_blocking(move || cluster.lease(3)).await??
        };
        let lost = lease.worker().node_id().to_owned();
        let spare = cluster.worker(1)?.node_id().to_owned();
        let pool = format!("bench-{}", self.instance.as_str());
        node_label(&lost, &format!("pool={pool}"), true)?;
        let swarm = self.swarm(2)?;
        let argv = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            "echo run-$((1+1)); sleep 20".to_owned(),
        ];
        let log = self.log("node-loss")?;
        let mut request = self.request(image, &argv, "node-loss");
        request.pool = Some(&pool);
        let never = CancellationToken::new();
        let run = swarm.run_container(&request, &log, &never);
        let fault = async {
            wait_for(&log, "run-2", 1).await?;
            node_label(&spare, &format!("pool={pool}"), true)?;
            let killed = Instant::now();
            lease.stop().map_err(anyhow::Error::msg)?;
            wait_for(&log, "Task placed on node", 2).await?;
            anyhow::Ok(killed.elapsed())
        };
        let (outcome, moved) = tokio::join!(run, fault);
        let cleanup = node_label(&spare, "pool", false);
        let moved = moved?;
        outcome?;
        cleanup?;
        drop(lease);
        Ok(moved)
    }
}

/// Waits until `needle` is in `log` `times` times.
async fn wait_for(log: &LiveLog, needle: &str, times: usize) -> anyhow::Result<()> {
    for _ in 0..1200 {
        let text = String::from_utf8(log.contents()?)?;
        if text.matches(needle).count() >= times {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("{needle:?} never appeared {times} times in the log")
}

/// `docker service create --mode replicated-job … IMAGE true`, waiting for it to complete, then
/// `docker service rm`; the time of both.
async fn bare_job(image: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let output = tokio::process::Command::new("docker")
        .args([
            "service",
            "create",
            "--quiet",
            "--mode",
            "replicated-job",
            "--restart-condition",
            "none",
            "--detach=false",
            "--label",
            "datakit-ci-bench=bare",
            image,
            "true",
        ])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("run the `docker` command")?;
    ensure!(
        output.status.success(),
        "docker service create failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let removed = tokio::process::Command::new("docker")
        .args(["service", "rm", &id])
        .output()
        .await?;
    ensure!(removed.status.success(), "docker service rm {id} failed");
    Ok(started.elapsed())
}

/// Adds (`add`) or removes a label of a node.
fn node_label(node: &str, label: &str, add: bool) -> anyhow::Result<()> {
    let flag = if add { "--label-add" } else { "--label-rm" };
    let output = std::process::Command::new("docker")
        .args(["node", "update", flag, label, node])
        .output()?;
    ensure!(
        output.status.success(),
        "docker node update {flag} {label} {node}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
