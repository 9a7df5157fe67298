//! "Log in with GitHub" through the web routes, with a `GithubLogin` that accepts one code: the
//! `state` sent to GitHub is bound to the session, a forged or replayed `state` is refused before
//! GitHub is asked, and a good one logs the user in as `github:<login>` with the ACLs' inputs.

mod common;

use std::sync::{Arc, Mutex};

use common::{Dirs, Running, http_config, state_builder};
use datakit_ci_log::LogManager;
use datakit_ci_web::{
    Acl, GithubIdentity, GithubLogin, GithubToken, OAuthClient, RecheckError, UserAttrs,
};
use futures::future::BoxFuture;
use reqwest::redirect;

#[derive(Default)]
struct Github {
    asked: Mutex<Vec<(String, Vec<String>)>>,
}

impl GithubLogin for Github {
    fn authorize_url(&self, client_id: &str, state: &str, redirect_uri: &str) -> String {
        format!(
            "https://github.example/login/oauth/authorize?state={state}&client_id={client_id}&redirect_uri={redirect_uri}"
        )
    }

    fn complete(
        &self,
        client: OAuthClient,
        code: String,
        _redirect_uri: String,
        repos: Vec<String>,
    ) -> BoxFuture<'static, Result<GithubIdentity, String>> {
        self.asked
            .lock()
            .expect("lock")
            .push((code.clone(), repos.clone()));
        Box::pin(async move {
            if client.secret != "the-secret" {
                return Err("incorrect_client_credentials".to_owned());
            }
            if code != "good-code" {
                return Err("bad_verification_code".to_owned());
            }
            Ok(GithubIdentity {
                login: "octocat".to_owned(),
                attrs: UserAttrs {
                    github_orgs: vec!["acme".to_owned()],
                    can_read_github: repos.into_iter().map(|r| (r, true)).collect(),
                },
                token: GithubToken::new("gho_octocat"),
            })
        })
    }

    fn recheck(
        &self,
        _token: GithubToken,
        _repos: Vec<String>,
    ) -> BoxFuture<'static, Result<UserAttrs, RecheckError>> {
        // The grants are fresh for the whole test (the default TTL): never asked again.
        Box::pin(async { Err(RecheckError::Unreachable("not in this test".to_owned())) })
    }
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .cookie_store(true)
        .redirect(redirect::Policy::none())
        .build()?)
}

/// `GET /auth/github`: the `state` in GitHub's URL.
async fn start_login(client: &reqwest::Client, server: &Running) -> anyhow::Result<String> {
    let answer = client.get(server.url("/auth/github")).send().await?;
    anyhow::ensure!(answer.status().is_redirection(), "{}", answer.status());
    let location = answer
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    anyhow::ensure!(
        location.starts_with("https://github.example/login/oauth/authorize?state="),
        "{location}"
    );
    let state = location
        .split("state=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .unwrap_or_default();
    Ok(state.to_owned())
}

#[tokio::test]
async fn a_github_login_needs_the_state_its_session_was_given() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    common::write_users(&dirs.secrets(), &[("admin", "admin-pw")])?;
    let github = Arc::new(Github::default());
    let config =
        http_config(&dirs)?.can_read("github-org:acme,can-read-github:me/proj".parse::<Acl>()?);
    let state = state_builder(dirs.store()?, LogManager::new(), config)
        .github_login(github.clone())
        .build()?;
    let server = Running::start(state).await?;
    // Without an OAuth App, there is no GitHub login.
    let anonymous = client()?;
    let answer = anonymous.get(server.url("/auth/github")).send().await?;
    assert_eq!(answer.status(), 404);
    let login_page = anonymous
        .get(server.url("/auth/login"))
        .send()
        .await?
        .text()
        .await?;
    assert!(!login_page.contains("Log in with GitHub"));

    // The admin sets the OAuth App's client id and secret.
    let admin = client()?;
    let login_page = admin
        .get(server.url("/auth/login"))
        .send()
        .await?
        .text()
        .await?;
    let csrf = common::csrf_token(&login_page)?;
    let answer = admin
        .post(server.url("/auth/login"))
        .form(&[
            ("user", "admin"),
            ("password", "admin-pw"),
            ("CSRFToken", &csrf),
        ])
        .send()
        .await?;
    assert_eq!(answer.status(), 303);
    let answer = admin
        .post(server.url("/settings/github-auth"))
        .form(&[
            ("client_id", "the-client"),
            ("client_secret", "the-secret"),
            ("CSRFToken", &csrf),
        ])
        .send()
        .await?;
    assert_eq!(answer.status(), 200);
    let page = answer.text().await?;
    assert!(
        page.contains("GitHub login is configured") && !page.contains("the-secret"),
        "{page}"
    );
    let secret_file = dirs
        .secrets()
        .join(datakit_ci_web::OAUTH_CLIENT_SECRET_FILE);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&secret_file)?.permissions());
    assert_eq!(mode & 0o777, 0o600);
    let login_page = anonymous
        .get(server.url("/auth/login"))
        .send()
        .await?
        .text()
        .await?;
    assert!(login_page.contains("Log in with GitHub"));

    // A state from another session (an attacker's link) is refused, and GitHub is not asked.
    let attacker = client()?;
    let forged = start_login(&attacker, &server).await?;
    let victim = client()?;
    start_login(&victim, &server).await?;
    let answer = victim
        .get(server.url(&format!(
            "/auth/github-callback?code=good-code&state={forged}"
        )))
        .send()
        .await?;
    assert_eq!(answer.status(), 403);
    assert!(answer.text().await?.contains("Invalid OAuth state"));
    assert!(github.asked.lock().expect("lock").is_empty());

    // The right state logs in, once.
    let user = client()?;
    let state = start_login(&user, &server).await?;
    let callback = server.url(&format!(
        "/auth/github-callback?code=good-code&state={state}"
    ));
    let answer = user.get(&callback).send().await?;
    assert_eq!(answer.status(), 303, "{}", answer.text().await?);
    let profile = user
        .get(server.url("/user/profile"))
        .send()
        .await?
        .text()
        .await?;
    assert!(profile.contains("github:octocat"), "{profile}");
    assert_eq!(
        github.asked.lock().expect("lock").clone(),
        [("good-code".to_owned(), vec!["me/proj".to_owned()])],
        "the repositories the ACLs name are checked"
    );
    let replayed = user.get(&callback).send().await?;
    assert_eq!(replayed.status(), 403, "a state is used once");

    // A code GitHub refuses logs nobody in.
    let other = client()?;
    let state = start_login(&other, &server).await?;
    let answer = other
        .get(server.url(&format!("/auth/github-callback?code=stolen&state={state}")))
        .send()
        .await?;
    assert_eq!(answer.status(), 403);
    assert!(answer.text().await?.contains("bad_verification_code"));
    server.stop().await
}
