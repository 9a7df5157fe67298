//! The first-run setup and login in a real browser (Chromium driven through chromedriver), then a
//! log with colours and hostile text rendered by the browser.
//!
//! Needs Debian's `chromium` and `chromium-driver`; the test fails if they are missing.

mod common;

use common::chrome::{ChromeDriver, wait_for_path};
use common::{Dirs, Running, http_config, setup_path, state_builder};
use datakit_ci_log::LogManager;
use datakit_ci_store::{BranchName, StorePath};
use datakit_ci_web::Acl;
use fantoccini::{Client, Locator};

async fn fill(browser: &Client, css: &str, text: &str) -> anyhow::Result<()> {
    browser
        .find(Locator::Css(css))
        .await?
        .send_keys(text)
        .await?;
    Ok(())
}

async fn scenario(browser: &Client, server: &Running, intro: &str) -> anyhow::Result<()> {
    // The intro link logs in as admin and lands on the setup form.
    browser.goto(&server.url(intro)).await?;
    wait_for_path(browser, "/auth/setup").await?;
    fill(browser, "#field-password", "browser-password").await?;
    fill(browser, "#field-password2", "browser-password").await?;
    browser
        .find(Locator::Css("form.auth-setup-form button[type=submit]"))
        .await?
        .click()
        .await?;

    // Setting the password logs out and leads to the login form.
    wait_for_path(browser, "/auth/login").await?;
    let user = browser
        .find(Locator::Css(".navbar-right a"))
        .await?
        .text()
        .await?;
    assert_eq!(user, "not logged in");
    fill(browser, "#field-user", "admin").await?;
    fill(browser, "#field-password", "browser-password").await?;
    browser
        .find(Locator::Css("form.login-form button[type=submit]"))
        .await?
        .click()
        .await?;

    wait_for_path(browser, "/").await?;
    let user = browser
        .find(Locator::Css(".navbar-right a"))
        .await?
        .text()
        .await?;
    assert_eq!(user, "admin");

    // A finished build's log (redirected to its saved copy): colours become spans, hostile text
    // stays text.
    browser.goto(&server.url("/log/live/browser-build")).await?;
    let path = browser.current_url().await?.path().to_owned();
    assert!(path.starts_with("/log/saved/browser-build/"), "{path}");
    let red = browser
        .find(Locator::Css("div.log-text span.fg-red"))
        .await?
        .text()
        .await?;
    assert_eq!(red, "red");
    let log = browser
        .find(Locator::Css("div.log-text"))
        .await?
        .text()
        .await?;
    assert!(log.contains("<script>alert(1)</script>"), "{log}");
    assert!(
        browser
            .find_all(Locator::Css("div.log-text script"))
            .await?
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn first_run_setup_and_login_in_chromium() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    let store = dirs.store()?;
    let mut transaction = store
        .branch(&BranchName::new("browser-build")?)
        .transaction()
        .await?;
    transaction.create_file(
        &StorePath::new("log")?,
        &b"\x1b[31mred\x1b[0m <script>alert(1)</script>\n"[..],
    )?;
    transaction.commit("Build log").await?;
    let config = http_config(&dirs)?.can_read(Acl::username("admin"));
    let state = state_builder(store, LogManager::new(), config).build()?;
    let intro = setup_path(&state)?;
    let server = Running::start(state).await?;
    let driver = ChromeDriver::start().await?;
    let browser = driver.browser().await?;
    let result = scenario(&browser, &server, &intro).await;
    browser.close().await?;
    server.stop().await?;
    result
}
