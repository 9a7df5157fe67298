//! Cached builds for datakit-ci: a [`Builder`] describes one kind of slow computation, and a
//! [`Cache`] runs it at most once per key, recording the value, the log and any failure on a
//! store branch per key (DESIGN §6.1: files `log`, `failure`, `value/…`, `rebuild-requested`, and
//! `recipe`: what besides the key decided the result, see [`Builder::recipe`]; `artifacts/`:
//! files kept for download, see [`write_artifacts`]).
//!
//! - [`Cache::find`] gives a [`Term`](datakit_ci_term::Term) for a key: pending while the build
//!   runs (with the build's current pending reason and live log), then its result with the saved
//!   log, rebuildable from the web UI.
//! - Results survive restarts: a new `Cache` on the same store reuses them.
//! - [`CacheMetrics`] are the original's Prometheus metrics, on a registry the application owns.
//!
//! ```
//! # use datakit_ci_cache::{Build, Builder, Cache, CacheMetrics};
//! # use datakit_ci_store::{BranchName, Snapshot, Store};
//! # struct Double;
//! # impl Builder for Double {
//! #     type Key = u32; type Context = (); type Value = u32;
//! #     fn name(&self) -> String { "double".into() }
//! #     fn title(&self, key: &u32) -> String { format!("Double {key}") }
//! #     fn branch(&self, key: &u32) -> BranchName { BranchName::new(format!("double-{key}")).unwrap() }
//! #     async fn generate(&self, _: Build<'_>, _: &(), key: &u32) -> Result<u32, String> { Ok(key * 2) }
//! #     fn load(&self, _: &Snapshot, key: &u32) -> Result<u32, String> { Ok(key * 2) }
//! # }
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> anyhow::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(&dir.path().join("state.git"))?;
//! let mut registry = prometheus_client::registry::Registry::default();
//! let cache = Cache::new(Double, store, Default::default(), &CacheMetrics::new(&mut registry));
//! let status = loop {
//!     let status = cache.lookup((), 21).await;
//!     match &status.result {
//!         Err(datakit_ci_term::Problem::Pending { ready, .. }) => ready.clone().wait().await,
//!         _ => break status,
//!     }
//! };
//! assert_eq!(status.result, Ok(42));
//! # Ok(()) }
//! ```

mod artifacts;
mod builder;
mod cache;
mod metrics;
mod retention;
mod saved_log;

pub use artifacts::{
    ARTIFACTS_DIR, Artifact, ArtifactError, artifact_path, clear_artifacts, read_artifacts,
    write_artifacts,
};
pub use builder::{Build, Builder};
pub use cache::{Cache, Error};
pub use metrics::CacheMetrics;
pub use retention::{LOG_REMOVED_FILE, Retention, remove_old_logs};
pub use saved_log::save_log;
