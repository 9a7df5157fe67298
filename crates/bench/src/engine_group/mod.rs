//! The `engine` group: figures of the engine and of the whole local CI (issue 3). Each figure
//! has its own module; this one only runs them in order.

mod local;
mod scale;
pub(crate) mod sys;

use anyhow::Context;

use crate::Scale;
use crate::report::Report;

/// Measures every figure of the group, adding them to `report`.
pub(crate) async fn run(scale: Scale, report: &mut Report) -> anyhow::Result<()> {
    println!(
        "note: every store, repository and clone is in the system temporary directory {} \
         (as in the core group, not /dev/shm)",
        std::env::temp_dir().display()
    );
    scale::run(scale, report)
        .await
        .context("engine scale figures")?;
    local::run(scale, report)
        .await
        .context("local CI figures")?;
    Ok(())
}
