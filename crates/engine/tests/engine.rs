//! The engine against a real store: statuses, history, incremental evaluation, canaries,
//! removal, restart and rebuild. The forge is simulated by committing metadata files, as a
//! bridge would.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use datakit_ci_engine::{Engine, EngineConfig, Project, StatusChange};
use datakit_ci_store::{BranchName, Snapshot, Store, StorePath};
use datakit_ci_term::{Problem, Ready, RefName, RepoId, Status, TargetId, Term};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "cccccccccccccccccccccccccccccccccccccccc";

struct Harness {
    dir: tempfile::TempDir,
    store: Store,
}

struct Running {
    engine: Engine,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), datakit_ci_engine::Error>>,
}

impl Running {
    async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.task.await??;
        // A pack merge may still run in the background; `git fsck` (when the harness is
        // dropped) must not see a merged pack's files half deleted.
        self.engine.store().wait_for_maintenance().await;
        Ok(())
    }
}

impl Harness {
    fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("state.git"))?;
        Ok(Harness { dir, store })
    }

    fn start(&self, projects: Vec<Project>, canaries: Vec<TargetId>) -> Running {
        let config = EngineConfig {
            projects,
            web_ui: "https://ci.example/ui".into(),
            canaries,
        };
        let engine = Engine::new(config, self.store.clone(), &mut Registry::default());
        let cancel = CancellationToken::new();
        let task = tokio::spawn({
            let engine = engine.clone();
            let cancel = cancel.clone();
            async move { engine.run(cancel).await }
        });
        Running {
            engine,
            cancel,
            task,
        }
    }

    fn metadata(&self) -> datakit_ci_store::Branch {
        self.store
            .branch(&BranchName::new("github-metadata").expect("valid"))
    }

    /// Commits metadata edits: `Some(contents)` writes `<contents>\n`, `None` removes.
    async fn edit(&self, edits: &[(&str, Option<&str>)]) -> anyhow::Result<()> {
        let mut transaction = self.metadata().transaction().await?;
        for (path, contents) in edits {
            let path = StorePath::new(*path)?;
            match contents {
                Some(c) => transaction.create_file(&path, format!("{c}\n"))?,
                None => transaction.remove(&path)?,
            }
        }
        transaction.commit("test edit").await?;
        Ok(())
    }

    async fn tree(&self) -> anyhow::Result<Snapshot> {
        Ok(self
            .metadata()
            .head()
            .await?
            .expect("metadata exists")
            .tree())
    }

    /// The `state` and `description` of a status, if written.
    async fn status(
        &self,
        repo: &str,
        commit: &str,
        test: &str,
    ) -> anyhow::Result<Option<(String, String)>> {
        let dir = format!("{repo}/commit/{commit}/status/ci/datakit/{test}");
        let tree = self.tree().await?;
        let read = |name: &str| -> anyhow::Result<Option<String>> {
            let bytes = tree.read_file(&StorePath::new(format!("{dir}/{name}"))?)?;
            Ok(bytes.map(|b| String::from_utf8_lossy(&b).trim().to_owned()))
        };
        Ok(match (read("state")?, read("description")?) {
            (Some(state), description) => Some((state, description.unwrap_or_default())),
            (None, _) => None,
        })
    }

    /// Waits until the status is as expected, following metadata commits.
    async fn wait_status(
        &self,
        repo: &str,
        commit: &str,
        test: &str,
        state: &str,
        description: &str,
    ) -> anyhow::Result<()> {
        let mut watch = self.metadata().watch();
        let wanted = Some((state.to_owned(), description.to_owned()));
        let wait = async {
            loop {
                if self.status(repo, commit, test).await? == wanted {
                    return anyhow::Ok(());
                }
                watch.changed().await?;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .map_err(|_| anyhow::anyhow!("status {repo}@{commit}/{test} never became {wanted:?}"))?
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            datakit_ci_testkit::assert_fsck_clean(&self.dir.path().join("state.git"));
        }
    }
}

fn branch(repo: &str, name: &str) -> TargetId {
    TargetId::Ref(
        repo.parse().expect("valid"),
        RefName::branch(name).expect("valid"),
    )
}

fn simple_project(id: &str) -> Project {
    Project::new(id, |target| {
        let head = Term::head(target.clone());
        vec![
            (
                "build".to_owned(),
                head.map(|h| format!("Built {}", h.short(7))),
            ),
            ("lint".to_owned(), Term::fail("lint errors")),
        ]
    })
    .expect("valid project")
}

#[tokio::test]
async fn branches_tags_and_prs_get_statuses_and_links() -> anyhow::Result<()> {
    let h = Harness::new()?;
    h.edit(&[
        ("me/proj/ref/heads/main/head", Some(A)),
        ("me/proj/ref/tags/v1.0/head", Some(B)),
        ("me/proj/pr/3/head", Some(C)),
        ("me/proj/pr/3/state", Some("open")),
        ("me/proj/pr/3/owner", Some("alice")),
    ])
    .await?;
    let running = h.start(vec![simple_project("me/proj")], vec![]);
    for (commit, short) in [(A, "aaaaaaa"), (B, "bbbbbbb"), (C, "ccccccc")] {
        h.wait_status(
            "me/proj",
            commit,
            "build",
            "success",
            &format!("Built {short}"),
        )
        .await?;
        h.wait_status("me/proj", commit, "lint", "failure", "lint errors")
            .await?;
    }
    let tree = h.tree().await?;
    let url = tree.read_file(&StorePath::new(format!(
        "me/proj/commit/{A}/status/ci/datakit/build/target_url"
    ))?)?;
    assert_eq!(
        url.as_deref(),
        Some(format!("https://ci.example/me/proj/commit/{A}?test=build\n").as_bytes())
    );
    assert!(tree.exists(&StorePath::new("me/proj/.monitor")?)?);
    assert_eq!(running.engine.targets().len(), 3);
    running.stop().await
}

#[tokio::test]
async fn a_moved_head_gets_new_statuses_and_history_follows() -> anyhow::Result<()> {
    let h = Harness::new()?;
    h.edit(&[("me/proj/ref/heads/main/head", Some(A))]).await?;
    let running = h.start(vec![simple_project("me/proj")], vec![]);
    h.wait_status("me/proj", A, "build", "success", "Built aaaaaaa")
        .await?;
    h.edit(&[("me/proj/ref/heads/main/head", Some(B))]).await?;
    h.wait_status("me/proj", B, "build", "success", "Built bbbbbbb")
        .await?;
    h.wait_status("me/proj", B, "lint", "failure", "lint errors")
        .await?;
    assert_eq!(
        h.status("me/proj", A, "build").await?,
        Some(("success".into(), "Built aaaaaaa".into()))
    );

    // History: two states of the target, the second's parent being the first; both indexed.
    let history = running.engine.history().clone();
    let target = branch("me/proj", "main");
    let wait = async {
        loop {
            let latest = history.latest(&target).await?;
            if let Some(state) = latest
                && state.source_commit.as_ref().map(|c| c.as_str()) == Some(B)
                && state.jobs.len() == 2
            {
                return anyhow::Ok(state);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let latest = tokio::time::timeout(Duration::from_secs(20), wait).await??;
    let previous = history.load(latest.parents[0]).await?;
    assert_eq!(
        previous.source_commit.map(|c| c.to_string()),
        Some(A.to_owned())
    );
    let repo: RepoId = "me/proj".parse()?;
    for commit in [A, B] {
        let builds = history.builds_of_commit(&repo, &commit.parse()?).await?;
        assert_eq!(
            builds.keys().collect::<Vec<_>>(),
            [&target],
            "commit index of {commit}"
        );
    }
    running.stop().await
}

/// The engine's own status commits are not diffed (it knows what it wrote); a job reading this
/// CI's statuses must still be woken by them. And the statuses of a moved head go into one
/// metadata commit.
#[tokio::test]
async fn jobs_see_this_cis_own_statuses_and_a_moved_head_is_reported_in_one_commit()
-> anyhow::Result<()> {
    let h = Harness::new()?;
    let project = Project::new("me/proj", |target| {
        let head = Term::head(target.clone());
        vec![
            (
                "build".to_owned(),
                head.clone().map(|h| format!("Built {}", h.short(7))),
            ),
            (
                "lint".to_owned(),
                head.map(|h| format!("Linted {}", h.short(7))),
            ),
            (
                "deploy".to_owned(),
                Term::ci_success_target_url("ci/datakit/build", target.clone())
                    .map(|url| format!("after {url}")),
            ),
        ]
    })?;
    h.edit(&[("me/proj/ref/heads/main/head", Some(A))]).await?;
    let running = h.start(vec![project], vec![]);
    let url = |commit: &str| format!("https://ci.example/me/proj/commit/{commit}?test=build");
    h.wait_status(
        "me/proj",
        A,
        "deploy",
        "success",
        &format!("after {}", url(A)),
    )
    .await?;
    h.edit(&[("me/proj/ref/heads/main/head", Some(B))]).await?;
    h.wait_status(
        "me/proj",
        B,
        "deploy",
        "success",
        &format!("after {}", url(B)),
    )
    .await?;

    // The oldest metadata commit with B's `build` status has B's `lint` status too.
    let mut commit = h.metadata().head().await?.expect("metadata exists");
    while let [parent] = commit.parents() {
        let parent = h.store.commit(*parent).await?;
        let has_build = parent.tree().exists(&StorePath::new(format!(
            "me/proj/commit/{B}/status/ci/datakit/build/state"
        ))?)?;
        if !has_build {
            break;
        }
        commit = parent;
    }
    assert!(
        commit.tree().exists(&StorePath::new(format!(
            "me/proj/commit/{B}/status/ci/datakit/lint/state"
        ))?)?,
        "B's build status was written without lint's, by {:?}",
        commit.message()
    );
    running.stop().await
}

#[tokio::test]
async fn only_affected_jobs_are_evaluated_again() -> anyhow::Result<()> {
    let h = Harness::new()?;
    let evaluations: Arc<std::sync::Mutex<BTreeMap<String, usize>>> = Default::default();
    let counts = evaluations.clone();
    let project = Project::new("me/proj", move |target| {
        let counts = counts.clone();
        let name = target.to_string();
        let counted = Term::from_future(move || {
            *counts
                .lock()
                .expect("not poisoned")
                .entry(name.clone())
                .or_default() += 1;
            async {}
        });
        vec![(
            "count".to_owned(),
            Term::head(target.clone())
                .zip(counted)
                .map(|_| "ok".to_owned()),
        )]
    })?;
    let mut edits = Vec::new();
    let paths: Vec<String> = (0..20)
        .map(|i| format!("me/proj/ref/heads/b{i}/head"))
        .collect();
    for path in &paths {
        edits.push((path.as_str(), Some(A)));
    }
    h.edit(&edits).await?;
    let running = h.start(vec![project], vec![]);
    h.wait_status("me/proj", A, "count", "success", "ok")
        .await?;
    let wait_all = async {
        while evaluations.lock().expect("not poisoned").len() < 20 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait_all).await?;
    let before = evaluations.lock().expect("not poisoned").clone();

    h.edit(&[("me/proj/ref/heads/b7/head", Some(B))]).await?;
    h.wait_status("me/proj", B, "count", "success", "ok")
        .await?;
    let after = evaluations.lock().expect("not poisoned").clone();
    let changed: Vec<&String> = after
        .keys()
        .filter(|k| after.get(*k) != before.get(*k))
        .collect();
    assert_eq!(
        changed,
        ["me/proj/heads/b7"],
        "only the moved branch's job ran again"
    );
    running.stop().await
}

#[tokio::test]
async fn deleted_targets_are_dropped_and_their_builds_cancelled() -> anyhow::Result<()> {
    let h = Harness::new()?;
    let logs = datakit_ci_log::LogManager::new();
    let cancelled = Arc::new(tokio::sync::Notify::new());
    let (logs2, cancelled2) = (logs.clone(), cancelled.clone());
    let project = Project::new("me/proj", move |target| {
        // A "build" that never finishes by itself: a live log with a cancel token.
        let token = CancellationToken::new();
        let log = logs2
            .create(datakit_ci_log::LiveLogSpec {
                branch: format!("build-{}", target.to_string().replace('/', "-")),
                title: "Build".into(),
                pending: "Building".into(),
                cancel: Some(token.clone()),
            })
            .expect("one log per target");
        let notify = cancelled2.clone();
        tokio::spawn(async move {
            token.cancelled().await;
            notify.notify_one();
        });
        let status = Status::<String> {
            result: Err(Problem::pending("Building")),
            output: datakit_ci_term::Logs::Live(log),
        };
        vec![(
            "slow".to_owned(),
            Term::from_status(move || std::future::ready(status.clone())),
        )]
    })?;
    h.edit(&[
        ("me/proj/ref/heads/gone/head", Some(A)),
        ("me/proj/pr/9/head", Some(B)),
        ("me/proj/pr/9/state", Some("open")),
        ("me/proj/pr/9/owner", Some("bob")),
    ])
    .await?;
    let running = h.start(vec![project], vec![]);
    h.wait_status("me/proj", A, "slow", "pending", "Building")
        .await?;
    h.wait_status("me/proj", B, "slow", "pending", "Building")
        .await?;

    h.edit(&[("me/proj/ref/heads/gone/head", None)]).await?;
    tokio::time::timeout(Duration::from_secs(20), cancelled.notified()).await?;
    assert!(running.engine.target(&branch("me/proj", "gone")).is_none());
    h.edit(&[
        ("me/proj/pr/9/head", None),
        ("me/proj/pr/9/state", None),
        ("me/proj/pr/9/owner", None),
    ])
    .await?;
    tokio::time::timeout(Duration::from_secs(20), cancelled.notified()).await?;
    assert!(running.engine.targets().is_empty());
    // Statuses already written are left as they were.
    assert_eq!(
        h.status("me/proj", A, "slow").await?,
        Some(("pending".into(), "Building".into()))
    );
    running.stop().await
}

#[tokio::test]
async fn terms_can_read_other_repositories_and_other_cis() -> anyhow::Result<()> {
    let h = Harness::new()?;
    let project = Project::new("me/app", |target| {
        let lib = Term::branch_head("me/lib".parse().expect("valid"), "main")
            .map(|h| format!("lib at {}", h.short(7)));
        let other_ci = Term::ci_success_target_url("ci/other", target.clone())
            .map(|url| format!("other CI at {url}"));
        vec![
            ("lib".to_owned(), lib),
            ("after-other".to_owned(), other_ci),
        ]
    })?;
    h.edit(&[
        ("me/app/ref/heads/main/head", Some(A)),
        ("me/lib/ref/heads/main/head", Some(B)),
    ])
    .await?;
    let running = h.start(vec![project], vec![]);
    h.wait_status("me/app", A, "lib", "success", "lib at bbbbbbb")
        .await?;
    h.wait_status(
        "me/app",
        A,
        "after-other",
        "pending",
        "Waiting for ci/other status to appear",
    )
    .await?;

    h.edit(&[("me/lib/ref/heads/main/head", Some(C))]).await?;
    h.wait_status("me/app", A, "lib", "success", "lib at ccccccc")
        .await?;
    let other = format!("me/app/commit/{A}/status/ci/other");
    h.edit(&[
        (&format!("{other}/state"), Some("pending")),
        (&format!("{other}/description"), Some("running")),
    ])
    .await?;
    h.wait_status(
        "me/app",
        A,
        "after-other",
        "pending",
        "Waiting for ci/other to complete (running)",
    )
    .await?;
    h.edit(&[
        (&format!("{other}/state"), Some("success")),
        (&format!("{other}/target_url"), Some("https://other/1")),
    ])
    .await?;
    h.wait_status(
        "me/app",
        A,
        "after-other",
        "success",
        "other CI at https://other/1",
    )
    .await?;
    running.stop().await
}

#[tokio::test]
async fn canaries_restrict_the_targets() -> anyhow::Result<()> {
    let h = Harness::new()?;
    h.edit(&[
        ("me/proj/ref/heads/main/head", Some(A)),
        ("me/proj/ref/heads/other/head", Some(B)),
    ])
    .await?;
    let running = h.start(
        vec![simple_project("me/proj")],
        vec![branch("me/proj", "main")],
    );
    h.wait_status("me/proj", A, "lint", "failure", "lint errors")
        .await?;
    let tracked: Vec<String> = running
        .engine
        .targets()
        .iter()
        .map(|t| t.target.id().to_string())
        .collect();
    assert_eq!(tracked, ["me/proj/heads/main"]);
    assert_eq!(h.status("me/proj", B, "lint").await?, None);
    running.stop().await
}

#[tokio::test]
async fn statuses_go_from_absent_to_pending_to_final_and_survive_a_restart() -> anyhow::Result<()> {
    let h = Harness::new()?;
    let (sender, ready) = Ready::channel();
    let done = Arc::new(AtomicUsize::new(0));
    let flag = done.clone();
    let project = move |done: Arc<AtomicUsize>, ready: Ready| {
        Project::new("me/proj", move |_| {
            let (done, ready) = (done.clone(), ready.clone());
            let term = Term::from_status(move || {
                let status = if done.load(Ordering::SeqCst) > 0 {
                    Status::ok("Finished".to_owned())
                } else {
                    Status {
                        result: Err(Problem::Pending {
                            reason: "Working".into(),
                            ready: ready.clone(),
                        }),
                        output: Default::default(),
                    }
                };
                std::future::ready(status)
            });
            vec![("job".to_owned(), term)]
        })
        .expect("valid")
    };
    h.edit(&[("me/proj/ref/heads/main/head", Some(A))]).await?;
    let running = h.start(vec![project(done.clone(), ready.clone())], vec![]);
    let mut events = running.engine.subscribe();
    h.wait_status("me/proj", A, "job", "pending", "Working")
        .await?;
    flag.store(1, Ordering::SeqCst);
    sender.resolve();
    h.wait_status("me/proj", A, "job", "success", "Finished")
        .await?;
    let mut seen: Vec<(String, String)> = Vec::new();
    while let Ok(StatusChange {
        state, description, ..
    }) = events.try_recv()
    {
        seen.push((state.to_owned(), description));
    }
    assert_eq!(
        seen.last(),
        Some(&("success".to_owned(), "Finished".to_owned()))
    );
    assert!(
        seen.iter().all(|(s, _)| s == "pending" || s == "success"),
        "{seen:?}"
    );
    running.stop().await?;

    // A new engine on the same store finds everything as it was: nothing is rewritten.
    let head_before = h.metadata().head().await?.map(|c| c.id());
    let restarted = h.start(vec![project(done, Ready::never())], vec![]);
    let wait = async {
        loop {
            if restarted
                .engine
                .targets()
                .first()
                .is_some_and(|t| t.jobs[0].output.is_some())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait).await?;
    restarted.stop().await?;
    assert_eq!(
        h.metadata().head().await?.map(|c| c.id()),
        head_before,
        "no status written again"
    );
    Ok(())
}

#[tokio::test]
async fn a_new_head_after_a_restart_gets_its_status_even_if_the_result_is_unchanged()
-> anyhow::Result<()> {
    let h = Harness::new()?;
    let project = || {
        Project::new("me/proj", |_| {
            vec![("same".to_owned(), Term::ok("Same".to_owned()))]
        })
        .expect("valid")
    };
    h.edit(&[("me/proj/ref/heads/main/head", Some(A))]).await?;
    let running = h.start(vec![project()], vec![]);
    h.wait_status("me/proj", A, "same", "success", "Same")
        .await?;
    running.stop().await?;
    h.edit(&[("me/proj/ref/heads/main/head", Some(B))]).await?;
    let running = h.start(vec![project()], vec![]);
    h.wait_status("me/proj", B, "same", "success", "Same")
        .await?;
    running.stop().await
}

/// A cached step: counts its runs; its value is the key doubled.
#[derive(Clone, Default)]
struct Doubler {
    runs: Arc<AtomicUsize>,
}

impl datakit_ci_cache::Builder for Doubler {
    type Key = u32;
    type Context = ();
    type Value = u32;

    fn name(&self) -> String {
        "doubler".into()
    }
    fn title(&self, key: &u32) -> String {
        format!("Double {key}")
    }
    fn branch(&self, key: &u32) -> BranchName {
        BranchName::new(format!("double-{key}")).expect("valid")
    }
    async fn generate(
        &self,
        build: datakit_ci_cache::Build<'_>,
        _: &(),
        key: &u32,
    ) -> Result<u32, String> {
        let run = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        build.log.write_str(&format!("run {run}\n"));
        Ok(key * 2)
    }
    fn load(&self, _: &Snapshot, key: &u32) -> Result<u32, String> {
        Ok(key * 2)
    }
}

#[tokio::test]
async fn rebuilding_a_cache_branch_reruns_the_step_and_its_dependants() -> anyhow::Result<()> {
    let h = Harness::new()?;
    let builder = Doubler::default();
    let runs = builder.runs.clone();
    let mut registry = Registry::default();
    let cache = datakit_ci_cache::Cache::new(
        builder,
        h.store.clone(),
        datakit_ci_log::LogManager::new(),
        &datakit_ci_cache::CacheMetrics::new(&mut registry),
    );
    let project = Project::new("me/proj", move |_| {
        vec![(
            "double".to_owned(),
            cache.find((), 21).map(|v| format!("got {v}")),
        )]
    })?;
    h.edit(&[("me/proj/ref/heads/main/head", Some(A))]).await?;
    let running = h.start(vec![project], vec![]);
    h.wait_status("me/proj", A, "double", "success", "got 42")
        .await?;
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    let missing = running
        .engine
        .rebuild(&BranchName::new("nobody-uses-this")?)
        .await;
    assert_eq!(
        missing.map_err(|e| e.to_string()),
        Err(r#"No job depends on "nobody-uses-this", so can't rebuild anything"#.to_owned())
    );
    running
        .engine
        .rebuild(&BranchName::new("double-21")?)
        .await?;
    let wait = async {
        while runs.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait).await?;
    // The job saw the rebuild: its output ends up pointing at the commit that saved the second run.
    // (The branch's head is read in the loop: when the second run starts, the branch still holds the
    // commit that asked for the rebuild.)
    let cache = h.store.branch(&BranchName::new("double-21")?);
    let log = StorePath::new("log")?;
    let wait = async {
        loop {
            let head = cache.head().await?.expect("built");
            let rebuilt = head
                .tree()
                .read_file(&log)?
                .is_some_and(|log| String::from_utf8_lossy(&log).contains("run 2"));
            let target = running
                .engine
                .target(&branch("me/proj", "main"))
                .expect("tracked");
            if rebuilt
                && let Some(output) = target.jobs[0].output.clone()
                && output.to_json().contains(&head.id().to_string())
            {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait).await??;
    running.stop().await
}

/// Issue 14, defect 1: a metadata commit adding a PR whose head is not a commit hash together
/// with a valid branch: the branch is tested, the PR is shown as unreadable with the reason, and
/// once the PR is corrected it is tested too. The same at start-up.
#[tokio::test]
async fn issue_14_a_bad_target_does_not_lose_the_rest_of_its_commit() -> anyhow::Result<()> {
    let h = Harness::new()?;
    h.edit(&[("me/proj/ref/heads/main/head", Some(A))]).await?;
    let running = h.start(vec![simple_project("me/proj")], vec![]);
    h.wait_status("me/proj", A, "build", "success", "Built aaaaaaa")
        .await?;
    h.edit(&[
        ("me/proj/pr/7/head", Some("not-a-commit-hash")),
        ("me/proj/pr/7/state", Some("open")),
        ("me/proj/pr/7/owner", Some("mallory")),
        ("me/proj/ref/heads/good/head", Some(B)),
    ])
    .await?;
    h.wait_status("me/proj", B, "build", "success", "Built bbbbbbb")
        .await?;
    let pr = TargetId::Pr("me/proj".parse()?, 7);
    let unreadable = running.engine.unreadable_targets();
    assert_eq!(unreadable.len(), 1, "{unreadable:?}");
    assert_eq!(unreadable[0].id, pr);
    assert!(
        unreadable[0].reason.contains("me/proj/pr/7/head")
            && unreadable[0].reason.contains("not-a-commit-hash"),
        "{}",
        unreadable[0].reason
    );
    assert!(running.engine.target(&pr).is_none());

    // Corrected: the PR is tested and no longer unreadable.
    h.edit(&[("me/proj/pr/7/head", Some(C))]).await?;
    h.wait_status("me/proj", C, "build", "success", "Built ccccccc")
        .await?;
    assert_eq!(running.engine.unreadable_targets(), []);
    assert!(running.engine.target(&pr).is_some());
    running.stop().await?;

    // Broken again while the CI is down: a new engine starts with the rest.
    h.edit(&[
        ("me/proj/pr/7/head", Some("zzz")),
        ("me/proj/ref/heads/late/head", Some(C)),
    ])
    .await?;
    let restarted = h.start(vec![simple_project("me/proj")], vec![]);
    let wait = async {
        loop {
            let late = restarted.engine.target(&branch("me/proj", "late"));
            if late.is_some() && restarted.engine.unreadable_target(&pr).is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait).await?;
    assert!(restarted.engine.target(&pr).is_none());
    restarted.stop().await
}

/// Issue 14, defect 5: a target that appears on a commit already tested announces the statuses
/// it starts with (the CLI prints them), though the metadata already has them; a restart
/// announces nothing.
#[tokio::test]
async fn issue_14_a_new_branch_on_a_tested_commit_announces_its_statuses() -> anyhow::Result<()> {
    let h = Harness::new()?;
    h.edit(&[("me/proj/ref/heads/main/head", Some(A))]).await?;
    let running = h.start(vec![simple_project("me/proj")], vec![]);
    h.wait_status("me/proj", A, "lint", "failure", "lint errors")
        .await?;
    let mut events = running.engine.subscribe();
    h.edit(&[("me/proj/ref/heads/copy/head", Some(A))]).await?;
    let copy = branch("me/proj", "copy");
    let mut seen = BTreeMap::new();
    let wait = async {
        while seen.len() < 2 {
            let event = events.recv().await?;
            assert_eq!(event.target, copy, "{event:?}");
            assert_eq!(event.commit.as_str(), A);
            seen.insert(event.job, (event.state, event.description));
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(20), wait).await??;
    assert_eq!(
        seen,
        BTreeMap::from([
            ("build".to_owned(), ("success", "Built aaaaaaa".to_owned())),
            ("lint".to_owned(), ("failure", "lint errors".to_owned())),
        ])
    );
    running.stop().await?;

    let restarted = h.start(vec![simple_project("me/proj")], vec![]);
    let mut events = restarted.engine.subscribe();
    let wait = async {
        loop {
            let targets = restarted.engine.targets();
            if targets.len() == 2
                && targets
                    .iter()
                    .all(|t| t.jobs.iter().all(|j| j.output.is_some()))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait).await?;
    restarted.stop().await?;
    assert!(
        matches!(
            events.try_recv(),
            Err(tokio::sync::broadcast::error::TryRecvError::Empty
                | tokio::sync::broadcast::error::TryRecvError::Closed)
        ),
        "a restart announces nothing"
    );
    Ok(())
}

/// A cached step that runs until released or cancelled, counting its runs.
#[derive(Clone)]
struct Blocker {
    runs: Arc<AtomicUsize>,
    stopped: Arc<AtomicUsize>,
    release: tokio::sync::watch::Receiver<bool>,
}

impl datakit_ci_cache::Builder for Blocker {
    type Key = u32;
    type Context = ();
    type Value = u32;

    fn name(&self) -> String {
        "blocker".into()
    }
    fn title(&self, key: &u32) -> String {
        format!("Block {key}")
    }
    fn branch(&self, key: &u32) -> BranchName {
        BranchName::new(format!("block-{key}")).expect("valid")
    }
    async fn generate(
        &self,
        build: datakit_ci_cache::Build<'_>,
        _: &(),
        key: &u32,
    ) -> Result<u32, String> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let mut release = self.release.clone();
        tokio::select! {
            released = release.wait_for(|released| *released) => {
                released.map_err(|e| e.to_string())?;
                Ok(*key)
            }
            () = build.cancel.cancelled() => {
                self.stopped.fetch_add(1, Ordering::SeqCst);
                Err("cancelled".to_owned())
            }
        }
    }
    fn load(&self, _: &Snapshot, key: &u32) -> Result<u32, String> {
        Ok(*key)
    }
}

/// Issue 14, defect 6: renaming a branch while its build runs keeps the build for the renamed
/// target; deleting the branch stops the build without recording the cancellation as a result,
/// and pushing the commit again builds it again, to its real result.
#[tokio::test]
async fn issue_14_a_build_nothing_needs_any_more_is_not_a_result() -> anyhow::Result<()> {
    let h = Harness::new()?;
    let (release, released) = tokio::sync::watch::channel(false);
    let builder = Blocker {
        runs: Arc::new(AtomicUsize::new(0)),
        stopped: Arc::new(AtomicUsize::new(0)),
        release: released,
    };
    let (runs, stopped) = (builder.runs.clone(), builder.stopped.clone());
    let mut registry = Registry::default();
    let cache = datakit_ci_cache::Cache::new(
        builder,
        h.store.clone(),
        datakit_ci_log::LogManager::new(),
        &datakit_ci_cache::CacheMetrics::new(&mut registry),
    );
    let project = Project::new("me/proj", move |_| {
        vec![(
            "block".to_owned(),
            cache.find((), 1).map(|v| format!("got {v}")),
        )]
    })?;
    h.edit(&[("me/proj/ref/heads/feature/head", Some(A))])
        .await?;
    let running = h.start(vec![project], vec![]);
    h.wait_status("me/proj", A, "block", "pending", "Block 1")
        .await?;

    // Renamed in one metadata commit: the new name shows the same running build.
    h.edit(&[
        ("me/proj/ref/heads/feature/head", None),
        ("me/proj/ref/heads/renamed/head", Some(A)),
    ])
    .await?;
    let renamed = branch("me/proj", "renamed");
    let wait = async {
        while running
            .engine
            .target(&renamed)
            .is_none_or(|t| t.jobs[0].output.is_none())
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait).await?;

    // Deleted: nothing needs the build, so it stops, and records nothing.
    h.edit(&[("me/proj/ref/heads/renamed/head", None)]).await?;
    let wait = async {
        while stopped.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait).await?;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the rename kept the build");
    let block = h.store.branch(&BranchName::new("block-1")?);

    // Pushed again: built again, to its real result.
    h.edit(&[("me/proj/ref/heads/again/head", Some(A))]).await?;
    let wait = async {
        while runs.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait).await?;
    assert!(
        block.head().await?.is_none(),
        "the stopped build recorded nothing"
    );
    release.send(true)?;
    h.wait_status("me/proj", A, "block", "success", "got 1")
        .await?;
    let recorded = block.head().await?.expect("the second build is recorded");
    assert!(!recorded.tree().exists(&StorePath::new("failure")?)?);
    running.stop().await
}

/// Issue 14, defect 3: a rebuild works through the store when the `Cache` that loaded the result
/// is gone (here each evaluation makes a new one, as a program that rebuilds its configuration
/// would).
#[tokio::test]
async fn issue_14_a_rebuild_works_when_the_cache_that_made_the_result_is_gone() -> anyhow::Result<()>
{
    let h = Harness::new()?;
    let builder = Doubler::default();
    let runs = builder.runs.clone();
    let store = h.store.clone();
    let logs = datakit_ci_log::LogManager::new();
    let metrics = datakit_ci_cache::CacheMetrics::new(&mut Registry::default());
    let project = Project::new("me/proj", move |_| {
        let (builder, store, logs, metrics) = (
            builder.clone(),
            store.clone(),
            logs.clone(),
            metrics.clone(),
        );
        let term = Term::from_status(move || {
            let cache = datakit_ci_cache::Cache::new(
                builder.clone(),
                store.clone(),
                logs.clone(),
                &metrics,
            );
            async move { cache.lookup((), 21).await }
        });
        vec![("double".to_owned(), term.map(|v| format!("got {v}")))]
    })?;
    h.edit(&[("me/proj/ref/heads/main/head", Some(A))]).await?;
    let running = h.start(vec![project], vec![]);
    h.wait_status("me/proj", A, "double", "success", "got 42")
        .await?;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    running
        .engine
        .rebuild(&BranchName::new("double-21")?)
        .await?;
    let wait = async {
        while runs.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait).await?;
    running.stop().await
}

/// Issue 14, defect 7: a branch of 125 × `a-` (whose escaped status-branch name would be three
/// times as long as a file name can be) gets its statuses and history; and a target whose
/// history cannot be recorded (here: a job name that cannot be a file name) delays no other
/// target: while its history keeps failing, another branch moved twice gets each status and
/// history state, and the failing target's own statuses are written.
#[tokio::test]
async fn issue_14_long_names_get_a_history_and_a_failing_history_delays_no_one()
-> anyhow::Result<()> {
    const D: &str = "dddddddddddddddddddddddddddddddddddddddd";
    const E: &str = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
    let h = Harness::new()?;
    let long_name = "a-".repeat(125);
    let long = branch("me/proj", &long_name);
    let broken = branch("me/proj", "broken");
    let main = branch("me/proj", "main");
    h.edit(&[
        ("me/proj/ref/heads/broken/head", Some(C)),
        (&format!("me/proj/ref/heads/{long_name}/head"), Some(D)),
        ("me/proj/ref/heads/main/head", Some(A)),
    ])
    .await?;
    let project = Project::new("me/proj", {
        let broken = broken.clone();
        move |target| {
            let build = Term::head(target.clone()).map(|h| format!("Built {}", h.short(7)));
            let mut tests = vec![("build".to_owned(), build)];
            if *target == broken {
                tests.push(("bad/name".to_owned(), Term::ok("never recorded".to_owned())));
            }
            tests
        }
    })?;
    let running = h.start(vec![project], vec![]);
    let history = running.engine.history().clone();
    let recorded = |target: TargetId, source: &'static str| {
        let history = history.clone();
        async move {
            let wait = async {
                loop {
                    if let Some(state) = history.latest(&target).await?
                        && state.source_commit.as_ref().map(|c| c.as_str()) == Some(source)
                    {
                        return anyhow::Ok(state);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(20), wait)
                .await
                .map_err(|_| anyhow::anyhow!("{target} never recorded {source}"))?
        }
    };
    h.wait_status("me/proj", C, "build", "success", "Built ccccccc")
        .await?;
    h.wait_status("me/proj", D, "build", "success", "Built ddddddd")
        .await?;
    let state = recorded(long.clone(), D).await?;
    assert_eq!(state.jobs.len(), 1);
    let long_branch = datakit_ci_history::status_branch(&long);
    assert!(long_branch.as_str().len() <= BranchName::MAX_COMPONENT_LEN);
    assert_eq!(
        history.status_branch_target(&long_branch).await?,
        Some(long.clone())
    );
    recorded(main.clone(), A).await?;
    for (commit, short) in [(B, "bbbbbbb"), (E, "eeeeeee")] {
        h.edit(&[("me/proj/ref/heads/main/head", Some(commit))])
            .await?;
        h.wait_status(
            "me/proj",
            commit,
            "build",
            "success",
            &format!("Built {short}"),
        )
        .await?;
        recorded(main.clone(), commit).await?;
    }
    // All that time, the broken target's history failed; its statuses were written.
    assert!(history.latest(&broken).await?.is_none());
    assert_eq!(
        h.status("me/proj", C, "bad/name").await?,
        Some(("success".into(), "never recorded".into()))
    );
    running.stop().await
}

/// A plan per head: A plans `build` and `test` (which needs `build`), B plans `build` and
/// `docs`, C's plan fails.
fn planned_project(id: &str) -> Project {
    use datakit_ci_engine::{Plan, PlannedJob};
    Project::new(id, |_| {
        vec![("static".to_owned(), Term::ok("Static".to_owned()))]
    })
    .expect("valid project")
    .with_plan("pipeline", |target| {
        Term::head(target.clone()).and_then(|head| {
            let job = |name: &str, needs: &[&str]| PlannedJob {
                name: name.to_owned(),
                needs: needs.iter().map(|n| (*n).to_owned()).collect(),
                term: Term::ok(format!("{name} on {}", head.short(7))),
            };
            let jobs = match head.as_str() {
                A => vec![job("build", &[]), job("test", &["build"])],
                B => vec![job("build", &[]), job("docs", &[])],
                _ => return Term::fail("bad pipeline file"),
            };
            Term::ok(Plan {
                head: head.clone(),
                description: format!("{} jobs", jobs.len()),
                jobs,
            })
        })
    })
}

#[tokio::test]
async fn planned_jobs_follow_the_plan_of_each_head() -> anyhow::Result<()> {
    let h = Harness::new()?;
    h.edit(&[("me/proj/ref/heads/main/head", Some(A))]).await?;
    let running = h.start(vec![planned_project("me/proj")], vec![]);
    h.wait_status("me/proj", A, "test", "success", "test on aaaaaaa")
        .await?;
    h.wait_status("me/proj", A, "build", "success", "build on aaaaaaa")
        .await?;
    h.wait_status("me/proj", A, "pipeline", "success", "2 jobs")
        .await?;
    h.wait_status("me/proj", A, "static", "success", "Static")
        .await?;
    let target = branch("me/proj", "main");
    let view = running.engine.target(&target).expect("tracked");
    let needs: BTreeMap<_, _> = view
        .jobs
        .iter()
        .map(|j| (j.name.as_str(), j.needs.clone()))
        .collect();
    assert_eq!(needs["test"], ["build"]);
    assert!(needs["static"].is_empty() && needs["pipeline"].is_empty());

    // B drops `test` and adds `docs`; `build` is evaluated again for B.
    h.edit(&[("me/proj/ref/heads/main/head", Some(B))]).await?;
    h.wait_status("me/proj", B, "docs", "success", "docs on bbbbbbb")
        .await?;
    h.wait_status("me/proj", B, "build", "success", "build on bbbbbbb")
        .await?;
    h.wait_status("me/proj", B, "static", "success", "Static")
        .await?;
    assert_eq!(h.status("me/proj", B, "test").await?, None);
    assert_eq!(
        h.status("me/proj", A, "test").await?,
        Some(("success".into(), "test on aaaaaaa".into())),
        "the old head keeps its statuses"
    );
    let names = |engine: &Engine| -> Vec<String> {
        let view = engine.target(&target).expect("tracked");
        view.jobs.into_iter().map(|j| j.name).collect()
    };
    assert_eq!(
        names(&running.engine),
        ["build", "docs", "pipeline", "static"]
    );
    // The history's latest state has B's jobs only.
    let history = running.engine.history().clone();
    let wait = async {
        loop {
            if let Some(state) = history.latest(&target).await?
                && state.source_commit.as_ref().map(|c| c.as_str()) == Some(B)
            {
                return anyhow::Ok(state.jobs.keys().cloned().collect::<Vec<_>>());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let recorded = tokio::time::timeout(Duration::from_secs(20), wait).await??;
    assert_eq!(recorded, ["build", "docs", "pipeline", "static"]);

    // C's plan fails: the plan job says why and no planned job is left.
    h.edit(&[("me/proj/ref/heads/main/head", Some(C))]).await?;
    h.wait_status("me/proj", C, "pipeline", "failure", "bad pipeline file")
        .await?;
    h.wait_status("me/proj", C, "static", "success", "Static")
        .await?;
    assert_eq!(names(&running.engine), ["pipeline", "static"]);
    assert_eq!(h.status("me/proj", C, "build").await?, None);
    running.stop().await
}

/// Issue 18: an engine over a replica of another engine's store (fetched with `git`) shows
/// what that engine recorded, without evaluating or writing anything, and follows it.
#[tokio::test]
async fn issue_18_a_view_of_a_replica_follows_the_recorded_states() -> anyhow::Result<()> {
    let h = Harness::new()?;
    h.edit(&[("me/proj/ref/heads/main/head", Some(A))]).await?;
    let running = h.start(vec![simple_project("me/proj")], vec![]);
    h.wait_status("me/proj", A, "lint", "failure", "lint errors")
        .await?;
    h.wait_status("me/proj", A, "build", "success", "Built aaaaaaa")
        .await?;

    let replica_dir = tempfile::tempdir()?;
    let replica_path = replica_dir.path().join("replica.git");
    let replica = Store::open(&replica_path)?;
    let primary = h.dir.path().join("state.git");
    let fetch = || {
        datakit_ci_testkit::git(
            &replica_path,
            &[
                "fetch",
                "--quiet",
                "--prune",
                primary.to_str().expect("a UTF-8 path"),
                "+refs/heads/*:refs/heads/*",
            ],
        )
    };
    fetch();
    let view = Engine::new(
        EngineConfig {
            projects: vec![Project::new("me/proj", |_| Vec::new())?],
            web_ui: "https://ci.example/ui".into(),
            canaries: vec![],
        },
        replica.clone(),
        &mut Registry::default(),
    );
    let mut events = view.subscribe();
    let everything: std::collections::BTreeSet<BranchName> =
        replica.branches().await?.into_iter().collect();
    view.refresh_view(&everything).await?;
    let main = branch("me/proj", "main");
    let shown = |view: &Engine| -> BTreeMap<String, (String, String)> {
        let target = view.target(&main).expect("main is tracked");
        target
            .jobs
            .iter()
            .map(|job| {
                let output = job.output.as_ref().expect("a recorded output");
                (
                    job.name.clone(),
                    (
                        target.target.head().to_string(),
                        output.result.description().to_owned(),
                    ),
                )
            })
            .collect()
    };
    let expected = |head: &str, short: &str| {
        BTreeMap::from([
            (
                "build".to_owned(),
                (head.to_owned(), format!("Built {short}")),
            ),
            (
                "lint".to_owned(),
                (head.to_owned(), "lint errors".to_owned()),
            ),
        ])
    };
    assert_eq!(shown(&view), expected(A, "aaaaaaa"));
    // What was there at start is not news.
    assert!(events.try_recv().is_err());

    // The other engine moves on; after a fetch, the moved metadata is enough to follow it.
    h.edit(&[("me/proj/ref/heads/main/head", Some(B))]).await?;
    h.wait_status("me/proj", B, "lint", "failure", "lint errors")
        .await?;
    h.wait_status("me/proj", B, "build", "success", "Built bbbbbbb")
        .await?;
    fetch();
    let fetched = datakit_ci_testkit::git(&replica_path, &["for-each-ref", "refs/heads/"]);
    let metadata = BranchName::new("github-metadata")?;
    view.refresh_view(&[metadata].into()).await?;
    // The view wrote nothing: the replica's branches are still the fetched ones.
    assert_eq!(
        datakit_ci_testkit::git(&replica_path, &["for-each-ref", "refs/heads/"]),
        fetched
    );
    assert_eq!(shown(&view), expected(B, "bbbbbbb"));
    let mut announced = Vec::new();
    while let Ok(change) = events.try_recv() {
        announced.push((change.job, change.commit.to_string(), change.state));
    }
    assert_eq!(
        announced,
        [
            ("build".to_owned(), B.to_owned(), "success"),
            ("lint".to_owned(), B.to_owned(), "failure"),
        ]
    );
    // The history seen through the view is the new one too.
    let latest = view.history().latest(&main).await?.expect("recorded");
    assert_eq!(
        latest.source_commit.map(|c| c.to_string()),
        Some(B.to_owned())
    );
    running.stop().await?;
    drop(view);
    drop(replica);
    datakit_ci_testkit::assert_fsck_clean(&replica_path);
    Ok(())
}
