//! Authentication over real HTTP: the first-run flow (intro link → setup → login), the secrets
//! directory's permissions, and login rate limiting.

mod common;

use std::os::unix::fs::PermissionsExt as _;

use common::{
    Dirs, Running, client, csrf_token, http_config, log_in, setup_path, state_builder, write_users,
};
use datakit_ci_log::LogManager;
use datakit_ci_web::{Acl, LOGIN_BURST, PASSWORD_FILE};
use reqwest::header;

#[tokio::test]
async fn first_run_setup_then_login() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    let config = http_config(&dirs)?.can_read(Acl::username("admin"));
    let state = state_builder(dirs.store()?, LogManager::new(), config).build()?;
    let secrets_mode = std::fs::metadata(dirs.secrets())?.permissions().mode() & 0o777;
    assert_eq!(secrets_mode, 0o700);
    let intro = setup_path(&state)?;
    let server = Running::start(state).await?;
    let browser = client()?;

    // A wrong token is refused.
    let response = browser.get(server.url("/auth/intro/wrong")).send().await?;
    assert_eq!(response.status(), 403);
    assert_eq!(response.text().await?, "Bad token");

    // The login page says the CI is not configured yet.
    let page = browser
        .get(server.url("/auth/login"))
        .send()
        .await?
        .text()
        .await?;
    assert!(page.contains("not yet been configured"), "{page}");

    // The intro link logs in as admin and leads to the setup page.
    let response = browser.get(server.url(&intro)).send().await?;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()[header::LOCATION], "/auth/setup");
    let page = browser
        .get(server.url("/auth/setup"))
        .send()
        .await?
        .text()
        .await?;
    let csrf = csrf_token(&page)?;

    // Mismatched passwords are refused, and never echoed back.
    let response = browser
        .post(server.url("/auth/setup"))
        .form(&[
            ("CSRFToken", csrf.as_str()),
            ("password", "s3cret-one-long"),
            ("password2", "s3cret-two-long"),
        ])
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    let page = response.text().await?;
    assert!(
        page.contains("Values don&#39;t match!") || page.contains("Values don't match!"),
        "{page}"
    );
    assert!(!page.contains("s3cret"));

    // Issue 20: a password shorter than 12 characters is refused, and the form says the rule.
    assert!(page.contains("At least 12 characters."), "{page}");
    let response = browser
        .post(server.url("/auth/setup"))
        .form(&[
            ("CSRFToken", csrf.as_str()),
            ("password", "s3cret"),
            ("password2", "s3cret"),
        ])
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    let page = response.text().await?;
    assert!(page.contains("Must be at least 12 characters"), "{page}");
    assert!(!std::fs::exists(dirs.secrets().join(PASSWORD_FILE))?);

    let response = browser
        .post(server.url("/auth/setup"))
        .form(&[
            ("CSRFToken", csrf.as_str()),
            ("password", "s3cret-s3cret"),
            ("password2", "s3cret-s3cret"),
        ])
        .send()
        .await?;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()[header::LOCATION], "/auth/login");
    let password_file = dirs.secrets().join(PASSWORD_FILE);
    assert_eq!(
        std::fs::metadata(&password_file)?.permissions().mode() & 0o777,
        0o600
    );
    assert!(server.state.setup_url().is_none());

    // Setting up logged us out.
    assert_eq!(browser.get(server.url("/")).send().await?.status(), 303);
    // The intro link is single-use.
    let response = browser.get(server.url(&intro)).send().await?;
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.text().await?,
        "Already initialised - log in as admin"
    );

    // A wrong password is refused; the right one logs in and goes back to the requested page.
    let response = log_in(&browser, &server, "admin", "wrong").await?;
    assert_eq!(response.status(), 400);
    let page = response.text().await?;
    assert!(page.contains("Invalid username/password"), "{page}");
    let response = log_in(&browser, &server, "admin", "s3cret-s3cret").await?;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()[header::LOCATION], "/");
    let home = browser.get(server.url("/")).send().await?;
    assert_eq!(home.status(), 200);
    let home = home.text().await?;
    assert!(
        home.contains("<a href=\"/user/profile\">admin</a>"),
        "{home}"
    );

    // The password file survives a restart.
    server.stop().await?;
    let config = http_config(&dirs)?;
    let state = state_builder(dirs.store()?, LogManager::new(), config).build()?;
    assert!(state.setup_url().is_none());
    Ok(())
}

#[tokio::test]
async fn login_redirects_back_to_the_protected_page() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    write_users(&dirs.secrets(), &[("admin", "pw")])?;
    let state = state_builder(dirs.store()?, LogManager::new(), http_config(&dirs)?).build()?;
    let server = Running::start(state).await?;
    let browser = client()?;
    let response = browser.get(server.url("/settings")).send().await?;
    assert_eq!(response.status(), 303);
    let login = response.headers()[header::LOCATION].to_str()?.to_owned();
    assert_eq!(login, "/auth/login?redirect=%2Fsettings");
    let page = browser.get(server.url(&login)).send().await?.text().await?;
    let csrf = csrf_token(&page)?;
    assert!(
        page.contains("name=\"redirect\" value=\"/settings\""),
        "{page}"
    );
    let response = browser
        .post(server.url("/auth/login"))
        .form(&[
            ("CSRFToken", csrf.as_str()),
            ("user", "admin"),
            ("password", "pw"),
            ("redirect", "/settings"),
        ])
        .send()
        .await?;
    assert_eq!(response.headers()[header::LOCATION], "/settings");
    // A redirect off the site is ignored.
    let response = browser
        .post(server.url("/auth/login"))
        .form(&[
            ("CSRFToken", csrf.as_str()),
            ("user", "admin"),
            ("password", "pw"),
            ("redirect", "//evil.example/"),
        ])
        .send()
        .await?;
    assert_eq!(response.headers()[header::LOCATION], "/");
    server.stop().await
}

#[tokio::test]
async fn login_attempts_are_rate_limited() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    write_users(&dirs.secrets(), &[("admin", "right-password")])?;
    let state = state_builder(dirs.store()?, LogManager::new(), http_config(&dirs)?).build()?;
    let server = Running::start(state).await?;
    let browser = client()?;
    for attempt in 0..LOGIN_BURST {
        let response = log_in(&browser, &server, "admin", "guess").await?;
        assert_eq!(response.status(), 400, "attempt {attempt}");
    }
    // Even the right password is refused now.
    let response = log_in(&browser, &server, "admin", "right-password").await?;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    let page = response.text().await?;
    assert!(page.contains("Too many login attempts"), "{page}");
    assert!(!page.contains("right-password"));
    assert_eq!(browser.get(server.url("/")).send().await?.status(), 303);

    // Another user name has its own allowance.
    let response = log_in(&browser, &server, "someone-else", "x").await?;
    assert_eq!(response.status(), 400);

    let metrics = server.state.registry();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics.lock().expect("not poisoned"))?;
    let rejected = format!(
        "DataKitCI_web_local_login_rejected_total {}",
        LOGIN_BURST + 2
    );
    assert!(text.contains(&rejected), "{text}");
    server.stop().await
}
