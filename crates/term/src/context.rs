//! What a term is evaluated against, and what an evaluation reports it depended on.
//!
//! The engine re-evaluates a job only when something it depended on changes: a metadata path it
//! read (recorded as a path prefix of the `github-metadata` tree) or a `ready` future of a pending
//! sub-computation. Dropping an [`Dependencies`] value drops those watches, so a superseded
//! evaluation stops waking the engine.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use futures::FutureExt;

use datakit_ci_store::{Snapshot, StorePath};

use crate::ids::JobId;
use crate::status::Ready;

/// The environment of one evaluation of a job's term.
#[derive(Clone)]
pub struct EvalContext {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    job: JobId,
    metadata: Option<Snapshot>,
    dependencies: Mutex<Dependencies>,
}

impl EvalContext {
    /// A context for evaluating `job` against a snapshot of the `github-metadata` branch (or
    /// none, when the branch does not exist yet).
    pub fn new(job: JobId, metadata: Option<Snapshot>) -> Self {
        EvalContext {
            inner: Arc::new(ContextInner {
                job,
                metadata,
                dependencies: Mutex::new(Dependencies::default()),
            }),
        }
    }

    /// The job being evaluated.
    pub fn job(&self) -> &JobId {
        &self.inner.job
    }

    /// The metadata snapshot, if any.
    pub fn metadata(&self) -> Option<&Snapshot> {
        self.inner.metadata.as_ref()
    }

    /// Records that the evaluation read everything below `path` of the metadata tree.
    pub fn record_path(&self, path: StorePath) {
        self.with_dependencies(|d| {
            d.paths.insert(path);
        });
    }

    /// Records that the evaluation is worth repeating when `ready` resolves.
    pub fn record_ready(&self, ready: Ready) {
        self.with_dependencies(|d| d.ready.push(ready));
    }

    /// Takes what was recorded so far.
    pub(crate) fn take_dependencies(&self) -> Dependencies {
        self.with_dependencies(std::mem::take)
    }

    fn with_dependencies<R>(&self, f: impl FnOnce(&mut Dependencies) -> R) -> R {
        // Only plain inserts happen under this lock; a panic cannot leave it inconsistent.
        let mut guard = self
            .inner
            .dependencies
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

/// What an evaluation depended on.
#[derive(Clone, Debug, Default)]
pub struct Dependencies {
    paths: BTreeSet<StorePath>,
    ready: Vec<Ready>,
}

impl Dependencies {
    /// The metadata path prefixes that were read.
    pub fn paths(&self) -> &BTreeSet<StorePath> {
        &self.paths
    }

    /// How many `ready` futures the evaluation waits on.
    pub fn ready_count(&self) -> usize {
        self.ready.len()
    }

    /// Whether a change to `changed` (a file of the metadata tree) may change the result.
    pub fn is_affected_by(&self, changed: &StorePath) -> bool {
        self.paths.iter().any(|prefix| {
            let mut changed = changed.components();
            prefix.components().all(|part| changed.next() == Some(part))
        })
    }

    /// Resolves as soon as one of the pending sub-computations may have progressed; never
    /// resolves when there is none.
    pub async fn ready(&self) {
        if self.ready.is_empty() {
            return futures::future::pending().await;
        }
        let waits = self.ready.iter().map(|r| r.clone().wait().boxed());
        futures::future::select_all(waits).await;
    }
}
