//! Commit pages `/<user>/<repo>/commit/<hash>` (spec §1.4 row 13, §1.5.7): forge statuses link
//! here. With exactly one live target on that head and no archived build, a `303` to the
//! target's page; otherwise the live targets and the archived builds (from the commit index),
//! `?test=<job>` carried into every link.

use axum::extract::{Extension, OriginalUri, Query, RawPathParams, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use datakit_ci_term::{CommitHash, RepoId, TargetId};

use super::model;
use super::widgets::status_list;
use super::{Ci, actions, not_found_page, raw_param, repo_of};
use crate::acl::Role;
use crate::pages::{Chrome, Tab, page, post_form};
use crate::{AppState, Error, Viewer, access, urls};

/// The query of a commit page.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct CommitQuery {
    /// A job to highlight on the target pages linked.
    test: Option<String>,
}

/// The commit of a `/{user}/{repo}/commit/{hash}` route.
pub(crate) fn commit_of(params: &RawPathParams) -> Result<(RepoId, CommitHash), Error> {
    let repo = repo_of(params)?;
    let raw = raw_param(params, "hash")?;
    let hash = raw
        .parse()
        .map_err(|_| Error::NotFound(format!("Invalid commit hash {raw:?}")))?;
    Ok((repo, hash))
}

/// `GET /{user}/{repo}/commit/{hash}` (role `Reader`).
pub(crate) async fn get_commit_page(
    State(state): State<AppState>,
    Extension(ci): Extension<Ci>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    params: RawPathParams,
    Query(query): Query<CommitQuery>,
) -> Result<Response, Error> {
    access::require(&state, &viewer, &[Role::Reader], &uri)?;
    let (repo, hash) = match commit_of(&params) {
        Ok(found) => found,
        Err(error) => return Ok(not_found_page(&state, &viewer, &error.to_string())),
    };
    if !ci.engine.projects().any(|p| p.id() == &repo) {
        return Ok(not_found_page(&state, &viewer, "No such project"));
    }
    let live = ci.engine.targets_of_commit(&repo, &hash);
    let mut archived = ci.engine.history().builds_of_commit(&repo, &hash).await?;
    archived.retain(|id, _| !live.contains(id));
    let test = query.test.as_deref();
    if let ([only], true) = (live.as_slice(), archived.is_empty()) {
        return Ok(Redirect::to(&link(only, test, None)).into_response());
    }
    let actions = actions(&state, &viewer).await?;
    let views: Vec<_> = live
        .iter()
        .filter_map(|id| ci.engine.target(id).map(|view| (id, view)))
        .collect();
    let failed: usize = views
        .iter()
        .map(|(_, view)| model::failed_rebuildable(&model::live_jobs(view)).len())
        .sum();
    let page_path = urls::commit(&repo, &hash);
    let title = format!("Commit {hash}");
    let content = html! {
        h1 { (title) }
        p { "Current builds:" }
        ul.live {
            @for (id, view) in &views {
                li { a href=(link(id, test, None)) { (id) } " " (status_list(&model::live_jobs(view))) }
            }
            @if views.is_empty() { li { "(none)" } }
        }
        p { "Archived builds:" }
        ul.archived {
            @for (id, recorded) in &archived {
                li { a href=(link(id, test, recorded.commit.map(|c| c.to_string()))) { (id) } }
            }
            @if archived.is_empty() { li { "(none)" } }
        }
        @if let (Some(csrf), true) = (&actions.csrf, failed > 0) {
            (post_form(
                "rebuild-failed",
                &urls::rebuild_failed(&page_path),
                csrf,
                html! {
                    button.btn.btn-default.rebuild-failed type="submit" {
                        "Rebuild failed jobs (" (failed) ")"
                    }
                },
            ))
        }
    };
    Ok(page(&Chrome::new(&state, &viewer), &title, Tab::Home, content).into_response())
}

/// A target's page with `?test=` and `?history=` when given, anchored at the job.
fn link(id: &TargetId, test: Option<&str>, history: Option<String>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(test) = test {
        query.append_pair("test", test);
    }
    if let Some(history) = &history {
        query.append_pair("history", history);
    }
    let query = query.finish();
    let mut url = urls::target(id);
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query);
    }
    if let Some(test) = test {
        url.push_str("#job-");
        url.push_str(&urls::encode_segment(test));
    }
    url
}
