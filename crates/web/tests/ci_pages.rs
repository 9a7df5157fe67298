//! The CI pages and the JSON API on a real engine, store and cache, driven in-process: every
//! route × anonymous, reader, builder and admin; dashboard, lists, target pages with history,
//! commit pages, bulk rebuilds, and every new POST refused without a CSRF token.

mod common;

use axum::http::header;
use common::ci::{A, B, C, CiFixture, D, E, F};
use common::{Agent, wait_for};
use datakit_ci_pool::{Holder, MonitoredPool, PoolMetrics};
use prometheus_client::registry::Registry;
use serde_json::Value;

const ROLES: [&str; 4] = ["anonymous", "reader", "builder", "admin"];

/// Six targets: `main` and PR 3 share head A; `heads/feature/x`, `tags/v0.1`, the odd ref
/// `v0.1` and PR 10 have heads of their own.
async fn fixture() -> anyhow::Result<CiFixture> {
    let ci = CiFixture::start(&[
        ("me/proj/ref/heads/main/head", A),
        ("me/proj/ref/heads/feature/x/head", B),
        ("me/proj/ref/tags/v0.1/head", C),
        ("me/proj/ref/v0.1/head", D),
        ("me/proj/pr/3/head", A),
        ("me/proj/pr/3/state", "open"),
        ("me/proj/pr/3/title", "Third <PR>"),
        ("me/proj/pr/3/owner", "alice"),
        ("me/proj/pr/10/head", E),
        ("me/proj/pr/10/state", "open"),
        ("me/proj/pr/10/title", "Tenth PR"),
        ("me/proj/pr/10/owner", "bob"),
    ])
    .await?;
    ci.settled(6).await?;
    Ok(ci)
}

async fn agents(ci: &CiFixture) -> anyhow::Result<Vec<Agent>> {
    let app = ci.router();
    let mut agents = Vec::new();
    for role in ROLES {
        let mut agent = Agent::new(app.clone());
        if role != "anonymous" {
            agent.log_in(role, &format!("{role}-pw")).await?;
        }
        agents.push(agent);
    }
    Ok(agents)
}

async fn page(agent: &mut Agent, path: &str) -> anyhow::Result<String> {
    let response = agent.get(path).await?;
    anyhow::ensure!(
        response.status() == 200,
        "GET {path}: {}",
        response.status()
    );
    Agent::text(response).await
}

async fn json(agent: &mut Agent, path: &str) -> anyhow::Result<Value> {
    let response = agent.get(path).await?;
    anyhow::ensure!(
        response.status() == 200,
        "GET {path}: {}",
        response.status()
    );
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    Ok(serde_json::from_str(&Agent::text(response).await?)?)
}

/// Asserts that `needles` occur in `html` in this order.
fn assert_in_order(html: &str, needles: &[&str]) {
    let mut from = 0;
    for needle in needles {
        match html[from..].find(needle) {
            Some(index) => from += index + needle.len(),
            None => panic!("{needle:?} missing, or out of order in {needles:?}:\n{html}"),
        }
    }
}

#[tokio::test]
async fn ci_routes_by_role() -> anyhow::Result<()> {
    let ci = fixture().await?;
    let mut agents = agents(&ci).await?;
    let ok = [303, 200, 200, 200];
    let missing = [303, 404, 404, 404];
    let api_ok = [401, 200, 200, 200];
    let commit_a = format!("/me/proj/commit/{A}");
    let commit_b = format!("/me/proj/commit/{B}");
    let table: Vec<(&str, [u16; 4])> = vec![
        ("/", ok),
        ("/pr", ok),
        ("/branch", ok),
        ("/tag", ok),
        ("/me/proj/pr/3", ok),
        ("/me/proj/pr/10?test=lint", ok),
        ("/me/proj/ref/heads/main", ok),
        ("/me/proj/ref/heads/feature/x", ok),
        ("/me/proj/ref/tags/v0.1", ok),
        ("/me/proj/ref/v0.1", ok),
        (&commit_a, ok),
        (&commit_b, [303, 303, 303, 303]),
        ("/me/proj/pr/99", missing),
        ("/me/proj/pr/x", missing),
        ("/me/proj/ref/heads/nope", missing),
        ("/me/proj/ref/heads/a%20b", missing),
        ("/me/proj/ref/heads/main?history=nonsense", missing),
        (
            "/me/proj/ref/heads/main?history=0123456789012345678901234567890123456789",
            missing,
        ),
        ("/other/proj/pr/3", missing),
        ("/me/proj/commit/not-a-hash", missing),
        ("/api/v1/projects", api_ok),
        ("/api/v1/targets", api_ok),
        ("/api/v1/targets/me/proj/pr/3", api_ok),
        ("/api/v1/targets/me/proj/ref/tags/v0.1", api_ok),
        ("/api/v1/targets/me/proj/ref/v0.1", api_ok),
        ("/api/v1/history/me/proj/pr/10", api_ok),
        ("/api/v1/history/me/proj/ref/heads/feature/x", api_ok),
        ("/api/v1/targets/me/proj/pr/99", [401, 404, 404, 404]),
        ("/api/v1/history/other/proj/pr/1", [401, 404, 404, 404]),
        ("/rebuild-failed/me/proj/pr/3", [405, 405, 405, 405]),
        // Badges are public only: this web UI's readers are named users.
        ("/badge/me/proj/heads/main.svg", [404, 404, 404, 404]),
        (
            "/badge/me/proj/heads/main.svg?job=build",
            [404, 404, 404, 404],
        ),
        ("/no/such/page", [404, 404, 404, 404]),
    ];
    let mut failures = Vec::new();
    for (path, expected) in &table {
        for (i, agent) in agents.iter_mut().enumerate() {
            let status = agent.get(path).await?.status().as_u16();
            if status != expected[i] {
                failures.push(format!(
                    "GET {path} as {}: {status}, expected {}",
                    ROLES[i], expected[i]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // Anonymous API callers get a JSON error, not the login form.
    let response = agents[0].get("/api/v1/targets").await?;
    let body: Value = serde_json::from_str(&Agent::text(response).await?)?;
    assert_eq!(body["error"], "Login required");
    let response = agents[1].get("/api/v1/targets/me/proj/pr/99").await?;
    let body: Value = serde_json::from_str(&Agent::text(response).await?)?;
    assert_eq!(body["error"], "No target me/proj/prs/99");
    // A missing target is a page with the chrome.
    let response = agents[1].get("/me/proj/pr/99").await?;
    let text = Agent::text(response).await?;
    assert!(text.contains("No target me/proj/prs/99"), "{text}");
    assert!(text.contains("navbar"), "{text}");
    ci.stop().await
}

#[tokio::test]
async fn new_posts_need_the_builder_role_and_a_csrf_token() -> anyhow::Result<()> {
    let ci = fixture().await?;
    let mut agents = agents(&ci).await?;
    let commit = format!("/rebuild-failed/me/proj/commit/{D}");
    let posts = [
        "/rebuild-failed/me/proj/pr/10",
        "/rebuild-failed/me/proj/ref/v0.1",
        commit.as_str(),
    ];
    for (i, agent) in agents.iter_mut().enumerate() {
        for path in posts {
            let response = agent.send("POST", path, Some(&[])).await?;
            assert_eq!(
                response.status(),
                403,
                "POST {path} without token as {}",
                ROLES[i]
            );
            assert_eq!(Agent::text(response).await?, "Missing CSRFToken");
            let response = agent
                .send("POST", path, Some(&[("CSRFToken", "forged")]))
                .await?;
            assert_eq!(response.status(), 403, "POST {path} forged as {}", ROLES[i]);
        }
    }
    for key in ["fail-lint-eeeeeee", "fail-lint-ddddddd"] {
        assert_eq!(ci.steps.runs(key), 1, "{key} was not rebuilt");
    }
    for path in posts {
        for (i, expected) in [303, 403].into_iter().enumerate() {
            let agent = &mut agents[i];
            let csrf = agent.csrf().await?;
            let response = agent
                .send("POST", path, Some(&[("CSRFToken", &csrf)]))
                .await?;
            assert_eq!(response.status(), expected, "POST {path} as {}", ROLES[i]);
        }
    }
    assert_eq!(
        ci.steps.runs("fail-lint-eeeeeee"),
        1,
        "not rebuilt by readers"
    );
    ci.stop().await
}

#[tokio::test]
async fn dashboard_and_lists() -> anyhow::Result<()> {
    let ci = fixture().await?;
    let mut metrics = Registry::default();
    let pool = MonitoredPool::new("docker", 1, &PoolMetrics::new(&mut metrics), &ci.pools)?;
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let holder = tokio::spawn({
        let pool = pool.clone();
        async move {
            let holder = Holder {
                job: "me/proj/prs/3:build".to_owned(),
                label: "docker build".to_owned(),
                log_branch: None,
            };
            pool.use_(holder, None, released).await
        }
    });
    wait_for("the pool to be held", || async { pool.active() == 1 }).await?;
    let mut reader = agents(&ci).await?.swap_remove(1);

    let home = page(&mut reader, "/").await?;
    assert!(home.contains("<title>CI: me/proj</title>"), "{home}");
    assert_in_order(
        &home,
        &[
            "<h2>me/proj</h2>",
            "dashboard text-center dashboard-failure",
            "href=\"/me/proj/ref/heads/main\">main</a>",
            "Failing",
            "title=\"build : success\"",
            "build: ok-build-aaaaaaa done",
            "title=\"lint : failure\"",
            "lint: fail-lint-aaaaaaa failed",
            "2 PRs",
            "3 branches",
            "1 tags",
            "<h2>State store</h2>",
            "state.git</code>: ",
            " on disk",
            "git clone --mirror",
            "<h2>Resource pools</h2>",
            "<th>docker</th>",
            "1 / 1 [0 queued]",
            "me/proj/prs/3:build: docker build",
        ],
    );
    release
        .send(())
        .map_err(|()| anyhow::anyhow!("holder gone"))?;
    holder.await??;

    let prs = page(&mut reader, "/pr").await?;
    assert_in_order(
        &prs,
        &[
            "<li class=\"active\"><a href=\"/pr\">PRs</a>",
            "PR status for me/proj",
            "href=\"/me/proj/pr/10\">10</a>",
            "Tenth PR",
            "href=\"/me/proj/pr/3\">3</a>",
            "Third &lt;PR&gt;",
            &format!("href=\"/me/proj/commit/{A}\"><code>aaaaaaaa</code>"),
            "fail-lint-aaaaaaa failed (lint); fail-test-aaaaaaa failed (test)",
        ],
    );
    let branches = page(&mut reader, "/branch").await?;
    assert_in_order(
        &branches,
        &[
            "Branches for me/proj",
            ">heads/feature/x</a>",
            ">heads/main</a>",
            ">v0.1</a>",
        ],
    );
    assert!(!branches.contains("tags/v0.1"), "{branches}");
    let tags = page(&mut reader, "/tag").await?;
    assert!(
        tags.contains("href=\"/me/proj/ref/tags/v0.1\">tags/v0.1</a>"),
        "{tags}"
    );
    assert!(!tags.contains("heads/main"), "{tags}");
    ci.stop().await
}

#[tokio::test]
async fn target_pages_show_jobs_logs_buttons_and_history() -> anyhow::Result<()> {
    let ci = fixture().await?;
    // A second state of heads/feature/x.
    ci.edit(&[("me/proj/ref/heads/feature/x/head", F)]).await?;
    wait_for("feature/x to move", || async {
        ci.engine
            .targets()
            .iter()
            .any(|t| t.target.head().as_str() == F)
    })
    .await?;
    ci.settled(6).await?;
    let mut agents = agents(&ci).await?;

    let path = "/me/proj/ref/heads/feature/x";
    let builder_page = page(&mut agents[2], &format!("{path}?test=lint")).await?;
    assert_in_order(
        &builder_page,
        &[
            "<title>Ref heads/feature/x</title>",
            "<li class=\"active\"><a href=\"/branch\">Branches</a>",
            "<h1>Ref heads/feature/x</h1>",
            "Showing the live state.",
            "href=\"/api/v1/history/me/proj/ref/heads/feature/x\">JSON</a>",
            &format!("href=\"/me/proj/commit/{F}\"><code>ffffffff</code>"),
            "<th>build<br><a class=\"trend-link\" href=\"?test=build#trend\">trend</a></th>",
            "<span class=\"phase phase-passed\" title=\"passed\" role=\"img\" aria-label=\"passed\">✔</span>",
            "Success",
            "<span class=\"times\">finished <time datetime=\"",
            " UTC\">just now</time>",
            "href=\"/log/saved/step-ok-build-fffffff/",
            "Step ok-build-fffffff",
            "<tr id=\"job-lint\" class=\"job selected-job\"",
            "<th>lint<br>",
            "phase-failed",
            "Failure",
            "action=\"/log/rebuild/step-fail-lint-fffffff\"",
            "name=\"redirect\" value=\"/me/proj/ref/heads/feature/x\"",
            "fail-lint-ffffff",
            "<th>test<br>",
            "action=\"/rebuild-failed/me/proj/ref/heads/feature/x\"",
            "Rebuild failed jobs (2)",
            // `?test=lint` is the job's page: its trend.
            "<section class=\"trend\" id=\"trend\"><h2>Last runs of lint</h2>",
            "<svg class=\"trend\" xmlns=\"http://www.w3.org/2000/svg\"",
            "<rect class=\"run run-failed\"",
            "<h2 id=\"history\">History</h2>",
            "<tr class=\"recorded\"><td class=\"when\"><time datetime=",
            &format!("href=\"/me/proj/commit/{F}\"><code>ffffffff</code>"),
            "?history=",
            &format!("href=\"/me/proj/commit/{B}\"><code>bbbbbbbb</code>"),
            "?history=",
        ],
    );
    // Each job says when it finished; a build whose pending state was recorded, how long it took.
    assert_eq!(
        builder_page
            .matches("<span class=\"times\">finished ")
            .count(),
        3
    );
    assert!(
        builder_page.contains(", took <span class=\"duration\">"),
        "{builder_page}"
    );
    // The history is paginated: older states from any recorded one, a bad id is a 400.
    let (_, history_table) = builder_page
        .split_once("<h2 id=\"history\">")
        .expect("a history table");
    let states_from = history_table
        .split("?history=")
        .nth(2)
        .and_then(|rest| rest.split('"').next())
        .expect("a second recorded state")
        .to_owned();
    let older = page(&mut agents[1], &format!("{path}?states_from={states_from}")).await?;
    assert_in_order(
        &older,
        &[
            "Showing the live state.",
            "<h2 id=\"history\">History</h2>",
            &format!("?history={states_from}"),
            "<a class=\"btn btn-sm\" rel=\"first\" href=\"?#history\">Newest states</a>",
        ],
    );
    let response = agents[1].get(&format!("{path}?states_from=zzz")).await?;
    assert_eq!(response.status(), 400);
    assert_eq!(
        Agent::text(response).await?,
        "invalid states_from \"zzz\": expected a recorded state's commit id"
    );
    // Both heads' states (and maybe a pending one in between).
    assert!(
        builder_page.matches("?history=").count() >= 2,
        "{builder_page}"
    );
    assert_eq!(builder_page.matches("selected-job").count(), 1);
    // Readers get no buttons.
    let reader_page = page(&mut agents[1], path).await?;
    assert!(!reader_page.contains("/log/rebuild/"), "{reader_page}");
    assert!(!reader_page.contains("/rebuild-failed/"), "{reader_page}");
    assert!(!reader_page.contains("CSRFToken"), "{reader_page}");

    // The older state, from the JSON history.
    let history = json(
        &mut agents[1],
        "/api/v1/history/me/proj/ref/heads/feature/x",
    )
    .await?;
    let states = history["states"].as_array().expect("states");
    assert!(states.len() >= 2, "{history:#}");
    assert_eq!(states[0]["source_commit"], F);
    assert!(
        states[0]["recorded_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.len() == 20),
        "{history:#}"
    );
    assert!(
        states[0]["subject"]
            .as_str()
            .is_some_and(|s| s.contains(" -> ")),
        "{history:#}"
    );
    assert_eq!(states[0]["parents"][0], states[1]["commit"]);
    let last_of_b = states
        .iter()
        .find(|s| s["source_commit"] == B)
        .expect("a state of head B");
    assert_eq!(last_of_b["state"], "failure");
    assert_eq!(
        last_of_b["jobs"][1]["description"],
        "fail-lint-bbbbbbb failed"
    );
    let old = last_of_b["url"].as_str().expect("url").to_owned();
    let old_page = page(&mut agents[2], &old).await?;
    assert_in_order(
        &old_page,
        &[
            "Showing the recorded state ",
            &format!("href=\"/me/proj/commit/{B}\"><code>bbbbbbbb</code>"),
            "(archived)",
            "href=\"/log/saved/step-fail-lint-bbbbbbb/",
        ],
    );
    assert!(old_page.contains("class=\"state current\""), "{old_page}");
    // The same recorded state is not another target's.
    let recorded = last_of_b["commit"].as_str().expect("commit");
    let response = agents[1]
        .get(&format!("/me/proj/ref/heads/main?history={recorded}"))
        .await?;
    assert_eq!(response.status().as_u16(), 404);
    let body = Agent::text(response).await?;
    assert!(
        body.contains(&format!(
            "No recorded state {recorded} of me/proj/heads/main"
        )),
        "{body}"
    );
    assert!(!old_page.contains("/rebuild-failed/"), "{old_page}");

    // Refs of every shape, and the PR title.
    let odd = page(&mut agents[1], "/me/proj/ref/v0.1").await?;
    assert!(odd.contains("<h1>Ref v0.1</h1>"), "{odd}");
    let tag = page(&mut agents[1], "/me/proj/ref/tags/v0.1").await?;
    assert!(
        tag.contains("<li class=\"active\"><a href=\"/tag\">Tags</a>"),
        "{tag}"
    );
    let pr = page(&mut agents[1], "/me/proj/pr/3").await?;
    assert!(pr.contains("<h1>PR 3 (Third &lt;PR&gt;)</h1>"), "{pr}");
    ci.stop().await
}

#[tokio::test]
async fn commit_pages_redirect_to_the_only_target_or_list_them() -> anyhow::Result<()> {
    let ci = fixture().await?;
    let mut reader = agents(&ci).await?.swap_remove(1);
    let response = reader
        .get(&format!("/me/proj/commit/{B}?test=lint"))
        .await?;
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()[header::LOCATION],
        "/me/proj/ref/heads/feature/x?test=lint#job-lint"
    );
    let both = page(&mut reader, &format!("/me/proj/commit/{A}?test=build")).await?;
    assert_in_order(
        &both,
        &[
            &format!("<h1>Commit {A}</h1>"),
            "Current builds:",
            "href=\"/me/proj/ref/heads/main?test=build#job-build\">me/proj/heads/main</a>",
            "href=\"/me/proj/pr/3?test=build#job-build\">me/proj/prs/3</a>",
            "Archived builds:",
            "<li>(none)</li>",
        ],
    );

    // Once feature/x moves on, B's build is archived.
    ci.edit(&[("me/proj/ref/heads/feature/x/head", F)]).await?;
    ci.settled(6).await?;
    wait_for("B to have no live target", || async {
        ci.engine
            .targets_of_commit(
                &"me/proj".parse().expect("valid"),
                &B.parse().expect("valid"),
            )
            .is_empty()
    })
    .await?;
    let archived = page(&mut reader, &format!("/me/proj/commit/{B}")).await?;
    assert_in_order(
        &archived,
        &[
            "Current builds:",
            "<li>(none)</li>",
            "Archived builds:",
            "href=\"/me/proj/ref/heads/feature/x?history=",
            ">me/proj/heads/feature/x</a>",
        ],
    );
    ci.stop().await
}

#[tokio::test]
async fn json_api() -> anyhow::Result<()> {
    let ci = fixture().await?;
    let mut reader = agents(&ci).await?.swap_remove(1);
    let projects = json(&mut reader, "/api/v1/projects").await?;
    assert_eq!(
        projects,
        serde_json::json!({"projects": [{
            "id": "me/proj",
            "dashboards": ["me/proj/heads/main", "me/proj/heads/master"],
        }]})
    );

    let targets = json(&mut reader, "/api/v1/targets").await?;
    let summary: Vec<(String, String, String)> = targets["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap_or_default().to_owned(),
                t["kind"].as_str().unwrap_or_default().to_owned(),
                t["head"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("me/proj/heads/feature/x", "branch", B),
        ("me/proj/heads/main", "branch", A),
        ("me/proj/tags/v0.1", "tag", C),
        ("me/proj/v0.1", "branch", D),
        ("me/proj/prs/3", "pr", A),
        ("me/proj/prs/10", "pr", E),
    ]
    .map(|(id, kind, head)| (id.to_owned(), kind.to_owned(), head.to_owned()));
    assert_eq!(summary, expected);
    let main = &targets["targets"][1];
    assert_eq!(main["ref"], "heads/main");
    assert_eq!(main["state"], "failure");
    assert_eq!(main["url"], "/me/proj/ref/heads/main");
    assert_eq!(main["api_url"], "/api/v1/targets/me/proj/ref/heads/main");
    assert_eq!(
        main["jobs"][0],
        serde_json::json!({"name": "build", "state": "success", "description": "ok-build-aaaaaaa done"})
    );

    let pr = json(&mut reader, "/api/v1/targets/me/proj/pr/3").await?;
    assert_eq!(pr["number"], 3);
    assert_eq!(pr["title"], "Third <PR>");
    assert_eq!(pr["tracked"], true);
    assert_eq!(pr["history_url"], "/api/v1/history/me/proj/pr/3");
    let lint = &pr["jobs"][1];
    assert_eq!(lint["name"], "lint");
    assert_eq!(lint["state"], "failure");
    let log = &lint["logs"][0];
    let commit = log["commit"].as_str().expect("saved log commit");
    assert_eq!(log["kind"], "saved");
    assert_eq!(log["branch"], "step-fail-lint-aaaaaaa");
    assert_eq!(
        log["url"].as_str(),
        Some(format!("/log/saved/step-fail-lint-aaaaaaa/{commit}").as_str())
    );
    assert_eq!(log["failed"], true);
    // Issue 14, defect 9: the flags say what this caller may do; a reader may not rebuild.
    assert_eq!(log["rebuild"], "rebuildable");
    assert_eq!(log["can_rebuild"], false);
    assert_eq!(log["can_cancel"], false);
    assert_eq!(log.get("rebuild_url"), None);
    let mut builder = agents(&ci).await?.swap_remove(2);
    let as_builder = json(&mut builder, "/api/v1/targets/me/proj/pr/3").await?;
    let builder_log = &as_builder["jobs"][1]["logs"][0];
    assert_eq!(builder_log["can_rebuild"], true);
    assert_eq!(
        builder_log["rebuild_url"],
        "/log/rebuild/step-fail-lint-aaaaaaa"
    );
    let mut anonymous = agents(&ci).await?.swap_remove(0);
    let response = anonymous.get("/api/v1/targets/me/proj/pr/3").await?;
    assert_eq!(response.status(), 401, "anonymous readers must log in here");
    // The log URL works.
    let raw = reader
        .get(log["raw_url"].as_str().expect("raw url"))
        .await?;
    let raw = Agent::text(raw).await?;
    assert!(raw.contains("\nrun 1\n"), "{raw}");

    let history = json(&mut reader, "/api/v1/history/me/proj/ref/tags/v0.1").await?;
    assert_eq!(history["target"], "me/proj/tags/v0.1");
    let states = history["states"].as_array().expect("states");
    assert!(!states.is_empty(), "{history:#}");
    assert_eq!(states[0]["source_commit"], C);
    ci.stop().await
}

#[tokio::test]
async fn bulk_rebuild_reruns_only_failed_jobs() -> anyhow::Result<()> {
    let ci = fixture().await?;
    let mut builder = agents(&ci).await?.swap_remove(2);
    let csrf = builder.csrf().await?;
    let response = builder
        .send(
            "POST",
            "/rebuild-failed/me/proj/ref/tags/v0.1",
            Some(&[("CSRFToken", &csrf)]),
        )
        .await?;
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()[header::LOCATION],
        "/me/proj/ref/tags/v0.1"
    );
    wait_for("the failed jobs of tags/v0.1 to run again", || async {
        ci.steps.runs("fail-lint-ccccccc") == 2 && ci.steps.runs("fail-test-ccccccc") == 2
    })
    .await?;
    ci.settled(6).await?;

    // A commit: main and PR 3 share their failed steps; each runs once more.
    let response = builder
        .send(
            "POST",
            &format!("/rebuild-failed/me/proj/commit/{A}"),
            Some(&[("CSRFToken", &csrf)]),
        )
        .await?;
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()[header::LOCATION].to_str()?,
        format!("/me/proj/commit/{A}")
    );
    wait_for("the failed jobs of commit A to run again", || async {
        ci.steps.runs("fail-lint-aaaaaaa") == 2 && ci.steps.runs("fail-test-aaaaaaa") == 2
    })
    .await?;
    ci.settled(6).await?;
    for (key, runs) in [
        ("ok-build-ccccccc", 1),
        ("ok-build-aaaaaaa", 1),
        ("fail-lint-ccccccc", 2),
        ("fail-lint-aaaaaaa", 2),
        ("fail-test-aaaaaaa", 2),
        ("fail-lint-bbbbbbb", 1),
        ("fail-lint-eeeeeee", 1),
    ] {
        assert_eq!(ci.steps.runs(key), runs, "{key}");
    }
    // The page shows the new build's log.
    let tag = page(&mut builder, "/me/proj/ref/tags/v0.1").await?;
    assert!(tag.contains("Rebuild failed jobs (2)"), "{tag}");
    ci.stop().await
}

/// Issue 14, defect 1: a target whose metadata is invalid is listed with the reason on the
/// dashboard, its own page and the API, while the others are tested.
#[tokio::test]
async fn issue_14_unreadable_targets_are_shown_with_the_reason() -> anyhow::Result<()> {
    let ci = fixture().await?;
    ci.edit(&[
        ("me/proj/pr/11/head", "<not a hash>"),
        ("me/proj/pr/11/state", "open"),
        ("me/proj/pr/11/owner", "mallory"),
    ])
    .await?;
    wait_for("PR 11 to be unreadable", || async {
        !ci.engine.unreadable_targets().is_empty()
    })
    .await?;
    let mut reader = agents(&ci).await?.swap_remove(1);
    let dashboard = page(&mut reader, "/").await?;
    assert_in_order(
        &dashboard,
        &[
            "Targets with invalid metadata",
            "href=\"/me/proj/pr/11\"",
            "invalid metadata at &quot;me/proj/pr/11/head&quot;: invalid commit hash &quot;&lt;not a hash&gt;&quot;",
        ],
    );
    let target = page(&mut reader, "/me/proj/pr/11").await?;
    assert!(
        target.contains("This target is not tested: its metadata is invalid: invalid metadata at"),
        "{target}"
    );
    let targets = json(&mut reader, "/api/v1/targets").await?;
    assert_eq!(targets["targets"].as_array().map(Vec::len), Some(6));
    assert_eq!(targets["unreadable"][0]["id"], "me/proj/prs/11");
    assert_eq!(targets["unreadable"][0]["url"], "/me/proj/pr/11");
    let error = targets["unreadable"][0]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("invalid commit hash"), "{error}");
    let detail = json(&mut reader, "/api/v1/targets/me/proj/pr/11").await?;
    assert_eq!(detail["tracked"], false);
    assert_eq!(detail["error"].as_str(), Some(error));
    ci.stop().await
}

/// Issue 14, defect 9: unknown paths get the site's 404 page; a saved log links nowhere that
/// does not exist (no published state repository is configured here).
#[tokio::test]
async fn issue_14_unknown_pages_and_saved_log_links() -> anyhow::Result<()> {
    let ci = fixture().await?;
    let mut reader = agents(&ci).await?.swap_remove(1);
    let response = reader.get("/no/such/page").await?;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    let html = Agent::text(response).await?;
    assert!(
        html.contains("There is no page at <code>/no/such/page</code>"),
        "{html}"
    );
    assert!(html.contains("<nav"), "the site's chrome: {html}");

    let pr = json(&mut reader, "/api/v1/targets/me/proj/pr/3").await?;
    let url = pr["jobs"][1]["logs"][0]["url"]
        .as_str()
        .expect("saved log url");
    let log = page(&mut reader, url).await?;
    assert!(!log.contains("no-state-repo"), "{log}");
    assert!(
        !log.contains(">History<") && !log.contains(">Artefacts<"),
        "{log}"
    );
    ci.stop().await
}

/// Issue 21 item 4: 102 branches and 3 PRs (PR 7 stays pending), all other targets failing.
async fn many_targets() -> anyhow::Result<CiFixture> {
    let names: Vec<String> = (0..=100)
        .map(|n| format!("me/proj/ref/heads/b{n:03}/head"))
        .collect();
    let mut edits: Vec<(&str, &str)> = names.iter().map(|name| (name.as_str(), A)).collect();
    edits.extend([
        ("me/proj/ref/heads/feature/x/head", B),
        ("me/proj/pr/3/head", A),
        ("me/proj/pr/3/state", "open"),
        ("me/proj/pr/3/title", "Third"),
        ("me/proj/pr/3/owner", "alice"),
        ("me/proj/pr/7/head", C),
        ("me/proj/pr/7/state", "open"),
        ("me/proj/pr/7/owner", "alice"),
        ("me/proj/pr/7/title", "Seventh, slow"),
        ("me/proj/pr/10/head", E),
        ("me/proj/pr/10/state", "open"),
        ("me/proj/pr/10/title", "Tenth PR"),
        ("me/proj/pr/10/owner", "bob"),
    ]);
    let ci = CiFixture::start(&edits).await?;
    wait_for("105 targets, all but PR 7 final", || async {
        let targets = ci.engine.targets();
        targets.len() == 105
            && targets.iter().all(|view| {
                view.jobs.iter().all(|job| {
                    job.output.as_ref().is_some_and(|output| {
                        matches!(view.target.id(), datakit_ci_term::TargetId::Pr(_, 7))
                            || !matches!(output.result, datakit_ci_term::JobResult::Pending(_))
                    })
                })
            })
    })
    .await?;
    Ok(ci)
}

#[tokio::test]
async fn issue_21_lists_paginate_and_filter() -> anyhow::Result<()> {
    let ci = many_targets().await?;
    let mut reader = agents(&ci).await?.swap_remove(1);

    let first = page(&mut reader, "/branch").await?;
    assert_in_order(
        &first,
        &[
            "<form class=\"list-filter\" method=\"get\" action=\"/branch\">",
            "Showing 1–100 of 102 targets",
            ">heads/b000</a>",
            ">heads/b099</a>",
            "Page 1 of 2",
            "<a rel=\"next\" class=\"btn btn-sm\" href=\"/branch?page=2\">",
        ],
    );
    assert!(!first.contains(">heads/b100</a>"), "{first}");
    assert!(!first.contains("rel=\"prev\""), "{first}");
    let second = page(&mut reader, "/branch?page=2").await?;
    assert_in_order(
        &second,
        &[
            "Showing 101–102 of 102 targets",
            ">heads/b100</a>",
            ">heads/feature/x</a>",
            "<a rel=\"prev\" class=\"btn btn-sm\" href=\"/branch?page=1\">",
            "Page 2 of 2",
        ],
    );
    assert!(!second.contains(">heads/b099</a>"), "{second}");
    assert!(!second.contains("rel=\"next\""), "{second}");
    let past = page(&mut reader, "/branch?page=9").await?;
    assert!(past.contains("No targets on this page, of 102"), "{past}");

    let named = page(&mut reader, "/branch?q=FEAT&state=failing").await?;
    assert_in_order(
        &named,
        &[
            "value=\"feat\"",
            "<option value=\"failing\" selected>",
            "Showing 1–1 of 1 failing targets matching “feat”",
            ">heads/feature/x</a>",
        ],
    );
    assert!(!named.contains(">heads/b000</a>"), "{named}");

    let pending = page(&mut reader, "/pr?state=pending").await?;
    assert!(
        pending.contains("href=\"/me/proj/pr/7\">7</a>"),
        "{pending}"
    );
    assert!(!pending.contains("href=\"/me/proj/pr/3\">"), "{pending}");
    let by_title = page(&mut reader, "/pr?q=slow").await?;
    assert!(
        by_title.contains("href=\"/me/proj/pr/7\">7</a>"),
        "{by_title}"
    );
    assert!(!by_title.contains("href=\"/me/proj/pr/10\">"), "{by_title}");
    let by_name = page(&mut reader, "/pr").await?;
    assert_in_order(&by_name, &[">10</a>", ">7</a>", ">3</a>"]);
    let failing_first = page(&mut reader, "/pr?sort=failing").await?;
    assert_in_order(&failing_first, &[">10</a>", ">3</a>", ">7</a>"]);
    assert!(failing_first.contains("name=\"sort\" value=\"failing\" checked"));

    for (path, message) in [
        (
            "/branch?page=0",
            "invalid page \"0\": expected a whole number from 1",
        ),
        (
            "/tag?page=x",
            "invalid page \"x\": expected a whole number from 1",
        ),
        (
            "/pr?state=red",
            "invalid state \"red\": expected failing, pending, passing or all",
        ),
        (
            "/pr?sort=age",
            "invalid sort \"age\": expected name or failing",
        ),
    ] {
        let response = reader.get(path).await?;
        assert_eq!(response.status(), 400, "{path}");
        assert_eq!(Agent::text(response).await?, message, "{path}");
    }

    // The API: every target exactly once, a page at a time.
    let mut seen = Vec::new();
    let mut path = "/api/v1/targets?limit=40".to_owned();
    loop {
        let answer = json(&mut reader, &path).await?;
        let targets = answer["targets"].as_array().cloned().unwrap_or_default();
        assert!(targets.len() <= 40, "{answer}");
        seen.extend(targets.iter().map(|t| t["id"].to_string()));
        match answer["next"].as_str() {
            Some(next) => {
                path = format!(
                    "/api/v1/targets?limit=40&after={}",
                    datakit_ci_web::urls::encode_query(next)
                )
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 105, "{seen:?}");
    let unique: std::collections::BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 105);
    let default = json(&mut reader, "/api/v1/targets").await?;
    assert_eq!(default["targets"].as_array().map(Vec::len), Some(100));
    let pending = json(&mut reader, "/api/v1/targets?state=pending").await?;
    assert_eq!(pending["targets"][0]["id"], "me/proj/prs/7");
    assert_eq!(pending["targets"].as_array().map(Vec::len), Some(1));
    assert_eq!(pending["next"], Value::Null);
    let failing_first = json(&mut reader, "/api/v1/targets?sort=failing&limit=104").await?;
    let cursor = failing_first["next"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let last = json(
        &mut reader,
        &format!(
            "/api/v1/targets?sort=failing&after={}",
            datakit_ci_web::urls::encode_query(&cursor)
        ),
    )
    .await?;
    assert_eq!(last["targets"][0]["id"], "me/proj/prs/7", "{last}");
    let named = json(&mut reader, "/api/v1/targets?q=feature").await?;
    assert_eq!(named["targets"][0]["id"], "me/proj/heads/feature/x");
    for (path, message) in [
        (
            "/api/v1/targets?after=me/proj/pr/3",
            "invalid cursor \"me/proj/pr/3\": no rank (pass the `next` of the previous answer)",
        ),
        (
            "/api/v1/targets?limit=0",
            "invalid limit \"0\": expected a whole number from 1 to 1000",
        ),
    ] {
        let response = reader.get(path).await?;
        assert_eq!(response.status(), 400, "{path}");
        let body: Value = serde_json::from_str(&Agent::text(response).await?)?;
        assert_eq!(body["error"], message, "{path}");
    }
    ci.steps.open_gate();
    ci.stop().await
}

/// Issue 21 item 7: badges of a web UI everyone may read, for every viewer; 404 for anything
/// unknown.
#[tokio::test]
async fn issue_21_badges_when_everyone_may_read() -> anyhow::Result<()> {
    let ci = fixture().await?;
    let config = common::http_config(&ci.dirs)?.can_read(datakit_ci_web::Acl::everyone());
    let state = common::state_builder(ci.store.clone(), ci.logs.clone(), config).build()?;
    let mut anonymous = Agent::new(datakit_ci_web::router(&state, Some(ci.pages())));
    for (path, expected) in [
        ("/badge/me/proj/heads/main.svg", Some(("ci", "failing"))),
        (
            "/badge/me/proj/heads/main.svg?job=build",
            Some(("build", "passing")),
        ),
        (
            "/badge/me/proj/heads/feature/x.svg?job=lint",
            Some(("lint", "failing")),
        ),
        ("/badge/me/proj/tags/v0.1.svg", Some(("ci", "failing"))),
        ("/badge/me/proj/heads/main.svg?job=nope", None),
        ("/badge/me/proj/heads/main", None),
        ("/badge/me/proj/heads/nope.svg", None),
        ("/badge/other/proj/heads/main.svg", None),
    ] {
        let response = anonymous.get(path).await?;
        let Some((label, word)) = expected else {
            assert_eq!(response.status(), 404, "{path}");
            continue;
        };
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "image/svg+xml; charset=utf-8"
        );
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
        let svg = Agent::text(response).await?;
        let document = roxmltree::Document::parse(&svg)?;
        let texts: Vec<&str> = document
            .descendants()
            .filter(|node| node.has_tag_name("text"))
            .filter_map(|node| node.text())
            .collect();
        assert_eq!(texts, [label, word], "{path}");
    }
    ci.stop().await
}

#[tokio::test]
async fn approvals_need_the_builder_role_and_a_csrf_token_and_name_the_approver()
-> anyhow::Result<()> {
    let ci = fixture().await?;
    let mut agents = agents(&ci).await?;
    let path = "/approve/me/proj/pr/10";
    let approval = |head: &str| {
        datakit_ci_store::StorePath::new(format!("me/proj/commit/{head}/approval/build"))
    };
    // PR 10's head.
    let head = E;
    let recorded = || async {
        let metadata = ci
            .store
            .branch(&datakit_ci_store::BranchName::new("github-metadata")?)
            .head()
            .await?
            .ok_or_else(|| anyhow::anyhow!("no metadata"))?;
        anyhow::Ok(
            metadata
                .tree()
                .read_file(&approval(head)?)?
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        )
    };
    for (i, agent) in agents.iter_mut().enumerate() {
        let response = agent.send("POST", path, Some(&[("job", "build")])).await?;
        assert_eq!(response.status(), 403, "without a token as {}", ROLES[i]);
    }
    // Anonymous visitors are sent to log in; readers may not approve.
    for (i, expected) in [303, 403].into_iter().enumerate() {
        let agent = &mut agents[i];
        let csrf = agent.csrf().await?;
        let response = agent
            .send(
                "POST",
                path,
                Some(&[("CSRFToken", &csrf), ("job", "build")]),
            )
            .await?;
        assert_eq!(response.status(), expected, "as {}", ROLES[i]);
    }
    assert_eq!(recorded().await?, None);
    let builder = &mut agents[2];
    let csrf = builder.csrf().await?;
    let response = builder
        .send("POST", path, Some(&[("CSRFToken", &csrf), ("job", "nope")]))
        .await?;
    assert_eq!(response.status(), 404);
    let response = builder
        .send(
            "POST",
            path,
            Some(&[("CSRFToken", &csrf), ("job", "build")]),
        )
        .await?;
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers().get("location").map(|l| l.as_bytes()),
        Some(&b"/me/proj/pr/10"[..])
    );
    assert_eq!(recorded().await?.as_deref(), Some("builder\n"));
    ci.stop().await
}

/// Issue 17 item 3: an untrusted pull request's page says why its code waits and offers
/// Builders (only) the approval of its head; approving it, or any of its jobs, records one
/// approval of the head, with who gave it, and the page then names the approver.
#[tokio::test]
async fn an_untrusted_pull_request_is_approved_by_a_builder_once_per_head() -> anyhow::Result<()> {
    let ci = fixture().await?;
    ci.edit(&[(
        "me/proj/pr/10/trust",
        "fork: pull request from a fork (bob/proj)",
    )])
    .await?;
    let mut agents = agents(&ci).await?;
    let page_path = "/me/proj/pr/10";
    let approve = "/approve/me/proj/pr/10";
    let notice = "Untrusted pull request: pull request from a fork (bob/proj)";
    let button = "name=\"job\" value=\".pull-request\"";
    wait_for("the page to show the notice", || {
        let mut agent = Agent::new(ci.router());
        async move {
            agent.log_in("reader", "reader-pw").await.is_ok()
                && page(&mut agent, page_path)
                    .await
                    .is_ok_and(|text| text.contains(notice))
        }
    })
    .await?;
    let reader_page = page(&mut agents[1], page_path).await?;
    assert!(reader_page.contains(notice), "{reader_page}");
    assert!(!reader_page.contains(button), "{reader_page}");
    let builder_page = page(&mut agents[2], page_path).await?;
    assert!(builder_page.contains(button), "{builder_page}");
    assert!(
        builder_page.contains(&format!("Approve head {}", &E[..8])),
        "{builder_page}"
    );

    let recorded = |job: &'static str| {
        let store = ci.store.clone();
        async move {
            let metadata = store
                .branch(&datakit_ci_store::BranchName::new("github-metadata")?)
                .head()
                .await?
                .ok_or_else(|| anyhow::anyhow!("no metadata"))?;
            anyhow::Ok(
                metadata
                    .tree()
                    .read_file(&datakit_ci_store::StorePath::new(format!(
                        "me/proj/commit/{E}/approval/{job}"
                    ))?)?
                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
            )
        }
    };
    // Without a token, or as a reader, nothing is approved.
    let response = agents[2]
        .send("POST", approve, Some(&[("job", ".pull-request")]))
        .await?;
    assert_eq!(response.status(), 403);
    let csrf = agents[1].csrf().await?;
    let response = agents[1]
        .send(
            "POST",
            approve,
            Some(&[("CSRFToken", &csrf), ("job", ".pull-request")]),
        )
        .await?;
    assert_eq!(response.status(), 403);
    assert_eq!(recorded(".pull-request").await?, None);
    // A branch is never approved whole.
    let csrf = agents[2].csrf().await?;
    let response = agents[2]
        .send(
            "POST",
            "/approve/me/proj/ref/heads/main",
            Some(&[("CSRFToken", &csrf), ("job", ".pull-request")]),
        )
        .await?;
    assert_eq!(response.status(), 404);

    // Approving a job of the pull request while its head waits approves the head.
    let response = agents[2]
        .send(
            "POST",
            approve,
            Some(&[("CSRFToken", &csrf), ("job", "build")]),
        )
        .await?;
    assert_eq!(response.status(), 303);
    assert_eq!(
        recorded(".pull-request").await?.as_deref(),
        Some("builder\n")
    );
    assert_eq!(recorded("build").await?, None, "not a job's approval");
    wait_for("the page to name the approver", || {
        let mut agent = Agent::new(ci.router());
        async move {
            agent.log_in("reader", "reader-pw").await.is_ok()
                && page(&mut agent, page_path).await.is_ok_and(|text| {
                    text.contains("was approved by <span class=\"approver\">builder</span>")
                })
        }
    })
    .await?;
    // Approving the head again keeps the first approver.
    let csrf = agents[3].csrf().await?;
    let response = agents[3]
        .send(
            "POST",
            approve,
            Some(&[("CSRFToken", &csrf), ("job", ".pull-request")]),
        )
        .await?;
    assert_eq!(response.status(), 303);
    assert_eq!(
        recorded(".pull-request").await?.as_deref(),
        Some("builder\n")
    );
    // A trusted pull request needs no approval: none is recorded.
    ci.edit(&[(
        "me/proj/pr/3/trust",
        "trusted: pull request by alice, a member (MEMBER)",
    )])
    .await?;
    let csrf = agents[2].csrf().await?;
    let response = agents[2]
        .send(
            "POST",
            "/approve/me/proj/pr/3",
            Some(&[("CSRFToken", &csrf), ("job", ".pull-request")]),
        )
        .await?;
    assert_eq!(response.status(), 404);
    ci.stop().await
}
