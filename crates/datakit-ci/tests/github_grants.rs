//! Issue 15 item 5: a GitHub user's organisations and repository permissions are asked for again
//! once older than the TTL. The web server (real HTTP) logs in through the program's real
//! `GithubLogin` (`datakit_ci::github::oauth_login`) against the fake GitHub (real HTTP), with a
//! tiny TTL; the tests poll until the state changes, within a generous bound.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use datakit_ci_log::LogManager;
use datakit_ci_store::{BranchName, Store, StorePath};
use datakit_ci_testkit::github::FakeGithub;
use datakit_ci_web::{AppState, GithubGrantTimes, WebConfig, WebServer};
use prometheus_client::registry::Registry;
use reqwest::redirect;
use tokio_util::sync::CancellationToken;

/// A web server whose readers are the members of the GitHub organisation `acme`, with a saved
/// log to read.
struct Site {
    _dir: tempfile::TempDir,
    url: String,
    log_page: String,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), datakit_ci_web::Error>>,
}

impl Site {
    async fn start(fake: &FakeGithub, times: GithubGrantTimes) -> anyhow::Result<Site> {
        let dir = tempfile::tempdir()?;
        let secrets = dir.path().join("secrets");
        std::fs::create_dir_all(&secrets)?;
        std::fs::set_permissions(
            &secrets,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
        std::fs::write(secrets.join("github-oauth-client-id"), "the-client\n")?;
        std::fs::write(secrets.join("github-oauth-client-secret"), "shh\n")?;
        fake.set_oauth("the-client", "shh", "the-code", "octocat");
        let store = Store::open(&dir.path().join("state.git"))?;
        let mut transaction = store
            .branch(&BranchName::new("grants-log")?)
            .transaction()
            .await?;
        transaction.create_file(&StorePath::new("log")?, "a line of the log\n")?;
        let commit = transaction.commit("A log").await?;
        let config = WebConfig::new(&secrets)
            .public_url("http://127.0.0.1/".parse()?)
            .listen("http://127.0.0.1:0".parse()?)
            .can_read("github-org:acme,user:admin".parse()?)
            .github_grants(times);
        let registry = Arc::new(Mutex::new(Registry::default()));
        let state = AppState::builder(config, store, LogManager::new(), registry)
            .github_login(datakit_ci::github::oauth_login(&fake.url()))
            .build()?;
        let server = WebServer::bind(state, None).await?;
        let url = format!("http://{}", server.local_addr());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(server.run(cancel.clone()));
        Ok(Site {
            _dir: dir,
            url,
            log_page: format!("/log/saved/grants-log/{commit}"),
            cancel,
            task,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Logs `client` in with GitHub, as the fake's `octocat`, coming back to the log page.
    async fn log_in(&self, client: &reqwest::Client) -> anyhow::Result<()> {
        let login_page = client
            .get(self.url(&format!("/auth/login?redirect={}", self.log_page)))
            .send()
            .await?
            .text()
            .await?;
        let start = format!(
            "/auth/github?redirect={}",
            self.log_page.replace('/', "%2F")
        );
        anyhow::ensure!(login_page.contains(&start), "{login_page}");
        let answer = client.get(self.url(&start)).send().await?;
        let authorize = location(&answer);
        let state = authorize
            .split("state=")
            .nth(1)
            .and_then(|rest| rest.split('&').next())
            .context("a state in GitHub's authorize URL")?
            .to_owned();
        let answer = client
            .get(self.url(&format!(
                "/auth/github-callback?code=the-code&state={state}"
            )))
            .send()
            .await?;
        anyhow::ensure!(answer.status() == 303, "{}", answer.status());
        anyhow::ensure!(
            location(&answer) == self.log_page,
            "back to the page the login started from: {}",
            location(&answer)
        );
        Ok(())
    }

    /// The status of `GET` the log page.
    async fn read(&self, client: &reqwest::Client) -> anyhow::Result<u16> {
        Ok(client
            .get(self.url(&self.log_page))
            .send()
            .await?
            .status()
            .as_u16())
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .context("the server did not stop")???;
        Ok(())
    }
}

fn location(answer: &reqwest::Response) -> String {
    answer
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .cookie_store(true)
        .redirect(redirect::Policy::none())
        .build()?)
}

/// Reads the page until its status is `wanted`, failing after a generous bound.
async fn until_status(
    site: &Site,
    client: &reqwest::Client,
    wanted: u16,
    what: &str,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = site.read(client).await?;
        if status == wanted {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{what}: still {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const TINY: GithubGrantTimes = GithubGrantTimes {
    ttl: Duration::from_millis(300),
    grace: Duration::from_secs(3600),
};

#[tokio::test]
async fn issue_15_org_membership_is_rechecked_after_the_ttl_and_a_revoked_token_logs_out()
-> anyhow::Result<()> {
    let fake = FakeGithub::start();
    fake.set_oauth_orgs(&["acme"]);
    let site = Site::start(&fake, TINY).await?;
    let user = client()?;
    assert_eq!(site.read(&user).await?, 303, "anonymous: to the login page");
    site.log_in(&user).await?;
    assert_eq!(site.read(&user).await?, 200, "a member of acme reads");

    // Removed from the organisation on GitHub: the page is refused once the TTL is over.
    fake.set_oauth_orgs(&["other"]);
    until_status(&site, &user, 403, "the removed member is refused").await?;
    // Added back: readable again, without logging in again.
    fake.set_oauth_orgs(&["acme"]);
    until_status(&site, &user, 200, "the member added back reads").await?;
    let orgs_asked = fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/user/orgs")
        .collect::<Vec<_>>();
    assert!(orgs_asked.len() >= 3, "{orgs_asked:?}");
    assert!(
        orgs_asked
            .iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer gho_octocat")),
        "asked with the user's token: {orgs_asked:?}"
    );

    // The token revoked: the GitHub login ends, and the page sends to the login page again.
    fake.revoke_oauth_token();
    until_status(&site, &user, 303, "the revoked user is logged out").await?;
    let profile = user.get(site.url("/user/profile")).send().await?;
    assert_eq!(profile.status(), 303, "no longer logged in");
    site.stop().await
}

#[tokio::test]
async fn issue_15_an_unreachable_github_keeps_grants_within_the_grace_time_only()
-> anyhow::Result<()> {
    // GitHub answers 502: the grants are kept, within the grace time.
    let fake = FakeGithub::start();
    fake.set_oauth_orgs(&["acme"]);
    let site = Site::start(&fake, TINY).await?;
    let user = client()?;
    site.log_in(&user).await?;
    fake.fail_oauth_orgs(true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        // Every read is allowed, also the one that found GitHub failing.
        assert_eq!(site.read(&user).await?, 200);
        let failed = fake
            .requests()
            .iter()
            .any(|r| r.path == "/user/orgs" && r.status == 502);
        if failed {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "GitHub was never asked again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(site.read(&user).await?, 200, "kept after the failure");
    site.stop().await?;

    // GitHub gone (connection refused) and no grace time: the grants are dropped.
    let fake = FakeGithub::start();
    fake.set_oauth_orgs(&["acme"]);
    let site = Site::start(
        &fake,
        GithubGrantTimes {
            grace: Duration::ZERO,
            ..TINY
        },
    )
    .await?;
    let user = client()?;
    site.log_in(&user).await?;
    assert_eq!(site.read(&user).await?, 200);
    drop(fake);
    until_status(&site, &user, 403, "grants past the grace time are denied").await?;
    site.stop().await
}
