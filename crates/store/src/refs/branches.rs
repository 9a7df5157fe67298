//! Branches in this process: commits to one branch are serialised, and its head is broadcast to
//! watchers after every commit made through the store. Nothing else writes to the store while it
//! holds its lock, so in-process notification is enough.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::head::read_head;
use crate::BranchName;
use crate::CommitId;
use crate::odb::Repo;

/// In-process state of one branch: commits to it are serialised, and its head is broadcast.
pub(crate) struct BranchState {
    pub(crate) commit_lock: tokio::sync::Mutex<()>,
    pub(crate) head: watch::Sender<Option<CommitId>>,
}

/// The in-process state of every branch used so far.
#[derive(Default)]
pub(crate) struct Branches {
    states: Mutex<HashMap<BranchName, Arc<BranchState>>>,
}

impl Branches {
    /// The in-process state of `name`, made on first use from the branch's current head in `repo`.
    pub(crate) fn state(&self, repo: &Arc<Repo>, name: &BranchName) -> Arc<BranchState> {
        let mut branches = self.states.lock().expect("branch table lock poisoned");
        if let Some(state) = branches.get(name) {
            return Arc::clone(state);
        }
        let head = match read_head(&repo.get(), name) {
            Ok(head) => head,
            Err(error) => {
                tracing::warn!(branch = %name, %error, "cannot read branch head; watching from none");
                None
            }
        };
        let state = Arc::new(BranchState {
            commit_lock: tokio::sync::Mutex::new(()),
            head: watch::Sender::new(head),
        });
        branches.insert(name.clone(), Arc::clone(&state));
        state
    }
}
