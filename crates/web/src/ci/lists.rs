//! The lists `/pr`, `/branch` and `/tag` (spec §1.5.4): one table per project of its targets of
//! that kind, each row with the target's link, head, job states and summary. PRs come newest
//! first (by number, descending); branches and tags by name, ascending. Every ref that is not a
//! tag is listed as a branch. Targets without jobs are left out, as in the original.

use axum::extract::{Extension, OriginalUri, State};
use maud::{Markup, html};

use datakit_ci_engine::TargetView;
use datakit_ci_term::TargetId;

use super::model::{self, Kind};
use super::widgets::status_list;
use super::{Ci, title};
use crate::acl::Role;
use crate::pages::{Chrome, Tab, page};
use crate::{AppState, Error, Viewer, access, urls};

/// `GET /pr` (role `Reader`).
pub(crate) async fn get_prs(
    State(state): State<AppState>,
    Extension(ci): Extension<Ci>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
) -> Result<Markup, Error> {
    list_page(&state, &ci, &viewer, &uri, Kind::Pr)
}

/// `GET /branch` (role `Reader`).
pub(crate) async fn get_branches(
    State(state): State<AppState>,
    Extension(ci): Extension<Ci>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
) -> Result<Markup, Error> {
    list_page(&state, &ci, &viewer, &uri, Kind::Branch)
}

/// `GET /tag` (role `Reader`).
pub(crate) async fn get_tags(
    State(state): State<AppState>,
    Extension(ci): Extension<Ci>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
) -> Result<Markup, Error> {
    list_page(&state, &ci, &viewer, &uri, Kind::Tag)
}

/// The targets of `kind` in list order: PRs by number descending, refs by name ascending.
pub(crate) fn sorted(targets: Vec<TargetView>, kind: Kind) -> Vec<TargetView> {
    let mut targets: Vec<TargetView> = targets
        .into_iter()
        .filter(|t| model::kind(&t.target.id()) == kind)
        .collect();
    targets.sort_by_cached_key(|t| match t.target.id() {
        TargetId::Pr(repo, number) => (repo, std::cmp::Reverse(number), String::new()),
        TargetId::Ref(repo, name) => (repo, std::cmp::Reverse(0), name.to_string()),
    });
    targets
}

fn list_page(
    state: &AppState,
    ci: &Ci,
    viewer: &Viewer,
    uri: &axum::http::Uri,
    kind: Kind,
) -> Result<Markup, Error> {
    access::require(state, viewer, &[Role::Reader], uri)?;
    let targets = sorted(ci.engine.targets(), kind);
    let (tab, heading, first_column) = match kind {
        Kind::Pr => (Tab::Prs, "PR status for", "PR"),
        Kind::Branch => (Tab::Branches, "Branches for", "Ref"),
        Kind::Tag => (Tab::Tags, "Tags for", "Ref"),
    };
    let content = html! {
        @for project in ci.engine.projects() {
            @let repo = project.id();
            div.project {
                h2 { (heading) " " (repo) }
                table.table.table-bordered.table-hover.targets {
                    tr {
                        th { (first_column) }
                        @if kind == Kind::Pr { th { "Title" } }
                        th { "Head" } th { "State" } th { "Details" }
                    }
                    @for view in targets.iter().filter(|t| t.target.id().repo() == repo && !t.jobs.is_empty()) {
                        (row(view, kind))
                    }
                }
            }
        }
    };
    Ok(page(
        &Chrome::new(state, viewer),
        &title(&ci.engine),
        tab,
        content,
    ))
}

fn row(view: &TargetView, kind: Kind) -> Markup {
    let id = view.target.id();
    let jobs = model::live_jobs(view);
    let (_, details) = model::summary(&jobs);
    let head = view.target.head();
    let label = match &id {
        TargetId::Pr(_, number) => number.to_string(),
        TargetId::Ref(_, name) => name.to_string(),
    };
    html! {
        tr.target {
            td { a href=(urls::target(&id)) { (label) } }
            @if kind == Kind::Pr { td { (model::title(&view.target).unwrap_or("")) } }
            td { a.head href=(urls::commit(id.repo(), head)) { code { (head.short(8)) } } }
            td { (status_list(&jobs)) }
            td { (details) }
        }
    }
}
