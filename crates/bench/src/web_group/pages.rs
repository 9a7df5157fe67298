//! Figures 1 and 2: the time to render the dashboard (`GET /`) and the first page of the branch
//! list (`GET /branch`, 100 rows) with every target loaded, and the requests per second one target page
//! serves to concurrent clients.
//!
//! Times are taken by the client over real HTTP on 127.0.0.1 on a kept-alive connection, from
//! sending the request until the whole body is read; the floor is a static file
//! (`GET /css/style.css`) timed the same way in the same run, and the time of
//! `Engine::targets()` (the copy of every target both pages start from) is measured in-process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use crate::Scale;
use crate::report::{Figure, Report, Target};
use crate::stats::quantile;

use super::site::{JOBS, REPO, Site, branch_name};

/// Requests before the timed ones, per page.
const WARM_UP: usize = 3;
/// Sequential timed requests per page.
const REQUESTS: usize = 20;
/// Largest acceptable median render time of the dashboard and of `/branch`, in ms.
const RENDER_TARGET_MS: f64 = 50.0;
/// Targets per page of the lists (`web::ci::filter::LIST_PAGE`).
const LIST_PAGE: usize = 100;
/// Concurrent clients of the target page.
const CLIENTS: usize = 16;

/// Measures figures 1 and 2.
pub(super) async fn run(scale: Scale, site: &mut Site, report: &mut Report) -> anyhow::Result<()> {
    let client = client()?;
    let targets = site.targets;
    let last = branch_name(targets - 1);

    let mut copies = Vec::with_capacity(REQUESTS);
    for i in 0..WARM_UP + REQUESTS {
        let started = Instant::now();
        let views = site.engine.targets();
        let elapsed = started.elapsed();
        ensure!(
            views.len() == targets,
            "Engine::targets() gave {} targets",
            views.len()
        );
        drop(views);
        if i >= WARM_UP {
            copies.push(elapsed);
        }
    }
    report.add(Figure::millis(
        format!(
            "web: baseline: Engine::targets() in-process (what / and /branch start from), \
             {targets} targets, median of {REQUESTS}"
        ),
        quantile(&copies, 0.5),
    ));

    let floor = timed_gets(&client, site, "/css/style.css", |_| Ok(())).await?;
    report.add(Figure::millis(
        format!("web: floor: GET /css/style.css (static), median of {REQUESTS}"),
        quantile(&floor.times, 0.5),
    ));

    let dashboard = timed_gets(&client, site, "/", |body| {
        let count = format!("{targets} branches");
        ensure!(
            body.contains(&count),
            "the dashboard does not say {count:?}"
        );
        ensure!(
            body.contains("dashboard-success"),
            "the dashboard shows no succeeding dashboard branch"
        );
        Ok(())
    })
    .await?;
    // The list shows a page of targets (issue 21): the first page is timed, the last one checked.
    let rows = targets.min(LIST_PAGE);
    let branches = timed_gets(&client, site, "/branch", |body| {
        let count = format!("of {targets} targets");
        ensure!(
            body.contains(&count),
            "the branch list does not say {count:?}"
        );
        let flags = body.matches(r#"data-state="success""#).count();
        ensure!(
            flags == rows * JOBS.len(),
            "the branch list shows {flags} succeeding jobs, expected {}",
            rows * JOBS.len()
        );
        Ok(())
    })
    .await?;
    let last_page = format!("/branch?page={}", targets.div_ceil(LIST_PAGE));
    let body = get_ok(&client, &site.url(&last_page)).await?;
    ensure!(
        body.contains(&last),
        "the last page of the branch list does not show the last branch {last}"
    );
    for (path, measured) in [("/", &dashboard), ("/branch", &branches)] {
        report.add(
            Figure::millis(
                format!(
                    "web: render GET {path} with {targets} targets × {} jobs (all final), median of {REQUESTS}",
                    JOBS.len()
                ),
                quantile(&measured.times, 0.5),
            )
            .target(Target::AtMost(RENDER_TARGET_MS)),
        );
        report.add(Figure::millis(
            format!("web: render GET {path} with {targets} targets, p90 of {REQUESTS}"),
            quantile(&measured.times, 0.9),
        ));
        report.add(Figure::new(
            format!("web: size of GET {path} with {targets} targets"),
            measured.bytes as f64 / 1024.0,
            "KiB",
        ));
    }
    site.check_running()?;

    let seconds = match scale {
        Scale::Full => 3,
        Scale::Quick => 1,
    };
    let duration = Duration::from_secs(seconds);
    let page = format!("/{REPO}/ref/heads/{}", branch_name(42.min(targets - 1)));
    let (rate, latencies) = hammer(&client, site, &page, duration).await?;
    report.add(Figure::new(
        format!(
            "web: GET {page} (a target page), {CLIENTS} concurrent clients for {seconds} s, \
             {targets} targets loaded"
        ),
        rate,
        "requests/s",
    ));
    report.add(Figure::millis(
        format!("web: GET {page} latency under that load, p99"),
        quantile(&latencies, 0.99),
    ));
    let (floor_rate, _) = hammer(&client, site, "/css/style.css", duration).await?;
    report.add(Figure::new(
        format!(
            "web: floor: GET /css/style.css (static), {CLIENTS} concurrent clients for {seconds} s"
        ),
        floor_rate,
        "requests/s",
    ));
    site.check_running()
}

/// An HTTP client for 127.0.0.1: no proxy from the environment, connections kept alive.
pub(super) fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1024)
        .build()
        .context("build the HTTP client")
}

/// Sequential requests of one page.
struct Timed {
    times: Vec<Duration>,
    /// Size of the last body.
    bytes: usize,
}

/// `WARM_UP` then `REQUESTS` sequential `GET path`s, each checked to be `200` with a body
/// `check` accepts; the time of each timed one, until its whole body is read.
async fn timed_gets(
    client: &reqwest::Client,
    site: &Site,
    path: &str,
    check: impl Fn(&str) -> anyhow::Result<()>,
) -> anyhow::Result<Timed> {
    let url = site.url(path);
    let mut times = Vec::with_capacity(REQUESTS);
    let mut bytes = 0;
    for i in 0..WARM_UP + REQUESTS {
        let started = Instant::now();
        let body = get_ok(client, &url).await?;
        let elapsed = started.elapsed();
        if i == 0 {
            check(&body).with_context(|| format!("GET {path}"))?;
        }
        bytes = body.len();
        if i >= WARM_UP {
            times.push(elapsed);
        }
    }
    Ok(Timed { times, bytes })
}

/// `GET url`, failing unless the status is `200`; the body.
async fn get_ok(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .with_context(|| format!("read the body of GET {url}"))?;
    ensure!(
        status == reqwest::StatusCode::OK,
        "GET {url} answered {status}: {}",
        body.chars().take(300).collect::<String>()
    );
    Ok(body)
}

/// `CLIENTS` tasks requesting `path` in a loop for `duration`; the completed requests per
/// second and every request's latency. Any answer but `200` fails.
async fn hammer(
    client: &reqwest::Client,
    site: &Site,
    path: &str,
    duration: Duration,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let url = Arc::new(site.url(path));
    // One warm-up request, checked, before the clock starts.
    let body = get_ok(client, &url).await?;
    ensure!(!body.is_empty(), "GET {path} answered an empty body");
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, url, stop) = (client.clone(), Arc::clone(&url), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    get_ok(&client, &url).await?;
                    latencies.push(sent.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.context("a client task panicked")??);
    }
    let elapsed = started.elapsed();
    Ok((latencies.len() as f64 / elapsed.as_secs_f64(), latencies))
}
