//! Target pages `/<user>/<repo>/pr/<n>` and `/<user>/<repo>/ref/<path…>` (spec §1.4 rows 11–12,
//! §1.5.6): every job with its state, description and logs, cancel and rebuild buttons for
//! builders, and links to the target's recorded states (`?history=<commit>` shows one of them;
//! `?test=<job>` highlights a job).

use axum::extract::{Extension, OriginalUri, Query, RawPathParams, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use datakit_ci_store::CommitId;
use datakit_ci_term::TargetId;

use super::model::{self, PAGE_HISTORY, Shown};
use super::queue::QueuePlaces;
use super::widgets::{Actions, job_logs, status_label};
use super::{Ci, actions, not_found_page};
use crate::acl::Role;
use crate::pages::{Chrome, Tab, page, post_form};
use crate::{AppState, Error, Viewer, access, urls};

/// The query of a target page.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TargetQuery {
    /// A status-branch commit to show instead of the live state.
    history: Option<String>,
    /// A job to highlight.
    test: Option<String>,
}

/// `GET /{user}/{repo}/pr/{number}` (role `Reader`).
pub(crate) async fn get_pr_page(
    State(state): State<AppState>,
    Extension(ci): Extension<Ci>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    params: RawPathParams,
    Query(query): Query<TargetQuery>,
) -> Result<Response, Error> {
    access::require(&state, &viewer, &[Role::Reader], &uri)?;
    match super::pr_target(&params) {
        Ok(id) => target_page(&state, &ci, &viewer, &id, query).await,
        Err(error) => Ok(not_found_page(&state, &viewer, &error.to_string())),
    }
}

/// `GET /{user}/{repo}/ref/{*path}` (role `Reader`).
pub(crate) async fn get_ref_page(
    State(state): State<AppState>,
    Extension(ci): Extension<Ci>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    params: RawPathParams,
    Query(query): Query<TargetQuery>,
) -> Result<Response, Error> {
    access::require(&state, &viewer, &[Role::Reader], &uri)?;
    match super::ref_target(&params) {
        Ok(id) => target_page(&state, &ci, &viewer, &id, query).await,
        Err(error) => Ok(not_found_page(&state, &viewer, &error.to_string())),
    }
}

async fn target_page(
    state: &AppState,
    ci: &Ci,
    viewer: &Viewer,
    id: &TargetId,
    query: TargetQuery,
) -> Result<Response, Error> {
    if !ci.engine.projects().any(|p| p.id() == id.repo()) {
        return Ok(not_found_page(state, viewer, "No such project"));
    }
    let history = match query.history.as_deref().map(str::parse::<CommitId>) {
        None => None,
        Some(Ok(commit)) => Some(commit),
        Some(Err(_)) => {
            return Ok(not_found_page(state, viewer, "Invalid history commit id"));
        }
    };
    let unreadable = ci.engine.unreadable_target(id);
    let shown = match model::shown_state(&ci.engine, id, history).await {
        Ok(Some(shown)) => shown,
        Ok(None) if unreadable.is_some() => model::Shown::default(),
        Ok(None) => {
            return Ok(not_found_page(
                state,
                viewer,
                &format!("No target {id} (neither tracked nor recorded)"),
            ));
        }
        Err(Error::NotFound(message)) => return Ok(not_found_page(state, viewer, &message)),
        Err(error) => return Err(error),
    };
    let states = model::walk_history(ci.engine.history(), shown.latest, PAGE_HISTORY).await?;
    let actions = actions(state, viewer).await?;
    let (title, tab) = match id {
        TargetId::Pr(_, number) => {
            let title = shown
                .target
                .as_ref()
                .and_then(model::title)
                .unwrap_or("(no title)");
            (format!("PR {number} ({title})"), Tab::Prs)
        }
        TargetId::Ref(_, name) if name.is_tag() => (format!("Ref {name}"), Tab::Tags),
        TargetId::Ref(_, name) => (format!("Ref {name}"), Tab::Branches),
    };
    let path = urls::target(id);
    let history_nav = history_nav(id, &shown, &states);
    let author = match &shown.target {
        Some(datakit_ci_term::Target::Pr(pr)) if !pr.owner.is_empty() => Some(pr.owner.as_str()),
        _ => None,
    };
    let forge_link = state.forge_link(id);
    let content = html! {
        h1 { (title) }
        @if author.is_some() || forge_link.is_some() {
            p.forge {
                @if let Some(author) = author { "By " span.author { (author) } ". " }
                @if let Some(link) = &forge_link {
                    a.forge-link href=(link.url) { "View on " (link.forge) }
                }
            }
        }
        @if let Some(reason) = &unreadable {
            div.alert.alert-danger.unreadable {
                "This target is not tested: its metadata is invalid: " (reason)
            }
        }
        (history_nav)
        p.head {
            @match &shown.head {
                Some(head) => {
                    "Head commit "
                    a.head href=(urls::commit(id.repo(), head)) { code { (head.short(8)) } }
                }
                None => "Head commit unknown",
            }
            @if shown.target.is_none() { " (no longer tracked)" }
        }
        (jobs_table(&shown, &path, query.test.as_deref(), &actions, &QueuePlaces::of_pools(&ci.pools)))
        (rebuild_failed_button(&shown, &path, &actions))
    };
    Ok(page(&Chrome::new(state, viewer), &title, tab, content).into_response())
}

/// Links to the recorded states, newest first, the shown one marked.
fn history_nav(
    id: &TargetId,
    shown: &Shown,
    states: &[datakit_ci_history::HistoryState],
) -> Markup {
    html! {
        p.history {
            @if let Some(commit) = shown.recorded {
                "Showing the recorded state " code { (short(commit)) } ". "
            } @else {
                "Showing the live state. "
            }
            @if states.is_empty() {
                "No recorded states"
            } @else {
                "Recorded states: "
                @for (i, recorded) in states.iter().enumerate() {
                    @if i > 0 { ", " }
                    @if let Some(commit) = recorded.commit {
                        @let (summary, _) = model::summary(&model::recorded_jobs(recorded));
                        a class=(if Some(commit) == shown.recorded { "state current" } else { "state" })
                            href=(format!("?history={commit}"))
                            title=(format!("{} on {}", summary.word(), recorded.source_commit.as_ref().map_or("?", |h| h.short(8)))) {
                            (short(commit))
                        }
                    }
                }
            }
            " [ " a href="?" { "latest" } " | " a href=(urls::api_history(id)) { "JSON" } " ]"
        }
    }
}

fn short(commit: CommitId) -> String {
    let text = commit.to_string();
    text[..8.min(text.len())].to_owned()
}

fn jobs_table(
    shown: &Shown,
    page: &str,
    test: Option<&str>,
    actions: &Actions,
    queues: &QueuePlaces,
) -> Markup {
    html! {
        table.table.table-bordered.results {
            @for job in &shown.jobs {
                @let selected = test == Some(job.name.as_str());
                tr id=(format!("job-{}", job.name)) class=(if selected { "job selected-job" } else { "job" }) data-job=(job.name) {
                    th { (job.name) }
                    td.state {
                        (status_label(job.state()))
                        // Only the live state has queued builds.
                        @if let (None, Some(place)) = (shown.recorded, queues.of_output(job.output.as_ref())) {
                            br; span.queued { "Queued: " (place.text()) }
                        }
                    }
                    td.logs { (job_logs(job, page, actions)) }
                }
            }
        }
    }
}

/// For builders, on the live state, if some failed logs can be rebuilt.
fn rebuild_failed_button(shown: &Shown, page: &str, actions: &Actions) -> Markup {
    let failed = model::failed_rebuildable(&shown.jobs);
    html! {
        @if let (Some(csrf), None, false) = (&actions.csrf, shown.recorded, failed.is_empty()) {
            (post_form(
                "rebuild-failed",
                &urls::rebuild_failed(page),
                csrf,
                html! {
                    button.btn.btn-default.rebuild-failed type="submit" {
                        "Rebuild failed jobs (" (failed.len()) ")"
                    }
                },
            ))
        }
    }
}
