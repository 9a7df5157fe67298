//! The error page `/error/<id>` (spec §1.5.11), the `403` page of refused viewers and the `404`
//! page of paths no route serves.

use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::{Chrome, Tab, page};
use crate::{AppState, Error, Viewer};

/// `GET /error/{id}`: explains a known error code.
pub(crate) async fn get_error(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Markup, Error> {
    let content = match id.as_str() {
        "no-state-repo" => html! {
            p { "No web mirror of the state repository has been configured, so can't link to it." }
            p { "Configure the CI to push its state repository to a web host and pass its URL with "
                code { "WebConfig::state_repo" } "." }
        },
        "permission-denied" => permission_denied(),
        "logout-needed" => logout_needed(),
        other => html! { p { "Unknown error code \"" (other) "\"" } },
    };
    Ok(page(
        &Chrome::new(&state, &viewer),
        "Error",
        Tab::Home,
        content,
    ))
}

/// Any path no route serves: the site's page saying so, with `404`.
pub(crate) async fn get_not_found(
    State(state): State<AppState>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let content = html! {
        h2 { "Not found" }
        p.error { "There is no page at " code { (uri.path()) } "." }
        p { a href="/" { "Back to the dashboard" } }
    };
    (
        StatusCode::NOT_FOUND,
        page(
            &Chrome::new(&state, &viewer),
            "Not found",
            Tab::Home,
            content,
        ),
    )
        .into_response()
}

/// The page shown with `403` to a logged-in viewer who lacks a role.
pub(crate) fn denied_page(state: &AppState, viewer: &Viewer, must_log_out: bool) -> Markup {
    let content = if must_log_out {
        logout_needed()
    } else {
        permission_denied()
    };
    page(&Chrome::new(state, viewer), "Error", Tab::Home, content)
}

fn permission_denied() -> Markup {
    html! { p.error { "Permission denied" } }
}

fn logout_needed() -> Markup {
    html! {
        p.error {
            "Access policy has changed - please log out and log back in so we can check your \
             credentials against the new policy."
        }
    }
}
