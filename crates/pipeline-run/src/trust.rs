//! Untrusted pull requests (issue 17 item 3): a pull request whose bridge says its code may not
//! run on its own (`PrTrust::Untrusted`: a fork, or an author who is not a collaborator) has
//! every job wait, as `Waiting for approval: <why>` ([`APPROVAL_PREFIX`], which GitHub shows as
//! `action_required`), until a Builder approves its head in the web UI (`Engine::approve_pull_request`,
//! read by `Term::pull_request_approval`). One approval covers every job of that head; a new
//! push needs a new one. Branches, tags and trusted pull requests run at once.

use datakit_ci_term::{PrTrust, Target, Term};

use crate::APPROVAL_PREFIX;

/// How a pull request whose bridge records nothing of its trust (`PrTrust::Unknown`) is
/// treated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnknownTrust {
    /// As trusted: the local bridge, whose refs are all pushed by people with access to the
    /// repository, never records trust.
    #[default]
    Trusted,
    /// Held, waiting for the bridge (not for an approval): the GitHub bridge records every
    /// open pull request's trust with its head, so one without it was stored by a version
    /// before issue 17, and the bridge's next full sync (one is made at every start) records
    /// it. Until then nothing runs, rather than running code nobody vetted.
    Wait,
}

/// How the description of a job of an approved untrusted pull request ends, before the
/// approver's name.
pub const PULL_REQUEST_APPROVED: &str = " (pull request approved by ";

/// `run` once `target` may run: at once for a branch, a tag or a trusted pull request; for an
/// untrusted one, pending as `Waiting for approval: <why>; …` until a Builder approves its head,
/// then `run`, its description followed by ` (pull request approved by <user>)`.
pub fn hold_untrusted(target: &Target, unknown: UnknownTrust, run: Term<String>) -> Term<String> {
    let Target::Pr(pr) = target else {
        return run;
    };
    let reason = match (&pr.trust, unknown) {
        (PrTrust::Trusted(_), _) | (PrTrust::Unknown, UnknownTrust::Trusted) => return run,
        (PrTrust::Unknown, UnknownTrust::Wait) => {
            return Term::pending(
                "Waiting for the forge to say whether this pull request may run (the bridge records it at its next sync)",
            );
        }
        (PrTrust::Untrusted(reason), _) => reason.clone(),
    };
    let head = pr.head.short(7).to_owned();
    Term::pull_request_approval(pr.repo.clone(), pr.head.clone()).and_then(move |approver| {
        match approver {
            None => Term::pending(format!(
                "{APPROVAL_PREFIX}: {reason}; its code runs once a Builder approves its head {head} in the web UI"
            )),
            Some(user) => run
                .clone()
                .map(move |description| format!("{description}{PULL_REQUEST_APPROVED}{user})")),
        }
    })
}
