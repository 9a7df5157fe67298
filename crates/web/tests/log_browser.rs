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

/// Saves `log` (with a `failure` file if `failed`) on a new branch; returns the log page's path.
async fn save_log(
    store: &datakit_ci_store::Store,
    branch: &str,
    log: Vec<u8>,
    failed: bool,
) -> anyhow::Result<String> {
    let mut transaction = store
        .branch(&BranchName::new(branch)?)
        .transaction()
        .await?;
    transaction.create_file(&StorePath::new("log")?, log)?;
    if failed {
        transaction.create_file(&StorePath::new("failure")?, "exit 1")?;
    }
    let commit = transaction.commit("Build log").await?;
    Ok(format!("/log/saved/{branch}/{commit}"))
}

async fn failure_and_sections(
    browser: &Client,
    server: &Running,
    path: &str,
) -> anyhow::Result<()> {
    browser.goto(&server.url(path)).await?;
    // "Jump to failure" highlights the first error line and puts it in the address.
    wait_for_element(browser, "a.jump-to-failure")
        .await?
        .click()
        .await?;
    wait_for_element(browser, "#L6.hl.error-line").await?;
    assert_eq!(browser.current_url().await?.fragment(), Some("L6"));
    assert_eq!(highlighted(browser).await?, ["L6"]);

    // A section closes and opens again by clicking its heading; its duration is in the heading.
    let summary = wait_for_element(browser, "details#S1 > summary").await?;
    assert!(summary.text().await?.contains("(took 1m 5s)"));
    summary.click().await?;
    let section = browser.find(Locator::Css("details#S1")).await?;
    wait_for("the section to close", || async {
        section.attr("open").await.is_ok_and(|open| open.is_none())
    })
    .await?;
    assert!(
        !browser
            .find(Locator::Id("L3"))
            .await?
            .is_displayed()
            .await?
    );
    summary.click().await?;
    wait_for("the section to open", || async {
        section.attr("open").await.is_ok_and(|open| open.is_some())
    })
    .await?;
    assert!(
        browser
            .find(Locator::Id("L3"))
            .await?
            .is_displayed()
            .await?
    );

    // Time stamps hide and show again.
    let stamp = browser.find(Locator::Css("#L2 span.ts")).await?;
    assert!(stamp.is_displayed().await?);
    browser
        .find(Locator::Id("toggle-ts"))
        .await?
        .click()
        .await?;
    wait_for("the time stamps to hide", || async {
        stamp.is_displayed().await.is_ok_and(|shown| !shown)
    })
    .await?;
    browser
        .find(Locator::Id("toggle-ts"))
        .await?
        .click()
        .await?;
    wait_for("the time stamps to show", || async {
        stamp.is_displayed().await.is_ok_and(|shown| shown)
    })
    .await?;
    Ok(())
}

async fn big_log(browser: &Client, server: &Running, path: &str) -> anyhow::Result<()> {
    browser.goto(&server.url(path)).await?;
    // The tail is shown first; the start is not in the page.
    wait_for_element(browser, "nav.log-earlier a.load-earlier").await?;
    let last = wait_for_element(browser, "div.log-text .line:last-of-type").await?;
    let last_id = last.attr("id").await?.unwrap_or_default();
    assert!(browser.find(Locator::Id("L3")).await.is_err());
    let first_id = browser
        .find(Locator::Css("div.log-text .line"))
        .await?
        .attr("id")
        .await?
        .unwrap_or_default();
    let first: u64 = first_id.trim_start_matches('L').parse()?;
    assert!(
        first > 1000,
        "the tail starts at {first_id}, last is {last_id}"
    );

    // Earlier lines load in place.
    browser
        .execute("window.testMark = 1; return null;", vec![])
        .await?;
    wait_for_element(browser, "a.load-earlier")
        .await?
        .click()
        .await?;
    wait_for_element(browser, &format!("#L{}", first - 1)).await?;
    let mark = browser
        .execute("return window.testMark || null;", vec![])
        .await?;
    assert_eq!(mark.as_u64(), Some(1), "the page was reloaded");

    // The search finds a line near the start, on the server, and shows it.
    let input = wait_for_element(browser, "form#log-search:not([hidden]) input").await?;
    input.send_keys("needle near the start\n").await?;
    wait_for_element(browser, "#L3.hl").await?;
    let text = browser.find(Locator::Id("L3")).await?.text().await?;
    assert!(text.contains("NEEDLE near the start"), "{text}");
    Ok(())
}

#[tokio::test]
async fn issue_21_failure_sections_stamps_and_a_10_mb_log_in_chromium() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    let store = dirs.store()?;
    let small = "=== Build\n\
                 [2026-12-07 18:12.00] Running make\n\
                 compiling a\n\
                 compiling b\n\
                 warning: unused\n\
                 error[E0308]: mismatched types\n\
                 error: again\n\
                 [2026-12-07 18:13.05] Failed: exit 1\n";
    let failing = save_log(&store, "failing-log", small.as_bytes().to_vec(), true).await?;
    // 10 MB: 180,000 lines of about 59 bytes, a needle at line 3.
    let mut big = Vec::with_capacity(10_500_000);
    for n in 1..=180_000_u32 {
        if n == 3 {
            big.extend_from_slice(b"a NEEDLE near the start of a very big log\n");
        } else {
            big.extend_from_slice(
                format!("line {n:06} of a big log, padded to make ten megabytes.....\n").as_bytes(),
            );
        }
    }
    assert!(big.len() >= 10_000_000);
    let big = save_log(&store, "big-log", big, false).await?;
    let config = http_config(&dirs)?.can_read(Acl::everyone());
    let state = state_builder(store, LogManager::new(), config).build()?;
    let server = Running::start(state).await?;
    let driver = ChromeDriver::start().await?;
    let browser = driver.browser().await?;
    let mut result = failure_and_sections(&browser, &server, &failing).await;
    if result.is_ok() {
        result = big_log(&browser, &server, &big).await;
    }
    browser.close().await?;
    server.stop().await?;
    result
}
