//! Log pages (spec §1.4 rows 14–15, §1.6): `GET /log/live/{branch}` follows a running build's
//! live log; `GET /log/saved/{branch}/{commit}` shows the `log` file of a store commit. `?raw`
//! gives the bytes as `text/plain`.

mod frame;

use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use datakit_ci_store::{BranchName, CommitId, StorePath};
use maud::html;

use crate::acl::{Decision, Role};
use crate::{AppState, Error, Viewer, access, pages, urls};
use frame::{Frame, LogSource, html_response, raw_response};

/// Whether the query asks for the raw log (`?raw`, `?raw=1`, `?x&raw`).
fn wants_raw(query: Option<&str>) -> bool {
    query.is_some_and(|query| {
        query
            .split('&')
            .any(|part| part == "raw" || part.starts_with("raw="))
    })
}

/// `GET /log/live/{branch}` (role `Reader`).
pub(crate) async fn get_live_log(
    State(state): State<AppState>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Path(branch): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, Error> {
    access::require(&state, &viewer, &[Role::Reader], &uri)?;
    let name = BranchName::new(branch.clone()).ok();
    let head = match &name {
        Some(name) => state.store().branch(name).head().await?,
        None => None,
    };
    let Some(log) = state.logs().get(&branch) else {
        return match head {
            Some(head) => {
                let mut target = urls::saved_log(&branch, &head.id().to_string());
                if wants_raw(query.as_deref()) {
                    target.push_str("?raw");
                }
                Ok(Redirect::temporary(&target).into_response())
            }
            None => {
                tracing::warn!(branch, "live log not found, and no saved branch either");
                Err(Error::NotFound(format!(
                    "No live or saved log for branch {branch:?}"
                )))
            }
        };
    };
    let source = LogSource::Live {
        stream: log.stream(),
        shutdown: state.shutdown_token().clone(),
    };
    if wants_raw(query.as_deref()) {
        return Ok(raw_response(source));
    }
    let history = urls::state_repo(state.config(), &format!("commits/{branch}/log"));
    let may_cancel = log.can_cancel()
        && state
            .config()
            .access()
            .check(Role::Builder, viewer.user(), viewer.attrs())
            == Decision::Yes;
    let cancel_form = if may_cancel {
        let csrf = viewer.csrf_token().await?;
        Some(pages::post_form(
            "cancel",
            &format!("/cancel/{}", urls::encode_segment(&branch)),
            &csrf,
            html! { button.btn.btn-default.btn-sm type="submit" { "Cancel" } },
        ))
    } else {
        None
    };
    let frame = Frame {
        title: format!("Logging to branch {branch}"),
        header: html! {
            div.row {
                div.col-md-9 { p { "Still running..." } }
                div."col-md-3".btn-group {
                    @if let (Some(_), Some(history)) = (&head, &history) {
                        a.btn.btn-default.btn-sm href=(history) { "History" }
                        " "
                    }
                    a.btn.btn-default.btn-sm href=(format!("{}?raw", urls::live_log(&branch))) { "Raw" }
                    @if let Some(form) = cancel_form {
                        " "
                        (form)
                    }
                }
            }
        },
        footer: html! { p.complete { "This log is now complete." } },
    };
    Ok(html_response(&frame, source))
}

/// `GET /log/saved/{branch}/{commit}` (role `Reader`).
/// The head of cache branch `branch` if retention removed its logs (its `log` is then the
/// note saying so).
async fn removed_log(state: &AppState, branch: &str) -> Option<datakit_ci_store::Snapshot> {
    let name = datakit_ci_store::BranchName::new(branch).ok()?;
    let head = state.store().branch(&name).head().await.ok()??;
    let snapshot = head.tree();
    let marker = StorePath::new("log-removed").ok()?;
    snapshot.exists(&marker).ok()?.then_some(snapshot)
}

pub(crate) async fn get_saved_log(
    State(state): State<AppState>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Path((branch, commit)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, Error> {
    access::require(&state, &viewer, &[Role::Reader], &uri)?;
    let id: CommitId = commit
        .parse()
        .map_err(|_| Error::NotFound(format!("Invalid commit id {commit:?}")))?;
    let snapshot = match state.store().commit(id).await {
        Ok(found) => found.tree(),
        Err(error) => match removed_log(&state, &branch).await {
            // The log was removed by retention, and its commit compacted away: show the note the
            // branch has instead.
            Some(snapshot) => snapshot,
            None => {
                tracing::info!(%error, %id, "saved log commit not found");
                return Err(Error::NotFound(format!("No such commit {id}")));
            }
        },
    };
    let path = StorePath::new("log")?;
    let reader = tokio::task::spawn_blocking(move || snapshot.open_file(&path))
        .await??
        .ok_or_else(|| Error::NotFound(format!("Commit {id} has no log")))?;
    let source = LogSource::saved(reader);
    if wants_raw(query.as_deref()) {
        return Ok(raw_response(source));
    }
    let config = state.config();
    let frame = Frame {
        title: format!("Log from commit {id}"),
        header: html! {
            div.row {
                div.col-md-9 {
                    p {
                        "Loaded from commit "
                        @match urls::state_repo(config, &format!("commit/{id}")) {
                            Some(link) => a href=(link) { (id) },
                            None => code { (id) },
                        }
                    }
                }
                div."col-md-3".btn-group {
                    // Links into the published state repository, when there is one.
                    @if let Some(history) = urls::state_repo(config, &format!("commits/{branch}/log")) {
                        a.btn.btn-default.btn-sm href=(history) { "History" }
                        " "
                    }
                    @if let Some(tree) = urls::state_repo(config, &format!("tree/{branch}")) {
                        a.btn.btn-default.btn-sm href=(tree) { "Artefacts" }
                        " "
                    }
                    a.btn.btn-default.btn-sm href=(format!("{}?raw", urls::saved_log(&branch, &commit))) { "Raw" }
                }
            }
        },
        footer: html! {},
    };
    Ok(html_response(&frame, source))
}

#[cfg(test)]
mod tests {
    #[test]
    fn raw_query() {
        assert!(super::wants_raw(Some("raw")));
        assert!(super::wants_raw(Some("a=1&raw=1")));
        assert!(!super::wants_raw(Some("draw")));
        assert!(!super::wants_raw(None));
    }
}
