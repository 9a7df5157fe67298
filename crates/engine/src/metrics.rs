//! The engine's Prometheus metrics (spec §6), registered on the application's registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The `type` label of the active-targets gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TypeLabel {
    pub(crate) r#type: &'static str,
}

/// Counters and gauges of one engine.
#[derive(Clone, Debug)]
pub struct EngineMetrics {
    pub(crate) status_updates: Counter,
    pub(crate) update_notifications: Counter,
    pub(crate) active_targets: Family<TypeLabel, Gauge>,
    pub(crate) term_evals: Counter,
}

impl EngineMetrics {
    /// Creates the metrics and registers them on `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = EngineMetrics {
            status_updates: Counter::default(),
            update_notifications: Counter::default(),
            active_targets: Family::default(),
            term_evals: Counter::default(),
        };
        registry.register(
            "DataKitCI_engine_status_updates",
            "Number of status updates",
            metrics.status_updates.clone(),
        );
        registry.register(
            "DataKitCI_engine_update_notifications",
            "Number of notifications from DataKit",
            metrics.update_notifications.clone(),
        );
        registry.register(
            "DataKitCI_engine_active_targets",
            "Number of branches, tags and PRs currently being monitored",
            metrics.active_targets.clone(),
        );
        registry.register(
            "DataKitCI_term_evals",
            "Number of term evaluations",
            metrics.term_evals.clone(),
        );
        metrics
    }
}
