//! Issue 21 item 2 in a real browser (Chromium through chromedriver) on a real engine: a target
//! page and the PR list are open while PR 7's build runs; when the build ends, both show its new
//! state without a reload (a value the test left in the page's `window` is still there), under
//! the pages' Content-Security-Policy.
//!
//! Needs Debian's `chromium` and `chromium-driver`; the test fails if they are missing.

mod common;

use common::Running;
use common::chrome::{ChromeDriver, wait_for_element, wait_for_path};
use common::ci::{A, CiFixture};
use common::wait_for;
use fantoccini::Client;

const G: &str = "7777777777777777777777777777777777777777";
const BRANCH: &str = "step-slow-build-7777777";

async fn log_in(browser: &Client, server: &Running) -> anyhow::Result<()> {
    browser.goto(&server.url("/auth/login")).await?;
    wait_for_element(browser, "#field-user")
        .await?
        .send_keys("reader")
        .await?;
    wait_for_element(browser, "#field-password")
        .await?
        .send_keys("reader-pw")
        .await?;
    wait_for_element(browser, "form.login-form button[type=submit]")
        .await?
        .click()
        .await?;
    wait_for_path(browser, "/").await
}

/// Opens `path` and leaves a mark in its `window`, which a reload would lose.
async fn open_and_mark(browser: &Client, server: &Running, path: &str) -> anyhow::Result<()> {
    browser.goto(&server.url(path)).await?;
    wait_for_path(browser, path).await?;
    browser
        .execute("window.testMark = 'still here'; return null;", vec![])
        .await?;
    Ok(())
}

async fn still_marked(browser: &Client) -> anyhow::Result<bool> {
    let mark = browser
        .execute("return window.testMark || null;", vec![])
        .await?;
    Ok(mark.as_str() == Some("still here"))
}

async fn scenario(
    page: &Client,
    list: &Client,
    server: &Running,
    ci: &CiFixture,
) -> anyhow::Result<()> {
    log_in(page, server).await?;
    log_in(list, server).await?;
    wait_for("the slow build to start", || async {
        ci.logs.get(BRANCH).is_some()
    })
    .await?;
    open_and_mark(page, server, "/me/proj/pr/7").await?;
    wait_for_element(page, "#live tr#job-build span.phase-running").await?;
    open_and_mark(list, server, "/pr").await?;
    wait_for_element(list, "#live span.status[title=\"build : pending\"]").await?;

    // The build ends: both pages change in place.
    ci.steps.open_gate();
    wait_for_element(page, "#live tr#job-build span.phase-passed").await?;
    wait_for_element(list, "#live span.status[title=\"build : success\"]").await?;
    assert!(still_marked(page).await?, "the target page was reloaded");
    assert!(still_marked(list).await?, "the list was reloaded");
    let version = page
        .find(fantoccini::Locator::Id("live"))
        .await?
        .attr("data-live-version")
        .await?;
    assert!(
        version.is_some_and(|v| v.parse::<u32>().is_ok_and(|v| v >= 1)),
        "the region was not swapped by the script"
    );
    Ok(())
}

#[tokio::test]
async fn issue_21_pages_follow_a_build_without_reload_in_chromium() -> anyhow::Result<()> {
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
    let page = driver.browser().await?;
    let list = driver.browser().await?;
    let result = scenario(&page, &list, &server, &ci).await;
    page.close().await?;
    list.close().await?;
    server.stop().await?;
    ci.stop().await?;
    result
}
