//! Notifications (issue 20): when a target's result changes — it fails, it is fixed, or its
//! failure is a cancellation — a JSON event is POSTed to every configured URL, signed with
//! HMAC-SHA256 as GitHub signs its webhooks, and retried with backoff; the engine never waits for
//! it.
//!
//! - [`TargetResults`] turns the engine's job-level [`StatusChange`]s into target-level
//!   [`ResultChange`]s (pending steps are not news).
//! - [`NotifyEvent`] is the JSON body; [`signature`] its `X-DataKit-CI-Signature-256` header.
//! - [`Notifier`] follows the engine and delivers each event to each URL in order, from a bounded
//!   queue per URL.
//!
//! Knows nothing of the web UI's server or pages; it is an HTTP client only.
//!
//! [`StatusChange`]: datakit_ci_engine::StatusChange

mod deliver;
mod event;
mod results;

pub use deliver::{DeliveryConfig, Notifier, NotifyError, NotifySecret};
pub use event::{NotifyEvent, NotifyJob, signature};
pub use results::{ResultChange, ResultKind, TargetResults};
