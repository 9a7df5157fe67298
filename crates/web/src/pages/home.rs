//! The placeholder home page `/`, shown until the engine's dashboard replaces it.

use axum::extract::{OriginalUri, State};
use maud::{Markup, html};

use super::{Chrome, Tab, page};
use crate::acl::Role;
use crate::{AppState, Error, Viewer, access};

/// `GET /` (role `Reader`).
pub(crate) async fn get_home(
    State(state): State<AppState>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
) -> Result<Markup, Error> {
    access::require(&state, &viewer, &[Role::Reader], &uri)?;
    let content = html! {
        h2 { (state.config().ci_name()) }
        p.warning { "No engine is attached to this web UI yet, so there are no targets to show." }
    };
    Ok(page(
        &Chrome::new(&state, &viewer),
        "CI",
        Tab::Home,
        content,
    ))
}
