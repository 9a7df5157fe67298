//! Target pages `/<user>/<repo>/pr/<n>` and `/<user>/<repo>/ref/<path…>` (spec §1.4 rows 11–12,
//! §1.5.6): every job with its state, description and logs, cancel and rebuild buttons for
//! builders, and links to the target's recorded states (`?history=<commit>` shows one of them;
//! `?test=<job>` highlights a job). Each job shows its phase icon and, from the store, when it
//! finished and how long it took; the history table lists the recorded states, newest first,
//! [`PAGE_HISTORY`] at a time (`?states_from=<commit>` for older ones). A pending job says why
//! it waits ([`why_pending`]). The live state is a live page ([`super::live`]).

use axum::extract::{Extension, OriginalUri, Query, RawPathParams, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use std::time::SystemTime;

use datakit_ci_store::CommitId;
use datakit_ci_term::TargetId;

use super::live::{self, Live};
use super::model::{self, JobTimes, PAGE_HISTORY, Phase, Recorded, Shown};
use super::pending::why_pending;
use super::queue::QueuePlaces;
use super::trend;
use super::widgets::{Actions, job_logs, phase_icon, status_label};
use super::{Ci, actions, not_found_page};
use crate::acl::Role;
use crate::pages::{Chrome, Tab, page, post_form};
use crate::time::{self, time_ago};
use crate::{AppState, Error, Viewer, access, urls};

/// The query of a target page.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TargetQuery {
    /// A status-branch commit to show instead of the live state.
    history: Option<String>,
    /// A job to highlight.
    test: Option<String>,
    /// The recorded state the history table starts at (its later pages).
    states_from: Option<String>,
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
    let states_from = match query.states_from.as_deref() {
        None | Some("") => shown.latest,
        Some(text) => {
            let commit = text.parse::<CommitId>().map_err(|_| {
                Error::BadRequest(format!(
                    "invalid states_from {text:?}: expected a recorded state's commit id"
                ))
            })?;
            if !model::is_recorded_state_of(ci.engine.history(), shown.latest, commit).await? {
                return Ok(not_found_page(
                    state,
                    viewer,
                    &format!("No recorded state {commit} of {id}"),
                ));
            }
            Some(commit)
        }
    };
    let (states, older) =
        model::walk_history(ci.engine.history(), states_from, PAGE_HISTORY).await?;
    // The jobs' times come from the newest states, whichever history page is shown.
    let newest = if states_from == shown.latest {
        states.clone()
    } else {
        model::walk_history(ci.engine.history(), shown.latest, PAGE_HISTORY)
            .await?
            .0
    };
    let times = model::job_times(
        ci.engine.history(),
        shown.head.as_ref(),
        &shown.jobs,
        &newest,
    )
    .await?;
    let now = SystemTime::now();
    let trend = match query.test.as_deref() {
        Some(job) if shown.jobs.iter().any(|shown| shown.name == job) => {
            let (states, _) =
                model::walk_history(ci.engine.history(), shown.latest, trend::TREND_STATES).await?;
            Some(job_trend(job, &trend::runs(job, &states), now))
        }
        _ => None,
    };
    let actions = actions(state, viewer).await?;
    let artifacts = crate::artifacts::of_jobs(state.store(), &shown.jobs).await;
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
    let history_nav = history_nav(id, &shown);
    let history_table = history_table(id, &shown, &states, older, states_from != shown.latest, now);
    let author = match &shown.target {
        Some(datakit_ci_term::Target::Pr(pr)) if !pr.owner.is_empty() => Some(pr.owner.as_str()),
        _ => None,
    };
    let forge_link = state.forge_link(id);
    let live_jobs = shown.recorded.is_none() && shown.target.is_some();
    let untrusted = if live_jobs {
        let approver = ci.engine.pull_request_approval(id).map_err(Error::Engine)?;
        super::untrusted::notice(shown.target.as_ref(), approver.as_deref(), &path, &actions)
    } else {
        html! {}
    };
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
        (untrusted)
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
        @if let Some(graph) = jobs_graph(&shown, &times) {
            figure.pipeline {
                (graph)
                figcaption { "The jobs and what each needs" }
            }
        }
        (jobs_table(&shown, &times, &artifacts, now, &path, query.test.as_deref(), &actions, &QueuePlaces::of_pools(&ci.pools)))
        (rebuild_failed_button(&shown, &path, &actions))
        @if let Some(trend) = trend { (trend) }
        (history_table)
    };
    // The live state follows the target's changes; a recorded state never changes.
    if !live_jobs {
        return Ok(page(&Chrome::new(state, viewer), &title, tab, content).into_response());
    }
    let running = shown.jobs.iter().any(|job| !job.phase().is_final());
    let live = Live {
        target: Some(id),
        gap_ms: 0,
        // Elapsed times and queue places change without a status change.
        poll_seconds: if running { 10 } else { 0 },
    };
    Ok(live::response(
        page(
            &Chrome::new(state, viewer),
            &title,
            tab,
            live.region(content),
        )
        .into_string(),
    ))
}

/// The trend of `job` (its page, `?test=<job>`): its last runs as a chart, and whether it is
/// flaky.
fn job_trend(job: &str, runs: &[trend::Run], now: SystemTime) -> Markup {
    let flaky = trend::flaky(runs);
    html! {
        section #trend .trend {
            h2 { "Last runs of " (job) }
            @if runs.is_empty() {
                p { "No finished runs recorded yet." }
            } @else {
                figure.trend {
                    (trend::chart(job, runs, now))
                    figcaption {
                        (runs.len()) " runs, oldest on the left; a bar's height is how long the run took. "
                        (runs.iter().filter(|run| run.phase == Phase::Passed).count()) " passed, "
                        (runs.iter().filter(|run| run.phase == Phase::Failed).count()) " failed."
                    }
                }
            }
            @if let Some(flaky) = flaky {
                p.flaky { span.flaky-flag { "flaky" } " " (flaky) }
            }
        }
    }
}

/// Which state the page shows, with links to the latest and to the JSON history.
fn history_nav(id: &TargetId, shown: &Shown) -> Markup {
    html! {
        p.history {
            @if let Some(commit) = shown.recorded {
                "Showing the recorded state " code { (short(commit)) } ". "
            } @else {
                "Showing the live state. "
            }
            "[ " a href="?" { "latest" } " | " a href="#history" { "history" } " | " a href=(urls::api_history(id)) { "JSON" } " ]"
        }
    }
}

/// The recorded states, newest first, a page at a time: when, the result, the source commit and
/// the status commit's subject, the shown one marked.
fn history_table(
    id: &TargetId,
    shown: &Shown,
    states: &[Recorded],
    older: Option<CommitId>,
    paged: bool,
    now: SystemTime,
) -> Markup {
    html! {
        h2 #history { "History" }
        @if states.is_empty() {
            p.history-empty { "No recorded states" }
        } @else {
            table.table.table-bordered.history-states {
                tr { th { "Recorded" } th { "Result" } th { "Commit" } th { "Change" } th { "State" } }
                @for recorded in states {
                    @if let Some(commit) = recorded.state.commit {
                        @let (summary, _) = model::summary(&model::recorded_jobs(&recorded.state));
                        tr class=(if Some(commit) == shown.recorded { "recorded current" } else { "recorded" }) {
                            td.when { (time_ago(recorded.time, now)) }
                            td.result { (status_label(summary)) }
                            td.source {
                                @match &recorded.state.source_commit {
                                    Some(head) => a.head href=(urls::commit(id.repo(), head)) { code { (head.short(8)) } },
                                    None => "?",
                                }
                            }
                            td.subject { (recorded.subject) }
                            td {
                                a class=(if Some(commit) == shown.recorded { "state current" } else { "state" })
                                    href=(format!("?history={commit}"))
                                    title=(format!("{} on {}", summary.word(), recorded.state.source_commit.as_ref().map_or("?", |h| h.short(8)))) {
                                    code { (short(commit)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if paged || older.is_some() {
            nav.pager {
                @if paged { a.btn.btn-sm rel="first" href="?#history" { "Newest states" } " " }
                @if let Some(older) = older {
                    a.btn.btn-sm rel="next" href=(format!("?states_from={older}#history")) { "Older states →" }
                }
            }
        }
    }
}

fn short(commit: CommitId) -> String {
    let text = commit.to_string();
    text[..8.min(text.len())].to_owned()
}

/// The graph of the jobs' needs, if some job needs another.
fn jobs_graph(shown: &Shown, times: &[JobTimes]) -> Option<Markup> {
    let nodes: Vec<super::graph::Node<'_>> = shown
        .jobs
        .iter()
        .zip(times)
        .map(|(job, times)| super::graph::Node {
            name: &job.name,
            needs: &job.needs,
            phase: job.phase(),
            took: times.took(),
        })
        .collect();
    super::graph::graph(&nodes)
}

#[allow(clippy::too_many_arguments)]
fn jobs_table(
    shown: &Shown,
    times: &[JobTimes],
    artifacts: &[Vec<crate::artifacts::ArtifactLink>],
    now: SystemTime,
    page: &str,
    test: Option<&str>,
    actions: &Actions,
    queues: &QueuePlaces,
) -> Markup {
    html! {
        table.table.table-bordered.results {
            @for ((job, times), artifacts) in shown.jobs.iter().zip(times).zip(artifacts) {
                @let selected = test == Some(job.name.as_str());
                tr id=(format!("job-{}", job.name)) class=(if selected { "job selected-job" } else { "job" }) data-job=(job.name) {
                    th {
                        (job.name)
                        br;
                        a.trend-link href=(format!("?test={}#trend", urls::encode_query(&job.name))) { "trend" }
                    }
                    td.state {
                        (phase_icon(job.phase())) " " (status_label(job.state()))
                        // Only the live state waits.
                        @if let (None, Some(why)) = (shown.recorded, why_pending(job, &shown.jobs, queues)) {
                            br; span.why-pending { (why) }
                        }
                        (job_times_line(job.phase(), times, shown.recorded.is_none(), now))
                        (approve_button(shown, job, page, actions))
                    }
                    td.logs {
                        (job_logs(job, page, shown.head.as_ref(), actions))
                        (crate::artifacts::list(artifacts))
                    }
                }
            }
        }
    }
}

/// `finished 3 min ago, took 1m 42s`, `running for 12s` (live state only), `queued 5 min ago`.
fn job_times_line(phase: Phase, times: &JobTimes, live: bool, now: SystemTime) -> Markup {
    html! {
        @if let Some(finished) = times.finished.filter(|_| phase.is_final()) {
            br;
            span.times {
                "finished " (time_ago(finished, now))
                @if let Some(took) = times.took() {
                    // Commit times have whole seconds.
                    ", took " span.duration {
                        @if took.as_secs() == 0 { "under 1s" } @else { (time::duration(took)) }
                    }
                }
            }
        } @else if let (Some(started), true) = (times.started, live && !phase.is_final()) {
            br;
            span.times {
                @if phase == Phase::Running {
                    "running for " span.duration { (time::duration(now.duration_since(started).unwrap_or_default())) }
                } @else {
                    "waiting since " (time_ago(started, now))
                }
            }
        }
    }
}

/// For builders, on the live state, for a job waiting for approval (a `manual` step).
fn approve_button(shown: &Shown, job: &model::Job, page: &str, actions: &Actions) -> Markup {
    html! {
        @if let (Some(csrf), None, Phase::WaitingForApproval) = (&actions.csrf, shown.recorded, job.phase()) {
            (post_form(
                "approve",
                &urls::approve(page),
                csrf,
                html! {
                    input type="hidden" name="job" value=(job.name);
                    button.btn.btn-primary.approve type="submit" { "Approve" }
                },
            ))
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
