//! A `chromedriver` for the browser tests, and helpers polling the browser.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};

use super::wait_for;

/// A `chromedriver` on a free loopback port, killed on drop.
pub struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    pub async fn start() -> anyhow::Result<ChromeDriver> {
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

    /// A headless browser whose navigations wait for the page to load.
    pub async fn browser(&self) -> anyhow::Result<Client> {
        self.connect("normal").await
    }

    /// A headless browser whose navigations return at once (`pageLoadStrategy: none`), for pages
    /// that keep streaming: find their elements with [`wait_for_element`].
    pub async fn streaming_browser(&self) -> anyhow::Result<Client> {
        self.connect("none").await
    }

    async fn connect(&self, page_load_strategy: &str) -> anyhow::Result<Client> {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "pageLoadStrategy".to_owned(),
            serde_json::json!(page_load_strategy),
        );
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

/// Waits until the browser is at `path`.
pub async fn wait_for_path(browser: &Client, path: &str) -> anyhow::Result<()> {
    wait_for(&format!("the browser to reach {path}"), || async {
        browser
            .current_url()
            .await
            .is_ok_and(|url| url.path() == path)
    })
    .await
}

/// Waits until an element matches `css`, and returns it.
pub async fn wait_for_element(browser: &Client, css: &str) -> anyhow::Result<Element> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(element) = browser.find(Locator::Css(css)).await {
            return Ok(element);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for an element {css:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Waits until the text of the element matching `css` contains `needle`.
pub async fn wait_for_text(browser: &Client, css: &str, needle: &str) -> anyhow::Result<()> {
    wait_for(&format!("{needle:?} in {css:?}"), || async {
        match browser.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.is_ok_and(|text| text.contains(needle)),
            Err(_) => false,
        }
    })
    .await
}
