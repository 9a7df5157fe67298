//! The tree of logs attached to a result: live logs of running builds, saved logs of finished
//! ones, and pairs of both built by the combinators.

use std::fmt;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use datakit_ci_log::LiveLog;
use datakit_ci_store::{BranchName, CommitId};

/// The logs that explain a result.
#[derive(Clone, Debug, Default)]
pub enum Logs {
    /// No log.
    #[default]
    Empty,
    /// The log of a build that is still running.
    Live(LiveLog),
    /// The log of a finished build, kept in the store.
    Saved(SavedLog),
    /// The logs of two sub-computations, in evaluation order.
    Pair(Box<Logs>, Box<Logs>),
}

impl Logs {
    /// Both logs, in order; an empty side disappears so that trees stay small.
    pub fn pair(first: Logs, second: Logs) -> Logs {
        match (first, second) {
            (Logs::Empty, other) | (other, Logs::Empty) => other,
            (a, b) => Logs::Pair(Box::new(a), Box::new(b)),
        }
    }

    /// Whether there is no log at all.
    pub fn is_empty(&self) -> bool {
        match self {
            Logs::Empty => true,
            Logs::Pair(a, b) => a.is_empty() && b.is_empty(),
            Logs::Live(_) | Logs::Saved(_) => false,
        }
    }

    /// Every live and saved log in the tree, in order (the list a job row shows).
    pub fn leaves(&self) -> Vec<LogLeaf<'_>> {
        let mut leaves = Vec::new();
        self.collect_leaves(&mut leaves);
        leaves
    }

    fn collect_leaves<'a>(&'a self, leaves: &mut Vec<LogLeaf<'a>>) {
        match self {
            Logs::Empty => {}
            Logs::Live(log) => leaves.push(LogLeaf::Live(log)),
            Logs::Saved(saved) => leaves.push(LogLeaf::Saved(saved)),
            Logs::Pair(a, b) => {
                a.collect_leaves(leaves);
                b.collect_leaves(leaves);
            }
        }
    }
}

/// One log of a [`Logs`] tree.
#[derive(Clone, Copy, Debug)]
pub enum LogLeaf<'a> {
    /// A running build's log.
    Live(&'a LiveLog),
    /// A finished build's log.
    Saved(&'a SavedLog),
}

/// The log of a finished build, stored as file `log` of `commit` on `branch`.
///
/// Clones share the rebuild state, so the web page and the engine see "rebuild queued" at once.
#[derive(Clone)]
pub struct SavedLog {
    title: String,
    commit: CommitId,
    branch: BranchName,
    failed: bool,
    rebuild: Arc<Mutex<RebuildState>>,
}

impl SavedLog {
    /// A saved log whose build can be redone by forcing `rebuild`, or cannot (`None`).
    pub fn new(
        title: impl Into<String>,
        commit: CommitId,
        branch: BranchName,
        failed: bool,
        rebuild: Option<RebuildTrigger>,
    ) -> Self {
        let state = match rebuild {
            Some(trigger) => RebuildState::Rebuildable(trigger),
            None => RebuildState::Archived,
        };
        SavedLog {
            title: title.into(),
            commit,
            branch,
            failed,
            rebuild: Arc::new(Mutex::new(state)),
        }
    }

    /// The build's title.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The store commit holding the log.
    pub fn commit(&self) -> CommitId {
        self.commit
    }

    /// The cache branch the build wrote.
    pub fn branch(&self) -> &BranchName {
        &self.branch
    }

    /// Whether the build failed.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Where the rebuild of this log stands.
    pub fn rebuild_state(&self) -> RebuildStateKind {
        match &*self.lock_rebuild() {
            RebuildState::Rebuildable(_) => RebuildStateKind::Rebuildable,
            RebuildState::Rebuilding => RebuildStateKind::Rebuilding,
            RebuildState::Archived => RebuildStateKind::Archived,
        }
    }

    /// Starts a rebuild if this log is rebuildable, marking it `Rebuilding`.
    ///
    /// Returns the trigger to await, or `None` when the log is archived or already rebuilding.
    pub fn request_rebuild(&self) -> Option<RebuildTrigger> {
        let mut state = self.lock_rebuild();
        match std::mem::replace(&mut *state, RebuildState::Rebuilding) {
            RebuildState::Rebuildable(trigger) => Some(trigger),
            other => {
                *state = other;
                None
            }
        }
    }

    fn lock_rebuild(&self) -> std::sync::MutexGuard<'_, RebuildState> {
        // The state is a plain enum swapped in one step; a panic elsewhere cannot leave it torn.
        self.rebuild
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for SavedLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SavedLog")
            .field("title", &self.title)
            .field("commit", &self.commit)
            .field("branch", &self.branch)
            .field("failed", &self.failed)
            .field("rebuild", &self.rebuild_state())
            .finish()
    }
}

enum RebuildState {
    Rebuildable(RebuildTrigger),
    Rebuilding,
    Archived,
}

/// Where a saved log's rebuild stands, for display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebuildStateKind {
    /// A rebuild can be requested.
    Rebuildable,
    /// A rebuild was requested and is queued or running.
    Rebuilding,
    /// The log was loaded from history; its build can no longer be redone from here.
    Archived,
}

/// A memoised action that marks a cached build for rebuilding: awaiting it any number of times,
/// from any number of clones, runs the action once.
#[derive(Clone)]
pub struct RebuildTrigger(Shared<BoxFuture<'static, Result<(), String>>>);

impl RebuildTrigger {
    /// Wraps `action`, which runs the first time the trigger is awaited.
    pub fn new(action: impl Future<Output = Result<(), String>> + Send + 'static) -> Self {
        RebuildTrigger(action.boxed().shared())
    }

    /// Runs the action (once) and returns its result.
    pub async fn fire(self) -> Result<(), String> {
        self.0.await
    }
}

impl fmt::Debug for RebuildTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RebuildTrigger")
    }
}
