//! Log frames over real HTTP: a live log streams before it is finished and ends after `finish()`;
//! a finished log redirects to its saved copy; saved logs stream in pieces; `?raw` gives bytes.

mod common;

use common::{Dirs, Running, client, http_config, state_builder};
use datakit_ci_log::{LiveLogSpec, LogManager};
use datakit_ci_store::{BranchName, Store, StorePath};
use datakit_ci_web::Acl;
use reqwest::header;

async fn server(dirs: &Dirs) -> anyhow::Result<(Running, Store, LogManager)> {
    let store = dirs.store()?;
    let logs = LogManager::new();
    let config = http_config(dirs)?.can_read(Acl::everyone());
    let state = state_builder(store.clone(), logs.clone(), config).build()?;
    Ok((Running::start(state).await?, store, logs))
}

fn spec(branch: &str) -> LiveLogSpec {
    LiveLogSpec {
        branch: branch.to_owned(),
        title: branch.to_owned(),
        pending: "Building".to_owned(),
        cancel: None,
    }
}

/// Reads `response` until the text so far contains `needle`.
async fn read_until(
    response: &mut reqwest::Response,
    seen: &mut Vec<u8>,
    needle: &str,
) -> anyhow::Result<()> {
    while !String::from_utf8_lossy(seen).contains(needle) {
        let chunk = response.chunk().await?;
        let chunk = chunk.ok_or_else(|| {
            anyhow::anyhow!(
                "stream ended before {needle:?}: {}",
                String::from_utf8_lossy(seen)
            )
        })?;
        seen.extend_from_slice(&chunk);
    }
    Ok(())
}

async fn read_to_end(response: &mut reqwest::Response, seen: &mut Vec<u8>) -> anyhow::Result<()> {
    while let Some(chunk) = response.chunk().await? {
        seen.extend_from_slice(&chunk);
    }
    Ok(())
}

async fn commit_log(store: &Store, branch: &str, contents: &[u8]) -> anyhow::Result<String> {
    let mut transaction = store
        .branch(&BranchName::new(branch)?)
        .transaction()
        .await?;
    transaction.create_file(&StorePath::new("log")?, contents)?;
    Ok(transaction.commit("Build finished").await?.to_string())
}

#[tokio::test]
async fn live_log_streams_until_finished_then_redirects_to_the_saved_log() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    let (server, store, logs) = server(&dirs).await?;
    let log = logs.create(spec("log-of-build"))?;
    log.write(b"first \x1b[31mred\x1b[0m <line>\n");

    let browser = client()?;
    let mut response = browser
        .get(server.url("/log/live/log-of-build"))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()?
            .starts_with("text/html")
    );
    let mut seen = Vec::new();
    read_until(
        &mut response,
        &mut seen,
        "first <span class='fg-red'>red</span> &lt;line&gt;\n",
    )
    .await?;
    let so_far = String::from_utf8_lossy(&seen).into_owned();
    assert!(
        so_far.contains("<title>Logging to branch log-of-build</title>"),
        "{so_far}"
    );
    assert!(!so_far.contains("This log is now complete."));

    // More output arrives on the open response, then the end.
    log.write(b"second\n");
    read_until(&mut response, &mut seen, "second\n").await?;
    log.finish();
    read_to_end(&mut response, &mut seen).await?;
    let page = String::from_utf8(seen)?;
    assert!(page.contains("This log is now complete."), "{page}");
    assert!(page.trim_end().ends_with("</html>"), "{page}");

    // Finished and unregistered: without a saved copy there is nothing to show.
    assert_eq!(
        browser
            .get(server.url("/log/live/log-of-build"))
            .send()
            .await?
            .status(),
        404
    );
    let contents = log.contents()?;
    let commit = commit_log(&store, "log-of-build", &contents).await?;
    let response = browser
        .get(server.url("/log/live/log-of-build"))
        .send()
        .await?;
    assert_eq!(response.status(), 307);
    let saved = format!("/log/saved/log-of-build/{commit}");
    assert_eq!(response.headers()[header::LOCATION], saved.as_str());
    let page = browser.get(server.url(&saved)).send().await?.text().await?;
    assert!(page.contains("<title>Log from commit"), "{page}");
    assert!(
        page.contains("first <span class='fg-red'>red</span> &lt;line&gt;\nsecond\n"),
        "{page}"
    );
    let raw = browser
        .get(server.url(&format!("{saved}?raw")))
        .send()
        .await?;
    assert!(
        raw.headers()[header::CONTENT_TYPE]
            .to_str()?
            .starts_with("text/plain")
    );
    assert_eq!(raw.bytes().await?.as_ref(), contents.as_slice());
    // `?raw` survives the redirect.
    let response = browser
        .get(server.url("/log/live/log-of-build?raw"))
        .send()
        .await?;
    assert_eq!(
        response.headers()[header::LOCATION],
        format!("{saved}?raw").as_str()
    );
    server.stop().await
}

#[tokio::test]
async fn raw_live_log_streams_bytes() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    let (server, _store, logs) = server(&dirs).await?;
    let log = logs.create(spec("raw-build"))?;
    log.write(b"\x1b[1mbold\x1b[0m <b>\n");
    let mut response = client()?
        .get(server.url("/log/live/raw-build?raw"))
        .send()
        .await?;
    assert_eq!(
        response.headers()[header::X_CONTENT_TYPE_OPTIONS],
        "nosniff"
    );
    let mut seen = Vec::new();
    read_until(&mut response, &mut seen, "<b>\n").await?;
    assert_eq!(seen, b"\x1b[1mbold\x1b[0m <b>\n");
    log.write(b"\xff end\n");
    log.finish();
    read_to_end(&mut response, &mut seen).await?;
    assert_eq!(seen, b"\x1b[1mbold\x1b[0m <b>\n\xff end\n");
    server.stop().await
}

#[tokio::test]
async fn big_saved_logs_stream_in_pieces() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    let (server, store, _logs) = server(&dirs).await?;
    let mut contents = Vec::new();
    for i in 0..20_000 {
        contents.extend_from_slice(format!("line {i} \x1b[32m<ok>\x1b[0m\n").as_bytes());
    }
    assert!(contents.len() > 300_000);
    let commit = commit_log(&store, "big-build", &contents).await?;
    let mut response = client()?
        .get(server.url(&format!("/log/saved/big-build/{commit}")))
        .send()
        .await?;
    let mut pieces = 0;
    let mut page = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        pieces += 1;
        page.extend_from_slice(&chunk);
    }
    let page = String::from_utf8(page)?;
    assert!(pieces > 1, "sent in one piece");
    for i in [0, 9_999, 19_999] {
        let line = format!("line {i} <span class='fg-green'>&lt;ok&gt;</span>\n");
        assert!(page.contains(&line), "missing {line:?}");
    }
    assert_eq!(page.matches("<span class='fg-green'>").count(), 20_000);
    server.stop().await
}

#[tokio::test]
async fn stopping_the_server_ends_live_streams() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    let (server, _store, logs) = server(&dirs).await?;
    let log = logs.create(spec("endless-build"))?;
    log.write(b"still going\n");
    let mut response = client()?
        .get(server.url("/log/live/endless-build"))
        .send()
        .await?;
    let mut seen = Vec::new();
    read_until(&mut response, &mut seen, "still going").await?;
    server.stop().await?;
    // The stream ends cleanly, without claiming the unfinished log is complete.
    read_to_end(&mut response, &mut seen).await?;
    assert!(!String::from_utf8_lossy(&seen).contains("This log is now complete."));
    assert!(!log.is_finished());
    Ok(())
}
