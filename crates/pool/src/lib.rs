//! Monitored resource pools for datakit-ci: bounded slots whose holders and queue are visible.
//!
//! A [`MonitoredPool`] has a name and a capacity; [`MonitoredPool::use_`] waits (first come,
//! first served) for a free slot, then runs a future holding it as a [`Holder`]. While a user
//! waits, its live log shows the pending reason `Waiting for resource in "<name>"` and
//! [`MonitoredPool::queue`] lists it with the others, in order (the UI shows each one's place).
//! The
//! application owns one [`Pools`] (listing every pool for the UI) and one [`PoolMetrics`]
//! (the `DataKitCI_pool_*` Prometheus metrics, registered on its registry).
//!
//! ```
//! use prometheus_client::registry::Registry;
//! use datakit_ci_pool::{Holder, MonitoredPool, PoolMetrics, Pools};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), datakit_ci_pool::Error> {
//! let mut registry = Registry::default();
//! let metrics = PoolMetrics::new(&mut registry);
//! let pools = Pools::new();
//! let docker = MonitoredPool::new("Docker", 2, &metrics, &pools)?;
//!
//! let holder = Holder { job: "PR 4 / build".into(), label: "docker build".into(), log_branch: None };
//! let holders = docker.use_(holder.clone(), None, async { docker.holders() }).await;
//! assert_eq!(holders, vec![holder]);
//! assert_eq!(docker.active(), 0);
//! assert_eq!(pools.list().len(), 1);
//! # Ok(())
//! # }
//! ```

mod metrics;
mod pool;

pub use metrics::PoolMetrics;
pub use pool::{Holder, MonitoredPool, Pools};

/// Errors from creating a pool.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A pool with this name already exists in the [`Pools`].
    #[error("a pool named {name:?} already exists")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// A pool must have at least one slot.
    #[error("pool {name:?} must have a capacity of at least 1")]
    ZeroCapacity {
        /// The pool's name.
        name: String,
    },
}
