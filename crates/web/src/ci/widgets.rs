//! Small HTML pieces shared by the CI pages (spec §1.5.2, §1.5.5): status labels and flags, the
//! status list of a row, and the log list of a job with its cancel and rebuild buttons.

use maud::{Markup, html};

use datakit_ci_term::{CommitHash, LogLeaf, RebuildStateKind};

use super::model::{Job, JobState, Phase};
use crate::{pages, urls};

/// What a viewer may do from a page: `Some(csrf token)` if they hold the `Builder` role.
#[derive(Clone, Debug)]
pub(crate) struct Actions {
    pub(crate) csrf: Option<String>,
}

/// The label class, icon class and word of a state.
pub(crate) fn classes(state: JobState) -> (&'static str, &'static str, &'static str) {
    match state {
        JobState::Success => ("label-success", "glyphicon-ok", "Success"),
        JobState::Pending => ("label-warning", "glyphicon-hourglass", "Pending"),
        JobState::Failure => ("label-danger", "glyphicon-remove", "Failure"),
    }
}

/// The big label: `span.label.<cls>` with an icon and the state in words.
pub(crate) fn status_label(state: JobState) -> Markup {
    let (class, icon, text) = classes(state);
    html! { span class={ "label " (class) } { span class={ "glyphicon " (icon) } {} " " (text) } }
}

/// The small flag: an icon titled with the state, or `<label> : <state>`.
pub(crate) fn status_flag(state: JobState, label: Option<&str>) -> Markup {
    let (class, icon, _) = classes(state);
    let title = match label {
        Some(label) => format!("{label} : {}", state.word()),
        None => state.word().to_owned(),
    };
    html! {
        span class={ "status glyphicon " (icon) " " (class) } title=(title) data-state=(state.word()) {
            (symbol(state))
        }
    }
}

/// A text symbol for the state, so pages read well without the icon font.
pub(crate) fn symbol(state: JobState) -> &'static str {
    match state {
        JobState::Success => "✔",
        JobState::Pending => "…",
        JobState::Failure => "✘",
    }
}

/// The coloured icon of a job's phase (`span.phase.phase-<word>`), titled with the word.
pub(crate) fn phase_icon(phase: Phase) -> Markup {
    let symbol = match phase {
        Phase::Queued => "◷",
        Phase::Running => "●",
        Phase::Passed => "✔",
        Phase::Failed => "✘",
        Phase::Cancelled => "⊘",
        Phase::Skipped => "↷",
        Phase::WaitingForApproval => "◇",
    };
    let class = match phase {
        Phase::WaitingForApproval => "approval",
        other => other.word(),
    };
    html! {
        span class={ "phase phase-" (class) } title=(phase.word()) role="img" aria-label=(phase.word()) { (symbol) }
    }
}

/// One flag per job, in job order.
pub(crate) fn status_list(jobs: &[Job]) -> Markup {
    html! {
        table.ci-status-list { tr {
            @for job in jobs { td { (status_flag(job.state(), Some(&job.name))) } }
        } }
    }
}

/// The logs of a job (spec §1.5.5): each live or saved log once, with its link, a cancel button
/// for running builds and a rebuild button for rebuildable saved logs (both for builders only);
/// then the description unless the last log's title says it already.
/// Log links carry the target page, the job and `head`, the commit it ran on, for the log
/// page's header.
pub(crate) fn job_logs(
    job: &Job,
    page: &str,
    head: Option<&CommitHash>,
    actions: &Actions,
) -> Markup {
    let Some(output) = &job.output else {
        return html! { p { (status_flag(JobState::Pending, None)) " (new)" } };
    };
    let mut seen = std::collections::HashSet::new();
    let mut last_title = None;
    let leaves: Vec<LogLeaf<'_>> = output
        .logs
        .leaves()
        .into_iter()
        .filter(|leaf| {
            seen.insert(match leaf {
                LogLeaf::Live(log) => log.branch().to_owned(),
                LogLeaf::Saved(saved) => saved.branch().to_string(),
            })
        })
        .collect();
    // Log pages name the job and link back to the page (`?target=…&job=…`).
    let mut context = form_urlencoded::Serializer::new(String::new());
    context
        .append_pair("target", page)
        .append_pair("job", &job.name);
    if let Some(head) = head {
        context.append_pair("commit", &head.to_string());
    }
    let context = context.finish();
    let items = html! {
        @for leaf in &leaves {
            div.log {
                @match leaf {
                    LogLeaf::Live(log) => {
                        (status_flag(JobState::Pending, None)) " "
                        @if let (Some(csrf), true) = (&actions.csrf, log.can_cancel()) {
                            (pages::post_form(
                                "cancel",
                                &format!("/cancel/{}", urls::encode_segment(log.branch())),
                                csrf,
                                html! {
                                    input type="hidden" name="redirect" value=(page);
                                    button.btn.btn-default.btn-xs.cancel type="submit" { "Cancel" }
                                },
                            )) " "
                        }
                        (log_link(&format!("{}?{context}", urls::live_log(log.branch())), log.title()))
                    }
                    LogLeaf::Saved(saved) => {
                        (status_flag(if saved.failed() { JobState::Failure } else { JobState::Success }, None)) " "
                        @match saved.rebuild_state() {
                            RebuildStateKind::Rebuildable => @if let Some(csrf) = &actions.csrf {
                                (pages::post_form(
                                    "rebuild",
                                    &format!("/log/rebuild/{}", urls::encode_segment(saved.branch().as_str())),
                                    csrf,
                                    html! {
                                        input type="hidden" name="redirect" value=(page);
                                        button.btn.btn-default.btn-xs.rebuild type="submit" { "Rebuild" }
                                    },
                                )) " "
                            },
                            RebuildStateKind::Rebuilding => "(rebuild queued) ",
                            RebuildStateKind::Archived => "(archived) ",
                        }
                        (log_link(&format!("{}?{context}", urls::saved_log(saved.branch().as_str(), &saved.commit().to_string())), saved.title()))
                    }
                }
            }
        }
    };
    for leaf in &leaves {
        last_title = Some(match leaf {
            LogLeaf::Live(log) => log.title(),
            LogLeaf::Saved(saved) => saved.title(),
        });
    }
    html! {
        (items)
        @if last_title != Some(job.description()) {
            p.description { (status_flag(job.state(), None)) " " (job.description()) }
        }
    }
}

fn log_link(url: &str, title: &str) -> Markup {
    html! { span { "[ " a.log-link href=(url) { "logs" } " ] " (title) } }
}
