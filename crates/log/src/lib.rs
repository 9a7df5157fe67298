//! Live logs for datakit-ci: the append-only output of running builds, followed by any number of
//! readers while it grows.
//!
//! # Overview
//!
//! - [`LogManager`] is the registry of active logs, one per store branch. It is a cheap handle
//!   (clone it freely); there is no global instance.
//! - [`LogManager::create`] makes a [`LiveLog`] from a [`LiveLogSpec`]. A second log on the same
//!   branch is refused until the first is [finished](LiveLog::finish).
//! - A [`LiveLog`] is written with [`write`](LiveLog::write) (raw bytes, kept verbatim),
//!   [`heading`](LiveLog::heading) (`=== title`) and [`log`](LiveLog::log) (a line stamped with the
//!   local time, `[YYYY-MM-DD HH:MM.SS] msg`). It also carries the build's *pending-reason stack*
//!   ([`push_pending_reason`](LiveLog::push_pending_reason),
//!   [`with_pending_reason`](LiveLog::with_pending_reason), watched through
//!   [`pending_watch`](LiveLog::pending_watch)) and its cancellation token
//!   ([`cancel`](LiveLog::cancel)). [`LiveLog::mask`] replaces secret values by `***` in what
//!   is written while its [`MaskGuard`] lives, also when a write splits a value.
//! - [`index`]: what a viewer's first view of a big saved log needs, written beside it
//!   ([`LogIndex`], its tail, [`Indexer`]), and what makes a line look like an error
//!   ([`looks_like_error`]).
//! - [`LogStream`] ([`LiveLog::stream`]) yields the log from offset 0 in chunks, waiting for more
//!   until the log is finished. [`LogReader`] ([`LiveLog::reader`]) is a synchronous
//!   [`std::io::Read`] over the text written so far, for saving it.
//!
//! # Memory and storage
//!
//! The first [`DEFAULT_MEMORY_LIMIT`] bytes of each log (configurable with [`LogConfig`]) are kept
//! in memory; everything after goes to an unnamed temporary file (deleted by the OS when the last
//! handle closes), so a build printing gigabytes does not grow memory. The head stays in memory
//! because most logs are small and most viewers start at the beginning. Readers of the spilled part
//! use positional reads (`read_at`) of at most 64 KiB per chunk and never take the writer's lock;
//! readers keep only an offset, never a copy of the log. The last [`DEFAULT_RECENT_WINDOW`] bytes
//! spilled ([`LogConfig::recent_window`]) are also kept as shared, immutable segments: followers
//! close behind the writer — the usual case for a live log — get them from
//! [`LogStream::next_bytes`] as reference-counted [`bytes::Bytes`], so a hundred followers cost
//! one copy of the output, not a hundred. If the temporary file cannot be created or
//! written (disk full), the log continues: a line `=== log truncated: …` is appended, later output
//! is dropped and counted, and nothing panics.
//!
//! Writers never wait for readers: an append takes one short lock (a copy into memory or one
//! positional file write), publishes the new length and wakes waiting readers through a
//! [`tokio::sync::Notify`]. `examples/throughput.rs` measures append throughput with many readers
//! (`cargo run --release -p datakit-ci-log --example throughput`).
//!
//! # Example
//!
//! ```
//! use datakit_ci_log::{LiveLogSpec, LogManager};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let manager = LogManager::new();
//! let log = manager.create(LiveLogSpec {
//!     branch: "log-of-build-1".to_owned(),
//!     title: "Build 1".to_owned(),
//!     pending: "Building".to_owned(),
//!     cancel: None,
//! })?;
//! assert!(manager.get("log-of-build-1").is_some());
//!
//! // A viewer starts following the log.
//! let mut stream = log.stream();
//! let viewer = tokio::spawn(async move {
//!     let mut seen = Vec::new();
//!     while let Some(chunk) = stream.next_chunk().await? {
//!         seen.extend_from_slice(&chunk);
//!     }
//!     std::io::Result::Ok(seen)
//! });
//!
//! log.heading("Compiling");
//! log.write_str("cc -o hello hello.c\n");
//! assert_eq!(log.pending_reason().as_deref(), Some("Building"));
//! log.finish();
//!
//! let expected = "=== Compiling\ncc -o hello hello.c\n";
//! assert_eq!(viewer.await??, expected.as_bytes());
//! assert_eq!(log.contents()?, expected.as_bytes());
//! // Finishing frees the branch for the next build.
//! assert!(manager.get("log-of-build-1").is_none());
//! # Ok(())
//! # }
//! ```

mod buffer;
pub mod index;
mod live_log;
mod manager;
mod mask;
mod stream;

pub use index::{
    FirstError, IndexError, IndexedLog, Indexer, IndexingReader, LogIndex, is_heading,
    looks_like_error,
};
pub use live_log::{LiveLog, LiveLogSpec, MaskGuard, PendingReasonGuard, PendingState};
pub use manager::{
    DEFAULT_MEMORY_LIMIT, DEFAULT_RECENT_WINDOW, DEFAULT_SAVED_LIMIT, LogConfig, LogManager,
};
pub use stream::{LogReader, LogStream};

/// Errors of live-log operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A live log is already active on the branch.
    #[error("can't create new live log on branch {branch:?}; one is already active")]
    AlreadyActive {
        /// The branch that already has an active log.
        branch: String,
    },
    /// The log has no cancellation token.
    #[error("branch {branch:?} cannot be cancelled")]
    NotCancellable {
        /// The branch of the log.
        branch: String,
    },
}
