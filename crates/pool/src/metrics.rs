//! Prometheus metrics shared by all pools (spec §6, `DataKitCI_pool_*`), registered once on
//! the application's registry.
//!
//! The original exports the two timings as summaries with only `_sum` and `_count`.
//! prometheus-client has no summary type, so they are histograms here: their `_sum` and
//! `_count` series are exactly the summary's, plus `_bucket` series.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Metrics of all pools, registered once on the application's registry (no global state).
///
/// Each metric has one series per pool, labelled `name="<pool name>"`:
/// `DataKitCI_pool_qlen`, `DataKitCI_pool_wait_time_seconds`, `DataKitCI_pool_use_time_seconds`,
/// `DataKitCI_pool_resources_in_use` and `DataKitCI_pool_capacity`. The two `_seconds`
/// metrics are histograms (the original's summaries have only the `_sum` and `_count` series,
/// which histograms also expose).
#[derive(Clone, Debug)]
pub struct PoolMetrics {
    pub(crate) qlen: Family<PoolLabels, Gauge>,
    pub(crate) wait_time: Family<PoolLabels, Histogram, fn() -> Histogram>,
    pub(crate) use_time: Family<PoolLabels, Histogram, fn() -> Histogram>,
    pub(crate) resources_in_use: Family<PoolLabels, Gauge>,
    pub(crate) capacity: Family<PoolLabels, Gauge>,
}

impl PoolMetrics {
    /// Creates the pool metrics and registers them on `registry` (full names, so register
    /// them on a registry without a prefix). Call it once per registry.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = PoolMetrics {
            qlen: Family::default(),
            wait_time: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            use_time: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            resources_in_use: Family::default(),
            capacity: Family::default(),
        };
        registry.register(
            "DataKitCI_pool_qlen",
            "Number of users waiting for a resource",
            metrics.qlen.clone(),
        );
        registry.register(
            "DataKitCI_pool_wait_time_seconds",
            "Time spent waiting for a resource",
            metrics.wait_time.clone(),
        );
        registry.register(
            "DataKitCI_pool_use_time_seconds",
            "Time spent using a resource",
            metrics.use_time.clone(),
        );
        registry.register(
            "DataKitCI_pool_resources_in_use",
            "Number of resources currently being used",
            metrics.resources_in_use.clone(),
        );
        registry.register(
            "DataKitCI_pool_capacity",
            "Total pool capacity",
            metrics.capacity.clone(),
        );
        metrics
    }
}

/// The label set of every pool metric: the pool's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PoolLabels {
    pub(crate) name: String,
}

/// Buckets from 1 ms to about 70 minutes, each four times the previous one.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 12))
}

/// Converts a count to a gauge value, saturating (no pool holds 2^63 of anything).
pub(crate) fn gauge_value(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}
