//! The notice of an untrusted pull request on its target page (issue 17): why its code waits
//! (its `trust` file's reason: a fork, or an author who is not a collaborator) and, for
//! Builders, the button approving its current head (`POST /approve/<target path>` with the job
//! `.pull-request`, CSRF checked), or who approved it.

use maud::{Markup, html};

use datakit_ci_term::metadata::PULL_REQUEST_APPROVAL;
use datakit_ci_term::{PrTrust, Target};

use super::widgets::Actions;
use crate::pages::post_form;
use crate::urls;

/// The notice for `target` on its live page (`page` is its path), or nothing for a branch, a
/// tag or a pull request that is not untrusted. `approver` is who approved its head, if
/// someone did.
pub(crate) fn notice(
    target: Option<&Target>,
    approver: Option<&str>,
    page: &str,
    actions: &Actions,
) -> Markup {
    let Some(Target::Pr(pr)) = target else {
        return html! {};
    };
    let PrTrust::Untrusted(reason) = &pr.trust else {
        return html! {};
    };
    let head = pr.head.short(8);
    html! {
        @match approver {
            Some(user) => div.alert.alert-info.untrusted {
                "Untrusted pull request: " (reason) ". Its head " code { (head) }
                " was approved by " span.approver { (user) } "."
            },
            None => div.alert.alert-warning.untrusted {
                p {
                    "Untrusted pull request: " (reason) ". Its jobs run once a Builder approves its head "
                    code { (head) } "; a new push needs a new approval."
                }
                @if let Some(csrf) = &actions.csrf {
                    (post_form(
                        "approve-pull-request",
                        &urls::approve(page),
                        csrf,
                        html! {
                            input type="hidden" name="job" value=(PULL_REQUEST_APPROVAL);
                            button.btn.btn-primary.approve type="submit" { "Approve head " (head) }
                        },
                    ))
                }
            },
        }
    }
}
