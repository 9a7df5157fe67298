//! The GitHub bridge against a fake GitHub (`datakit_ci_testkit::github`) serving the fixtures of
//! `shared/fixtures/github/`: signed webhooks move targets; refused deliveries write nothing;
//! full syncs converge, paginated, and cost only `304`s when nothing changed; App tokens.

use anyhow::Context as _;
use datakit_ci_forge_github::{
    Credentials, GithubBridge, GithubConfig, MAX_PAYLOAD_BYTES, Receipt, Secret, WebhookError,
    WebhookRequest, sign,
};
use datakit_ci_store::{BranchName, Store, StorePath};
use datakit_ci_term::RepoId;
use datakit_ci_testkit::github::{FakeGithub, FakePr, FakeRepo, PrOrigin, fixtures_dir};

const SECRET: &str = "It's a Secret to Everybody";

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    bridge: GithubBridge,
}

fn start(fake: &FakeGithub, repos: &[&str], credentials: Credentials) -> anyhow::Result<Fixture> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("state.git"))?;
    let repos = repos
        .iter()
        .map(|r| r.parse::<RepoId>())
        .collect::<Result<Vec<_>, _>>()?;
    let mut config = GithubConfig::new(repos, credentials);
    config.api_url = fake.url();
    config.webhook_secret = Some(Secret::new(SECRET));
    let bridge = GithubBridge::new(store.clone(), config)?;
    Ok(Fixture {
        _dir: dir,
        store,
        bridge,
    })
}

fn token() -> Credentials {
    Credentials::Token(Secret::new("ghp_test_token"))
}

impl Fixture {
    /// The value of a metadata file, trimmed.
    async fn read(&self, path: &str) -> anyhow::Result<Option<String>> {
        let branch = self.store.branch(&BranchName::new("github-metadata")?);
        let Some(head) = branch.head().await? else {
            return Ok(None);
        };
        Ok(head
            .tree()
            .read_file(&StorePath::new(path)?)?
            .map(|b| String::from_utf8_lossy(&b).trim().to_owned()))
    }

    async fn head(&self) -> anyhow::Result<Option<String>> {
        let branch = self.store.branch(&BranchName::new("github-metadata")?);
        Ok(branch.head().await?.map(|c| c.id().to_string()))
    }

    /// Delivers a fixture payload, signed.
    fn deliver(&self, event: &str, file: &str, delivery: &str) -> anyhow::Result<Receipt> {
        let body = std::fs::read(fixtures_dir().join("webhooks").join(file))
            .with_context(|| format!("fixture {file}"))?;
        let signature = sign(SECRET.as_bytes(), &body);
        Ok(self.bridge.receive(WebhookRequest {
            event: Some(event),
            delivery: Some(delivery),
            signature: Some(&signature),
            body: &body,
        })?)
    }
}

const HELLO: &str = "Codertocat/Hello-World";
const MASTER: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const PR_HEAD: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

#[tokio::test]
async fn signed_webhooks_from_the_fixtures_move_targets() -> anyhow::Result<()> {
    let fake = FakeGithub::start();
    let ci = start(&fake, &[HELLO], token())?;

    assert_eq!(
        ci.deliver("push", "push.branch.1.json", "d1")?,
        Receipt::Queued
    );
    assert_eq!(
        ci.deliver("push", "push.tag.1.json", "d2")?,
        Receipt::Queued
    );
    assert_eq!(
        ci.deliver("pull_request", "pull_request.opened.2.json", "d3")?,
        Receipt::Queued
    );
    assert_eq!(
        ci.read("Codertocat/Hello-World/ref/heads/master/head")
            .await?,
        None,
        "applied in the background"
    );
    assert_eq!(ci.bridge.apply_queued().await?, 3);
    let read = |p: &'static str| ci.read(p);
    assert_eq!(
        read("Codertocat/Hello-World/ref/heads/master/head")
            .await?
            .as_deref(),
        Some(MASTER)
    );
    assert_eq!(
        read("Codertocat/Hello-World/ref/tags/simple-tag/head")
            .await?
            .as_deref(),
        Some(MASTER)
    );
    assert_eq!(
        read("Codertocat/Hello-World/pr/2/head").await?.as_deref(),
        Some(PR_HEAD)
    );
    assert_eq!(
        read("Codertocat/Hello-World/pr/2/state").await?.as_deref(),
        Some("open")
    );
    assert_eq!(
        read("Codertocat/Hello-World/pr/2/title").await?.as_deref(),
        Some("Update the README with new information.")
    );
    assert_eq!(
        read("Codertocat/Hello-World/pr/2/owner").await?.as_deref(),
        Some("Codertocat")
    );
    assert_eq!(
        read("Codertocat/Hello-World/pr/2/base").await?.as_deref(),
        Some("master")
    );

    ci.deliver("pull_request", "pull_request.closed.1.json", "d4")?;
    ci.deliver("push", "push.tag-deleted.1.json", "d5")?;
    ci.bridge.apply_queued().await?;
    assert_eq!(
        read("Codertocat/Hello-World/pr/2/state").await?.as_deref(),
        Some("closed")
    );
    assert_eq!(
        read("Codertocat/Hello-World/ref/tags/simple-tag/head").await?,
        None
    );
    assert_eq!(
        read("Codertocat/Hello-World/ref/heads/master/head")
            .await?
            .as_deref(),
        Some(MASTER)
    );

    // The fixtures were recorded apart: this reopening says 15:20:33, before the closing's
    // 15:21:18, and would be taken for a late delivery. A real reopening comes later.
    ci.deliver_pr("pull_request.reopened.1.json", "d6", |p| {
        p["pull_request"]["updated_at"] = "2019-05-15T15:22:00Z".into();
    })?;
    ci.bridge.apply_queued().await?;
    assert_eq!(
        read("Codertocat/Hello-World/pr/2/state").await?.as_deref(),
        Some("open")
    );

    // A branch deleted (no such fixture: the tag deletion's shape, as the fixtures' README says).
    let mut deletion = datakit_ci_testkit::github::fixture("webhooks/push.tag-deleted.1.json");
    deletion["ref"] = "refs/heads/master".into();
    let body = serde_json::to_vec(&deletion)?;
    let signature = sign(SECRET.as_bytes(), &body);
    ci.bridge.receive(WebhookRequest {
        event: Some("push"),
        delivery: Some("d7"),
        signature: Some(&signature),
        body: &body,
    })?;
    ci.bridge.apply_queued().await?;
    assert_eq!(
        read("Codertocat/Hello-World/ref/heads/master/head").await?,
        None
    );

    // The title and base of an edited PR.
    let mut edited = datakit_ci_testkit::github::fixture("webhooks/pull_request.opened.2.json");
    edited["action"] = "edited".into();
    edited["pull_request"]["title"] = "A better title".into();
    edited["pull_request"]["base"]["ref"] = "develop".into();
    // An edit updates the PR: later than the reopening above.
    edited["pull_request"]["updated_at"] = "2019-05-15T15:23:00Z".into();
    edited["changes"] =
        serde_json::json!({"title": {"from": "Update the README with new information."}});
    let body = serde_json::to_vec(&edited)?;
    let signature = sign(SECRET.as_bytes(), &body);
    ci.bridge.receive(WebhookRequest {
        event: Some("pull_request"),
        delivery: Some("d8"),
        signature: Some(&signature),
        body: &body,
    })?;
    ci.bridge.apply_queued().await?;
    assert_eq!(
        read("Codertocat/Hello-World/pr/2/title").await?.as_deref(),
        Some("A better title")
    );
    assert_eq!(
        read("Codertocat/Hello-World/pr/2/base").await?.as_deref(),
        Some("develop")
    );
    Ok(())
}

#[tokio::test]
async fn pings_and_unmonitored_repositories_are_acknowledged_and_ignored() -> anyhow::Result<()> {
    let fake = FakeGithub::start();
    let ci = start(&fake, &["me/proj"], token())?;
    assert_eq!(
        ci.deliver("ping", "ping.repository.1.json", "p1")?,
        Receipt::Ignored
    );
    assert_eq!(
        ci.deliver("push", "push.branch.1.json", "p2")?,
        Receipt::Ignored
    );
    assert_eq!(ci.bridge.apply_queued().await?, 0);
    assert_eq!(ci.head().await?, None, "nothing written");
    Ok(())
}

#[tokio::test]
async fn refused_and_replayed_deliveries_change_nothing() -> anyhow::Result<()> {
    let fake = FakeGithub::start();
    let ci = start(&fake, &[HELLO], token())?;
    let body = std::fs::read(fixtures_dir().join("webhooks/push.branch.1.json"))?;
    let good = sign(SECRET.as_bytes(), &body);
    let request = |signature: Option<&'static str>, body: &'static [u8]| WebhookRequest {
        event: Some("push"),
        delivery: Some("x"),
        signature,
        body,
    };
    let body: &'static [u8] = Box::leak(body.into_boxed_slice());
    let good: &'static str = Box::leak(good.into_boxed_str());

    let unsigned = ci.bridge.receive(request(None, body));
    assert!(
        matches!(unsigned, Err(WebhookError::MissingSignature)),
        "{unsigned:?}"
    );
    let wrong: &'static str = Box::leak(sign(b"not the secret", body).into_boxed_str());
    let wrongly = ci.bridge.receive(request(Some(wrong), body));
    assert!(
        matches!(wrongly, Err(WebhookError::BadSignature)),
        "{wrongly:?}"
    );
    // Truncated in transit: the signature no longer matches.
    let truncated = &body[..body.len() / 2];
    let cut = ci.bridge.receive(request(Some(good), truncated));
    assert!(matches!(cut, Err(WebhookError::BadSignature)), "{cut:?}");
    // Truncated before signing: the JSON is refused, naming the problem.
    let signed_cut: &'static str = Box::leak(sign(SECRET.as_bytes(), truncated).into_boxed_str());
    let malformed = ci.bridge.receive(request(Some(signed_cut), truncated));
    let Err(error @ WebhookError::Malformed { .. }) = malformed else {
        panic!("expected a malformed payload: {malformed:?}");
    };
    assert!(
        error
            .to_string()
            .starts_with("malformed push payload: EOF while parsing"),
        "{error}"
    );
    let huge: &'static [u8] = Box::leak(vec![b' '; MAX_PAYLOAD_BYTES + 1].into_boxed_slice());
    let huge_signature: &'static str = Box::leak(sign(SECRET.as_bytes(), huge).into_boxed_str());
    let oversized = ci.bridge.receive(request(Some(huge_signature), huge));
    assert!(
        matches!(oversized, Err(WebhookError::TooLarge { .. })),
        "{oversized:?}"
    );
    assert_eq!(ci.bridge.apply_queued().await?, 0);
    assert_eq!(ci.head().await?, None, "nothing written");

    assert_eq!(
        ci.bridge.receive(request(Some(good), body))?,
        Receipt::Queued
    );
    assert_eq!(
        ci.bridge.receive(request(Some(good), body))?,
        Receipt::Replayed
    );
    assert_eq!(
        ci.bridge.apply_queued().await?,
        1,
        "the replay was not queued"
    );
    assert!(ci.head().await?.is_some());
    Ok(())
}

fn repo_with(branches: &[(&str, &str)], tags: &[(&str, &str)], prs: &[(u64, &str)]) -> FakeRepo {
    FakeRepo {
        clone_url: "https://github.example/me/proj.git".to_owned(),
        branches: branches
            .iter()
            .map(|(n, h)| (n.to_string(), h.to_string()))
            .collect(),
        tags: tags
            .iter()
            .map(|(n, h)| (n.to_string(), h.to_string()))
            .collect(),
        prs: prs
            .iter()
            .map(|(n, h)| {
                (
                    *n,
                    FakePr {
                        number: *n,
                        head: h.to_string(),
                        title: format!("PR {n}"),
                        user: "octocat".to_owned(),
                        base: "main".to_owned(),
                    },
                )
            })
            .collect(),
    }
}

const A: &str = "1111111111111111111111111111111111111111";
const B: &str = "2222222222222222222222222222222222222222";
const C: &str = "3333333333333333333333333333333333333333";

#[tokio::test]
async fn a_full_sync_after_missed_webhooks_converges() -> anyhow::Result<()> {
    let fake = FakeGithub::start();
    fake.set_max_per_page(1);
    fake.set_repo(
        "me/proj",
        repo_with(
            &[("main", A), ("feature", B)],
            &[("v1.0", A)],
            &[(1, B), (2, C)],
        ),
    );
    let ci = start(&fake, &["me/proj"], token())?;
    let report = ci.bridge.sync_once().await?;
    assert_eq!(report.changes.len(), 5, "{:?}", report.changes);
    assert_eq!(
        ci.read("me/proj/ref/heads/feature/head").await?.as_deref(),
        Some(B)
    );
    assert_eq!(
        ci.read("me/proj/ref/tags/v1.0/head").await?.as_deref(),
        Some(A)
    );
    assert_eq!(ci.read("me/proj/pr/2/head").await?.as_deref(), Some(C));
    assert_eq!(
        ci.read("me/proj/pr/2/title").await?.as_deref(),
        Some("PR 2")
    );
    assert_eq!(
        ci.read("me/proj/pr/2/owner").await?.as_deref(),
        Some("octocat")
    );
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.path.starts_with("/repos/me/proj/branches") && r.path.contains("page=2")),
        "listings are paginated: {:?}",
        fake.requests()
    );
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer ghp_test_token")),
        "every request carries the token"
    );

    // While the CI was down: `feature` deleted, `main` moved, PR 2 closed, PR 3 opened.
    fake.set_repo(
        "me/proj",
        repo_with(&[("main", C)], &[("v1.0", A)], &[(1, B), (3, A)]),
    );
    let report = ci.bridge.sync_once().await?;
    assert_eq!(report.changes.len(), 4, "{:?}", report.changes);
    assert_eq!(ci.read("me/proj/ref/heads/feature/head").await?, None);
    assert_eq!(
        ci.read("me/proj/ref/heads/main/head").await?.as_deref(),
        Some(C)
    );
    assert_eq!(
        ci.read("me/proj/pr/2/state").await?.as_deref(),
        Some("closed")
    );
    assert_eq!(
        ci.read("me/proj/pr/2/head").await?.as_deref(),
        Some(C),
        "a closed PR keeps its files"
    );
    assert_eq!(
        ci.read("me/proj/pr/3/state").await?.as_deref(),
        Some("open")
    );
    assert_eq!(
        ci.read("me/proj/pr/1/state").await?.as_deref(),
        Some("open")
    );
    Ok(())
}

#[tokio::test]
async fn an_unchanged_repository_is_answered_304_and_writes_nothing() -> anyhow::Result<()> {
    let fake = FakeGithub::start();
    fake.set_max_per_page(2);
    fake.set_repo(
        "me/proj",
        repo_with(
            &[("main", A), ("b", B), ("c", C)],
            &[("v1.0", A)],
            &[(1, B), (2, C), (3, A)],
        ),
    );
    let ci = start(&fake, &["me/proj"], token())?;
    let first = ci.bridge.sync_once().await?;
    assert_eq!(first.unchanged_repos, 0);
    let head = ci.head().await?;
    let before = fake.requests().len();

    let second = ci.bridge.sync_once().await?;
    assert_eq!(second.unchanged_repos, 1);
    assert!(second.changes.is_empty());
    assert_eq!(ci.head().await?, head, "no commit");
    let again = &fake.requests()[before..];
    assert_eq!(
        again.len(),
        5,
        "two pages of PRs, two of branches, one of tags: {again:?}"
    );
    assert!(again.iter().all(|r| r.status == 304), "{again:?}");
    assert_eq!(ci.bridge.health().api.not_modified, 5);

    // One change: that page is 200 again, and the sync sees it.
    fake.edit_repo("me/proj", |repo| {
        repo.branches.insert("main".to_owned(), C.to_owned());
    });
    let third = ci.bridge.sync_once().await?;
    assert_eq!(third.unchanged_repos, 0);
    assert_eq!(
        ci.read("me/proj/ref/heads/main/head").await?.as_deref(),
        Some(C)
    );
    Ok(())
}

/// An RSA key made by `openssl` (PKCS#1, as GitHub hands out App keys) and its public half.
fn rsa_key(dir: &std::path::Path) -> anyhow::Result<(String, String)> {
    let key = dir.join("app.pem");
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let status = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "openssl {args:?}");
        Ok(())
    };
    let key_path = key.to_str().context("a UTF-8 path")?;
    run(&["genrsa", "-traditional", "-out", key_path, "2048"])?;
    let public = dir.join("app.pub");
    run(&[
        "rsa",
        "-in",
        key_path,
        "-pubout",
        "-out",
        public.to_str().context("UTF-8")?,
    ])?;
    Ok((
        std::fs::read_to_string(&key)?,
        std::fs::read_to_string(&public)?,
    ))
}

#[tokio::test]
async fn an_app_uses_installation_tokens_renewed_before_they_expire() -> anyhow::Result<()> {
    let keys = tempfile::tempdir()?;
    let (private, public) = rsa_key(keys.path())?;
    let fake = FakeGithub::start();
    fake.set_repo("me/proj", repo_with(&[("main", A)], &[], &[]));
    let app = Credentials::App {
        app_id: 4242,
        key: Secret::new(private),
    };
    let ci = start(&fake, &["me/proj"], app)?;
    ci.bridge.sync_once().await?;
    assert_eq!(fake.tokens_issued(), 1);
    let requests = fake.requests();
    assert_eq!(requests[0].path, "/repos/me/proj/installation");
    assert_eq!(requests[1].path, "/app/installations/1/access_tokens");
    let jwt = requests[1]
        .authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .context("a JWT")?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "iat", "iss"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        jwt,
        &jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes())?,
        &validation,
    )?
    .claims;
    assert_eq!(claims["iss"], "4242");
    let lifetime =
        claims["exp"].as_u64().context("exp")? - claims["iat"].as_u64().context("iat")?;
    assert!(
        lifetime <= 600,
        "GitHub refuses JWTs over 10 minutes: {lifetime}"
    );
    assert!(
        requests[2..]
            .iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer ghs_installation_token_1")),
        "{requests:?}"
    );

    // Still fresh: the same token.
    ci.bridge.sync_once().await?;
    assert_eq!(fake.tokens_issued(), 1);

    // A token that expires within five minutes is renewed before use.
    let fake2 = FakeGithub::start();
    fake2.set_repo("me/proj", repo_with(&[("main", A)], &[], &[]));
    fake2.set_token_lifetime(240);
    let ci2 = start(
        &fake2,
        &["me/proj"],
        Credentials::App {
            app_id: 4242,
            key: Secret::new(std::fs::read_to_string(keys.path().join("app.pem"))?),
        },
    )?;
    ci2.bridge.sync_once().await?;
    let issued = fake2.tokens_issued();
    ci2.bridge.sync_once().await?;
    assert!(fake2.tokens_issued() > issued, "renewed");
    let last = fake2.requests().last().cloned().context("requests")?;
    assert_eq!(
        last.authorization,
        Some(format!(
            "Bearer ghs_installation_token_{}",
            fake2.tokens_issued()
        ))
    );
    Ok(())
}

#[tokio::test]
async fn create_and_installation_events_sync_from_the_api() -> anyhow::Result<()> {
    let fake = FakeGithub::start();
    fake.set_repo(
        HELLO,
        repo_with(&[("master", MASTER)], &[("simple-tag", MASTER)], &[]),
    );
    let ci = start(&fake, &[HELLO], token())?;
    // A `create` payload has no commit: the repository is listed through the API.
    assert_eq!(
        ci.deliver("create", "create.tag.1.json", "c1")?,
        Receipt::Queued
    );
    ci.bridge.apply_queued().await?;
    assert_eq!(
        ci.read("Codertocat/Hello-World/ref/tags/simple-tag/head")
            .await?
            .as_deref(),
        Some(MASTER)
    );
    assert_eq!(
        ci.read("Codertocat/Hello-World/ref/heads/master/head")
            .await?
            .as_deref(),
        Some(MASTER)
    );
    assert_eq!(
        ci.deliver("delete", "delete.tag.1.json", "c2")?,
        Receipt::Queued
    );
    ci.bridge.apply_queued().await?;
    assert_eq!(
        ci.read("Codertocat/Hello-World/ref/tags/simple-tag/head")
            .await?,
        None
    );

    // An installation event: every repository is synced (the tag is back, as GitHub lists it).
    let body = br#"{"action":"created","installation":{"id":1}}"#;
    let signature = sign(SECRET.as_bytes(), body);
    let receipt = ci.bridge.receive(WebhookRequest {
        event: Some("installation"),
        delivery: Some("c3"),
        signature: Some(&signature),
        body,
    })?;
    assert_eq!(receipt, Receipt::Queued);
    ci.bridge.apply_queued().await?;
    assert_eq!(
        ci.read("Codertocat/Hello-World/ref/tags/simple-tag/head")
            .await?
            .as_deref(),
        Some(MASTER)
    );
    Ok(())
}

#[tokio::test]
async fn rerun_requests_reach_the_hook_for_monitored_repositories_only() -> anyhow::Result<()> {
    let fake = FakeGithub::start();
    let ci = start(&fake, &["github/hello-world", HELLO], token())?;
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = asked.clone();
    ci.bridge.on_rerun(std::sync::Arc::new(move |request| {
        recorded.lock().expect("lock").push(request);
        Box::pin(async {})
    }));
    ci.deliver("check_run", "check_run.rerequested.1.json", "r1")?;
    ci.deliver("check_suite", "check_suite.rerequested.1.json", "r2")?;
    // Its action is "lgtm|26764", not "rebuild"; and electron/electron is not monitored.
    assert_eq!(
        ci.deliver("check_run", "check_run.requested_action.1.json", "r3")?,
        Receipt::Ignored
    );
    ci.bridge.apply_queued().await?;
    let asked = asked.lock().expect("lock").clone();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[0].repo.to_string(), "github/hello-world");
    assert_eq!(asked[0].job.as_deref(), Some("randscape"));
    assert_eq!(asked[1].repo.to_string(), HELLO);
    assert_eq!(asked[1].commit.to_string(), PR_HEAD);
    assert_eq!(asked[1].job, None, "a suite: its failed jobs");
    Ok(())
}

#[tokio::test]
async fn rerun_requests_from_another_installation_are_ignored() -> anyhow::Result<()> {
    let keys = tempfile::tempdir()?;
    let (private, _) = rsa_key(keys.path())?;
    let fake = FakeGithub::start();
    let app = Credentials::App {
        app_id: 4242,
        key: Secret::new(private),
    };
    let ci = start(&fake, &["github/hello-world", HELLO], app)?;
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = asked.clone();
    ci.bridge.on_rerun(std::sync::Arc::new(move |request| {
        recorded.lock().expect("lock").push(request);
        Box::pin(async {})
    }));
    // The fake GitHub says this CI's installation is 1 for every owner.
    let deliver = |event: &str, file: &str, installation: u64, delivery: &str| {
        let mut payload: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixtures_dir().join("webhooks").join(file))?)?;
        payload["installation"]["id"] = installation.into();
        let body = serde_json::to_vec(&payload)?;
        let signature = sign(SECRET.as_bytes(), &body);
        anyhow::Ok(ci.bridge.receive(WebhookRequest {
            event: Some(event),
            delivery: Some(delivery),
            signature: Some(&signature),
            body: &body,
        })?)
    };
    deliver("check_run", "check_run.rerequested.1.json", 2, "i1")?;
    deliver(
        "check_suite",
        "check_suite.rerequested.1.json",
        957_387,
        "i2",
    )?;
    ci.bridge.apply_queued().await?;
    assert_eq!(asked.lock().expect("lock").len(), 0, "not our installation");

    deliver("check_run", "check_run.rerequested.1.json", 1, "i3")?;
    deliver("check_suite", "check_suite.rerequested.1.json", 1, "i4")?;
    ci.bridge.apply_queued().await?;
    let asked = asked.lock().expect("lock").clone();
    let repos: Vec<String> = asked.iter().map(|r| r.repo.to_string()).collect();
    assert_eq!(repos, ["github/hello-world", HELLO]);
    let lookups = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/installation"))
        .count();
    assert_eq!(lookups, 2, "one lookup per owner, then remembered");
    Ok(())
}

impl Fixture {
    /// Delivers a fixture's `pull_request` payload, signed, with `edit` applied to it.
    fn deliver_pr(
        &self,
        file: &str,
        delivery: &str,
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> anyhow::Result<Receipt> {
        let mut payload: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixtures_dir().join("webhooks").join(file))?)?;
        edit(&mut payload);
        let body = serde_json::to_vec(&payload)?;
        let signature = sign(SECRET.as_bytes(), &body);
        Ok(self.bridge.receive(WebhookRequest {
            event: Some("pull_request"),
            delivery: Some(delivery),
            signature: Some(&signature),
            body: &body,
        })?)
    }
}

#[tokio::test]
async fn late_pull_request_deliveries_do_not_move_a_pr_back() -> anyhow::Result<()> {
    let fake = FakeGithub::start();
    let ci = start(&fake, &[HELLO], token())?;
    let pr = |file: &'static str| format!("{HELLO}/pr/2/{file}");
    // `closed` (updated 15:21:18), then the `opened` of 15:20:33 arriving late: still closed.
    ci.deliver("pull_request", "pull_request.closed.1.json", "o1")?;
    ci.bridge.apply_queued().await?;
    assert_eq!(ci.read(&pr("state")).await?.as_deref(), Some("closed"));
    ci.deliver("pull_request", "pull_request.opened.1.json", "o2")?;
    ci.bridge.apply_queued().await?;
    assert_eq!(ci.read(&pr("state")).await?.as_deref(), Some("closed"));

    // A newer push to the PR, then an older one, in one batch: the newer head stays.
    ci.deliver_pr("pull_request.synchronize.1.json", "o3", |p| {
        p["pull_request"]["updated_at"] = "2019-05-15T15:40:00Z".into();
        p["pull_request"]["head"]["sha"] = B.into();
    })?;
    ci.deliver_pr("pull_request.synchronize.1.json", "o4", |p| {
        p["pull_request"]["updated_at"] = "2019-05-15T15:30:00Z".into();
        p["pull_request"]["head"]["sha"] = A.into();
    })?;
    ci.bridge.apply_queued().await?;
    assert_eq!(ci.read(&pr("head")).await?.as_deref(), Some(B));
    assert_eq!(ci.read(&pr("state")).await?.as_deref(), Some("open"));
    // As new as the last: applied.
    ci.deliver_pr("pull_request.synchronize.1.json", "o5", |p| {
        p["pull_request"]["updated_at"] = "2019-05-15T15:40:00Z".into();
        p["pull_request"]["head"]["sha"] = A.into();
    })?;
    ci.bridge.apply_queued().await?;
    assert_eq!(ci.read(&pr("head")).await?.as_deref(), Some(A));
    Ok(())
}

#[tokio::test]
async fn a_delivery_older_than_a_full_sync_does_not_move_a_pr_back() -> anyhow::Result<()> {
    let fake = FakeGithub::start();
    // The API lists PR 2 as updated at 2011-01-26T19:01:12Z (its fixture's time).
    fake.set_repo(HELLO, repo_with(&[("master", MASTER)], &[], &[(2, B)]));
    let ci = start(&fake, &[HELLO], token())?;
    ci.bridge.sync_once().await?;
    let head = format!("{HELLO}/pr/2/head");
    assert_eq!(ci.read(&head).await?.as_deref(), Some(B));
    ci.deliver_pr("pull_request.synchronize.1.json", "s1", |p| {
        p["pull_request"]["updated_at"] = "2011-01-26T19:00:00Z".into();
        p["pull_request"]["head"]["sha"] = A.into();
    })?;
    ci.bridge.apply_queued().await?;
    assert_eq!(
        ci.read(&head).await?.as_deref(),
        Some(B),
        "older than the sync"
    );
    ci.deliver_pr("pull_request.synchronize.1.json", "s2", |p| {
        p["pull_request"]["updated_at"] = "2011-01-26T19:05:00Z".into();
        p["pull_request"]["head"]["sha"] = A.into();
    })?;
    ci.bridge.apply_queued().await?;
    assert_eq!(
        ci.read(&head).await?.as_deref(),
        Some(A),
        "newer than the sync"
    );
    Ok(())
}

#[tokio::test]
async fn requests_wait_while_the_rate_limit_is_exhausted() -> anyhow::Result<()> {
    let fake = FakeGithub::start();
    fake.set_repo("me/proj", repo_with(&[("main", A)], &[], &[]));
    let ci = start(&fake, &["me/proj"], token())?;
    let reset = fake.exhaust_rate_limit(1);
    ci.bridge.repo_info(&"me/proj".parse()?).await?;
    assert_eq!(ci.bridge.health().api.rate_limit_remaining, Some(0));
    ci.bridge.sync_once().await?;
    let requests = fake.requests();
    let after: Vec<_> = requests[1..].iter().map(|r| r.at).collect();
    assert!(!after.is_empty());
    assert!(
        after.iter().all(|at| *at >= reset),
        "no request before the limit reset at {reset:?}: {requests:?}"
    );
    assert_eq!(ci.bridge.health().api.rate_limit_remaining, Some(4999));
    Ok(())
}

/// A change made to a fixture payload.
type PayloadEdit = fn(&mut serde_json::Value);

/// Issue 17 item 3: every PR written from a `pull_request` delivery has a `trust` file saying
/// whether its code runs without a Builder's approval, and why. The fixtures are all the
/// owner's PRs in the repository; the fork and outsider variants are edits of them.
#[tokio::test]
async fn pull_request_deliveries_record_whether_the_pr_is_trusted() -> anyhow::Result<()> {
    let fake = FakeGithub::start();
    let ci = start(&fake, &[HELLO], token())?;
    let trust = format!("{HELLO}/pr/2/trust");
    ci.deliver("pull_request", "pull_request.opened.1.json", "t1")?;
    ci.bridge.apply_queued().await?;
    assert_eq!(
        ci.read(&trust).await?.as_deref(),
        Some("trusted: pull request by Codertocat, the owner (OWNER)")
    );
    // Each variant is newer than the last, so that none is ignored as a late delivery.
    let variants: [(&str, PayloadEdit, &str); 4] = [
        (
            "2019-05-15T16:00:00Z",
            |p| p["pull_request"]["head"]["repo"]["full_name"] = "alice/Hello-World".into(),
            "fork: pull request from a fork (alice/Hello-World)",
        ),
        (
            "2019-05-15T16:01:00Z",
            |p| p["pull_request"]["author_association"] = "FIRST_TIME_CONTRIBUTOR".into(),
            "outsider: pull request by Codertocat, who is not a collaborator (FIRST_TIME_CONTRIBUTOR)",
        ),
        (
            "2019-05-15T16:02:00Z",
            |p| p["pull_request"]["head"]["repo"] = serde_json::Value::Null,
            "fork: pull request from a fork that was deleted",
        ),
        (
            "2019-05-15T16:03:00Z",
            |p| p["pull_request"]["author_association"] = "COLLABORATOR".into(),
            "trusted: pull request by Codertocat, a collaborator (COLLABORATOR)",
        ),
    ];
    for (n, (updated_at, edit, expected)) in variants.into_iter().enumerate() {
        ci.deliver_pr("pull_request.synchronize.1.json", &format!("t2-{n}"), |p| {
            p["pull_request"]["updated_at"] = updated_at.into();
            edit(p);
        })?;
        ci.bridge.apply_queued().await?;
        assert_eq!(ci.read(&trust).await?.as_deref(), Some(expected));
    }
    Ok(())
}

/// The full sync records the same `trust` file from `GET …/pulls` (`head.repo`,
/// `author_association`), and updates it when GitHub says otherwise.
#[tokio::test]
async fn a_full_sync_records_whether_each_pr_is_trusted() -> anyhow::Result<()> {
    let fake = FakeGithub::start();
    fake.set_repo(
        "me/proj",
        repo_with(&[("main", A)], &[], &[(1, B), (2, C), (3, A)]),
    );
    fake.set_pr_origin(
        "me/proj",
        2,
        PrOrigin {
            head_repo: Some("alice/proj".to_owned()),
            author_association: "CONTRIBUTOR".to_owned(),
        },
    );
    fake.set_pr_origin(
        "me/proj",
        3,
        PrOrigin {
            head_repo: Some("me/proj".to_owned()),
            author_association: "NONE".to_owned(),
        },
    );
    let ci = start(&fake, &["me/proj"], token())?;
    ci.bridge.sync_once().await?;
    assert_eq!(
        ci.read("me/proj/pr/1/trust").await?.as_deref(),
        Some("trusted: pull request by octocat, the owner (OWNER)")
    );
    assert_eq!(
        ci.read("me/proj/pr/2/trust").await?.as_deref(),
        Some("fork: pull request from a fork (alice/proj)")
    );
    assert_eq!(
        ci.read("me/proj/pr/3/trust").await?.as_deref(),
        Some("outsider: pull request by octocat, who is not a collaborator (NONE)")
    );
    // The author of PR 3 became a member: the next sync says so.
    fake.set_pr_origin(
        "me/proj",
        3,
        PrOrigin {
            head_repo: Some("me/proj".to_owned()),
            author_association: "MEMBER".to_owned(),
        },
    );
    let report = ci.bridge.sync_once().await?;
    assert_eq!(report.changes.len(), 1, "{:?}", report.changes);
    assert_eq!(
        ci.read("me/proj/pr/3/trust").await?.as_deref(),
        Some("trusted: pull request by octocat, a member (MEMBER)")
    );
    Ok(())
}
