//! Test fixture: the real Docker engine at the default socket, a busybox base image built once
//! (from Debian's `busybox-static`, as the engine has no registry to pull from), a repository
//! made by the real `git` with a `github-metadata` snapshot naming its `main`, a state store,
//! and a CI instance id of the test's own: every container and image the test makes carries it,
//! and all of them are removed when the fixture is dropped, even if the test failed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use futures::StreamExt;
use prometheus_client::registry::Registry;

use datakit_ci_cache::CacheMetrics;
use datakit_ci_docker::{HostSpec, Hosts, Instance, labels};
use datakit_ci_git::{Commit, Repo, Services};
use datakit_ci_log::LogManager;
use datakit_ci_pool::{PoolMetrics, Pools};
use datakit_ci_store::{BranchName, Snapshot, Store, StorePath};
use datakit_ci_term::{JobId, LogLeaf, Logs, RefName, Status, TargetId, Term};
use datakit_ci_testkit::git;

/// The base image of the tests.
pub(crate) const BUSYBOX: &str = datakit_ci_testkit::docker::BUSYBOX_IMAGE;

pub(crate) struct Fixture {
    pub(crate) origin: PathBuf,
    pub(crate) store_path: PathBuf,
    pub(crate) services: Services,
    pub(crate) instance: Instance,
    pub(crate) docker: Docker,
    pub(crate) repo: Repo,
    snapshot: tokio::sync::Mutex<Snapshot>,
    started: i64,
    _tmp: tempfile::TempDir,
}

impl Fixture {
    /// A repository whose `main` has the files `files` (path, contents).
    pub(crate) async fn new(files: &[(&str, &str)]) -> anyhow::Result<Fixture> {
        let docker = Docker::connect_with_unix_defaults()?
            .negotiate_version()
            .await?;
        datakit_ci_testkit::docker::ensure_busybox_image().map_err(anyhow::Error::msg)?;
        let tmp = tempfile::tempdir()?;
        let root = tmp.path().canonicalize()?;
        let origin = root.join("origin");
        std::fs::create_dir(&origin)?;
        git(&origin, &["init", "--quiet", "--initial-branch=main"]);
        commit_files(&origin, files, "first")?;
        let store_path = root.join("state.git");
        let mut registry = Registry::default();
        let services = Services {
            store: Store::open(&store_path)?,
            logs: LogManager::new(),
            cache_metrics: CacheMetrics::new(&mut registry),
            pool_metrics: PoolMetrics::new(&mut registry),
            pools: Pools::new(),
            temp_dir: None,
            health: Default::default(),
        };
        let remote = origin.to_string_lossy().into_owned();
        let repo = Repo::open(&root.join("local"), Some(&remote), &services).await?;
        let snapshot = write_head(&services.store, &origin).await?;
        let started = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64 - 1;
        let unique = format!(
            "test-{}-{}",
            std::process::id(),
            SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos()
        );
        Ok(Fixture {
            origin,
            store_path,
            services,
            instance: Instance::new(unique)?,
            docker,
            repo,
            snapshot: tokio::sync::Mutex::new(snapshot),
            started,
            _tmp: tmp,
        })
    }

    /// The local default host only, with `jobs` slots.
    pub(crate) fn local_hosts(&self, jobs: usize) -> anyhow::Result<Hosts> {
        Ok(Hosts::new(
            vec![HostSpec::local_default()],
            jobs,
            self.instance.clone(),
            &self.services,
        )?)
    }

    /// The local daemon under another name than `local` (each set of hosts of a test needs
    /// pools of its own names), with `jobs` slots.
    pub(crate) fn local_hosts_named(&self, name: &str, jobs: usize) -> anyhow::Result<Hosts> {
        Ok(Hosts::new(
            vec![HostSpec::new(name, "unix:///var/run/docker.sock")?],
            jobs,
            self.instance.clone(),
            &self.services,
        )?)
    }

    /// Commits `files` on `main` in the origin and points the metadata at the new head.
    pub(crate) async fn commit(&self, files: &[(&str, &str)], message: &str) -> anyhow::Result<()> {
        commit_files(&self.origin, files, message)?;
        *self.snapshot.lock().await = write_head(&self.services.store, &self.origin).await?;
        Ok(())
    }

    /// `main`'s head, fetched into the CI's clone.
    pub(crate) fn head(&self) -> Term<Commit> {
        self.repo.fetch_head(main_target())
    }

    /// The job the tests evaluate terms as.
    pub(crate) fn job(&self) -> JobId {
        JobId::new(main_target(), "test")
    }

    /// Evaluates `term` until it is no longer pending on something that can resolve.
    pub(crate) async fn eval<T: Clone + Send + Sync + 'static>(&self, term: &Term<T>) -> Status<T> {
        let snapshot = self.snapshot.lock().await.clone();
        term.evaluate_until_settled(self.job(), Some(snapshot))
            .await
            .status
    }

    /// Evaluates `term` once.
    pub(crate) async fn eval_once<T: Clone + Send + Sync + 'static>(
        &self,
        term: &Term<T>,
    ) -> Status<T> {
        let snapshot = self.snapshot.lock().await.clone();
        let ctx = datakit_ci_term::EvalContext::new(self.job(), Some(snapshot));
        term.evaluate(&ctx).await.status
    }

    /// The text of the last saved log in `logs`, with the commit holding it.
    pub(crate) async fn saved_log(&self, logs: &Logs) -> anyhow::Result<(String, String)> {
        let saved = logs
            .leaves()
            .into_iter()
            .filter_map(|leaf| match leaf {
                LogLeaf::Saved(saved) => Some(saved.clone()),
                LogLeaf::Live(_) => None,
            })
            .next_back()
            .ok_or_else(|| anyhow::anyhow!("no saved log in {logs:?}"))?;
        let commit = self.services.store.commit(saved.commit()).await?;
        let text = commit
            .tree()
            .read_file(&StorePath::new("log")?)?
            .ok_or_else(|| anyhow::anyhow!("no log file in {}", saved.commit()))?;
        Ok((String::from_utf8(text)?, saved.commit().to_string()))
    }

    /// The live log of a Docker step in `logs`.
    pub(crate) fn live_log(&self, logs: &Logs) -> Option<datakit_ci_log::LiveLog> {
        logs.leaves().into_iter().find_map(|leaf| match leaf {
            LogLeaf::Live(log) if log.title().starts_with("Docker ") => Some(log.clone()),
            LogLeaf::Live(_) | LogLeaf::Saved(_) => None,
        })
    }

    /// The containers of this test's instance that exist now (running or not).
    pub(crate) async fn containers(&self) -> anyhow::Result<Vec<String>> {
        let filters = HashMap::from([("label".to_owned(), vec![self.label_filter()])]);
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await?;
        Ok(containers.into_iter().filter_map(|c| c.id).collect())
    }

    /// How many step containers of this test's instance were created since the fixture was
    /// made.
    pub(crate) async fn containers_created(&self) -> anyhow::Result<usize> {
        self.containers_created_on(&self.docker, self.started).await
    }

    /// How many step containers of this test's instance the daemon `docker` created since
    /// `since` (seconds since the epoch).
    pub(crate) async fn containers_created_on(
        &self,
        docker: &Docker,
        since: i64,
    ) -> anyhow::Result<usize> {
        let until = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 1;
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("event".to_owned(), vec!["create".to_owned()]),
            // Steps' containers have a job; image builds' intermediate ones do not.
            (
                "label".to_owned(),
                vec![self.label_filter(), labels::JOB.to_owned()],
            ),
        ]);
        let mut events = docker.events(Some(EventsOptions {
            since: Some(since.to_string()),
            until: Some(until.to_string()),
            filters: Some(filters),
        }));
        let mut count = 0;
        while let Some(event) = events.next().await {
            event?;
            count += 1;
        }
        Ok(count)
    }

    /// Builds `dockerfile` (alone in its context) outside any cache, as an image of this test's
    /// instance (removed with it), tagged `tag` if given, with the `datakit-ci.key` label `key`
    /// if given; returns its id.
    pub(crate) async fn build_image(
        &self,
        dockerfile: &str,
        tag: Option<&str>,
        key: Option<&str>,
    ) -> anyhow::Result<String> {
        let mut labels = HashMap::from([(labels::INSTANCE.to_owned(), self.instance.to_string())]);
        if let Some(key) = key {
            labels.insert(labels::KEY.to_owned(), key.to_owned());
        }
        let context = {
            let mut tar = tar::Builder::new(Vec::new());
            let mut header = tar::Header::new_gnu();
            header.set_size(dockerfile.len() as u64);
            header.set_mode(0o644);
            tar.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())?;
            tar.into_inner()?
        };
        let options = bollard::query_parameters::BuildImageOptions {
            t: tag.map(str::to_owned),
            labels: Some(labels),
            rm: true,
            forcerm: true,
            ..Default::default()
        };
        let mut stream =
            self.docker
                .build_image(options, None, Some(bollard::body_full(context.into())));
        let mut built = None;
        while let Some(info) = stream.next().await {
            let info = info?;
            if let Some(detail) = info.error_detail {
                anyhow::bail!("cannot build the test image: {detail:?}");
            }
            if let Some(id) = info.aux.and_then(|aux| aux.id) {
                built = Some(id);
            }
        }
        built.ok_or_else(|| anyhow::anyhow!("the build gave no image id"))
    }

    fn label_filter(&self) -> String {
        format!("{}={}", labels::INSTANCE, self.instance)
    }
}

impl Drop for Fixture {
    /// Removes every container and image of this test's instance, then checks the store.
    fn drop(&mut self) {
        if let Err(e) = datakit_ci_testkit::docker::remove_instance(self.instance.as_str()) {
            eprintln!("cannot clean up the test's containers: {e}");
        }
        if !std::thread::panicking() {
            datakit_ci_testkit::assert_fsck_clean(&self.store_path);
        }
    }
}

fn main_target() -> TargetId {
    TargetId::Ref(
        "me/proj".parse().expect("a valid repository id"),
        RefName::branch("main").expect("a valid branch name"),
    )
}

fn commit_files(dir: &Path, files: &[(&str, &str)], message: &str) -> anyhow::Result<()> {
    for (path, contents) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, contents)?;
    }
    git(dir, &["add", "--all"]);
    git(dir, &["commit", "--quiet", "--allow-empty", "-m", message]);
    Ok(())
}

async fn write_head(store: &Store, origin: &Path) -> anyhow::Result<Snapshot> {
    let head = git(origin, &["rev-parse", "HEAD"]);
    let branch = store.branch(&BranchName::new("github-metadata")?);
    let mut transaction = branch.transaction().await?;
    transaction.create_file(&StorePath::new("me/proj/ref/heads/main/head")?, head.trim())?;
    transaction.commit("main moved").await?;
    Ok(branch
        .head()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no metadata after a commit"))?
        .tree())
}

/// The value of a successful result, or an error describing the problem.
pub(crate) fn value<T>(result: Result<T, datakit_ci_term::Problem>) -> anyhow::Result<T> {
    result.map_err(|problem| anyhow::anyhow!("expected a value, got {problem:?}"))
}

/// The failure message of a result.
pub(crate) fn failure<T: std::fmt::Debug>(
    result: Result<T, datakit_ci_term::Problem>,
) -> anyhow::Result<String> {
    match result {
        Err(datakit_ci_term::Problem::Failure(message)) => Ok(message.to_string()),
        other => anyhow::bail!("expected a failure, got {other:?}"),
    }
}

/// `Ok` if the step is still pending (after a short pause, so that polling it does not spin),
/// an error if it has finished.
pub(crate) async fn still_pending<T: std::fmt::Debug>(
    result: Result<T, datakit_ci_term::Problem>,
) -> anyhow::Result<()> {
    match result {
        Err(datakit_ci_term::Problem::Pending { .. }) => {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Ok(())
        }
        other => anyhow::bail!("expected the step to be running, got {other:?}"),
    }
}
