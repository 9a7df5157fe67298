//! The route table, driven in-process: every route × anonymous, reader, builder and admin, and
//! every POST refused without a valid CSRF token.

mod common;

use std::sync::{Arc, Mutex};

use axum::http::header;
use common::{Agent, Dirs, http_config, state_builder, write_users};
use datakit_ci_log::{LiveLogSpec, LogManager};
use datakit_ci_store::{BranchName, StorePath};
use datakit_ci_web::{Acl, router};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

const ROLES: [&str; 4] = ["anonymous", "reader", "builder", "admin"];

struct Fixture {
    _dirs: Dirs,
    agents: Vec<Agent>,
    saved_commit: String,
    build_token: CancellationToken,
    rebuilds: Arc<Mutex<Vec<String>>>,
}

async fn fixture() -> anyhow::Result<Fixture> {
    let dirs = Dirs::new()?;
    write_users(
        &dirs.secrets(),
        &[
            ("admin", "admin-pw"),
            ("reader", "reader-pw"),
            ("builder", "builder-pw"),
        ],
    )?;
    let store = dirs.store()?;
    let mut transaction = store
        .branch(&BranchName::new("log-saved")?)
        .transaction()
        .await?;
    transaction.create_file(&StorePath::new("log")?, "saved output\n")?;
    // A build that kept one file (the cache's artifacts layout).
    datakit_ci_cache::write_artifacts(&mut transaction, &["out/app.bin".to_owned()], |_| {
        Ok(&b"\x00app\xff"[..])
    })?;
    let saved_commit = transaction.commit("Saved log").await?.to_string();
    let logs = LogManager::new();
    let build_token = CancellationToken::new();
    let live = logs.create(LiveLogSpec {
        branch: "log-live".to_owned(),
        title: "Live".to_owned(),
        pending: "Building".to_owned(),
        cancel: Some(build_token.clone()),
    })?;
    live.write_str("running\n");
    let config = http_config(&dirs)?
        .can_read("user:reader,user:builder,user:admin".parse::<Acl>()?)
        .can_build("user:builder,user:admin".parse::<Acl>()?);
    let rebuilds = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&rebuilds);
    let state = state_builder(store, logs, config)
        .rebuild_hook(move |branch| {
            let recorded = Arc::clone(&recorded);
            async move {
                recorded
                    .lock()
                    .expect("not poisoned")
                    .push(branch.to_string());
                Ok(())
            }
        })
        .build()?;
    let app = router(&state, None);
    let mut agents = Vec::new();
    for role in ROLES {
        let mut agent = Agent::new(app.clone());
        if role != "anonymous" {
            agent.log_in(role, &format!("{role}-pw")).await?;
        }
        agents.push(agent);
    }
    // The manager keeps the log registered until it is finished.
    drop(live);
    Ok(Fixture {
        _dirs: dirs,
        agents,
        saved_commit,
        build_token,
        rebuilds,
    })
}

#[tokio::test]
async fn get_routes_by_role() -> anyhow::Result<()> {
    let mut f = fixture().await?;
    let saved = format!("/log/saved/log-saved/{}", f.saved_commit);
    let artifacts = format!("/api/v1/artifacts/log-saved/{}", f.saved_commit);
    let artifact = format!("{artifacts}/out/app.bin");
    let missing_artifact = format!("{artifacts}/out/missing.bin");
    let traversal = format!("{artifacts}/out/../../log");
    let encoded_traversal = format!("{artifacts}/%2e%2e/log");
    let unknown_commit = format!("/api/v1/artifacts/log-saved/{}/out/app.bin", "0".repeat(40));
    let table: Vec<(&str, [u16; 4])> = vec![
        ("/", [303, 200, 200, 200]),
        ("/settings", [303, 403, 403, 200]),
        ("/user/profile", [303, 200, 200, 200]),
        ("/auth/setup", [303, 403, 403, 200]),
        ("/auth/login", [200, 200, 200, 200]),
        ("/auth/intro/some-token", [403, 403, 403, 403]),
        ("/error/permission-denied", [200, 200, 200, 200]),
        ("/css/style.css", [200, 200, 200, 200]),
        ("/css/missing.css", [404, 404, 404, 404]),
        ("/metrics", [403, 403, 403, 403]),
        ("/log/live/log-live", [303, 200, 200, 200]),
        ("/log/live/log-saved", [303, 307, 307, 307]),
        ("/log/live/no-such-log", [303, 404, 404, 404]),
        (&saved, [303, 200, 200, 200]),
        ("/log/saved/log-saved/not-a-commit", [303, 404, 404, 404]),
        (&artifact, [401, 200, 200, 200]),
        (&missing_artifact, [401, 404, 404, 404]),
        (&traversal, [401, 400, 400, 400]),
        (&encoded_traversal, [401, 400, 400, 400]),
        (&unknown_commit, [401, 404, 404, 404]),
        ("/no/such/page", [404, 404, 404, 404]),
        ("/cancel/log-live", [405, 405, 405, 405]),
        ("/log/rebuild/log-saved", [405, 405, 405, 405]),
        ("/auth/logout", [405, 405, 405, 405]),
    ];
    let mut failures = Vec::new();
    for (path, expected) in &table {
        for (i, agent) in f.agents.iter_mut().enumerate() {
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

    // An artifact is the file as kept, to save.
    let response = f.agents[1].get(&artifact).await?;
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/octet-stream"
    );
    assert_eq!(
        response.headers()[header::CONTENT_DISPOSITION],
        "attachment; filename=\"app.bin\"; filename*=UTF-8''app.bin"
    );
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    assert_eq!(&body[..], b"\x00app\xff");

    // Security headers on every response.
    let response = f.agents[0].get("/auth/login").await?;
    assert_eq!(response.headers()[header::X_FRAME_OPTIONS], "SAMEORIGIN");
    assert_eq!(response.headers()[header::REFERRER_POLICY], "same-origin");
    assert_eq!(
        response.headers()[header::X_CONTENT_TYPE_OPTIONS],
        "nosniff"
    );
    // Issue 20: no script, and only this site's style sheet and images; plain http has no HSTS.
    let policy = response.headers()[header::CONTENT_SECURITY_POLICY].to_str()?;
    assert!(
        policy.starts_with("default-src 'none'; style-src 'self';"),
        "{policy}"
    );
    assert!(!policy.contains("script-src"), "{policy}");
    assert!(
        response
            .headers()
            .get(header::STRICT_TRANSPORT_SECURITY)
            .is_none()
    );

    // Where the redirects go.
    let anonymous = &mut f.agents[0];
    let response = anonymous.get("/settings?x=1").await?;
    assert_eq!(
        response.headers()[header::LOCATION],
        "/auth/login?redirect=%2Fsettings%3Fx%3D1"
    );
    let reader = &mut f.agents[1];
    let response = reader.get("/log/live/log-saved").await?;
    assert_eq!(
        response.headers()[header::LOCATION].to_str()?,
        format!("/log/saved/log-saved/{}", f.saved_commit)
    );
    // Only builders see a cancel button on a running log (the first chunk is the page's head).
    for (i, has_button) in [(1, false), (2, true)] {
        let response = f.agents[i].get("/log/live/log-live").await?;
        let mut body = response.into_body().into_data_stream();
        let head = body
            .next()
            .await
            .ok_or_else(|| anyhow::anyhow!("empty body"))??;
        let head = String::from_utf8(head.to_vec())?;
        assert_eq!(
            head.contains("action=\"/cancel/log-live\""),
            has_button,
            "{}: {head}",
            ROLES[i]
        );
    }
    let reader = &mut f.agents[1];
    let denied = Agent::text(reader.get("/settings").await?).await?;
    assert!(denied.contains("Permission denied"), "{denied}");
    Ok(())
}

#[tokio::test]
async fn post_routes_by_role_and_csrf() -> anyhow::Result<()> {
    let mut f = fixture().await?;
    let posts = [
        "/cancel/log-live",
        "/log/rebuild/log-saved",
        "/auth/logout",
        "/auth/login",
        "/auth/setup",
    ];
    // Without a token, or with a wrong one, every POST is refused, whoever asks.
    for (i, agent) in f.agents.iter_mut().enumerate() {
        for path in posts {
            let response = agent.send("POST", path, Some(&[("redirect", "/")])).await?;
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
            assert_eq!(
                response.status(),
                403,
                "POST {path} with a forged token as {}",
                ROLES[i]
            );
            assert_eq!(Agent::text(response).await?, "Incorrect CSRFToken");
        }
    }
    assert!(!f.build_token.is_cancelled());
    assert!(f.rebuilds.lock().expect("not poisoned").is_empty());

    let table: [(&str, [u16; 4]); 2] = [
        ("/cancel/log-live", [303, 403, 303, 303]),
        ("/log/rebuild/log-saved", [303, 403, 303, 303]),
    ];
    for (path, expected) in table {
        for (i, agent) in f.agents.iter_mut().enumerate() {
            let csrf = agent.csrf().await?;
            let response = agent
                .send("POST", path, Some(&[("CSRFToken", &csrf)]))
                .await?;
            assert_eq!(
                response.status().as_u16(),
                expected[i],
                "POST {path} as {}",
                ROLES[i]
            );
            if i == 0 {
                assert!(
                    response.headers()[header::LOCATION]
                        .to_str()?
                        .starts_with("/auth/login?redirect=")
                );
            }
        }
    }
    assert!(f.build_token.is_cancelled());
    assert_eq!(
        *f.rebuilds.lock().expect("not poisoned"),
        ["log-saved", "log-saved"]
    );

    // The token is also accepted in the query, as the original sent it.
    let admin = &mut f.agents[3];
    let csrf = admin.csrf().await?;
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("CSRFToken", &csrf)
        .finish();
    let response = admin
        .send("POST", &format!("/log/rebuild/log-saved?{query}"), None)
        .await?;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()[header::LOCATION], "/log/live/log-saved");

    // Logging out ends the admin's access.
    let response = admin
        .send("POST", "/auth/logout", Some(&[("CSRFToken", &csrf)]))
        .await?;
    assert_eq!(response.status(), 303);
    assert_eq!(admin.get("/settings").await?.status(), 303);
    Ok(())
}

#[tokio::test]
async fn rebuild_without_an_engine_is_unavailable() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    write_users(&dirs.secrets(), &[("admin", "pw")])?;
    let config = http_config(&dirs)?.can_read(Acl::everyone());
    let state = state_builder(dirs.store()?, LogManager::new(), config).build()?;
    let mut admin = Agent::new(router(&state, None));
    admin.log_in("admin", "pw").await?;
    let csrf = admin.csrf().await?;
    let response = admin
        .send(
            "POST",
            "/log/rebuild/some-branch",
            Some(&[("CSRFToken", &csrf)]),
        )
        .await?;
    assert_eq!(response.status(), 503);
    assert!(
        Agent::text(response)
            .await?
            .contains("no engine is attached")
    );
    // Cancelling a branch that is not building says so.
    let response = admin
        .send("POST", "/cancel/some-branch", Some(&[("CSRFToken", &csrf)]))
        .await?;
    assert_eq!(response.status(), 404);
    assert_eq!(
        Agent::text(response).await?,
        "Branch \"some-branch\" is not currently building"
    );
    Ok(())
}
