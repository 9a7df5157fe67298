//! Accounts (issue 20): the profile page, where a local user changes their own password, and the
//! admin's user list `/settings/users`, where users are added, removed and their passwords reset.
//!
//! Every new password must follow [`PASSWORD_RULE`](crate::auth::PASSWORD_RULE), which each form
//! says. A session ends at its next request once its user's password changed or the user was
//! removed (the session keeps a stamp of the password hash; see `session`), except the session
//! that changed its own password, which is renewed.

use axum::Form;
use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Chrome, Tab, field, page, post_form};
use crate::acl::{Role, UserAttrs};
use crate::auth::{AccountProblem, PASSWORD_RULE};
use crate::{AppState, Error, Viewer, access, urls};

/// The form of `POST /user/profile/password`.
#[derive(Debug, Deserialize)]
pub(crate) struct ChangePasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password2: String,
}

/// The form adding a user, or resetting one's password.
#[derive(Debug, Deserialize)]
pub(crate) struct UserForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

/// What a page says after a change, or why one was refused.
enum Notice<'a> {
    None,
    Done(&'a str),
    Refused(&'a str),
}

/// `GET /user/profile` (role `LoggedIn`).
pub(crate) async fn get_profile(
    State(state): State<AppState>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
) -> Result<Markup, Error> {
    access::require(&state, &viewer, &[Role::LoggedIn], &uri)?;
    profile_page(&state, &viewer, &Notice::None).await
}

async fn profile_page(
    state: &AppState,
    viewer: &Viewer,
    notice: &Notice<'_>,
) -> Result<Markup, Error> {
    let csrf = viewer.csrf_token().await?;
    let user = viewer.user().unwrap_or_default();
    let is_local = state.auth().stamp(user).is_some();
    let content = html! {
        h2 { "Profile" }
        p { "Logged in as " strong.user { (user) } }
        (post_form("logout-form", "/auth/logout", &csrf, html! {
            button.btn.btn-default type="submit" { "Log out" }
        }))
        @if is_local {
            h3 { "Change your password" }
            (notice_markup(notice))
            (post_form("password-form", "/user/profile/password", &csrf, html! {
                (field("Current password", "password", "current", "", None))
                (field("New password", "password", "password", "", None))
                p.help-block { (PASSWORD_RULE) " Your other sessions are logged out." }
                (field("Confirm", "password", "password2", "", None))
                button.btn.btn-primary type="submit" { "Change password" }
            }))
        }
        @if user == "admin" {
            p { a href="/settings/users" { "Manage users" } }
        }
    };
    Ok(page(
        &Chrome::new(state, viewer),
        "Profile",
        Tab::Home,
        content,
    ))
}

/// `POST /user/profile/password` (role `LoggedIn`, local users): changes one's own password.
pub(crate) async fn post_change_password(
    State(state): State<AppState>,
    mut viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Form(form): Form<ChangePasswordForm>,
) -> Result<Response, Error> {
    access::require(&state, &viewer, &[Role::LoggedIn], &uri)?;
    let user = viewer.user().unwrap_or_default().to_owned();
    // The current password is checked like a login: a stolen session cannot guess it quickly.
    if !state.auth().allow_login_attempt(&user, None) {
        let message = "Too many attempts; wait a minute and try again";
        let page = profile_page(&state, &viewer, &Notice::Refused(message)).await?;
        return Ok((StatusCode::TOO_MANY_REQUESTS, page).into_response());
    }
    let outcome = if form.password == form.password2 {
        state
            .auth()
            .change_password(&user, &form.current, form.password)
            .await?
    } else {
        Err(AccountProblem::BadPassword("The new passwords don't match"))
    };
    match outcome {
        Ok(()) => {
            // This session goes on with the new password; every other one of the user's ends.
            let stamp = state.auth().stamp(&user);
            let attrs = UserAttrs::default();
            viewer.log_in(&user, attrs, stamp).await?;
            let page = profile_page(&state, &viewer, &Notice::Done("Password changed.")).await?;
            Ok(page.into_response())
        }
        Err(problem) => {
            let message = problem.to_string();
            let page = profile_page(&state, &viewer, &Notice::Refused(&message)).await?;
            Ok((StatusCode::BAD_REQUEST, page).into_response())
        }
    }
}

/// `GET /settings/users` (role `Admin`).
pub(crate) async fn get_users(
    State(state): State<AppState>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
) -> Result<Markup, Error> {
    access::require(&state, &viewer, &[Role::Admin], &uri)?;
    users_page(&state, &viewer, &Notice::None).await
}

async fn users_page(
    state: &AppState,
    viewer: &Viewer,
    notice: &Notice<'_>,
) -> Result<Markup, Error> {
    let csrf = viewer.csrf_token().await?;
    let users = state.auth().user_names();
    let content = html! {
        h2 { "Users" }
        (notice_markup(notice))
        table.table.users {
            tr { th { "User" } th { "Reset password" } th {} }
            @for name in &users {
                @let path = format!("/settings/users/{}", urls::encode_segment(name));
                tr {
                    td.user { (name) }
                    td {
                        (post_form("reset-form", &format!("{path}/password"), &csrf, html! {
                            input.form-control type="password" name="password"
                                aria-label={ "New password for " (name) };
                            button.btn.btn-default.btn-sm type="submit" { "Reset" }
                        }))
                    }
                    td {
                        @if name != "admin" {
                            (post_form("remove-form", &format!("{path}/remove"), &csrf, html! {
                                button.btn.btn-danger.btn-sm type="submit" { "Remove" }
                            }))
                        }
                    }
                }
            }
        }
        h3 { "Add a user" }
        (post_form("add-user-form", "/settings/users", &csrf, html! {
            (field("Username", "text", "name", "", None))
            (field("Password", "password", "password", "", None))
            p.help-block { (PASSWORD_RULE) }
            button.btn.btn-primary type="submit" { "Add user" }
        }))
    };
    Ok(page(
        &Chrome::new(state, viewer),
        "Users",
        Tab::Settings,
        content,
    ))
}

/// `POST /settings/users` (role `Admin`): adds a user.
pub(crate) async fn post_add_user(
    State(state): State<AppState>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Form(form): Form<UserForm>,
) -> Result<Response, Error> {
    access::require(&state, &viewer, &[Role::Admin], &uri)?;
    let outcome = state
        .auth()
        .set_password(&form.name, form.password, true)
        .await?;
    users_outcome(&state, &viewer, outcome, &format!("Added {}.", form.name)).await
}

/// `POST /settings/users/{name}/password` (role `Admin`): resets a user's password.
pub(crate) async fn post_reset_password(
    State(state): State<AppState>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Path(name): Path<String>,
    Form(form): Form<UserForm>,
) -> Result<Response, Error> {
    access::require(&state, &viewer, &[Role::Admin], &uri)?;
    let outcome = state
        .auth()
        .set_password(&name, form.password, false)
        .await?;
    let done = format!("Reset the password of {name}; their sessions are logged out.");
    users_outcome(&state, &viewer, outcome, &done).await
}

/// `POST /settings/users/{name}/remove` (role `Admin`): removes a user.
pub(crate) async fn post_remove_user(
    State(state): State<AppState>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    access::require(&state, &viewer, &[Role::Admin], &uri)?;
    let outcome = state.auth().remove_user(&name).await?;
    users_outcome(&state, &viewer, outcome, &format!("Removed {name}.")).await
}

/// After a change on the users page: back to the list (303, so a reload does not post again), or
/// the list with the reason it was refused (400).
async fn users_outcome(
    state: &AppState,
    viewer: &Viewer,
    outcome: Result<(), AccountProblem>,
    done: &str,
) -> Result<Response, Error> {
    match outcome {
        Ok(()) => {
            tracing::info!(admin = ?viewer.user(), "{done}");
            Ok(Redirect::to("/settings/users").into_response())
        }
        Err(problem) => {
            let message = problem.to_string();
            let page = users_page(state, viewer, &Notice::Refused(&message)).await?;
            Ok((StatusCode::BAD_REQUEST, page).into_response())
        }
    }
}

fn notice_markup(notice: &Notice<'_>) -> Markup {
    html! {
        @match notice {
            Notice::None => {}
            Notice::Done(message) => div.alert.alert-success { (message) },
            Notice::Refused(message) => div.alert.alert-danger { (message) },
        }
    }
}
