//! The CI pages (spec §1.5.3–1.5.7) and the JSON API, on top of an [`Engine`] and the
//! application's [`Pools`]: the dashboard, the lists of PRs, branches and tags, target and commit
//! pages, bulk rebuilds, and `/api/v1/`.
//!
//! [`ci_pages`] builds their router; the engine and pools reach the handlers as an axum
//! `Extension<Ci>`. Role checks, page chrome and forms come from the rest of the crate.

mod approve;
mod badge;
mod commit;
mod dashboard;
pub(crate) mod filter;
mod graph;
mod lists;
mod live;
pub(crate) mod model;
mod pending;
pub(crate) use pending::why_pending;
pub(crate) mod queue;
mod rebuild;
mod store_size;
mod target;
mod trend;
mod untrusted;
pub(crate) mod widgets;

use axum::Router;
use axum::extract::{Extension, RawPathParams};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::html;

use datakit_ci_engine::Engine;
use datakit_ci_pool::Pools;
use datakit_ci_term::{RepoId, TargetId};

use crate::acl::{Decision, Role};
use crate::pages::{Chrome, Tab, page};
use crate::{AppState, AppStateBuilder, Error, Viewer, api, urls};
use store_size::StoreSize;
use widgets::Actions;

/// The CI pages and the JSON API as a router to give [`WebServer::bind`](crate::WebServer::bind)
/// (or [`router`](crate::router)): `/` (the dashboard), `/pr`, `/branch`, `/tag`, target pages
/// `/<user>/<repo>/pr/<n>` and `/<user>/<repo>/ref/<path…>`, commit pages
/// `/<user>/<repo>/commit/<hash>`, the bulk rebuilds `POST /rebuild-failed/…`, status badges
/// `/badge/<user>/<repo>/<ref path>.svg` (`?job=<name>`; only when anonymous visitors may read),
/// and the JSON API under `/api/v1/` (see [`api`](crate::api)).
///
/// Rebuild buttons post to `/log/rebuild/<branch>`, which needs the engine's rebuild hook: install
/// it with [`AppStateBuilder::engine_rebuilds`].
///
/// ```no_run
/// # async fn example(
/// #     state: datakit_ci_web::AppState,
/// #     engine: datakit_ci_engine::Engine,
/// #     pools: datakit_ci_pool::Pools,
/// # ) -> Result<(), datakit_ci_web::Error> {
/// let pages = datakit_ci_web::ci_pages(engine, pools);
/// let server = datakit_ci_web::WebServer::bind(state, Some(pages)).await?;
/// # Ok(())
/// # }
/// ```
pub fn ci_pages(engine: Engine, pools: Pools) -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard::get_dashboard))
        .route("/pr", get(lists::get_prs))
        .route("/branch", get(lists::get_branches))
        .route("/tag", get(lists::get_tags))
        .route("/{user}/{repo}/pr/{number}", get(target::get_pr_page))
        .route("/{user}/{repo}/ref/{*path}", get(target::get_ref_page))
        .route("/{user}/{repo}/commit/{hash}", get(commit::get_commit_page))
        .route("/badge/{user}/{repo}/{*path}", get(badge::get_badge))
        .route(
            "/approve/{user}/{repo}/pr/{number}",
            post(approve::post_approve_pr),
        )
        .route(
            "/approve/{user}/{repo}/ref/{*path}",
            post(approve::post_approve_ref),
        )
        .route(
            "/rebuild-failed/{user}/{repo}/pr/{number}",
            post(rebuild::post_rebuild_failed_pr),
        )
        .route(
            "/rebuild-failed/{user}/{repo}/ref/{*path}",
            post(rebuild::post_rebuild_failed_ref),
        )
        .route(
            "/rebuild-failed/{user}/{repo}/commit/{hash}",
            post(rebuild::post_rebuild_failed_commit),
        )
        .merge(api::routes())
        .layer(Extension(Ci {
            engine,
            pools,
            store_size: StoreSize::default(),
        }))
}

impl AppStateBuilder {
    /// Installs `engine`'s rebuild ([`Engine::rebuild`]) as the rebuild hook behind
    /// `POST /log/rebuild/<branch>`.
    pub fn engine_rebuilds(self, engine: Engine) -> Self {
        self.rebuild_hook(move |branch| {
            let engine = engine.clone();
            async move {
                engine
                    .rebuild(&branch)
                    .await
                    .map_err(|error| error.to_string())
            }
        })
    }
}

/// What the CI pages read: the engine and the pools.
#[derive(Clone)]
pub(crate) struct Ci {
    pub(crate) engine: Engine,
    pub(crate) pools: Pools,
    pub(crate) store_size: StoreSize,
}

/// The buttons `viewer` gets: with the `Builder` role, their CSRF token.
pub(crate) async fn actions(state: &AppState, viewer: &Viewer) -> Result<Actions, Error> {
    let may_build = state
        .config()
        .access()
        .check(Role::Builder, viewer.user(), viewer.attrs())
        == Decision::Yes;
    let csrf = if may_build {
        Some(viewer.csrf_token().await?)
    } else {
        None
    };
    Ok(Actions { csrf })
}

/// A `404` page with the chrome.
pub(crate) fn not_found_page(state: &AppState, viewer: &Viewer, message: &str) -> Response {
    let content = html! { h2 { "Not found" } p.error { (message) } };
    (
        StatusCode::NOT_FOUND,
        page(&Chrome::new(state, viewer), "Not found", Tab::Home, content),
    )
        .into_response()
}

/// `CI: ` and the projects' names joined with ` / `.
pub(crate) fn title(engine: &Engine) -> String {
    let names: Vec<String> = engine.projects().map(|p| p.id().to_string()).collect();
    format!("CI: {}", names.join(" / "))
}

/// The raw (still encoded) capture `name` of a route.
fn raw_param<'a>(params: &'a RawPathParams, name: &str) -> Result<&'a str, Error> {
    params
        .iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .ok_or_else(|| Error::BadRequest(format!("missing path parameter {name:?}")))
}

/// A path parameter, which axum has already percent-decoded (decoding it again would turn a
/// ref named `pct%2Fenc` into `pct/enc`, issue 14).
fn decoded_param(params: &RawPathParams, name: &str) -> Result<String, Error> {
    raw_param(params, name).map(str::to_owned)
}

/// The repository of a `/{user}/{repo}/…` route.
pub(crate) fn repo_of(params: &RawPathParams) -> Result<RepoId, Error> {
    urls::parse_repo(
        &decoded_param(params, "user")?,
        &decoded_param(params, "repo")?,
    )
}

/// The target of a `/{user}/{repo}/pr/{number}` route.
pub(crate) fn pr_target(params: &RawPathParams) -> Result<TargetId, Error> {
    urls::parse_pr(
        &decoded_param(params, "user")?,
        &decoded_param(params, "repo")?,
        &decoded_param(params, "number")?,
    )
}

/// The target of a `/{user}/{repo}/ref/{*path}` route; axum has decoded the path, which is
/// split on `/` (no ref component contains one, so `%2F` and `/` mean the same here).
pub(crate) fn ref_target(params: &RawPathParams) -> Result<TargetId, Error> {
    urls::parse_ref(
        &decoded_param(params, "user")?,
        &decoded_param(params, "repo")?,
        raw_param(params, "path")?,
    )
}
