//! The datakit-ci engine: for each configured [`Project`] and each of its targets in the
//! `github-metadata` branch, evaluates every test's term, writes the job's status back to the
//! metadata (`<user>/<repo>/commit/<hash>/status/ci/datakit/<test>/`), and records history on
//! `status-…` branches and the `commit-index` branch.
//!
//! - [`Project`] and [`EngineConfig`] say what to test; [`parse_canary`] restricts targets.
//! - [`Engine::run`] follows the metadata branch; evaluation is incremental (see
//!   [`engine`](Engine) docs): only jobs whose inputs changed are evaluated again.
//! - [`Engine::subscribe`] announces every status written; [`Engine::targets`] and
//!   [`Engine::rebuild`] serve the command line and the web UI.
//! - [`Engine::refresh_view`] instead of [`Engine::run`]: an engine over a replica of another
//!   engine's store (a read-only web UI) shows what that engine recorded, evaluating nothing.

mod config;
mod engine;
mod metrics;
mod status;

pub use config::{
    ConfigError, EngineConfig, Plan, PlanFn, PlannedJob, Project, TestsFn, parse_canary,
};
pub use engine::{
    Engine, Error, JobView, METADATA_BRANCH, StatusChange, TargetView, UnreadableTarget,
};
pub use metrics::EngineMetrics;
pub use status::commit_page_url;
