//! The harness's error: what can go wrong running programs and daemons on the machine, shared by
//! the swarm ([`crate::swarm`]) and the standalone daemons ([`crate::dockerd`]).

use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong bringing up, using or removing what the harness runs: the swarm, its
/// registry, a standalone `dockerd`.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A program the harness runs is not installed.
    #[error("the swarm harness needs `{program}`: install Debian's {package} package")]
    MissingProgram {
        /// The program.
        program: &'static str,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// A program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// A command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// What it printed on its error output.
        stderr: String,
    },
    /// A file operation failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What the harness was doing.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A daemon of the harness failed; the end of its log says why.
    #[error("{program} (log {}): {source}\n--- end of its log ---\n{tail}", log.display())]
    Daemon {
        /// The daemon's program.
        program: &'static str,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
        /// What failed.
        source: Box<HarnessError>,
    },
    /// Something did not happen in time.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        /// What the harness waited for.
        what: String,
        /// How long it waited.
        waited: Duration,
    },
    /// The host's daemon is in a swarm the harness did not make.
    #[error(
        "the host's Docker daemon is already in a swarm that the test harness did not make \
         (node {node}, state {state}; its node has no label {label}=manager): refusing to \
         change it; run the swarm tests on a machine whose daemon is in no swarm, or leave that \
         swarm yourself"
    )]
    ForeignSwarm {
        /// The host's node id.
        node: String,
        /// Its local swarm state.
        state: String,
        /// The node label that marks the harness's manager.
        label: &'static str,
    },
    /// A worker number outside the cluster.
    #[error("the cluster has workers w1 to w{workers}; there is no w{index}")]
    NoSuchWorker {
        /// The number asked for.
        index: usize,
        /// How many workers the cluster has.
        workers: usize,
    },
    /// More workers than the address plan has room for.
    #[error("at most {max} workers, not {asked}")]
    TooManyWorkers {
        /// How many were asked for.
        asked: usize,
        /// How many the address plan has room for.
        max: usize,
    },
    /// A program's output was not what the harness expected.
    #[error("unexpected {what}: {got:?}")]
    Unexpected {
        /// What was read.
        what: String,
        /// What it was.
        got: String,
    },
}
