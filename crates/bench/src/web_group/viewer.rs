//! Figures of issue 21: the target page of a target with 50 recorded states, an update reaching
//! an open page, and the first screenful of a 100 MB saved log.
//!
//! - **target page with history** — branch `b00007`'s head is moved 49 times (each a metadata
//!   commit the engine records a state for), then `GET` its page 20 times in a row (3 warm-up
//!   requests), timed to the end of the body. Target: median ≤ 10 ms.
//! - **live update** — what an open live page does (`static/live.js`): a client follows
//!   `GET /api/v1/events`; the branch's head moves; from the moment the engine announces the new
//!   status (an in-process subscriber of `Engine::subscribe`, which is told after the status is
//!   written), until the event reached the client over HTTP and the client fetched the page
//!   again to its last byte. 20 moves. Target: median ≤ 200 ms; also p90.
//! - **huge saved log** — a 100 MB log (1.4 million lines) committed to a cache branch as the
//!   cache saves it (`datakit_ci::cache::save_log`: the `log` file plus its index and tail), then
//!   its page (`/log/saved/…`), which shows the tail first: the first view, which reads the
//!   stored tail (time to the first byte, and to the end of the page — its first screenful, at
//!   least 1,000 lines; target ≤ 100 ms); then 5 more, which find the tail kept by the web
//!   server (median; same target). The baseline: the same log committed as older stores did
//!   (`log` alone), whose first view reads the whole log to reach its end (reported only, with
//!   the ratio). The time to save the log with its index and without is reported too.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use tokio::sync::broadcast::error::RecvError;

use datakit_ci::engine::METADATA_BRANCH;
use datakit_ci::store::{BranchName, StorePath};

use crate::report::{Figure, Report, Target};
use crate::stats::quantile;

use super::pages::client;
use super::site::{REPO, Site, branch_name};
use crate::targets::{fake_hash, head_path};

/// The branch whose head moves.
const MOVED: usize = 7;
/// Recorded states the target page is measured with.
const STATES: usize = 50;
/// Sequential timed page loads.
const REQUESTS: usize = 20;
const WARM_UP: usize = 3;
/// Largest acceptable median render time of a target page with [`STATES`] states, in ms.
const TARGET_PAGE_MS: f64 = 10.0;
/// Largest acceptable median time for an update to reach an open page, in ms.
const UPDATE_MS: f64 = 200.0;
/// Largest acceptable median time to the end of a huge log's first screenful, in ms.
const SCREENFUL_MS: f64 = 100.0;
/// The size of the huge log.
const HUGE_LOG: usize = 100 * 1024 * 1024;
/// Requests of the huge log's page.
const LOG_REQUESTS: usize = 6;

/// Measures the three figures.
pub(super) async fn run(site: &mut Site, report: &mut Report) -> anyhow::Result<()> {
    let client = client()?;
    let page = format!(
        "/{REPO}/ref/heads/{}",
        branch_name(MOVED.min(site.targets - 1))
    );
    let target = format!("{REPO}/heads/{}", branch_name(MOVED.min(site.targets - 1)));
    let mut next_hash = 1_000_000_u64;

    // 49 more states: 50 with the one of the load.
    for _ in 1..STATES {
        next_hash += 1;
        move_head(site, next_hash, &target).await?;
    }
    let mut times = Vec::with_capacity(REQUESTS);
    for i in 0..WARM_UP + REQUESTS {
        let started = Instant::now();
        let body = get_ok(&client, &site.url(&page)).await?;
        let elapsed = started.elapsed();
        if i == 0 {
            let rows = body.matches(r#"<tr class="recorded"#).count();
            ensure!(rows >= 20, "the target page lists {rows} recorded states");
            ensure!(
                body.contains("Older states"),
                "the target page has no older states to page to"
            );
        }
        if i >= WARM_UP {
            times.push(elapsed);
        }
    }
    report.add(
        Figure::millis(
            format!("web: render GET {page} with {STATES} recorded states, median of {REQUESTS}"),
            quantile(&times, 0.5),
        )
        .target(Target::AtMost(TARGET_PAGE_MS)),
    );

    // Live updates: the event stream, as the page's script follows it.
    let mut events = client
        .get(site.url("/api/v1/events"))
        .send()
        .await
        .context("GET /api/v1/events")?;
    ensure!(
        events.status() == reqwest::StatusCode::OK,
        "GET /api/v1/events answered {}",
        events.status()
    );
    let mut buffered = String::new();
    let mut delays = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let mut announced = site.engine.subscribe();
        next_hash += 1;
        let head = fake_hash(next_hash);
        write_head(site, &head).await?;
        // The engine announces the new status once written.
        let written = loop {
            match announced.recv().await {
                Ok(change)
                    if change.target.to_string() == target && change.commit.to_string() == head =>
                {
                    break Instant::now();
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => anyhow::bail!("the engine stopped"),
            }
        };
        // The page's script sees the event...
        let needle = format!(r#""commit":"{head}""#);
        while !buffered.contains(&needle) {
            let chunk = tokio::time::timeout(Duration::from_secs(30), events.chunk())
                .await
                .context("no event within 30 s")??
                .context("the event stream ended")?;
            buffered.push_str(&String::from_utf8_lossy(&chunk));
        }
        buffered.clear();
        // ...and fetches the page again.
        let body = get_ok(&client, &site.url(&page)).await?;
        delays.push(written.elapsed());
        ensure!(
            body.contains(&head[..8]),
            "the fetched page does not show head {head}"
        );
    }
    report.add(
        Figure::millis(
            format!(
                "web: an update reaching an open page (status written → event over HTTP → page fetched), median of {REQUESTS}"
            ),
            quantile(&delays, 0.5),
        )
        .target(Target::AtMost(UPDATE_MS)),
    );
    report.add(Figure::millis(
        format!("web: an update reaching an open page, p90 of {REQUESTS}"),
        quantile(&delays, 0.9),
    ));
    drop(events);

    // A huge saved log: as an older store has it (the baseline), and as the cache saves it now.
    let (unindexed, _, plain_save) = save_huge_log(site, false).await?;
    let (path, lines, indexed_save) = save_huge_log(site, true).await?;
    report.add(Figure::millis(
        format!(
            "web: saving a {} MB log, as older stores did (the log alone)",
            HUGE_LOG >> 20
        ),
        plain_save,
    ));
    report.add(Figure::millis(
        format!(
            "web: saving a {} MB log with its index and tail",
            HUGE_LOG >> 20
        ),
        indexed_save,
    ));
    let (baseline_first, baseline_end) = view_huge_log(&client, site, &unindexed, lines).await?;
    report.add(Figure::millis(
        format!(
            "web: a {} MB saved log without an index (older stores), first view (the whole log read), first byte",
            HUGE_LOG >> 20
        ),
        baseline_first,
    ));
    report.add(Figure::millis(
        format!(
            "web: a {} MB saved log without an index (older stores), first view, end of the first screenful",
            HUGE_LOG >> 20
        ),
        baseline_end,
    ));
    let (mut first_bytes, mut ends) = (Vec::new(), Vec::new());
    for _ in 0..LOG_REQUESTS {
        let (first_byte, end) = view_huge_log(&client, site, &path, lines).await?;
        first_bytes.push(first_byte);
        ends.push(end);
    }
    // The first view reads the stored tail; the others find the tail kept by the server.
    report.add(
        Figure::millis(
            format!(
                "web: a {} MB saved log, first view (its stored tail read), first byte",
                HUGE_LOG >> 20
            ),
            first_bytes[0],
        )
        .target(Target::AtMost(SCREENFUL_MS)),
    );
    report.add(
        Figure::millis(
            format!(
                "web: a {} MB saved log, first view, end of the first screenful (its tail, ≥ 1,000 lines)",
                HUGE_LOG >> 20
            ),
            ends[0],
        )
        .target(Target::AtMost(SCREENFUL_MS)),
    );
    report.add(Figure::new(
        format!(
            "web: a {} MB saved log's first view, end of the first screenful, against the same log without an index",
            HUGE_LOG >> 20
        ),
        ends[0].as_secs_f64() / baseline_end.as_secs_f64(),
        "×",
    ));
    let (first_bytes, ends) = (&first_bytes[1..], &ends[1..]);
    report.add(Figure::millis(
        format!(
            "web: a {} MB saved log's page, later views, first byte, median of {}",
            HUGE_LOG >> 20,
            LOG_REQUESTS - 1
        ),
        quantile(first_bytes, 0.5),
    ));
    report.add(
        Figure::millis(
            format!(
                "web: a {} MB saved log's page, later views, end of the first screenful (its tail, ≥ 1,000 lines), median of {}",
                HUGE_LOG >> 20,
                LOG_REQUESTS - 1
            ),
            quantile(ends, 0.5),
        )
        .target(Target::AtMost(SCREENFUL_MS)),
    );
    site.check_running()
}

/// Moves the measured branch's head to a new commit and waits until its state is recorded.
async fn move_head(site: &Site, n: u64, target: &str) -> anyhow::Result<()> {
    let mut announced = site.engine.subscribe();
    let head = fake_hash(n);
    write_head(site, &head).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while seen < super::site::JOBS.len() {
        ensure!(
            Instant::now() < deadline,
            "no status for head {head} of {target} within 60 s"
        );
        match tokio::time::timeout(Duration::from_secs(60), announced.recv()).await? {
            Ok(change)
                if change.target.to_string() == target && change.commit.to_string() == head =>
            {
                seen += 1;
            }
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => anyhow::bail!("the engine stopped"),
        }
    }
    // The history is written after the statuses: wait for the state on this head.
    let id: datakit_ci::term::TargetId = site
        .engine
        .targets()
        .into_iter()
        .map(|view| view.target.id())
        .find(|id| id.to_string() == target)
        .context("the moved target is not tracked")?;
    loop {
        let latest = site.engine.history().latest(&id).await?;
        if latest.is_some_and(|state| state.source_commit.is_some_and(|c| c.to_string() == head)) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "no recorded state for head {head} within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Commits the measured branch's new head to the metadata, as a bridge would.
async fn write_head(site: &Site, head: &str) -> anyhow::Result<()> {
    let mut transaction = site
        .store
        .branch(&BranchName::new(METADATA_BRANCH)?)
        .transaction()
        .await?;
    transaction.create_file(
        &head_path(MOVED.min(site.targets - 1))?,
        format!("{head}\n"),
    )?;
    transaction.commit("Move the head").await?;
    Ok(())
}

/// `GET path` of a huge log's page: the time to its first byte and to its end, after checking
/// that it shows at least 1,000 lines and ends with line `lines`.
async fn view_huge_log(
    client: &reqwest::Client,
    site: &Site,
    path: &str,
    lines: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let started = Instant::now();
    let mut response = client.get(site.url(path)).send().await?;
    ensure!(
        response.status() == reqwest::StatusCode::OK,
        "GET {path} answered {}",
        response.status()
    );
    let mut body = Vec::new();
    let mut first_byte = None;
    while let Some(chunk) = response.chunk().await? {
        first_byte.get_or_insert_with(|| started.elapsed());
        body.extend_from_slice(&chunk);
    }
    let end = started.elapsed();
    let shown = body
        .windows(16)
        .filter(|w| w == br#"<div class="line"#)
        .count();
    ensure!(shown >= 1000, "the huge log's page shows {shown} lines");
    let last = format!(r#"id="L{lines}""#);
    ensure!(
        body.windows(last.len()).any(|w| w == last.as_bytes()),
        "the huge log's page does not end with line {lines}"
    );
    Ok((first_byte.unwrap_or(end), end))
}

/// Commits a [`HUGE_LOG`] log to a cache branch, with its index (as the cache saves logs) or
/// without (as older stores have them); its page's path, its number of lines and how long the
/// commit took.
async fn save_huge_log(site: &Site, indexed: bool) -> anyhow::Result<(String, usize, Duration)> {
    let mut log = Vec::with_capacity(HUGE_LOG + 100);
    let mut lines = 0;
    while log.len() < HUGE_LOG {
        lines += 1;
        log.extend_from_slice(
            format!("[2026-12-07 18:00.00] line {lines:08} of a huge build log, compiling crate number {}\n", lines % 977)
                .as_bytes(),
        );
    }
    let branch = if indexed {
        "bench-huge-log"
    } else {
        "bench-huge-log-unindexed"
    };
    let started = Instant::now();
    let mut transaction = site
        .store
        .branch(&BranchName::new(branch)?)
        .transaction()
        .await?;
    if indexed {
        datakit_ci::cache::save_log(&mut transaction, log.as_slice(), false)?;
    } else {
        transaction.create_file(&StorePath::new("log")?, log)?;
    }
    let commit = transaction.commit("A huge log").await?;
    Ok((
        format!("/log/saved/{branch}/{commit}"),
        lines,
        started.elapsed(),
    ))
}

/// `GET url`, failing unless the status is `200`; the body.
async fn get_ok(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response.text().await?;
    ensure!(
        status == reqwest::StatusCode::OK,
        "GET {url} answered {status}"
    );
    Ok(body)
}
