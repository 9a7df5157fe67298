//! Approvals of untrusted pull requests (issue 17): a Builder approves the head of a pull
//! request whose code may not run on its own (its `trust` file says so), once for all its jobs,
//! at `<repo>/commit/<hash>/approval/.pull-request` in the metadata
//! (`metadata::pull_request_approval_path`), where the jobs' terms read it
//! (`Term::pull_request_approval`). A new head needs its own approval.

use datakit_ci_term::metadata::{self, MetadataReader};
use datakit_ci_term::{CommitHash, Target, TargetId};

use super::{Engine, Error, lock};

impl Engine {
    /// Records that `user` approved the current head of the untrusted pull request `target`;
    /// returns that head. An approval already recorded is kept as it is (the first approver
    /// stays). Refused for a target that is not tracked, not a pull request, or not untrusted.
    pub async fn approve_pull_request(
        &self,
        target: &TargetId,
        user: &str,
    ) -> Result<CommitHash, Error> {
        let refuse = |reason| Error::NotApprovable {
            target: target.to_string(),
            job: metadata::PULL_REQUEST_APPROVAL.to_owned(),
            reason,
        };
        let head = {
            let state = lock(&self.inner.state);
            let tracked = state
                .targets
                .get(target)
                .ok_or_else(|| refuse("the target is not tracked"))?;
            match &tracked.target {
                Target::Pr(pr) if pr.trust.is_untrusted() => pr.head.clone(),
                Target::Pr(_) => return Err(refuse("the pull request needs no approval")),
                Target::Ref(_) => return Err(refuse("only pull requests are approved whole")),
            }
        };
        let path = metadata::pull_request_approval_path(target.repo(), &head)?;
        let message = format!("Approve {target} on {} to run ({user})", head.short(8));
        self.record_approval(&path, user, &message).await?;
        Ok(head)
    }

    /// Writes `user` at `path` of the metadata with the commit `message`, unless an approval is
    /// there already (the first approver stays).
    pub(super) async fn record_approval(
        &self,
        path: &datakit_ci_store::StorePath,
        user: &str,
        message: &str,
    ) -> Result<(), Error> {
        let mut transaction = self.inner.metadata.transaction().await?;
        if transaction.exists(path)? {
            transaction.abort();
        } else {
            transaction.create_file(path, format!("{user}\n"))?;
            transaction.commit(message).await?;
        }
        Ok(())
    }

    /// Who approved the current head of pull request `target`, if someone did, as the newest
    /// metadata commit the engine read says; `None` also for a target that is not tracked.
    pub fn pull_request_approval(&self, target: &TargetId) -> Result<Option<String>, Error> {
        // Read outside the lock: the store may go to disk.
        let (head, snapshot) = {
            let state = lock(&self.inner.state);
            match (state.targets.get(target), &state.snapshot) {
                (Some(tracked), Some(snapshot)) => {
                    (tracked.target.head().clone(), snapshot.clone())
                }
                _ => return Ok(None),
            }
        };
        let tree = snapshot.tree();
        Ok(MetadataReader::new(&tree).pull_request_approval(target.repo(), &head)?)
    }

    /// Whether `target` is an untrusted pull request whose current head nobody approved yet.
    pub(super) fn pull_request_waits(&self, target: &TargetId) -> Result<bool, Error> {
        let untrusted = {
            let state = lock(&self.inner.state);
            state.targets.get(target).is_some_and(
                |tracked| matches!(&tracked.target, Target::Pr(pr) if pr.trust.is_untrusted()),
            )
        };
        Ok(untrusted && self.pull_request_approval(target)?.is_none())
    }
}
