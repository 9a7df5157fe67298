//! Child processes for datakit-ci builds.
//!
//! A [`Cmd`] describes what to run: an argument vector (no shell unless you put `sh -c` in
//! it), a working directory, environment changes, stdin data, where the output goes (callbacks
//! and a [`LiveLog`](datakit_ci_log::LiveLog)), a timeout and a cancellation token.
//! [`run`] runs it and fails unless it exits with status 0; [`run_with_exit_status`] returns
//! the [`ExitStatus`] instead.
//!
//! Each child runs in its own process group. When the command is cancelled or times out, the
//! whole group gets SIGTERM and, after a grace period, SIGKILL, so grandchildren die too; the
//! same happens (SIGKILL at once) if the future returned by [`run`] is dropped. When the child
//! exits, what is left of its group is killed.
//!
//! Every process of a run carries a marker in its environment ([`MARKER_VAR`]), so that the
//! processes that leave the group (`setsid`, a double fork) are killed with it: on cancellation,
//! timeout or drop by a scan of the machine's processes; at every end of a run, among this
//! program's children, if it is a [subreaper](become_subreaper) (which also reaps the orphans
//! it adopts). A [`Guardian`] kills a program's processes when the program dies, even by
//! SIGKILL, and [`kill_owned_by`] kills what a previous run of a program left.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//!
//! use datakit_ci_process::{Cmd, ExitStatus, run, run_with_exit_status};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), datakit_ci_process::Error> {
//! let output = Arc::new(Mutex::new(Vec::new()));
//! let sink = Arc::clone(&output);
//! let cmd = Cmd::new(["sh", "-c", "echo hello; echo oops >&2; exit 3"])?
//!     .stdout(move |chunk| sink.lock().expect("no panic while locked").extend_from_slice(chunk));
//! let error = run(cmd).await.expect_err("exit status 3 is a failure");
//! assert_eq!(
//!     error.to_string(),
//!     r#"command "sh" "-c" "echo hello; echo oops >&2; exit 3" exited with status 3"#
//! );
//! // stderr is merged into stdout unless a separate stderr callback is given
//! assert_eq!(*output.lock().expect("no panic while locked"), b"hello\noops\n");
//!
//! let status = run_with_exit_status(Cmd::new(["sh", "-c", "kill -9 $$"])?).await?;
//! assert_eq!(status, ExitStatus::Signaled(9));
//! assert_eq!(status.to_string(), "was killed by signal SIGKILL");
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::time::Duration;

mod cmd;
mod run;
mod tree;

pub use cmd::Cmd;
pub use run::{run, run_with_exit_status};
pub use tree::{
    Guardian, MARKER_VAR, become_subreaper, guardian_main_if_asked, kill_owned_by, owner_id,
};

/// How a child process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this status code.
    Exited(i32),
    /// It was killed by this signal number (displayed by name, e.g. `SIGKILL`).
    Signaled(i32),
}

impl ExitStatus {
    /// Whether the process exited with status 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exited with status {code}"),
            ExitStatus::Signaled(signal) => {
                write!(f, "was killed by signal {}", signal_name(*signal))
            }
        }
    }
}

/// Errors from running a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// [`Cmd::new`] was given no arguments.
    #[error("empty command: the argument vector must at least name a program")]
    EmptyCommand,
    /// The child could not be started (program not found, bad working directory, no pipes).
    #[error("failed to start {display}")]
    Spawn {
        /// The command, as shown to users.
        display: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// Talking to the running child (its stdin, its output, waiting for it) failed.
    #[error("i/o error while running {display}")]
    Io {
        /// The command, as shown to users.
        display: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The child exited with a non-zero status (from [`run`] only).
    #[error("command {display} exited with status {code}")]
    Exited {
        /// The command, as shown to users.
        display: String,
        /// Its exit status.
        code: i32,
    },
    /// The child was killed by a signal (from [`run`] only).
    #[error("command {display} was killed by signal {signal}")]
    Signaled {
        /// The command, as shown to users.
        display: String,
        /// The signal's name, e.g. `SIGKILL` (or `signal <n>` for one without a name).
        signal: String,
    },
    /// The command's cancellation token was cancelled; its process group was killed.
    #[error("cancelled")]
    Cancelled,
    /// The command ran longer than its timeout; its process group was killed.
    #[error("exceeded timeout of {}", format_duration(*.timeout))]
    Timeout {
        /// The timeout that expired.
        timeout: Duration,
    },
    /// This process could not become a child subreaper ([`become_subreaper`]).
    #[error("cannot become the subreaper of the builds' processes")]
    Subreaper {
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The [`Guardian`] process could not be started.
    #[error("cannot start the guardian process that kills the builds if this program dies")]
    Guardian {
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Formats a duration for users like the original: `"%.2f seconds"` below two minutes,
/// `"%.2f minutes"` from then on.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(datakit_ci_process::format_duration(Duration::from_millis(500)), "0.50 seconds");
/// assert_eq!(datakit_ci_process::format_duration(Duration::from_secs(150)), "2.50 minutes");
/// ```
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds < 120.0 {
        format!("{seconds:.2} seconds")
    } else {
        format!("{:.2} minutes", seconds / 60.0)
    }
}

/// The name of signal number `signal` (`SIGKILL`), or `signal <n>` if it has none.
fn signal_name(signal: i32) -> String {
    match nix::sys::signal::Signal::try_from(signal) {
        Ok(signal) => signal.as_str().to_owned(),
        Err(_) => format!("signal {signal}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_switch_to_minutes_at_two_minutes() {
        assert_eq!(format_duration(Duration::from_secs(0)), "0.00 seconds");
        assert_eq!(
            format_duration(Duration::from_millis(119_994)),
            "119.99 seconds"
        );
        assert_eq!(format_duration(Duration::from_secs(120)), "2.00 minutes");
    }

    #[test]
    fn signals_are_named() {
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(200), "signal 200");
        assert_eq!(
            ExitStatus::Signaled(9).to_string(),
            "was killed by signal SIGKILL"
        );
        assert_eq!(ExitStatus::Exited(3).to_string(), "exited with status 3");
    }

    #[test]
    fn run_futures_can_be_spawned() {
        fn assert_send<T: Send>(_: &T) {}
        let cmd = Cmd::new(["true"]).expect("non-empty argv");
        assert_send(&run(cmd));
    }
}
