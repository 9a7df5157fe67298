//! The `github` group: the GitHub bridge against the fake GitHub of `datakit-ci-testkit` (an
//! axum server on 127.0.0.1 serving the shared fixtures). Knows nothing of the other groups.
//!
//! - **conditional sync** — 500 open PRs and 2,000 branches (50 and 200 with `--quick`): a first
//!   full sync, then one with nothing changed, whose every page must be answered `304` (target:
//!   0 requests that cost rate limit).
//! - **webhook burst** — 1,000 signed `pull_request.synchronize` deliveries over 500 PRs (100
//!   over 50): `receive` (size, signature, replay memory, JSON) per second, then the time to
//!   apply them all; every PR's head is checked against the last delivery for it.
//! - **requests per state change** — as a GitHub App, 500 (50) jobs go from `pending` to
//!   `success`: API requests per job state change (target ≤ 2: one status, one check run), then
//!   a pass with nothing changed (target: 0 requests).
//! - **webhook to status** — two whole CIs (`LocalCi`, test `true`) in this process: one on a
//!   GitHub repository of the fake (its `clone_url` a local repository, webhooks to its web UI),
//!   one on the same kind of local repository through the local bridge. Rounds alternate: a
//!   commit on `main`, then for the first a signed `push` webhook, timed until the commit's
//!   `success` status is POSTed at the fake; for the second, timed from the commit until the
//!   status is announced. 20 rounds each (10 with `--quick`): medians and p99s; target: the
//!   GitHub median within 20 ms of the local one.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use datakit_ci::forge_github::{
    Credentials, GithubBridge, GithubConfig, Secret, WebhookRequest, sign,
};
use datakit_ci::github::{GithubAuth, GithubOptions};
use datakit_ci::local::{LocalCi, LocalCiConfig, LocalRepoSpec, ShellConfig, TestSpec};
use datakit_ci_store::{BranchName, Store, StorePath};
use datakit_ci_term::RepoId;
use datakit_ci_testkit::github::{FakeGithub, FakePr, FakeRepo, fixture};
use datakit_ci_web::{ListenAddr, WebConfig};

use crate::Scale;
use crate::report::{Figure, Report, Target};
use crate::stats::quantile;

const SECRET: &str = "bench secret";

fn sha(n: usize, salt: u8) -> String {
    format!("{salt:02x}{n:038x}")
}

/// Runs the group.
pub(crate) async fn run(scale: Scale, report: &mut Report) -> anyhow::Result<()> {
    let (prs, branches, deliveries, jobs) = match scale {
        Scale::Full => (500, 2_000, 1_000, 500),
        Scale::Quick => (50, 200, 100, 50),
    };
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("state.git"))?;
    let fake = FakeGithub::start();
    fake.set_repo(
        "me/proj",
        FakeRepo {
            clone_url: "https://github.example/me/proj.git".to_owned(),
            branches: (0..branches)
                .map(|n| (format!("b{n:05}"), sha(n, 1)))
                .collect(),
            tags: Default::default(),
            prs: (1..=prs as u64)
                .map(|n| {
                    let pr = FakePr {
                        number: n,
                        head: sha(n as usize, 2),
                        title: format!("PR {n}"),
                        user: "octocat".to_owned(),
                        base: "main".to_owned(),
                    };
                    (n, pr)
                })
                .collect(),
        },
    );
    let repo: RepoId = "me/proj".parse()?;
    let mut config = GithubConfig::new(
        vec![repo.clone()],
        Credentials::Token(Secret::new("ghp_bench")),
    );
    config.api_url = fake.url();
    config.webhook_secret = Some(Secret::new(SECRET));
    let bridge = GithubBridge::new(store.clone(), config)?;

    // Conditional sync.
    let start = Instant::now();
    let first = bridge.sync_once().await?;
    report.add(Figure::millis(
        format!("github sync: first full sync of {prs} PRs + {branches} branches"),
        start.elapsed(),
    ));
    anyhow::ensure!(
        first.changes.len() == prs + branches,
        "{} changes",
        first.changes.len()
    );
    let before = bridge.health().api;
    let start = Instant::now();
    let second = bridge.sync_once().await?;
    let elapsed = start.elapsed();
    let after = bridge.health().api;
    let requests = after.requests - before.requests;
    let not_modified = after.not_modified - before.not_modified;
    anyhow::ensure!(
        second.changes.is_empty(),
        "an unchanged sync changed {:?}",
        second.changes
    );
    report.add(Figure::millis("github sync: unchanged full sync", elapsed));
    report.add(Figure::new(
        "github sync: pages asked",
        requests as f64,
        "requests",
    ));
    report.add(
        Figure::new(
            "github sync: rate-limit cost of an unchanged sync",
            (requests - not_modified) as f64,
            "requests",
        )
        .target(Target::AtMost(0.0)),
    );

    // Webhook burst.
    let template = fixture("webhooks/pull_request.synchronize.1.json");
    let mut bodies = Vec::with_capacity(deliveries);
    for i in 0..deliveries {
        let number = (i % prs) + 1;
        let mut payload = template.clone();
        payload["repository"]["full_name"] = "me/proj".into();
        payload["number"] = number.into();
        payload["pull_request"]["number"] = number.into();
        payload["pull_request"]["head"]["sha"] = sha(i, 3).into();
        let body = serde_json::to_vec(&payload)?;
        let signature = sign(SECRET.as_bytes(), &body);
        bodies.push((format!("delivery-{i}"), signature, body));
    }
    let start = Instant::now();
    for (delivery, signature, body) in &bodies {
        bridge.receive(WebhookRequest {
            event: Some("pull_request"),
            delivery: Some(delivery),
            signature: Some(signature),
            body,
        })?;
    }
    let received = start.elapsed();
    report.add(Figure::new(
        format!("github webhooks: {deliveries} deliveries checked and queued"),
        deliveries as f64 / received.as_secs_f64(),
        "deliveries/s",
    ));
    let start = Instant::now();
    let applied = bridge.apply_queued().await?;
    report.add(Figure::millis(
        format!("github webhooks: {applied} queued events applied"),
        start.elapsed(),
    ));
    let metadata = store.branch(&BranchName::new("github-metadata")?);
    let tree = metadata.head().await?.context("a metadata head")?.tree();
    for number in 1..=prs {
        let last = (0..deliveries)
            .rev()
            .find(|i| i % prs + 1 == number)
            .context("a delivery")?;
        let head = tree
            .read_file(&StorePath::new(format!("me/proj/pr/{number}/head"))?)?
            .map(|b| String::from_utf8_lossy(&b).trim().to_owned());
        anyhow::ensure!(head == Some(sha(last, 3)), "PR {number}: {head:?}");
    }

    // Requests per job state change, as an App.
    let keys = tempfile::tempdir()?;
    let key_path = keys.path().join("app.pem");
    let status = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key_path)
        .arg("2048")
        .stderr(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "openssl genrsa");
    let mut config = GithubConfig::new(
        vec![repo],
        Credentials::App {
            app_id: 1,
            key: Secret::new(std::fs::read_to_string(&key_path)?),
        },
    );
    config.api_url = fake.url();
    let app = GithubBridge::new(store.clone(), config)?;
    let reporter = app.status_reporter();
    for state in ["pending", "success"] {
        let mut transaction = metadata.transaction().await?;
        for n in 0..jobs {
            let dir = format!("me/proj/commit/{}/status/ci/datakit/build", sha(n, 4));
            transaction.create_file(
                &StorePath::new(format!("{dir}/state"))?,
                format!("{state}\n"),
            )?;
            transaction.create_file(&StorePath::new(format!("{dir}/description"))?, "Bench\n")?;
            transaction.create_file(
                &StorePath::new(format!("{dir}/target_url"))?,
                "https://ci.example/\n",
            )?;
        }
        transaction.commit(state).await?;
        let before = app.health().api.requests;
        let start = Instant::now();
        let pass = reporter.report_once().await?;
        let elapsed = start.elapsed();
        let requests = app.health().api.requests - before;
        anyhow::ensure!(pass.sent == jobs, "{pass:?}");
        report.add(Figure::millis(
            format!("github statuses: {jobs} jobs {state}, sent"),
            elapsed,
        ));
        // The first pass also fetches the installation token (two requests).
        let token_requests = if state == "pending" { 2 } else { 0 };
        report.add(
            Figure::new(
                format!("github statuses: requests per job state change ({state})"),
                (requests - token_requests) as f64 / jobs as f64,
                "requests",
            )
            .target(Target::AtMost(2.0)),
        );
    }
    let before = app.health().api.requests;
    reporter.report_once().await?;
    report.add(
        Figure::new(
            "github statuses: requests for unchanged states",
            (app.health().api.requests - before) as f64,
            "requests",
        )
        .target(Target::AtMost(0.0)),
    );
    webhook_to_status(scale, report).await
}

/// A work tree with one commit on `main`.
async fn work_tree(path: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(path)?;
    git(path, &["init", "--quiet", "--initial-branch=main"]).await?;
    commit(path, "First").await
}

/// `git args` in `dir`; its trimmed output.
async fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = tokio::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "Bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .await?;
    anyhow::ensure!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// An empty commit on `main`; its hash.
async fn commit(dir: &Path, message: &str) -> anyhow::Result<String> {
    git(dir, &["commit", "--quiet", "--allow-empty", "-m", message]).await?;
    git(dir, &["rev-parse", "HEAD"]).await
}

/// Waits for the `success` status of `hash` among the engine's announcements.
async fn announced(
    events: &mut tokio::sync::broadcast::Receiver<datakit_ci::engine::StatusChange>,
    hash: &str,
) -> anyhow::Result<()> {
    loop {
        match events.recv().await {
            Ok(change) if change.commit.as_str() == hash && change.state == "success" => {
                return Ok(());
            }
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(error) => anyhow::bail!("the engine stopped: {error}"),
        }
    }
}

/// Waits until the fake holds the `success` status of `hash`.
async fn posted(fake: &FakeGithub, hash: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fake
        .statuses()
        .iter()
        .any(|s| s.sha == hash && s.state == "success")
    {
        anyhow::ensure!(Instant::now() < deadline, "no status for {hash}");
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    Ok(())
}

async fn webhook_to_status(scale: Scale, report: &mut Report) -> anyhow::Result<()> {
    let rounds = match scale {
        Scale::Full => 20,
        Scale::Quick => 10,
    };
    let dir = tempfile::tempdir()?;
    let shell = ShellConfig::new(vec![TestSpec {
        name: "unit".to_owned(),
        command: "true".to_owned(),
    }]);

    // The GitHub side: the fake lists `main` of a local repository, webhooks go to the web UI.
    let hosted = dir.path().join("hosted");
    let first = work_tree(&hosted).await?;
    let fake = FakeGithub::start();
    fake.set_repo(
        "me/proj",
        FakeRepo {
            clone_url: hosted.display().to_string(),
            branches: [("main".to_owned(), first.clone())].into(),
            ..FakeRepo::default()
        },
    );
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "ghp_bench\n")?;
    let secret_file = dir.path().join("webhook-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n"))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen: ListenAddr = format!("http://127.0.0.1:{port}").parse()?;
    let web = WebConfig::new(dir.path().join("secrets"))
        .public_url("https://ci.example/".parse()?)
        .listen(listen);
    let github_ci = LocalCi::start(LocalCiConfig {
        github: Some(GithubOptions {
            repos: vec!["me/proj".parse()?],
            api_url: fake.url(),
            auth: GithubAuth::TokenFile(token_file),
            webhook_secret_file: Some(secret_file),
            sync_interval: Duration::from_secs(600),
        }),
        repos: Vec::new(),
        shell: shell.clone(),
        state_dir: dir.path().join("github-state"),
        web_ui: "https://ci.example/".to_owned(),
        canaries: Vec::new(),
        notify: None,
        max_log_size: datakit_ci::log::DEFAULT_SAVED_LIMIT,
        keep_logs: None,
        web: Some(web),
    })
    .await?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let github_running = tokio::spawn(github_ci.run(cancel.clone()));

    // The local side.
    let local = dir.path().join("local");
    let local_first = work_tree(&local).await?;
    let local_ci = LocalCi::start(LocalCiConfig {
        github: None,
        repos: vec![LocalRepoSpec {
            id: "local/src".parse()?,
            path: local.clone(),
        }],
        shell,
        state_dir: dir.path().join("local-state"),
        web_ui: "https://ci.example/".to_owned(),
        canaries: Vec::new(),
        notify: None,
        max_log_size: datakit_ci::log::DEFAULT_SAVED_LIMIT,
        keep_logs: None,
        web: None,
    })
    .await?;
    let mut events = local_ci.engine().subscribe();
    let local_running = tokio::spawn(local_ci.run(cancel.clone()));
    posted(&fake, &first).await?;
    announced(&mut events, &local_first).await?;

    let client = reqwest::Client::builder().no_proxy().build()?;
    let url = format!("http://127.0.0.1:{port}/webhooks/github");
    let template = fixture("webhooks/push.branch.1.json");
    let (mut github_times, mut local_times) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let hash = commit(&hosted, &format!("Change {round}")).await?;
        let mut push = template.clone();
        push["ref"] = "refs/heads/main".into();
        push["created"] = false.into();
        push["after"] = hash.clone().into();
        push["head_commit"]["id"] = hash.clone().into();
        push["repository"]["full_name"] = "me/proj".into();
        let body = serde_json::to_vec(&push)?;
        let signature = sign(SECRET.as_bytes(), &body);
        let started = Instant::now();
        let answer = client
            .post(&url)
            .header("content-type", "application/json")
            .header("x-github-event", "push")
            .header("x-github-delivery", format!("bench-{round}"))
            .header("x-hub-signature-256", signature)
            .body(body)
            .send()
            .await?;
        anyhow::ensure!(
            answer.status().as_u16() == 202,
            "webhook answered {}",
            answer.status()
        );
        posted(&fake, &hash).await?;
        github_times.push(started.elapsed());

        tokio::time::sleep(Duration::from_millis(100)).await;
        while events.try_recv().is_ok() {}
        let hash = commit(&local, &format!("Change {round}")).await?;
        let started = Instant::now();
        announced(&mut events, &hash).await?;
        local_times.push(started.elapsed());
    }
    cancel.cancel();
    github_running.await??;
    local_running.await??;
    let github_median = quantile(&github_times, 0.5);
    let local_median = quantile(&local_times, 0.5);
    report.add(Figure::millis(
        "github webhook → status POSTed: median",
        github_median,
    ));
    report.add(Figure::millis(
        "github webhook → status POSTed: p99",
        quantile(&github_times, 0.99),
    ));
    report.add(Figure::millis(
        "local bridge commit → status: median",
        local_median,
    ));
    report.add(Figure::millis(
        "local bridge commit → status: p99",
        quantile(&local_times, 0.99),
    ));
    report.add(
        Figure::new(
            "github webhook → status: median minus the local bridge's",
            (github_median.as_secs_f64() - local_median.as_secs_f64()) * 1e3,
            "ms",
        )
        .target(Target::AtMost(20.0)),
    );
    Ok(())
}
