//! Notifications over real HTTP to a receiver started by the test: one signed event per result
//! change (none for passes or pending steps), retried after a `500`, and unsigned without a secret.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use datakit_ci_engine::StatusChange;
use datakit_ci_notifications::{DeliveryConfig, Notifier, NotifySecret, signature};
use datakit_ci_term::{RefName, RepoId, TargetId};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// What the receiver got: headers and body of each request, and how many it refused.
#[derive(Default)]
struct Received {
    requests: Vec<(HeaderMap, Bytes)>,
    refusals_left: usize,
}

async fn receiver(received: Arc<Mutex<Received>>) -> anyhow::Result<String> {
    let app = Router::new().route(
        "/hook/secret-token",
        post(move |headers: HeaderMap, body: Bytes| {
            let received = Arc::clone(&received);
            async move {
                let mut received = received.lock().expect("not poisoned");
                received.requests.push((headers, body));
                if received.refusals_left > 0 {
                    received.refusals_left -= 1;
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}/hook/secret-token"))
}

fn change(commit: char, job: &str, state: &'static str) -> anyhow::Result<StatusChange> {
    Ok(StatusChange {
        target: TargetId::Ref(RepoId::new("me", "proj")?, RefName::new(["heads", "main"])?),
        job: job.to_owned(),
        commit: std::iter::repeat_n(commit, 40)
            .collect::<String>()
            .parse()?,
        state,
        description: if state == "failure" {
            "exited with status 1".to_owned()
        } else {
            state.to_owned()
        },
    })
}

async fn wait_for_requests(received: &Mutex<Received>, count: usize) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(30), async {
        while received.lock().expect("not poisoned").requests.len() < count {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .with_context(|| format!("fewer than {count} requests arrived"))
}

#[tokio::test]
async fn one_signed_event_per_result_change_retried_after_a_500() -> anyhow::Result<()> {
    let received = Arc::new(Mutex::new(Received {
        refusals_left: 1,
        ..Received::default()
    }));
    let url = receiver(Arc::clone(&received)).await?;
    let mut config = DeliveryConfig::new(vec![url], "https://ci.example/some/path");
    config.secret = Some(NotifySecret::new("notify-secret"));
    config.first_retry = Duration::from_millis(50);
    let (sender, events) = broadcast::channel(64);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(Notifier::new(config)?.run(events, cancel.clone()));

    for change in [
        // A first pass: not news.
        change('a', "build", "pending")?,
        change('a', "build", "success")?,
        // Fails: news (refused once, then delivered).
        change('b', "build", "pending")?,
        change('b', "build", "failure")?,
        // Still failing on the next commit: not news.
        change('c', "build", "pending")?,
        change('c', "build", "failure")?,
        // Fixed: news.
        change('d', "build", "pending")?,
        change('d', "build", "success")?,
    ] {
        sender.send(change)?;
    }
    wait_for_requests(&received, 3).await?;
    // Nothing more comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    cancel.cancel();
    task.await?;

    let received = received.lock().expect("not poisoned");
    assert_eq!(
        received.requests.len(),
        3,
        "two events, the first sent twice"
    );
    let events: Vec<serde_json::Value> = received
        .requests
        .iter()
        .map(|(_, body)| serde_json::from_slice(body))
        .collect::<Result<_, _>>()?;
    assert_eq!(events[0], events[1], "the retry sends the same event");
    assert_eq!(events[1]["event"], "failed");
    assert_eq!(events[1]["target"], "me/proj/heads/main");
    assert_eq!(events[1]["commit"], "b".repeat(40));
    assert_eq!(
        events[1]["url"],
        format!("https://ci.example/me/proj/commit/{}", "b".repeat(40))
    );
    assert_eq!(events[1]["jobs"][0]["description"], "exited with status 1");
    assert_eq!(events[2]["event"], "fixed");
    assert_eq!(events[2]["commit"], "d".repeat(40));
    for (headers, body) in received.requests.iter() {
        assert_eq!(
            headers["x-datakit-ci-signature-256"].to_str()?,
            signature(b"notify-secret", body)
        );
        assert_eq!(headers["content-type"], "application/json");
    }
    assert_eq!(
        received.requests[0].0["x-datakit-ci-delivery"],
        received.requests[1].0["x-datakit-ci-delivery"],
        "a retry keeps its delivery id"
    );
    assert_ne!(
        received.requests[1].0["x-datakit-ci-delivery"],
        received.requests[2].0["x-datakit-ci-delivery"]
    );
    Ok(())
}

#[tokio::test]
async fn bad_urls_and_secrets_are_refused() -> anyhow::Result<()> {
    for url in ["ftp://example.org/", "not a url", "https://"] {
        let config = DeliveryConfig::new(vec![url.to_owned()], "http://127.0.0.1/");
        let error = Notifier::new(config).expect_err(url).to_string();
        assert!(error.starts_with(&format!("--notify {url:?}")), "{error}");
    }
    let dir = std::env::temp_dir().join(format!("notify-secret-{}", std::process::id()));
    std::fs::write(&dir, "\n")?;
    let error = NotifySecret::from_file(&dir)
        .expect_err("empty")
        .to_string();
    std::fs::remove_file(&dir)?;
    assert!(error.contains("the file is empty"), "{error}");
    let error = NotifySecret::from_file(&dir)
        .expect_err("missing")
        .to_string();
    assert!(error.contains("notification secret"), "{error}");
    Ok(())
}
