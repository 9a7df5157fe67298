//! The `web` group: figures of the web UI served over real HTTP on 127.0.0.1 (issue 4). One site
//! (store, engine with many targets, web server, live logs) is started once; each figure has its
//! own module, and this one only runs them in order.

mod cpu;
mod live_log;
mod pages;
mod site;
mod viewer;

use anyhow::Context;

use crate::Scale;
use crate::report::Report;

use site::Site;

/// Targets loaded in the full run (each with three jobs).
const TARGETS_FULL: usize = 10_000;
/// Targets loaded with `--quick`.
const TARGETS_QUICK: usize = 1_000;

/// Measures every figure of the group, adding them to `report`.
pub(crate) async fn run(scale: Scale, report: &mut Report) -> anyhow::Result<()> {
    let targets = match scale {
        Scale::Full => TARGETS_FULL,
        Scale::Quick => TARGETS_QUICK,
    };
    println!(
        "note: the engine and the HTTP clients share this process's tokio runtime ({} worker \
         threads), the web server has a runtime of its own (2 workers); the store is in {}",
        std::thread::available_parallelism().map_or(1, usize::from),
        std::env::temp_dir().display()
    );
    let mut site = Site::start(targets)
        .await
        .context("start the site (store, engine, web server)")?;
    let measured = async {
        site::report_load(&site, report);
        pages::run(scale, &mut site, report)
            .await
            .context("page figures")?;
        live_log::run(scale, &mut site, report)
            .await
            .context("live-log fan-out figures")?;
        viewer::run(&mut site, report)
            .await
            .context("issue 21 figures (history, live updates, huge logs)")?;
        anyhow::Ok(())
    }
    .await;
    let stopped = site.stop().await.context("stop the site");
    measured?;
    stopped
}
