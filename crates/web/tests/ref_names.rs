//! Issue 14, defects 4 and 7, end to end: branches with every kind of name Git accepts (the
//! issue's `feature/ü`, `emoji-🚀`, `a&q`, `x<b>`, `$(id)`, `quo"te`, `weird#hash`, `pct%2Fenc`,
//! and names of 250 bytes, or that escape to three times their length) are made in a real
//! repository with the real `git`, mirrored by the local bridge, tested by a real engine, and
//! each gets its statuses, history, page and API entries, with the name HTML-escaped and the
//! links URL-encoded.

mod common;

use std::path::Path;

use axum::http::header;
use common::Agent;
use common::ci::CiFixture;
use datakit_ci_forge_local::{LocalBridge, LocalRepo};
use datakit_ci_term::{RefName, TargetId};
use datakit_ci_testkit::git;
use datakit_ci_web::urls;
use serde_json::Value;

/// The issue's names, a `head` component, and long ones.
fn names() -> Vec<String> {
    let mut names: Vec<String> = [
        "feature/ü",
        "emoji-🚀",
        "a&q",
        "x<b>",
        "$(id)",
        "quo\"te",
        "weird#hash",
        "pct%2Fenc",
        "x/head",
        "main",
    ]
    .map(str::to_owned)
    .to_vec();
    names.push("l".repeat(250));
    names.push("a-".repeat(125));
    names
}

/// `s` as maud writes it into HTML text and attributes.
fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A repository with one commit and a branch per name (the real `git` checks each name).
fn repository(dir: &Path, names: &[String]) {
    git(dir, &["init", "--quiet", "--initial-branch=main"]);
    git(
        dir,
        &[
            "-c",
            "user.name=T",
            "-c",
            "user.email=t@example.com",
            "commit",
            "--quiet",
            "--allow-empty",
            "-m",
            "First",
        ],
    );
    for name in names {
        let refname = format!("refs/heads/{name}");
        git(dir, &["check-ref-format", &refname]);
        git(dir, &["update-ref", &refname, "HEAD"]);
    }
}

async fn get(agent: &mut Agent, path: &str) -> anyhow::Result<(String, String)> {
    let response = agent.get(path).await?;
    let status = response.status();
    if status != 200 {
        let body = Agent::text(response).await?;
        anyhow::bail!("GET {path}: {status}: {body}");
    }
    let kind = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok((kind, Agent::text(response).await?))
}

#[tokio::test]
async fn issue_14_every_branch_name_gets_statuses_pages_and_api_entries() -> anyhow::Result<()> {
    let source = tempfile::tempdir()?;
    let names = names();
    repository(source.path(), &names);
    let ci = CiFixture::start(&[("me/proj/.monitor", "")]).await?;
    let bridge = LocalBridge::new(
        ci.store.clone(),
        vec![LocalRepo::new("me/proj".parse()?, source.path())?],
    );
    let sync = bridge.sync_once().await?;
    assert_eq!(sync.added, names.len(), "every branch is mirrored");
    assert_eq!(sync.skipped, 0);
    ci.settled(names.len()).await?;
    let head = git(source.path(), &["rev-parse", "HEAD"]).trim().to_owned();

    let mut reader = Agent::new(ci.router());
    reader.log_in("reader", "reader-pw").await?;
    let (_, list) = get(&mut reader, "/branch").await?;
    for name in &names {
        let id = TargetId::Ref("me/proj".parse()?, RefName::branch(name)?);
        let page_url = urls::target(&id);
        assert!(
            !page_url[1..].contains("//") && !page_url.contains(['<', '>', '"', '#', ' ']),
            "{page_url}"
        );
        // The list links to the page.
        assert!(
            list.contains(&format!("href=\"{}\"", html_escape(&page_url))),
            "{name:?}: no link to {page_url} in the branch list"
        );
        // The page: 200, the name escaped, the jobs' results.
        let (kind, page) = get(&mut reader, &page_url).await?;
        assert!(kind.starts_with("text/html"), "{kind}");
        assert!(
            page.contains(&html_escape(name)),
            "{name:?} not shown in {page}"
        );
        if name.contains(['<', '"']) {
            assert!(
                !page.contains(name.as_str()),
                "{name:?} unescaped in its page"
            );
        }
        assert!(
            page.contains("ok-build-"),
            "{name:?}: no build result in {page}"
        );
        // The API entry and history.
        let (kind, api) = get(&mut reader, &urls::api_target(&id)).await?;
        assert_eq!(kind, "application/json");
        let api: Value = serde_json::from_str(&api)?;
        assert_eq!(api["ref"], format!("heads/{name}"));
        assert_eq!(api["url"], page_url);
        assert_eq!(api["head"], head);
        let (_, history) = get(&mut reader, &urls::api_history(&id)).await?;
        let history: Value = serde_json::from_str(&history)?;
        assert_eq!(history["target"], id.to_string());
        let states = history["states"].as_array().expect("states");
        assert!(!states.is_empty(), "{name:?}: no history: {history:#}");
        assert_eq!(states[0]["source_commit"], head);
        // The status of each job is in the metadata.
        let view = ci.engine.target(&id).expect("tracked");
        assert!(
            view.jobs.iter().all(|job| job.output.is_some()),
            "{name:?}: a job without output"
        );
    }
    // Every status branch fits a file name.
    for branch in ci.store.branches().await? {
        assert!(branch.as_str().len() <= 250, "{branch}");
    }
    ci.stop().await
}
