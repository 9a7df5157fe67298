//! The CI pages in a real browser (Chromium through chromedriver) on a real engine: log in as
//! admin, open a PR whose build is running, follow its live log link and watch text written
//! after the page loaded appear; then, once the build finished, press its rebuild button and see
//! it run again.
//!
//! Needs Debian's `chromium` and `chromium-driver`; the test fails if they are missing.

mod common;

use common::Running;
use common::chrome::{ChromeDriver, wait_for_element, wait_for_path, wait_for_text};
use common::ci::{A, CiFixture};
use common::wait_for;
use fantoccini::Client;

const G: &str = "7777777777777777777777777777777777777777";
const BUILD: &str = "slow-build-7777777";
const BRANCH: &str = "step-slow-build-7777777";

async fn scenario(browser: &Client, server: &Running, ci: &CiFixture) -> anyhow::Result<()> {
    // Log in as admin.
    browser.goto(&server.url("/auth/login")).await?;
    wait_for_element(browser, "#field-user")
        .await?
        .send_keys("admin")
        .await?;
    wait_for_element(browser, "#field-password")
        .await?
        .send_keys("admin-pw")
        .await?;
    wait_for_element(browser, "form.login-form button[type=submit]")
        .await?
        .click()
        .await?;
    wait_for_path(browser, "/").await?;
    wait_for_text(browser, ".navbar-right a", "admin").await?;

    // PR 7's build is running: its page links the live log.
    wait_for("the slow build to start", || async {
        ci.logs.get(BRANCH).is_some()
    })
    .await?;
    browser.goto(&server.url("/me/proj/pr/7")).await?;
    wait_for_path(browser, "/me/proj/pr/7").await?;
    // Admins may cancel it from there.
    wait_for_element(
        browser,
        &format!("tr#job-build form.cancel[action=\"/cancel/{BRANCH}\"] button"),
    )
    .await?;
    let live_link = format!("tr#job-build a.log-link[href^=\"/log/live/{BRANCH}?target=\"]");
    wait_for_element(browser, &live_link).await?.click().await?;
    wait_for_path(browser, &format!("/log/live/{BRANCH}")).await?;
    wait_for_text(browser, "div.log-text", "run 1").await?;

    // Text written now streams into the open page.
    let log = ci
        .logs
        .get(BRANCH)
        .ok_or_else(|| anyhow::anyhow!("log gone"))?;
    log.write_str("written by the test after the page loaded\n");
    wait_for_text(
        browser,
        "div.log-text",
        "written by the test after the page loaded",
    )
    .await?;

    // The build finishes; its page offers a rebuild.
    ci.steps.open_gate();
    wait_for_text(browser, "body", "This log is now complete.").await?;
    let rebuild = format!("tr#job-build form[action=\"/log/rebuild/{BRANCH}\"] button");
    wait_for("the rebuild button", || async {
        if browser.goto(&server.url("/me/proj/pr/7")).await.is_err() {
            return false;
        }
        wait_for_path(browser, "/me/proj/pr/7").await.is_ok()
            && browser
                .find(fantoccini::Locator::Css(&rebuild))
                .await
                .is_ok()
    })
    .await?;
    assert_eq!(ci.steps.runs(BUILD), 1);
    wait_for_element(browser, &rebuild).await?.click().await?;
    wait_for("the build to run again", || async {
        ci.steps.runs(BUILD) == 2
    })
    .await?;
    // Back on the PR's page after the rebuild.
    wait_for_path(browser, "/me/proj/pr/7").await?;
    Ok(())
}

#[tokio::test]
async fn live_log_and_rebuild_in_chromium() -> anyhow::Result<()> {
    let ci = CiFixture::start(&[
        ("me/proj/ref/heads/main/head", A),
        ("me/proj/pr/7/head", G),
        ("me/proj/pr/7/state", "open"),
        ("me/proj/pr/7/title", "Slow"),
        ("me/proj/pr/7/owner", "carol"),
    ])
    .await?;
    let server = Running::start_with(ci.state.clone(), Some(ci.pages())).await?;
    let driver = ChromeDriver::start().await?;
    let browser = driver.streaming_browser().await?;
    let result = scenario(&browser, &server, &ci).await;
    browser.close().await?;
    server.stop().await?;
    ci.stop().await?;
    result
}
