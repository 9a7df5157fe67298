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
        "first <span class='fg-red'>red</span> &lt;line&gt;</span></div>",
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
    read_until(&mut response, &mut seen, "second</span></div>").await?;
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
        page.contains(
            "first <span class='fg-red'>red</span> &lt;line&gt;</span></div>\
             <div class=\"line\" id=\"L2\"><a class=\"ln\" href=\"#L2\" data-line=\"2\"></a>\
             <span class=\"lt\">second</span></div>"
        ),
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
        let line = format!(
            "id=\"L{}\"><a class=\"ln\" href=\"#L{}\" data-line=\"{}\"></a>\
             <span class=\"lt\">line {i} <span class='fg-green'>&lt;ok&gt;</span></span></div>",
            i + 1,
            i + 1,
            i + 1
        );
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

/// Issue 21 item 3: numbered lines with anchors, `===` sections, the first error line, the
/// header, and the inline script allowed by its hash on log pages only.
#[tokio::test]
async fn issue_21_log_viewer_lines_sections_failure_and_header() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    let (server, store, _logs) = server(&dirs).await?;
    let mut transaction = store
        .branch(&BranchName::new("failed-build")?)
        .transaction()
        .await?;
    transaction.create_file(
        &StorePath::new("log")?,
        &b"=== Build\ncompiling\n=== Test\nrunning 2 tests\nerror: test b failed\ndone"[..],
    )?;
    transaction.create_file(&StorePath::new("failure")?, &b"exit 1"[..])?;
    let commit = transaction.commit("Build finished").await?.to_string();
    let path = format!("/log/saved/failed-build/{commit}");
    let response = client()?
        .get(server.url(&format!("{path}?target=%2Fme%2Fproj%2Fpr%2F3&job=lint")))
        .send()
        .await?;
    let policy = response.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()?
        .to_owned();
    let page = response.text().await?;
    let line = |n: usize, class: &str, text: &str| {
        format!(
            "<div class=\"line{class}\" id=\"L{n}\"><a class=\"ln\" href=\"#L{n}\" \
             data-line=\"{n}\"></a><span class=\"lt\">{text}</span>"
        )
    };
    let lines = [
        "<a class=\"back\" href=\"/me/proj/pr/3\">← Back to the target</a>".to_owned(),
        "<span class=\"log-state log-state-failed\">failed</span>".to_owned(),
        " · job <strong class=\"job\">lint</strong>".to_owned(),
        " · target <a class=\"target\" href=\"/me/proj/pr/3\">me/proj/pr/3</a>".to_owned(),
        " · branch <code class=\"branch\">failed-build</code>".to_owned(),
        format!("href=\"{path}?raw\">Raw</a>"),
        "href=\"#failure\">Jump to failure</a>".to_owned(),
        "<form class=\"log-search\" id=\"log-search\" hidden>".to_owned(),
        "<details class=\"section\" id=\"S1\" open><summary>".to_owned(),
        line(1, "", "=== Build"),
        "</summary><div class=\"section-body\">".to_owned(),
        line(2, "", "compiling"),
        "</div></details><details class=\"section\" id=\"S3\" open><summary>".to_owned(),
        line(3, "", "=== Test"),
        line(4, "", "running 2 tests"),
        line(5, " error-line", "error: test b failed") + "<span id=\"failure\"></span></div>",
        line(6, "", "done"),
        "</div></details><p class=\"failure-link\"><a href=\"#L5\">First error-looking line: 5</a></p>"
            .to_owned(),
    ];
    let mut from = 0;
    for needle in &lines {
        match page[from..].find(needle.as_str()) {
            Some(index) => from += index + needle.len(),
            None => panic!("{needle:?} missing or out of order in:\n{page}"),
        }
    }
    // The page's one script is allowed by its hash, and only on log pages.
    let script = page
        .split_once("<script>")
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .map(|(script, _)| script)
        .expect("an inline script");
    use base64::Engine as _;
    use sha2::Digest as _;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(script));
    assert!(
        policy.starts_with("default-src 'none'; style-src 'self';")
            && policy.ends_with(&format!("; script-src 'sha256-{hash}'; connect-src 'self'")),
        "{policy}"
    );
    let login = client()?.get(server.url("/auth/login")).send().await?;
    let policy = login.headers()[header::CONTENT_SECURITY_POLICY].to_str()?;
    assert!(!policy.contains("script-src"), "{policy}");
    // Without a target, the header leads back to the dashboard; a passed build has no failure.
    let passed = commit_log(&store, "passed-build", b"ok\n").await?;
    let page = client()?
        .get(server.url(&format!(
            "/log/saved/passed-build/{passed}?target=https://evil.example/"
        )))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        page.contains("<a class=\"back\" href=\"/\">← Back to the dashboard</a>"),
        "{page}"
    );
    assert!(page.contains("log-state-passed"), "{page}");
    assert!(!page.contains("Jump to failure"), "{page}");
    assert!(!page.contains("evil"), "{page}");
    server.stop().await
}

/// Issue 21 item 3: a log over 4 MiB shows its tail first, with a link to the lines before;
/// `?lines=A-B` shows a part, `?find=` names the lines holding a text, and a bad range is a
/// clear `400`.
#[tokio::test]
async fn issue_21_huge_saved_logs_show_their_tail_and_parts_on_demand() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    let (server, store, _logs) = server(&dirs).await?;
    let mut contents = Vec::new();
    let mut lines = 0;
    while contents.len() < 6 * 1024 * 1024 {
        lines += 1;
        let text = if lines == 7 {
            "the NEEDLE is here".to_owned()
        } else {
            format!("line {lines:08} of a long log")
        };
        contents.extend_from_slice(format!("{text}\n").as_bytes());
    }
    let commit = commit_log(&store, "huge-build", &contents).await?;
    let path = format!("/log/saved/huge-build/{commit}");
    let get = |query: String| {
        let url = server.url(&format!("{path}{query}"));
        async move { client()?.get(url).send().await.map_err(anyhow::Error::from) }
    };
    let page = get("?job=build".to_owned()).await?.text().await?;
    let last = format!("id=\"L{lines}\"");
    assert!(page.contains(&last), "the tail is missing");
    assert!(!page.contains("id=\"L7\""), "the start is shown");
    let first: u64 = page
        .split_once("<div class=\"line\" id=\"L")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(number, _)| number.parse())
        .transpose()?
        .unwrap_or(0);
    assert!(
        first > 1 && page.len() < 3 * 1024 * 1024,
        "first line {first}"
    );
    let earlier = format!(
        "Lines 1–{} are not shown. <a class=\"btn btn-default btn-sm load-earlier\" href=\"{path}?lines={}-{}&amp;job=build\" rel=\"prev\">",
        first - 1,
        first - 5_000,
        first - 1
    );
    assert!(
        page.contains(&earlier),
        "no link to the earlier lines: {earlier}"
    );
    assert!(!page.contains("<nav class=\"log-part log-later\">"));

    let part = get("?lines=5-8".to_owned()).await?.text().await?;
    let shown: Vec<&str> = part.matches("<div class=\"line\" id=\"L").collect();
    assert_eq!(shown.len(), 4, "{part}");
    assert!(part.contains("id=\"L7\"><a class=\"ln\" href=\"#L7\" data-line=\"7\"></a><span class=\"lt\">the NEEDLE is here"));
    assert!(part.contains(&format!("{path}?lines=1-4\"")));
    assert!(part.contains(&format!("{path}?lines=9-5008\"")));

    let found = get("?find=needle".to_owned()).await?;
    assert_eq!(found.headers()[header::CONTENT_TYPE], "application/json");
    let found: serde_json::Value = serde_json::from_str(&found.text().await?)?;
    assert_eq!(found, serde_json::json!({ "lines": [7], "more": false }));

    let bad = get("?lines=9-2".to_owned()).await?;
    assert_eq!(bad.status(), reqwest::StatusCode::BAD_REQUEST);
    assert!(
        bad.text()
            .await?
            .contains("invalid line range \"9-2\": the end comes before the start")
    );
    server.stop().await
}

/// A failed build's log of 600,000 lines (7.8 MB) whose first error is line 10, far before the
/// tail, and a later error-looking line inside the tail.
fn failing_huge_log() -> Vec<u8> {
    let mut text = Vec::new();
    for n in 1..=600_000_u64 {
        let line = match n {
            10 => "error[E0308]: the first failure\n".to_owned(),
            599_990 => "error: a later failure\n".to_owned(),
            _ => format!("line {n:07}\n"),
        };
        text.extend_from_slice(line.as_bytes());
    }
    text
}

/// Commits `log` as a failed build on `branch`: as the cache saves it now (with its index and
/// tail) if `indexed`, else as older stores have it (the log alone).
async fn commit_failed(
    store: &Store,
    branch: &str,
    log: &[u8],
    indexed: bool,
) -> anyhow::Result<String> {
    let mut transaction = store
        .branch(&BranchName::new(branch)?)
        .transaction()
        .await?;
    if indexed {
        datakit_ci_cache::save_log(&mut transaction, log, true)?;
    } else {
        transaction.create_file(&StorePath::new("log")?, log)?;
    }
    transaction.create_file(&StorePath::new("failure")?, &b"exit 1"[..])?;
    Ok(transaction.commit("Build failed").await?.to_string())
}

#[tokio::test]
async fn issue_21_jump_to_failure_reaches_the_first_error_outside_the_tail() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    let (server, store, _logs) = server(&dirs).await?;
    let log = failing_huge_log();
    let indexed = commit_failed(&store, "indexed-build", &log, true).await?;
    let unindexed = commit_failed(&store, "old-build", &log, false).await?;

    // The index and tail are stored beside the log, which is unchanged.
    let tree = store.commit(indexed.parse()?).await?.tree();
    assert_eq!(tree.read_file(&StorePath::new("log")?)?, Some(log.clone()));
    let index = tree
        .read_file(&StorePath::new("log-index")?)?
        .expect("an index");
    let index = datakit_ci_log::LogIndex::parse(&index)?;
    assert_eq!(index.lines, 600_000);
    assert_eq!(index.first_error, datakit_ci_log::FirstError::Line(10));
    let tail = tree
        .read_file(&StorePath::new("log-tail")?)?
        .expect("a tail");
    assert!(log.ends_with(&tail));

    // Both the indexed log and the older one show their tail first, with the header linking
    // to the part of the log holding line 10 (the older one finds it reading the whole log).
    for (branch, commit) in [("indexed-build", &indexed), ("old-build", &unindexed)] {
        let path = format!("/log/saved/{branch}/{commit}");
        let page = client()?
            .get(server.url(&format!("{path}?job=unit")))
            .send()
            .await?
            .text()
            .await?;
        assert!(
            page.contains(r#"id="L600000""#),
            "{branch}: ends with the last line"
        );
        assert!(
            !page.contains(r#"id="L10""#),
            "{branch}: line 10 is not shown"
        );
        let jump = format!(
            r##"<a class="btn btn-default btn-sm jump-to-failure" href="{path}?lines=1-2010&amp;job=unit#L10">Jump to failure</a>"##
        );
        assert!(page.contains(&jump), "{branch}: {jump} missing");
        // The tail's own error-looking line is not taken for the first failure.
        assert!(
            page.contains(r#"<div class="line" id="L599990">"#),
            "{branch}: a later error is not marked"
        );
        assert!(!page.contains(r#"class="line error-line""#), "{branch}");

        // Following the link shows line 10, marked as the failure.
        let part = client()?
            .get(server.url(&format!("{path}?lines=1-2010&job=unit")))
            .send()
            .await?
            .text()
            .await?;
        assert!(
            part.contains(
                r##"<div class="line error-line" id="L10"><a class="ln" href="#L10" data-line="10"></a><span class="lt">error[E0308]: the first failure</span><span id="failure"></span></div>"##
            ),
            "{branch}: line 10 marked"
        );
        assert!(
            part.contains(r##"href="#failure">Jump to failure</a>"##),
            "{branch}: the failure is on this page"
        );
    }
    server.stop().await
}
