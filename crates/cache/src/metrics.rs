//! Prometheus metrics of all caches (spec §6), registered on the application's registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The `name` label: which builder.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct NameLabel {
    pub(crate) name: String,
}

/// Counters and gauges shared by every [`Cache`](crate::Cache) of an application.
///
/// The original exposed build time as a summary (`_sum`, `_count`); prometheus-client has no
/// summary, so it is a histogram, whose `_sum` and `_count` series are the same.
#[derive(Clone, Debug)]
pub struct CacheMetrics {
    pub(crate) started: Family<NameLabel, Counter>,
    pub(crate) succeeded: Family<NameLabel, Counter>,
    pub(crate) failed: Family<NameLabel, Counter>,
    pub(crate) exceptions: Family<NameLabel, Counter>,
    pub(crate) in_progress: Family<NameLabel, Gauge>,
    pub(crate) build_time: Family<NameLabel, Histogram>,
}

impl CacheMetrics {
    /// Creates the metrics and registers them on `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = CacheMetrics {
            started: Family::default(),
            succeeded: Family::default(),
            failed: Family::default(),
            exceptions: Family::default(),
            in_progress: Family::default(),
            build_time: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.1, 4.0, 8))
            }),
        };
        registry.register(
            "DataKitCI_cache_builds_started",
            "Total number of builds started",
            metrics.started.clone(),
        );
        registry.register(
            "DataKitCI_cache_builds_succeeded",
            "Total number of builds that succeeded",
            metrics.succeeded.clone(),
        );
        registry.register(
            "DataKitCI_cache_builds_failed",
            "Total number of builds that failed",
            metrics.failed.clone(),
        );
        registry.register(
            "DataKitCI_cache_build_exceptions",
            "Total number of builds that raised an exception",
            metrics.exceptions.clone(),
        );
        registry.register(
            "DataKitCI_cache_builds_in_progress",
            "Number of builds in progress",
            metrics.in_progress.clone(),
        );
        registry.register(
            "DataKitCI_cache_build_time",
            "Total build time",
            metrics.build_time.clone(),
        );
        metrics
    }
}
