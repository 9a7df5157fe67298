//! The `engine` group: figures of the engine and of the whole local CI (issue 3). Each figure
//! has its own module; this one only runs them in order.

mod local;
mod scale;
pub(crate) mod sys;

use anyhow::Context;

use crate::Scale;
use crate::report::Report;

/// Measures every figure of the group, adding them to `report`.
/// With `only`, measures only the part of that name (`scale` or `local`).
pub(crate) async fn run(
    scale: Scale,
    only: Option<&str>,
    report: &mut Report,
) -> anyhow::Result<()> {
    if let Some(part) = only {
        anyhow::ensure!(
            matches!(part, "scale" | "local"),
            "the engine group has no part `{part}` (its parts: scale, local)"
        );
    }
    let wanted = |part: &str| only.is_none_or(|only| only == part);
    println!(
        "note: every store, repository and clone is in the system temporary directory {} \
         (as in the core group, not /dev/shm)",
        std::env::temp_dir().display()
    );
    // The stores of the scale figures (10,000 status branches, each a file) are deleted only
    // after the local CI's figures: on ext4 without a journal, every file created in the next
    // minutes would pass over their freed inodes, and the first throughput round took 4.3 times
    // its floor right after that deletion against 2.2–2.6 times in the later rounds.
    let mut scale_stores = Vec::new();
    if wanted("scale") {
        scale_stores = scale::run(scale, report)
            .await
            .context("engine scale figures")?;
    }
    if wanted("local") {
        local::run(scale, report)
            .await
            .context("local CI figures")?;
    }
    drop(scale_stores);
    Ok(())
}
