//! What each job on the cluster is doing right now, for the dashboard: waiting in the queue,
//! getting its image, waiting for a node (and the scheduler's reason), or running on a node.
//!
//! Knows nothing of Docker's API: the executor moves its job's entry from phase to phase, and
//! the entry leaves the board when the job is done with the cluster.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use datakit_ci_term::JobId;

use crate::request::Priority;

/// Where a job of the cluster is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobPhase {
    /// In the queue in front of the cluster, with this many jobs to be admitted before it.
    Queued {
        /// How many waiting jobs go first.
        ahead: usize,
    },
    /// Admitted; its image (the job's image with the commit's tree) is being made or pushed.
    Preparing,
    /// Submitted; the scheduler has not placed its task, for this reason (e.g. `no ready node
    /// with pool=gpu (no suitable node …)`), or none given yet.
    Unplaced {
        /// The scheduler's reason, in words.
        reason: Option<String>,
    },
    /// Its task runs on this node (its id).
    Running {
        /// The node's id.
        node: String,
    },
}

/// A job the cluster has, for the dashboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwarmJob {
    /// The job.
    pub job: JobId,
    /// What it runs, as a pool's holder is shown (e.g. `Run unit in debian:bookworm`).
    pub label: String,
    /// Its priority in the queue.
    pub priority: Priority,
    /// Where it is.
    pub phase: JobPhase,
}

/// The jobs the executor has, by entry number (their order of arrival). Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Board {
    inner: Arc<Mutex<BoardState>>,
}

#[derive(Default)]
struct BoardState {
    next: u64,
    entries: BTreeMap<u64, Entry>,
}

struct Entry {
    job: JobId,
    label: String,
    priority: Priority,
    phase: Phase,
}

/// A phase as kept: a queued job's place is read from the queue when the board is shown.
#[derive(Clone)]
enum Phase {
    Queued { ticket: u64 },
    Known(JobPhase),
}

/// A job's entry on the board; it leaves the board when dropped.
pub(crate) struct OnBoard {
    board: Board,
    entry: u64,
}

impl Board {
    fn lock(&self) -> std::sync::MutexGuard<'_, BoardState> {
        self.inner
            .lock()
            .expect("no code panics while holding the board")
    }

    /// Puts `job` on the board, waiting in the queue as `ticket`.
    pub(crate) fn enter(
        &self,
        job: &JobId,
        label: &str,
        priority: Priority,
        ticket: u64,
    ) -> OnBoard {
        let mut state = self.lock();
        let entry = state.next;
        state.next += 1;
        state.entries.insert(
            entry,
            Entry {
                job: job.clone(),
                label: label.to_owned(),
                priority,
                phase: Phase::Queued { ticket },
            },
        );
        OnBoard {
            board: self.clone(),
            entry,
        }
    }

    /// The jobs in order of arrival; `ahead` says how many jobs go before a queued ticket
    /// (`None`: admitted since, shown as preparing).
    pub(crate) fn jobs(&self, ahead: impl Fn(u64) -> Option<usize>) -> Vec<SwarmJob> {
        let state = self.lock();
        state
            .entries
            .values()
            .map(|entry| SwarmJob {
                job: entry.job.clone(),
                label: entry.label.clone(),
                priority: entry.priority,
                phase: match &entry.phase {
                    Phase::Queued { ticket } => match ahead(*ticket) {
                        Some(ahead) => JobPhase::Queued { ahead },
                        None => JobPhase::Preparing,
                    },
                    Phase::Known(phase) => phase.clone(),
                },
            })
            .collect()
    }
}

impl OnBoard {
    /// The job is now in `phase`.
    pub(crate) fn set(&self, phase: JobPhase) {
        if let Some(entry) = self.board.lock().entries.get_mut(&self.entry) {
            entry.phase = Phase::Known(phase);
        }
    }
}

impl Drop for OnBoard {
    fn drop(&mut self) {
        self.board.lock().entries.remove(&self.entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datakit_ci_term::{RepoId, TargetId};

    fn job(name: &str) -> JobId {
        let repo = RepoId::new("me", "proj").expect("a valid repository");
        JobId::new(TargetId::Pr(repo, 1), name)
    }

    #[test]
    fn jobs_show_their_phase_until_they_leave() {
        let board = Board::default();
        let first = board.enter(&job("a"), "Run a", Priority::PullRequest, 7);
        let second = board.enter(&job("b"), "Run b", Priority::Bulk, 8);
        // Ticket 7 was admitted; ticket 8 has 3 jobs ahead.
        let ahead = |ticket| (ticket == 8).then_some(3);
        let jobs = board.jobs(ahead);
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].phase, JobPhase::Preparing);
        assert_eq!(jobs[1].phase, JobPhase::Queued { ahead: 3 });
        assert_eq!(jobs[1].label, "Run b");
        first.set(JobPhase::Running {
            node: "n1".to_owned(),
        });
        assert_eq!(
            board.jobs(ahead)[0].phase,
            JobPhase::Running {
                node: "n1".to_owned()
            }
        );
        drop(first);
        let jobs = board.jobs(ahead);
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].job, job("b"));
        drop(second);
        assert!(board.jobs(ahead).is_empty());
    }
}
