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
    if wanted("scale") {
        scale::run(scale, report)
            .await
            .context("engine scale figures")?;
    }
    if wanted("local") {
        local::run(scale, report)
            .await
            .context("local CI figures")?;
    }
    Ok(())
}
