//! The first-run setup and login in a real browser (Chromium driven through chromedriver), then a
//! log with colours and hostile text rendered by the browser.
//!
//! Needs Debian's `chromium` and `chromium-driver`; the test fails if they are missing.

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;
use common::{Dirs, Running, http_config, setup_path, state_builder, wait_for};
use datakit_ci_log::LogManager;
use datakit_ci_store::{BranchName, StorePath};
use datakit_ci_web::Acl;
use fantoccini::{Client, ClientBuilder, Locator};

/// A `chromedriver` on a free loopback port, killed on drop.
struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    async fn start() -> anyhow::Result<ChromeDriver> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "cannot run chromedriver: install it (apt-get install chromium chromium-driver)",
            )?;
        let driver = ChromeDriver { child, port };
        wait_for("chromedriver to accept connections", || async {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await?;
        Ok(driver)
    }

    async fn browser(&self) -> anyhow::Result<Client> {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
            }),
        );
        Ok(ClientBuilder::native()
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await?)
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        if let Err(error) = self.child.kill() {
            eprintln!("cannot kill chromedriver: {error}");
        }
        if let Err(error) = self.child.wait() {
            eprintln!("cannot reap chromedriver: {error}");
        }
    }
}

async fn wait_for_path(browser: &Client, path: &str) -> anyhow::Result<()> {
    wait_for(&format!("the browser to reach {path}"), || async {
        browser
            .current_url()
            .await
            .is_ok_and(|url| url.path() == path)
    })
    .await
}

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
    fill(browser, "#field-password", "browser-pw").await?;
    fill(browser, "#field-password2", "browser-pw").await?;
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
    fill(browser, "#field-password", "browser-pw").await?;
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
        .find(Locator::Css("pre.log span.fg-red"))
        .await?
        .text()
        .await?;
    assert_eq!(red, "red");
    let log = browser.find(Locator::Css("pre.log")).await?.text().await?;
    assert!(log.contains("<script>alert(1)</script>"), "{log}");
    assert!(
        browser
            .find_all(Locator::Css("pre.log script"))
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
