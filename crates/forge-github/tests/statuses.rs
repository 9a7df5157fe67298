//! Commit statuses sent to a fake GitHub: what the engine wrote in the metadata arrives with the
//! right context, state, description and link; only the latest state; never twice for one
//! state; retried through a 502 and a secondary rate limit; and everything unsent at a crash is
//! sent by the next process.

use std::time::{Duration, Instant};

use std::sync::{Arc, Mutex};

use datakit_ci_forge_github::{
    ALLOWED_FAILURE_PREFIX, APPROVAL_PREFIX, Credentials, GithubBridge, GithubConfig, LogHook,
    LogRequest, REPORTED_BRANCH, SKIPPED_PREFIX, Secret, StatusReporter,
};
use datakit_ci_store::{BranchName, Store, StorePath};
use datakit_ci_term::RepoId;
use datakit_ci_testkit::github::{Failure, FakeGithub, PostedStatus};
use tokio_util::sync::CancellationToken;

const A: &str = "1111111111111111111111111111111111111111";
const B: &str = "2222222222222222222222222222222222222222";

fn bridge(fake: &FakeGithub, store: &Store) -> anyhow::Result<GithubBridge> {
    let mut config = GithubConfig::new(
        vec!["me/proj".parse::<RepoId>()?],
        Credentials::Token(Secret::new("ghp_test")),
    );
    config.api_url = fake.url();
    Ok(GithubBridge::new(store.clone(), config)?)
}

fn reporter(fake: &FakeGithub, store: &Store) -> anyhow::Result<StatusReporter> {
    Ok(bridge(fake, store)?
        .status_reporter()
        .with_retry_delay(Duration::from_millis(10)))
}

/// Writes statuses into the metadata as the engine does: `(commit, test, state, description)`.
async fn write_statuses(
    store: &Store,
    statuses: &[(&str, &str, &str, &str)],
) -> anyhow::Result<()> {
    let branch = store.branch(&BranchName::new("github-metadata")?);
    let mut transaction = branch.transaction().await?;
    for (commit, test, state, description) in statuses {
        let dir = format!("me/proj/commit/{commit}/status/ci/datakit/{test}");
        transaction.create_file(
            &StorePath::new(format!("{dir}/state"))?,
            format!("{state}\n"),
        )?;
        transaction.create_file(
            &StorePath::new(format!("{dir}/description"))?,
            format!("{description}\n"),
        )?;
        transaction.create_file(
            &StorePath::new(format!("{dir}/target_url"))?,
            format!("https://ci.example/me/proj/commit/{commit}?test={test}\n"),
        )?;
    }
    transaction.commit("statuses").await?;
    Ok(())
}

fn posted(commit: &str, test: &str, state: &str, description: &str) -> PostedStatus {
    PostedStatus {
        repo: "me/proj".to_owned(),
        sha: commit.to_owned(),
        context: format!("ci/datakit/{test}"),
        state: state.to_owned(),
        description: description.to_owned(),
        target_url: Some(format!(
            "https://ci.example/me/proj/commit/{commit}?test={test}"
        )),
    }
}

#[tokio::test]
async fn statuses_are_posted_once_per_change_with_their_context_and_link() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("state.git"))?;
    let fake = FakeGithub::start();
    let reporter = reporter(&fake, &store)?;
    write_statuses(
        &store,
        &[
            (A, "build", "pending", "Building"),
            (A, "lint", "success", "Passed"),
        ],
    )
    .await?;
    assert_eq!(reporter.report_once().await?.sent, 2);
    let mut sent = fake.statuses();
    sent.sort_by(|a, b| a.context.cmp(&b.context));
    assert_eq!(
        sent,
        [
            posted(A, "build", "pending", "Building"),
            posted(A, "lint", "success", "Passed")
        ]
    );

    assert_eq!(reporter.report_once().await?.sent, 0, "nothing changed");
    // Another file of the metadata changes: the statuses did not.
    let branch = store.branch(&BranchName::new("github-metadata")?);
    let mut transaction = branch.transaction().await?;
    transaction.create_file(
        &StorePath::new("me/proj/ref/heads/main/head")?,
        format!("{A}\n"),
    )?;
    transaction.commit("a branch").await?;
    assert_eq!(
        reporter.report_once().await?.sent,
        0,
        "an unchanged status is not sent again"
    );

    let long = "x".repeat(200);
    write_statuses(
        &store,
        &[
            (A, "build", "failure", &long),
            (B, "build", "pending", "Queued"),
        ],
    )
    .await?;
    assert_eq!(reporter.report_once().await?.sent, 2);
    let sent = fake.statuses();
    assert_eq!(sent.len(), 4);
    assert!(
        sent.contains(&posted(A, "build", "failure", &"x".repeat(140))),
        "cut to 140 characters: {sent:?}"
    );
    assert!(sent.contains(&posted(B, "build", "pending", "Queued")));
    Ok(())
}

#[tokio::test]
async fn only_the_latest_state_is_sent() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("state.git"))?;
    let fake = FakeGithub::start();
    write_statuses(&store, &[(A, "build", "pending", "Building")]).await?;
    write_statuses(&store, &[(A, "build", "success", "Passed")]).await?;
    assert_eq!(reporter(&fake, &store)?.report_once().await?.sent, 1);
    assert_eq!(fake.statuses(), [posted(A, "build", "success", "Passed")]);
    Ok(())
}

/// Waits until the reporter has told GitHub everything up to the metadata's head.
async fn wait_until_told(store: &Store) -> anyhow::Result<()> {
    let metadata = store.branch(&BranchName::new("github-metadata")?);
    let record = store.branch(&BranchName::new(REPORTED_BRANCH)?);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let head = metadata.head().await?.map(|c| c.id().to_string());
        let cursor = match record.head().await? {
            Some(commit) => commit
                .tree()
                .read_file(&StorePath::new("cursor")?)?
                .map(|b| String::from_utf8_lossy(&b).trim().to_owned()),
            None => None,
        };
        if head.is_some() && head == cursor {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "statuses not told in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_502_and_a_secondary_rate_limit_are_retried_and_the_status_arrives_once()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("state.git"))?;
    let fake = FakeGithub::start();
    fake.fail_next_statuses(&[Failure::Status(502), Failure::SecondaryRateLimit(1)]);
    write_statuses(&store, &[(A, "build", "success", "Passed")]).await?;
    let cancel = CancellationToken::new();
    let running = tokio::spawn(reporter(&fake, &store)?.run(cancel.clone()));
    wait_until_told(&store).await?;
    cancel.cancel();
    running.await??;
    assert_eq!(fake.statuses(), [posted(A, "build", "success", "Passed")]);
    let answers: Vec<u16> = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.status)
        .collect();
    assert_eq!(answers, [502, 403, 201]);
    Ok(())
}

#[tokio::test]
async fn statuses_unsent_when_the_process_died_are_sent_by_the_next() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store_path = dir.path().join("state.git");
    let fake = FakeGithub::start();
    {
        let store = Store::open(&store_path)?;
        write_statuses(
            &store,
            &[
                (A, "a", "success", "Passed"),
                (A, "b", "failure", "Failed"),
                (A, "c", "pending", "Running"),
            ],
        )
        .await?;
        // GitHub is down after the first status: the pass stops there, and the process dies.
        fake.fail_next_statuses(&[Failure::Accept, Failure::Status(503)]);
        // One at a time, so that the first status is the one acknowledged.
        let reporter = reporter(&fake, &store)?.with_concurrency(1);
        let error = reporter.report_once().await.expect_err("GitHub is down");
        assert!(error.to_string().contains("503"), "{error}");
        drop(reporter);
        store.wait_for_maintenance().await;
    }
    let posts_before = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts_before, 2);
    assert_eq!(fake.statuses(), [posted(A, "a", "success", "Passed")]);

    let store = Store::open(&store_path)?;
    let pass = reporter(&fake, &store)?.report_once().await?;
    // The first status was acknowledged and recorded: only the two others are sent.
    assert_eq!(pass.sent, 2);
    let mut contexts: Vec<String> = fake.statuses().into_iter().map(|s| s.context).collect();
    contexts.sort();
    assert_eq!(
        contexts,
        ["ci/datakit/a", "ci/datakit/b", "ci/datakit/c"],
        "each exactly once"
    );
    assert_eq!(reporter(&fake, &store)?.report_once().await?.sent, 0);
    Ok(())
}

/// An RSA key made by `openssl` (PKCS#1, as GitHub hands out App keys).
fn app_key(dir: &std::path::Path) -> anyhow::Result<String> {
    let key = dir.join("app.pem");
    let status = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("2048")
        .stderr(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "openssl genrsa");
    Ok(std::fs::read_to_string(key)?)
}

fn app_bridge(
    fake: &FakeGithub,
    store: &Store,
    dir: &std::path::Path,
) -> anyhow::Result<GithubBridge> {
    let mut config = GithubConfig::new(
        vec!["me/proj".parse::<RepoId>()?],
        Credentials::App {
            app_id: 7,
            key: Secret::new(app_key(dir)?),
        },
    );
    config.api_url = fake.url();
    Ok(GithubBridge::new(store.clone(), config)?)
}

#[tokio::test]
async fn check_runs_conclude_skipped_neutral_and_action_required_and_show_failed_logs()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("state.git"))?;
    let fake = FakeGithub::start();
    let asked: Arc<Mutex<Vec<LogRequest>>> = Arc::default();
    let hook: LogHook = {
        let asked = Arc::clone(&asked);
        Arc::new(move |request: LogRequest| {
            asked.lock().expect("not poisoned").push(request.clone());
            let log: String = (1..=40)
                .map(|i| format!("\x1b[1m{} line {i}\x1b[0m\r\n", request.job))
                .collect();
            Box::pin(async move { Some(log.into_bytes()) })
        })
    };
    let reporter = app_bridge(&fake, &store, dir.path())?
        .status_reporter()
        .with_logs(hook);
    let skipped = format!("{SKIPPED_PREFIX}build failed");
    let allowed = format!("{ALLOWED_FAILURE_PREFIX}exit 1");
    let approval = format!("{APPROVAL_PREFIX} (deploy)");
    write_statuses(
        &store,
        &[
            (A, "build", "failure", "Failed: exit 2"),
            (A, "test", "failure", &skipped),
            (A, "lint", "success", &allowed),
            (A, "deploy", "pending", &approval),
            (A, "doc", "success", "Passed"),
        ],
    )
    .await?;
    let pass = reporter.report_once().await?;
    assert_eq!((pass.sent, pass.check_runs), (5, 5));

    // Commit statuses know only pending, success and failure: the states are kept.
    let mut sent = fake.statuses();
    sent.sort_by(|a, b| a.context.cmp(&b.context));
    assert_eq!(
        sent,
        [
            posted(A, "build", "failure", "Failed: exit 2"),
            posted(A, "deploy", "pending", &approval),
            posted(A, "doc", "success", "Passed"),
            posted(A, "lint", "success", &allowed),
            posted(A, "test", "failure", &skipped),
        ]
    );

    let runs = fake.check_runs();
    let run = |job: &str| {
        runs.iter()
            .find(|call| call.body["name"] == format!("ci/datakit/{job}"))
            .map(|call| call.body.clone())
            .expect("a check run per job")
    };
    let found: Vec<(String, String)> = ["build", "test", "lint", "deploy", "doc"]
        .iter()
        .map(|job| {
            let body = run(job);
            (
                body["status"].as_str().unwrap_or("").to_owned(),
                body["conclusion"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("completed", "failure"),
        ("completed", "skipped"),
        ("completed", "neutral"),
        ("completed", "action_required"),
        ("completed", "success"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(found, expected);
    assert_eq!(
        run("deploy")["details_url"],
        format!("https://ci.example/me/proj/commit/{A}?test=deploy")
    );

    // The logs of the jobs that ran and failed, and only those, were asked for and shown.
    let mut jobs: Vec<String> = asked
        .lock()
        .expect("not poisoned")
        .iter()
        .map(|request| request.job.clone())
        .collect();
    jobs.sort();
    assert_eq!(jobs, ["build", "lint"]);
    let lines: Vec<String> = (11..=40).map(|i| format!("build line {i}")).collect();
    assert_eq!(
        run("build")["output"]["summary"],
        format!(
            "Failed: exit 2\n\nThe end of the log:\n\n```\n{}\n```\n\n[Logs and history](https://ci.example/me/proj/commit/{A}?test=build)",
            lines.join("\n")
        )
    );
    assert!(
        !run("doc")["output"]["summary"]
            .as_str()
            .unwrap_or("")
            .contains("line"),
        "a passing job shows no log"
    );
    Ok(())
}

#[tokio::test]
async fn an_app_also_creates_then_updates_one_check_run_per_job() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("state.git"))?;
    let fake = FakeGithub::start();
    let mut config = GithubConfig::new(
        vec!["me/proj".parse::<RepoId>()?],
        Credentials::App {
            app_id: 7,
            key: Secret::new(app_key(dir.path())?),
        },
    );
    config.api_url = fake.url();
    let reporter = GithubBridge::new(store.clone(), config)?.status_reporter();
    write_statuses(&store, &[(A, "build", "pending", "Building")]).await?;
    let pass = reporter.report_once().await?;
    assert_eq!((pass.sent, pass.check_runs), (1, 1));
    let posts_before = fake.requests().len();
    write_statuses(&store, &[(A, "build", "failure", "Cancelled by admin")]).await?;
    let pass = reporter.report_once().await?;
    assert_eq!((pass.sent, pass.check_runs), (1, 1));
    assert_eq!(
        fake.requests().len() - posts_before,
        2,
        "one status and one check-run update per state change"
    );
    assert_eq!(
        reporter.report_once().await?,
        Default::default(),
        "nothing changed"
    );

    let calls = fake.check_runs();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (calls[0].method.as_str(), calls[1].method.as_str()),
        ("POST", "PATCH")
    );
    assert_eq!(calls[0].id, calls[1].id, "the created run is updated");
    let created = &calls[0].body;
    assert_eq!(created["name"], "ci/datakit/build");
    assert_eq!(created["head_sha"], A);
    assert_eq!(created["status"], "in_progress");
    assert_eq!(created["external_id"], "ci/datakit/build");
    assert_eq!(
        created["details_url"],
        format!("https://ci.example/me/proj/commit/{A}?test=build")
    );
    let updated = &calls[1].body;
    assert_eq!(updated["status"], "completed");
    assert_eq!(updated["conclusion"], "cancelled");
    assert_eq!(updated["output"]["title"], "Cancelled by admin");
    assert_eq!(updated["actions"][0]["identifier"], "rebuild");
    Ok(())
}
