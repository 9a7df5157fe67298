//! Integration tests of the Swarm executor on a real multi-node swarm: the host's daemon as the
//! manager and worker `dockerd`s in network namespaces of their own (the testkit's
//! [`Cluster`]), with a real registry. Every service a test makes carries its instance id and
//! is removed at the end; a test that stops or drains a worker leases it first.

#[path = "../docker/fixture.rs"]
#[allow(dead_code)]
mod fixture;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bollard::query_parameters::ListServicesOptions;
use tokio_util::sync::CancellationToken;

use datakit_ci_docker::{
    ContainerExecutor, ContainerRequest, Error, HostSpec, Hosts, Image, JobPhase, Priority, Swarm,
    SwarmConfig, container_environment, labels,
};
use datakit_ci_git::{Commit, JobEnvironment};
use datakit_ci_log::{LiveLog, LiveLogSpec};
use datakit_ci_term::{JobId, RefName, TargetId};
use datakit_ci_testkit::swarm::Cluster;

use fixture::{BUSYBOX, Fixture, value};

/// How many workers the tests' cluster has (`w3` is leased by the fault tests).
const WORKERS: usize = 3;

/// Tests whose jobs may land on any node (`read`) against the test that stops a node (`write`):
/// a job of another test on the stopped node would be submitted again, as it should be, and
/// that test would not see what it checks.
static NODES: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The test's swarm executor, its fixture and its commit.
struct Setup {
    fixture: Fixture,
    cluster: Cluster,
    commit: Commit,
}

impl Setup {
    async fn new() -> anyhow::Result<Setup> {
        let cluster = tokio::task::spawn_blocking(|| Cluster::ensure(WORKERS)).await??;
        let fixture = Fixture::new(&[("README", "hello from the repository\n")]).await?;
        let commit = value(fixture.eval(&fixture.head()).await.result)?;
        Ok(Setup {
            fixture,
            cluster,
            commit,
        })
    }

    /// A Swarm executor of this test's instance with `config`, pushing to the cluster's
    /// registry.
    fn swarm(&self, config: SwarmConfig) -> anyhow::Result<Swarm> {
        let instance = self.fixture.instance.clone();
        // Pools of its own, as a CI started again has: pool names are unique per process.
        let services = datakit_ci_git::Services {
            pools: datakit_ci_pool::Pools::new(),
            ..self.fixture.services.clone()
        };
        let manager = Hosts::new(vec![HostSpec::local_default()], 2, instance, &services)?;
        let config = SwarmConfig {
            registry: Some(self.cluster.registry().address().to_owned()),
            poll: Duration::from_millis(100),
            ..config
        };
        Ok(Swarm::new(manager, config, &services)?)
    }

    fn log(&self, name: &str) -> anyhow::Result<LiveLog> {
        Ok(self.fixture.services.logs.create(LiveLogSpec {
            branch: name.to_owned(),
            title: name.to_owned(),
            pending: "starting".to_owned(),
            cancel: None,
        })?)
    }

    /// The services of this test's instance that exist now.
    async fn services(&self) -> anyhow::Result<Vec<String>> {
        services_of(&self.fixture, self.fixture.instance.as_str()).await
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let label = format!("{}={}", labels::INSTANCE, self.fixture.instance);
        if let Err(e) = self.cluster.remove_services(&label) {
            eprintln!("cannot remove the test's services: {e}");
        }
    }
}

async fn services_of(fixture: &Fixture, instance: &str) -> anyhow::Result<Vec<String>> {
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![format!("{}={instance}", labels::INSTANCE)],
    )]);
    let services = fixture
        .docker
        .list_services(Some(ListServicesOptions {
            filters: Some(filters),
            status: None,
        }))
        .await?;
    Ok(services.into_iter().filter_map(|s| s.id).collect())
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()]
}

fn pr_job(number: u64) -> JobId {
    JobId::new(
        TargetId::Pr("me/proj".parse().expect("a valid repository id"), number),
        "test",
    )
}

fn branch_job(name: &str) -> JobId {
    JobId::new(
        TargetId::Ref(
            "me/proj".parse().expect("a valid repository id"),
            RefName::branch(name).expect("a valid branch name"),
        ),
        "test",
    )
}

/// A request to run `argv` in busybox for `job`, keyed `key`.
fn request<'a>(
    setup: &'a Setup,
    job: &'a JobId,
    image: &'a Image,
    argv: &'a [String],
    key: &str,
) -> ContainerRequest<'a> {
    request_on(&setup.commit, job, image, argv, key)
}

/// A request to run `argv` on `commit`.
fn request_on<'a>(
    commit: &'a Commit,
    job: &'a JobId,
    image: &'a Image,
    argv: &'a [String],
    key: &str,
) -> ContainerRequest<'a> {
    ContainerRequest {
        job,
        holder: format!("test {key}"),
        key: key.to_owned(),
        image,
        argv,
        env: container_environment(&JobEnvironment::default(), job, commit),
        commit,
        workdir: None,
        user: None,
        memory: None,
        cpus: None,
        timeout: Some(Duration::from_secs(120)),
        priority: Priority::of_job(job),
        pool: None,
        stall_timeout: None,
        copy_out: None,
    }
}

fn text(log: &LiveLog) -> anyhow::Result<String> {
    Ok(String::from_utf8(log.contents()?)?)
}

/// The node ids the log says its tasks were placed on.
fn nodes_in(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| line.split("Task placed on node ").nth(1))
        .map(|rest| {
            rest.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// Waits until `log` contains `needle`.
async fn wait_for(log: &LiveLog, needle: &str) -> anyhow::Result<()> {
    for _ in 0..600 {
        if text(log)?.contains(needle) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{needle:?} never appeared in the log:\n{}", text(log)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_run_on_several_nodes_with_the_tree_and_their_exit_status() -> anyhow::Result<()> {
    let _nodes = NODES.read().await;
    let setup = Setup::new().await?;
    let swarm = setup.swarm(SwarmConfig {
        jobs: 6,
        ..SwarmConfig::default()
    })?;
    let image = Image::of_published(BUSYBOX);
    let job = branch_job("main");
    let argv = sh("cat README; echo \"job=$DATAKIT_CI_JOB pwd=$PWD\"; sleep 3");
    let cancel = CancellationToken::new();
    let logs: Vec<LiveLog> = (0..6)
        .map(|i| setup.log(&format!("spread-{i}")))
        .collect::<anyhow::Result<_>>()?;
    let requests: Vec<ContainerRequest<'_>> = (0..6)
        .map(|i| request(&setup, &job, &image, &argv, &format!("spread-{i}")))
        .collect();
    let runs = requests
        .iter()
        .zip(&logs)
        .map(|(request, log)| swarm.run_container(request, log, &cancel));
    for outcome in futures::future::join_all(runs).await {
        outcome?;
    }
    let mut nodes = BTreeSet::new();
    for log in &logs {
        let text = text(log)?;
        assert!(text.contains("hello from the repository"), "{text}");
        assert!(text.contains("job=test pwd=/src"), "{text}");
        assert!(text.contains("as Swarm service"), "{text}");
        nodes.extend(nodes_in(&text));
    }
    assert!(
        nodes.len() >= 2,
        "6 jobs of 3 s at once all ran on one node: {nodes:?}"
    );

    let failing = sh("echo about-$((1+1))-fail; exit 7");
    let log = setup.log("failing")?;
    let outcome = swarm
        .run_container(
            &request(&setup, &job, &image, &failing, "failing"),
            &log,
            &cancel,
        )
        .await;
    assert!(
        matches!(outcome, Err(Error::Exit { code: 7, .. })),
        "{outcome:?}"
    );
    assert!(text(&log)?.contains("about-2-fail"), "{}", text(&log)?);
    assert!(setup.services().await?.is_empty(), "services left behind");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_and_timeout_remove_the_service() -> anyhow::Result<()> {
    let _nodes = NODES.read().await;
    let setup = Setup::new().await?;
    let swarm = setup.swarm(SwarmConfig::default())?;
    let image = Image::of_published(BUSYBOX);
    let job = branch_job("main");
    let argv = sh("echo run-$((1+1)); sleep 600");

    let log = setup.log("cancelled")?;
    let cancel = CancellationToken::new();
    let request_cancelled = request(&setup, &job, &image, &argv, "cancelled");
    let run = swarm.run_container(&request_cancelled, &log, &cancel);
    let canceller = async {
        wait_for(&log, "run-2").await?;
        assert_eq!(setup.services().await?.len(), 1);
        cancel.cancel();
        anyhow::Ok(())
    };
    let (outcome, waited) = tokio::join!(run, canceller);
    waited?;
    assert!(matches!(outcome, Err(Error::Cancelled)), "{outcome:?}");
    assert!(
        setup.services().await?.is_empty(),
        "the cancelled job's service is left"
    );

    let log = setup.log("timed-out")?;
    let mut timed = request(&setup, &job, &image, &argv, "timed-out");
    timed.timeout = Some(Duration::from_secs(4));
    let outcome = swarm
        .run_container(&timed, &log, &CancellationToken::new())
        .await;
    assert!(matches!(outcome, Err(Error::Timeout { .. })), "{outcome:?}");
    assert!(text(&log)?.contains("Timed out after 4s: removing service"));
    assert!(
        setup.services().await?.is_empty(),
        "the timed-out job's service is left"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stuck_task_is_removed_and_submitted_again() -> anyhow::Result<()> {
    let _nodes = NODES.read().await;
    let setup = Setup::new().await?;
    let swarm = setup.swarm(SwarmConfig {
        resubmits: 1,
        ..SwarmConfig::default()
    })?;
    let image = Image::of_published(BUSYBOX);
    let job = branch_job("main");
    let argv = sh("echo started; sleep 600");
    let log = setup.log("stuck")?;
    let mut stuck = request(&setup, &job, &image, &argv, "stuck");
    stuck.stall_timeout = Some(Duration::from_secs(3));
    let outcome = swarm
        .run_container(&stuck, &log, &CancellationToken::new())
        .await;
    assert!(matches!(outcome, Err(Error::Stalled { .. })), "{outcome:?}");
    let text = text(&log)?;
    assert_eq!(
        text.matches("No output and no change of state for 3s: the task is stuck")
            .count(),
        2,
        "{text}"
    );
    assert!(text.contains("submitting the job again (1 of 1)"), "{text}");
    assert_eq!(text.matches("as Swarm service").count(), 2, "{text}");
    assert!(
        setup.services().await?.is_empty(),
        "the stuck job's service is left"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_whose_node_is_lost_finishes_on_another() -> anyhow::Result<()> {
    let _nodes = NODES.write().await;
    let setup = Setup::new().await?;
    let lease = {
        let cluster = setup.cluster.clone();
        tokio::task::spawn_blocking(move || cluster.lease(3)).await??
    };
    let lost = lease.worker().node_id().to_owned();
    let spare = setup.cluster.worker(1)?.node_id().to_owned();
    // A pool of the lost node only, at first: the job starts there.
    let pool = format!("lost-{}", setup.fixture.instance.as_str());
    node_label(&lost, &format!("pool={pool}"), true)?;
    let swarm = setup.swarm(SwarmConfig::default())?;
    let image = Image::of_published(BUSYBOX);
    let job = branch_job("main");
    let argv = sh("echo run-$((1+1)); sleep 8; echo fin-$((1+1))");
    let log = setup.log("lost")?;
    let mut on_lost = request(&setup, &job, &image, &argv, "lost");
    on_lost.pool = Some(&pool);
    let never = CancellationToken::new();
    let run = swarm.run_container(&on_lost, &log, &never);
    let fault = async {
        wait_for(&log, "run-2").await?;
        assert_eq!(nodes_in(&text(&log)?), [lost[..12].to_owned()]);
        // The dashboard's view: the job runs on the node about to be lost (the output can
        // arrive before the task's state is read again).
        let mut status = swarm.status().await;
        for _ in 0..40 {
            if status
                .jobs
                .iter()
                .any(|j| matches!(j.phase, JobPhase::Running { .. }))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            status = swarm.status().await;
        }
        assert_eq!(status.jobs.len(), 1, "{status:?}");
        assert_eq!(
            status.jobs[0].phase,
            JobPhase::Running { node: lost.clone() },
            "{status:?}"
        );
        // The pool gains a node, and the job's node is lost.
        node_label(&spare, &format!("pool={pool}"), true)?;
        lease.stop()?;
        anyhow::Ok(())
    };
    let (outcome, faulted) = tokio::join!(run, fault);
    let cleanup = node_label(&spare, "pool", false);
    faulted?;
    outcome?;
    cleanup?;
    let text = text(&log)?;
    assert!(text.contains("submitting the job again (1 of 2)"), "{text}");
    assert!(text.contains(&format!("node {} ", &lost[..12])), "{text}");
    assert_eq!(
        nodes_in(&text),
        [lost[..12].to_owned(), spare[..12].to_owned()],
        "{text}"
    );
    assert!(text.contains("fin-2"), "{text}");
    assert!(setup.services().await?.is_empty(), "services left behind");
    // The lost node is shown as such while it is down, and the finished job is gone.
    let status = swarm.status().await;
    let node = status.nodes.iter().find(|n| n.id == lost);
    assert!(
        node.is_some_and(|n| n.state != "ready"),
        "the lost node shown as {node:?}"
    );
    assert!(status.jobs.is_empty(), "{status:?}");
    drop(lease);
    Ok(())
}

/// Adds (`add`) or removes a label of a node with the `docker` client.
fn node_label(node: &str, label: &str, add: bool) -> anyhow::Result<()> {
    let flag = if add { "--label-add" } else { "--label-rm" };
    let output = std::process::Command::new("docker")
        .args(["node", "update", flag, label, node])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "docker node update {flag} {label} {node}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pull_request_job_goes_before_queued_bulk_jobs() -> anyhow::Result<()> {
    let _nodes = NODES.read().await;
    let setup = Setup::new().await?;
    let swarm = setup.swarm(SwarmConfig {
        jobs: 1,
        ..SwarmConfig::default()
    })?;
    let image = Image::of_published(BUSYBOX);
    let bulk_job = branch_job("nightly");
    let pr = pr_job(7);
    let first_argv = sh("echo first-$((1+1)); sleep 4");
    let quick = sh("echo quick");
    let cancel_bulk = CancellationToken::new();
    let first_log = setup.log("first")?;
    let mut first = request(&setup, &bulk_job, &image, &first_argv, "first");
    first.priority = Priority::Bulk;
    let bulk_logs: Vec<LiveLog> = (0..50)
        .map(|i| setup.log(&format!("bulk-{i}")))
        .collect::<anyhow::Result<_>>()?;
    let bulk_requests: Vec<ContainerRequest<'_>> = (0..50)
        .map(|i| {
            let mut r = request(&setup, &bulk_job, &image, &quick, &format!("bulk-{i}"));
            r.priority = Priority::Bulk;
            r
        })
        .collect();
    let pr_log = setup.log("pr")?;
    let pr_request = request(&setup, &pr, &image, &quick, "pr");
    let never = CancellationToken::new();
    let first_run = swarm.run_container(&first, &first_log, &never);
    let started = async {
        wait_for(&first_log, "first-2").await?;
        anyhow::Ok(())
    };
    let bulk_runs = futures::future::join_all(
        bulk_requests
            .iter()
            .zip(&bulk_logs)
            .map(|(r, log)| swarm.run_container(r, log, &cancel_bulk)),
    );
    let pr_run = async {
        started.await?;
        // Every bulk job is queued before the pull request's.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(swarm.load(), (1, 50));
        // The dashboard's view: the first job is on a node; the bulk jobs wait in order.
        let jobs = swarm.status().await.jobs;
        assert_eq!(jobs.len(), 51);
        // (The output can arrive before the task's state is read again: placed or running.)
        assert!(
            !matches!(jobs[0].phase, JobPhase::Queued { .. } | JobPhase::Preparing),
            "{:?}",
            jobs[0]
        );
        let ahead: Vec<usize> = jobs[1..]
            .iter()
            .filter_map(|job| match job.phase {
                JobPhase::Queued { ahead } => Some(ahead),
                _ => None,
            })
            .collect();
        assert_eq!(ahead, (0..50).collect::<Vec<_>>());
        let outcome = swarm.run_container(&pr_request, &pr_log, &never).await;
        // The pull request's job ran second: no bulk job started before it ended.
        let started_bulk = bulk_logs
            .iter()
            .filter(|log| text(log).is_ok_and(|t| t.contains("as Swarm service")))
            .count();
        cancel_bulk.cancel();
        anyhow::Ok((outcome, started_bulk))
    };
    let (first_outcome, bulk_outcomes, pr_outcome) = tokio::join!(first_run, bulk_runs, pr_run);
    first_outcome?;
    let (pr_outcome, started_bulk) = pr_outcome?;
    pr_outcome?;
    assert!(text(&pr_log)?.contains("1 job ahead") || text(&pr_log)?.contains("0 jobs ahead"));
    assert!(
        started_bulk <= 1,
        "{started_bulk} bulk jobs started before the pull request's ended"
    );
    assert!(
        bulk_outcomes
            .iter()
            .filter(|o| matches!(o, Err(Error::Cancelled)))
            .count()
            >= 49
    );
    assert!(setup.services().await?.is_empty(), "services left behind");
    Ok(())
}
