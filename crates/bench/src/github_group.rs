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

use std::time::Instant;

use anyhow::Context as _;
use datakit_ci::forge_github::{
    Credentials, GithubBridge, GithubConfig, Secret, WebhookRequest, sign,
};
use datakit_ci_store::{BranchName, Store, StorePath};
use datakit_ci_term::RepoId;
use datakit_ci_testkit::github::{FakeGithub, FakePr, FakeRepo, fixture};

use crate::Scale;
use crate::report::{Figure, Report, Target};

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
    Ok(())
}
