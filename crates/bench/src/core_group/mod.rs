//! The `core` group: figures of the layers below the engine (store, terms, live logs, cache).
//! Each figure has its own module; this one only runs them in order.

mod cache;
mod live_log;
mod store;
mod terms;

use anyhow::Context;

use crate::Scale;
use crate::report::Report;

/// Measures every figure of the group, adding them to `report`.
pub(crate) async fn run(scale: Scale, report: &mut Report) -> anyhow::Result<()> {
    store::run(scale, report).await.context("store figures")?;
    terms::run(scale, report).await.context("term figures")?;
    live_log::run(scale, report)
        .await
        .context("live-log figures")?;
    cache::run(scale, report).await.context("cache figures")?;
    Ok(())
}
