//! The result of evaluating a term: a value or a [`Problem`], plus the [`Logs`] that explain it.

use std::fmt;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use crate::logs::Logs;

/// A future that resolves when a pending computation may have made progress.
///
/// It is cheap to clone and may be awaited by any number of waiters; it never fails (a computation
/// that fails resolves its `Ready` too, so that the job is re-evaluated and sees the failure).
#[derive(Clone)]
pub struct Ready(Shared<BoxFuture<'static, ()>>);

impl Ready {
    /// Resolves when `future` does.
    pub fn new(future: impl Future<Output = ()> + Send + 'static) -> Self {
        Ready(future.boxed().shared())
    }

    /// Never resolves: a pending state that only an outside change can end.
    pub fn never() -> Self {
        Ready::new(futures::future::pending())
    }

    /// Resolves when a `tokio::sync::Notify`-style signal fires: returns the `Ready` and the
    /// sender that resolves it (dropping the sender resolves it too, so waiters never hang on
    /// a computation that went away).
    pub fn channel() -> (ReadySender, Ready) {
        let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
        let ready = Ready::new(async move {
            // Sent or dropped: either way the computation moved on.
            let _ = receiver.await;
        });
        (ReadySender(sender), ready)
    }

    /// Whether the future has already resolved.
    pub fn is_resolved(&self) -> bool {
        self.0.peek().is_some()
    }

    /// Waits until the computation may have made progress.
    pub async fn wait(self) {
        self.0.await
    }
}

impl fmt::Debug for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_resolved() {
            "Ready(resolved)"
        } else {
            "Ready(waiting)"
        })
    }
}

/// Resolves the [`Ready`] made by [`Ready::channel`].
#[derive(Debug)]
pub struct ReadySender(tokio::sync::oneshot::Sender<()>);

impl ReadySender {
    /// Resolves the paired [`Ready`].
    pub fn resolve(self) {
        // The receiver may be gone if nobody waits any more; nothing to do then.
        let _ = self.0.send(());
    }
}

/// Why a term has no value (yet).
#[derive(Clone, Debug)]
pub enum Problem {
    /// Still being computed; `ready` resolves when it is worth evaluating again.
    Pending {
        /// What the computation is waiting for, shown to users.
        reason: String,
        /// Resolves when the computation may have made progress.
        ready: Ready,
    },
    /// The computation failed; the message is shown to users and becomes the status description.
    Failure(String),
}

impl Problem {
    /// A pending problem that only an outside change can end.
    pub fn pending(reason: impl Into<String>) -> Self {
        Problem::Pending {
            reason: reason.into(),
            ready: Ready::never(),
        }
    }

    /// A failure with `message`.
    pub fn failure(message: impl Into<String>) -> Self {
        Problem::Failure(message.into())
    }

    /// The pending reason or failure message.
    pub fn message(&self) -> &str {
        match self {
            Problem::Pending { reason, .. } => reason,
            Problem::Failure(message) => message,
        }
    }
}

impl PartialEq for Problem {
    /// Problems are equal when they say the same thing; `ready` futures are not compared.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Problem::Pending { reason: a, .. }, Problem::Pending { reason: b, .. }) => a == b,
            (Problem::Failure(a), Problem::Failure(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Problem {}

/// The state of a computation: its result and the logs that explain it.
#[derive(Clone, Debug)]
pub struct Status<T> {
    /// The value, or why there is none.
    pub result: Result<T, Problem>,
    /// The logs of the steps that produced the result.
    pub output: Logs,
}

impl<T> Status<T> {
    /// A successful status without logs.
    pub fn ok(value: T) -> Self {
        Status {
            result: Ok(value),
            output: Logs::Empty,
        }
    }

    /// A failed status without logs.
    pub fn failure(message: impl Into<String>) -> Self {
        Status {
            result: Err(Problem::failure(message)),
            output: Logs::Empty,
        }
    }

    /// A pending status without logs, never becoming ready by itself.
    pub fn pending(reason: impl Into<String>) -> Self {
        Status {
            result: Err(Problem::pending(reason)),
            output: Logs::Empty,
        }
    }

    /// The same status with `output` as its logs.
    #[must_use]
    pub fn with_output(self, output: Logs) -> Self {
        Status { output, ..self }
    }
}
