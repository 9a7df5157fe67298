//! Why a step's attempt failed, and whether its `retry` runs it again: a timeout, an exit code,
//! the CI's infrastructure (a Docker daemon that does not answer, a clone or a copy of the
//! commit's tree that failed), or anything else (never retried).
//!
//! Knows nothing of how steps run: the runners classify their own failures.

use datakit_ci_pipeline::{Retry, RetryOn};

/// A failed attempt of a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    /// What the step's status says.
    pub(crate) message: String,
}

/// What made an attempt fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// The script exited with this status.
    Exit(i64),
    /// The step ran past its timeout.
    Timeout,
    /// The CI could not run the script: not the script's fault.
    Infrastructure,
    /// Anything else (a cancel, a missing image, a signal): never retried.
    Other,
}

impl Failure {
    /// A failure of `kind` saying `message`.
    pub(crate) fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }

    /// Whether `retry` runs the step again after this failure (attempts left aside).
    pub(crate) fn is_retried_by(&self, retry: &Retry) -> bool {
        retry.on.iter().any(|on| match (on, self.kind) {
            (RetryOn::Timeout, FailureKind::Timeout)
            | (RetryOn::Infrastructure, FailureKind::Infrastructure) => true,
            (RetryOn::ExitCode(wanted), FailureKind::Exit(code)) => i64::from(*wanted) == code,
            _ => false,
        })
    }

    /// The failure as the heading of the next attempt says it, e.g. `exit status 1`.
    pub(crate) fn reason(&self) -> String {
        match self.kind {
            FailureKind::Exit(code) => format!("exit status {code}"),
            FailureKind::Timeout => "a timeout".to_owned(),
            FailureKind::Infrastructure => format!("an infrastructure failure: {}", self.message),
            FailureKind::Other => self.message.clone(),
        }
    }
}

/// The log's heading before attempt `attempt` of `attempts`, after `failure`:
/// `=== Attempt 2 of 3 (after exit status 1) ===`.
pub(crate) fn heading(attempt: u32, attempts: u32, failure: &Failure) -> String {
    format!(
        "=== Attempt {attempt} of {attempts} (after {}) ===",
        failure.reason()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_reasons_are_retried() {
        let retry = Retry {
            attempts: 3,
            on: vec![RetryOn::ExitCode(7), RetryOn::Timeout],
        };
        let exit = |code| Failure::new(FailureKind::Exit(code), "exited");
        assert!(exit(7).is_retried_by(&retry));
        assert!(!exit(1).is_retried_by(&retry));
        assert!(Failure::new(FailureKind::Timeout, "t").is_retried_by(&retry));
        assert!(!Failure::new(FailureKind::Infrastructure, "i").is_retried_by(&retry));
        assert!(!Failure::new(FailureKind::Other, "cancelled").is_retried_by(&retry));
        assert_eq!(
            heading(2, 3, &exit(7)),
            "=== Attempt 2 of 3 (after exit status 7) ==="
        );
        assert_eq!(
            heading(
                3,
                3,
                &Failure::new(FailureKind::Timeout, "timed out after 1s")
            ),
            "=== Attempt 3 of 3 (after a timeout) ==="
        );
    }
}
