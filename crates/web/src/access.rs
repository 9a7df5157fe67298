//! Authorisation of protected pages (spec §1.3): check the viewer's roles; send anonymous viewers
//! to the login page, refuse logged-in viewers who lack a role with a `403` page.

use axum::http::Uri;

use crate::acl::{Decision, Role};
use crate::pages::errors::denied_page;
use crate::{AppState, Error, Viewer};

/// Checks that `viewer` has every role of `roles` for the page at `uri`.
///
/// Anonymous viewers get [`Error::LoginRequired`] (a `303` to `/auth/login?redirect=<uri>`);
/// logged-in viewers lacking a role get [`Error::Denied`] (a `403` page).
pub fn require(state: &AppState, viewer: &Viewer, roles: &[Role], uri: &Uri) -> Result<(), Error> {
    let decision = state
        .config()
        .access()
        .check_all(roles, viewer.user(), viewer.attrs());
    match (decision, viewer.user()) {
        (Decision::Yes, _) => Ok(()),
        (Decision::No, None) => Err(Error::LoginRequired {
            redirect: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        }),
        (decision, _) => Err(Error::Denied {
            page: denied_page(state, viewer, decision == Decision::LogoutNeeded).into_string(),
        }),
    }
}
