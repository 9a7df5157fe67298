//! The settings index `/settings` (spec §1.5.10), for the admin.

use axum::extract::{OriginalUri, State};
use maud::{Markup, html};

use super::{Chrome, Tab, page};
use crate::acl::Role;
use crate::{AppState, Error, Viewer, access};

/// `GET /settings` (role `Admin`).
pub(crate) async fn get_settings(
    State(state): State<AppState>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
) -> Result<Markup, Error> {
    access::require(&state, &viewer, &[Role::Admin], &uri)?;
    let config = state.config();
    let content = html! {
        h2 { "Settings" }
        table.table.settings {
            tr { th { "Public URL" } td { (config.public()) } }
            tr { th { "Listening on" } td { (config.listen_addr()) } }
            tr { th { "Sessions" } td { (config.sessions_backend()) } }
            tr { th { "Readers" } td { code { (config.access().can_read) } } }
            tr { th { "Builders" } td { code { (config.access().can_build) } } }
            tr { th { "/metrics" } td { (if config.metrics().is_some() { "open to the token's bearer" } else { "closed (no token configured)" }) } }
        }
        p { a href="/settings/users" { "Users" } ": add and remove local users, reset passwords." }
        p { "GitHub authentication is not available in this version." }
    };
    Ok(page(
        &Chrome::new(&state, &viewer),
        "Settings",
        Tab::Settings,
        content,
    ))
}
