//! Issue 21 item 3 in a real browser (Chromium through chromedriver): a line link (`#L10-L12`)
//! highlights its lines after load and after a reload, a link into a collapsed section opens it,
//! and the client-side search finds a line. Proves the inline script runs under the page's
//! Content-Security-Policy.
//!
//! Needs Debian's `chromium` and `chromium-driver`; the test fails if they are missing.

mod common;

use common::chrome::{ChromeDriver, wait_for_element};
use common::{Dirs, Running, http_config, state_builder, wait_for};
use datakit_ci_log::LogManager;
use datakit_ci_store::{BranchName, StorePath};
use datakit_ci_web::Acl;
use fantoccini::{Client, Locator};

/// The ids of the highlighted lines.
async fn highlighted(browser: &Client) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for line in browser.find_all(Locator::Css("div.line.hl")).await? {
        ids.push(line.attr("id").await?.unwrap_or_default());
    }
    Ok(ids)
}

async fn scenario(browser: &Client, server: &Running, path: &str) -> anyhow::Result<()> {
    browser
        .goto(&server.url(&format!("{path}#L10-L12")))
        .await?;
    wait_for_element(browser, "#L10.hl").await?;
    assert_eq!(highlighted(browser).await?, ["L10", "L11", "L12"]);
    // After a reload the link still highlights.
    browser.refresh().await?;
    wait_for_element(browser, "#L10.hl").await?;
    assert_eq!(highlighted(browser).await?, ["L10", "L11", "L12"]);

    // A link into a collapsed section opens it.
    browser
        .execute(
            "document.querySelectorAll('details').forEach(d => d.open = false); \
             location.hash = '#L20'; return null;",
            vec![],
        )
        .await?;
    wait_for_element(browser, "#L20.hl").await?;
    assert_eq!(highlighted(browser).await?, ["L20"]);
    let build = browser
        .find(Locator::Css("details.section:nth-of-type(2)"))
        .await?;
    assert!(
        build.attr("open").await?.is_some(),
        "line 20's section is closed"
    );
    let fetch = browser
        .find(Locator::Css("details.section:nth-of-type(1)"))
        .await?;
    assert!(
        fetch.attr("open").await?.is_none(),
        "another section opened"
    );

    // Search: the form appears with the script, Enter jumps to the first matching line.
    let input = wait_for_element(browser, "form#log-search:not([hidden]) input").await?;
    input.send_keys("needle in the haystack\n").await?;
    let current = wait_for_element(browser, "div.line.match.current").await?;
    assert_eq!(current.attr("id").await?.as_deref(), Some("L25"));
    wait_for("the match count", || async {
        match browser.find(Locator::Id("log-search-count")).await {
            Ok(count) => count.text().await.is_ok_and(|text| text == "1 of 1 lines"),
            Err(_) => false,
        }
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn issue_21_line_links_highlight_and_search_finds_in_chromium() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    let store = dirs.store()?;
    let mut log = String::from("=== Fetch\n");
    for n in 2..=5 {
        log.push_str(&format!("fetch line {n}\n"));
    }
    log.push_str("=== Build\n");
    for n in 7..=30 {
        if n == 25 {
            log.push_str("a NEEDLE in the haystack\n");
        } else {
            log.push_str(&format!("build line {n}\n"));
        }
    }
    let mut transaction = store
        .branch(&BranchName::new("browser-log")?)
        .transaction()
        .await?;
    transaction.create_file(&StorePath::new("log")?, log.into_bytes())?;
    let commit = transaction.commit("Build log").await?;
    let config = http_config(&dirs)?.can_read(Acl::everyone());
    let state = state_builder(store, LogManager::new(), config).build()?;
    let server = Running::start(state).await?;
    let driver = ChromeDriver::start().await?;
    let browser = driver.browser().await?;
    let path = format!("/log/saved/browser-log/{commit}");
    let result = scenario(&browser, &server, &path).await;
    browser.close().await?;
    server.stop().await?;
    result
}
