//! One live log ([`LiveLog`]): appending text, headings and timestamped lines, the pending-reason
//! stack, finishing and cancelling. Byte storage lives in `buffer`, readers in `stream`.

use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::Poll;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::buffer::Buffer;
use crate::manager::{LogConfig, Registry};
use crate::mask::Masker;
use crate::stream::{LogReader, LogStream};

/// What a new live log needs; see [`LogManager::create`](crate::LogManager::create).
#[derive(Clone, Debug)]
pub struct LiveLogSpec {
    /// Store branch the log belongs to (one active log per branch).
    pub branch: String,
    /// Human-readable title, shown in the UI.
    pub title: String,
    /// Initial pending reason, the bottom of the pending-reason stack.
    pub pending: String,
    /// The build's cancellation token; [`LiveLog::cancel`] cancels it. `None`: not cancellable.
    pub cancel: Option<CancellationToken>,
}

/// A snapshot of a live log's pending state, as seen through [`LiveLog::pending_watch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingState {
    /// Top of the pending-reason stack.
    pub reason: Option<String>,
    /// Whether the log is finished.
    pub finished: bool,
}

/// Masks secret values in a [`LiveLog`] while it lives ([`LiveLog::mask`]); dropping it writes
/// what was held back and stops masking.
#[must_use = "masking stops when the guard is dropped"]
pub struct MaskGuard {
    log: LiveLog,
}

impl Drop for MaskGuard {
    fn drop(&mut self) {
        self.log.unmask();
    }
}

impl fmt::Debug for MaskGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaskGuard")
            .field("branch", &self.log.branch())
            .finish()
    }
}

/// The append-only output of a running build.
///
/// Cheap to clone (an `Arc` inside), `Send + Sync`. Writers append with [`write`](Self::write),
/// [`heading`](Self::heading) and [`log`](Self::log); any number of readers follow it with
/// [`stream`](Self::stream) or take the text so far with [`reader`](Self::reader) or
/// [`contents`](Self::contents).
#[derive(Clone)]
pub struct LiveLog {
    inner: Arc<Inner>,
}

struct Inner {
    branch: String,
    title: String,
    cancel: Option<CancellationToken>,
    buffer: Arc<Buffer>,
    /// The most bytes [`LiveLog::saved_reader`] gives.
    saved_limit: u64,
    /// Pending reasons, the top is the last element.
    pending: Mutex<Vec<String>>,
    pending_tx: watch::Sender<PendingState>,
    manager: Weak<Registry>,
    /// Cancelled by [`LiveLog::abandon`]: nothing needs the build's result any more.
    abandoned: AtomicBool,
    /// The secret values masked in what is written ([`LiveLog::mask`]); held while appending,
    /// so that writes keep their order.
    masker: Mutex<Masker>,
}

impl LiveLog {
    pub(crate) fn new(spec: LiveLogSpec, config: &LogConfig, manager: Weak<Registry>) -> Self {
        let (pending_tx, _) = watch::channel(PendingState {
            reason: Some(spec.pending.clone()),
            finished: false,
        });
        Self {
            inner: Arc::new(Inner {
                branch: spec.branch,
                title: spec.title,
                cancel: spec.cancel,
                saved_limit: config.saved_limit_bytes(),
                buffer: Arc::new(Buffer::new(
                    config.memory_limit_bytes(),
                    config.spill_dir_path().map(Into::into),
                    config.recent_window_bytes(),
                )),
                pending: Mutex::new(vec![spec.pending]),
                pending_tx,
                manager,
                abandoned: AtomicBool::new(false),
                masker: Mutex::new(Masker::default()),
            }),
        }
    }

    pub(crate) fn same_as(&self, other: &LiveLog) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The store branch this log belongs to.
    pub fn branch(&self) -> &str {
        &self.inner.branch
    }

    /// The log's title.
    pub fn title(&self) -> &str {
        &self.inner.title
    }

    /// Appends raw bytes (not necessarily UTF-8; kept verbatim) and wakes the readers.
    ///
    /// After [`finish`](Self::finish) the bytes are dropped with a warning.
    pub fn write(&self, data: &[u8]) {
        let mut masker = self.masker();
        if masker.is_active() {
            let masked = masker.push(data);
            self.append(&masked);
        } else {
            self.append(data);
        }
    }

    /// Replaces every occurrence of each of `secrets` (non-empty byte strings) by `***` in what
    /// is written from now on, until the returned guard is dropped: a write that ends with the
    /// start of a value holds that tail back (it is shorter than the longest value) until the
    /// next write, the guard's drop or [`finish`](Self::finish) says what it is.
    pub fn mask(&self, secrets: impl IntoIterator<Item = Vec<u8>>) -> MaskGuard {
        self.masker().add(secrets);
        MaskGuard { log: self.clone() }
    }

    /// Writes what the masker holds back, masked, and stops masking.
    fn unmask(&self) {
        let mut masker = self.masker();
        let rest = masker.finish();
        if !rest.is_empty() {
            self.append(&rest);
        }
    }

    fn masker(&self) -> MutexGuard<'_, Masker> {
        // The masker is only changed by pure code that does not panic.
        self.inner
            .masker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn append(&self, data: &[u8]) {
        if !self.inner.buffer.append(data) {
            tracing::warn!(
                branch = self.branch(),
                bytes = data.len(),
                "write to a finished live log dropped"
            );
        }
    }

    /// Appends a string.
    pub fn write_str(&self, s: &str) {
        self.write(s.as_bytes());
    }

    /// Appends formatted text, so that `write!(log, "...")` works.
    pub fn write_fmt(&self, args: fmt::Arguments<'_>) {
        match args.as_str() {
            Some(s) => self.write_str(s),
            None => self.write_str(&args.to_string()),
        }
    }

    /// Appends a heading line `=== <title>`, preceded by an empty line unless the log is empty.
    pub fn heading(&self, title: &str) {
        let separator = if self.is_empty() { "" } else { "\n" };
        self.write_str(&format!("{separator}=== {title}\n"));
    }

    /// Appends `[YYYY-MM-DD HH:MM.SS] <msg>` and a newline, in local time (note the `.` between
    /// minutes and seconds, as in the original).
    pub fn log(&self, msg: &str) {
        let now = chrono::Local::now().format("%Y-%m-%d %H:%M.%S");
        self.write_str(&format!("[{now}] {msg}\n"));
    }

    /// Number of bytes written so far.
    pub fn len(&self) -> u64 {
        self.inner.buffer.len()
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole text written so far (the spilled part is read back from its file).
    pub fn contents(&self) -> io::Result<Vec<u8>> {
        let mut contents = Vec::new();
        io::Read::read_to_end(&mut self.reader(), &mut contents)?;
        Ok(contents)
    }

    /// A synchronous reader over the text written so far (later writes are not included).
    pub fn reader(&self) -> LogReader {
        LogReader::new(Arc::clone(&self.inner.buffer))
    }

    /// The reader to save the log with: the whole text written so far if it fits the manager's
    /// [saved limit](crate::LogConfig::saved_limit); else its first and last halves of the limit,
    /// with a line between them saying how many bytes were cut and why.
    pub fn saved_reader(&self) -> LogReader {
        LogReader::head_and_tail(Arc::clone(&self.inner.buffer), self.inner.saved_limit)
    }

    /// An asynchronous stream of the log's bytes from offset 0, following new writes until the
    /// log is finished.
    pub fn stream(&self) -> LogStream {
        LogStream::new(Arc::clone(&self.inner.buffer))
    }

    #[doc(hidden)]
    /// Bytes of heap memory held for the text; stays at most the memory limit plus a few notices.
    pub fn memory_bytes(&self) -> usize {
        self.inner.buffer.memory_bytes()
    }

    fn lock_pending(&self) -> MutexGuard<'_, Vec<String>> {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes the pending state; called with the stack locked so updates stay ordered.
    fn publish_pending(&self, stack: &[String]) {
        self.inner.pending_tx.send_replace(PendingState {
            reason: stack.last().cloned(),
            finished: self.is_finished(),
        });
    }

    /// The current pending reason: the top of the stack.
    pub fn pending_reason(&self) -> Option<String> {
        self.lock_pending().last().cloned()
    }

    /// A watch of the pending state; it changes on every push, pop and on finish.
    pub fn pending_watch(&self) -> watch::Receiver<PendingState> {
        self.inner.pending_tx.subscribe()
    }

    /// Pushes `reason` onto the pending-reason stack until the returned guard is dropped.
    pub fn push_pending_reason(&self, reason: impl Into<String>) -> PendingReasonGuard {
        let reason = reason.into();
        let mut stack = self.lock_pending();
        stack.push(reason.clone());
        self.publish_pending(&stack);
        drop(stack);
        PendingReasonGuard {
            log: self.clone(),
            reason,
        }
    }

    /// Runs `fut`; if it does not complete on its first poll, `reason` is pushed onto the
    /// pending-reason stack until it does.
    pub async fn with_pending_reason<F: Future>(
        &self,
        reason: impl Into<String>,
        fut: F,
    ) -> F::Output {
        let mut fut = pin!(fut);
        let first = poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        match first {
            Poll::Ready(output) => output,
            Poll::Pending => {
                let _guard = self.push_pending_reason(reason);
                fut.await
            }
        }
    }

    /// Marks the log finished: unregisters it from its manager, ends every stream once it has read
    /// everything, and tells pending watchers. Idempotent.
    pub fn finish(&self) {
        self.unmask();
        if !self.inner.buffer.finish() {
            return;
        }
        if let Some(registry) = self.inner.manager.upgrade() {
            registry.remove(self);
        }
        let stack = self.lock_pending();
        self.publish_pending(&stack);
        drop(stack);
        tracing::debug!(
            branch = self.branch(),
            bytes = self.len(),
            "live log finished"
        );
    }

    /// Whether [`finish`](Self::finish) was called.
    pub fn is_finished(&self) -> bool {
        self.inner.buffer.is_finished()
    }

    /// Whether [`cancel`](Self::cancel) would do something: the log has a cancellation token that
    /// is not cancelled yet, and it is not finished.
    pub fn can_cancel(&self) -> bool {
        !self.is_finished()
            && self
                .inner
                .cancel
                .as_ref()
                .is_some_and(|token| !token.is_cancelled())
    }

    /// Cancels the build: logs `Cancelled at user's request`, then cancels the token.
    ///
    /// Fails with [`Error::NotCancellable`] if the log has no cancellation token. As in the
    /// original, cancelling twice logs the line twice (the token stays cancelled).
    pub fn cancel(&self) -> Result<(), Error> {
        let token = self.token()?;
        self.log("Cancelled at user's request");
        token.cancel();
        tracing::info!(
            branch = self.branch(),
            "live log cancelled at user's request"
        );
        Ok(())
    }

    /// Cancels the build because nothing needs its result any more (e.g. the only target
    /// showing it was deleted or renamed): logs why, then cancels the token. Unlike
    /// [`cancel`](Self::cancel), which a person asks for, this is not the build's result: the
    /// builder should record nothing ([`was_abandoned`](Self::was_abandoned)), so that the
    /// build runs again if something needs it later.
    ///
    /// Fails with [`Error::NotCancellable`] if the log has no cancellation token.
    pub fn abandon(&self) -> Result<(), Error> {
        let token = self.token()?;
        self.inner.abandoned.store(true, Ordering::Release);
        self.log("Stopped: no target needs this build any more");
        token.cancel();
        tracing::info!(
            branch = self.branch(),
            "live log abandoned: no longer needed"
        );
        Ok(())
    }

    /// Whether [`abandon`](Self::abandon) was called: the build was stopped because nothing
    /// needed it, so its outcome is not a result.
    pub fn was_abandoned(&self) -> bool {
        self.inner.abandoned.load(Ordering::Acquire)
    }

    /// The build's cancellation token, or [`Error::NotCancellable`].
    fn token(&self) -> Result<&CancellationToken, Error> {
        self.inner
            .cancel
            .as_ref()
            .ok_or_else(|| Error::NotCancellable {
                branch: self.branch().to_owned(),
            })
    }
}

impl fmt::Debug for LiveLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveLog")
            .field("branch", &self.inner.branch)
            .field("title", &self.inner.title)
            .field("len", &self.len())
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}

/// Keeps a pending reason on its log's stack; dropping it removes the most recent occurrence of
/// that reason and notifies [`LiveLog::pending_watch`] watchers.
#[must_use = "the pending reason is removed as soon as the guard is dropped"]
pub struct PendingReasonGuard {
    log: LiveLog,
    reason: String,
}

impl PendingReasonGuard {
    /// The reason this guard keeps on the stack.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl Drop for PendingReasonGuard {
    fn drop(&mut self) {
        let mut stack = self.log.lock_pending();
        if let Some(index) = stack.iter().rposition(|reason| *reason == self.reason) {
            stack.remove(index);
        }
        self.log.publish_pending(&stack);
    }
}

impl fmt::Debug for PendingReasonGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingReasonGuard")
            .field("branch", &self.log.branch())
            .field("reason", &self.reason)
            .finish()
    }
}
