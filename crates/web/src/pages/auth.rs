//! Login, logout, the first-run intro link and admin setup (spec §2.3, §2.7, §1.5.8).
//!
//! Passwords are never written back into a form, and login attempts are rate-limited per user
//! name and client address.

use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, FromRequest as _, OriginalUri, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Chrome, Tab, field, page, post_form};
use crate::acl::{Role, UserAttrs};
use crate::auth::{IntroOutcome, SetupOutcome};
use crate::{AppState, Error, Viewer, access, urls};

/// The query of `GET /auth/login`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct LoginQuery {
    redirect: Option<String>,
}

/// The form of `POST /auth/login`.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    redirect: String,
}

/// The form of `POST /auth/setup`.
#[derive(Debug, Deserialize)]
pub(crate) struct SetupForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    password2: String,
}

/// The login form's state when rendered again.
#[derive(Debug, Default)]
struct LoginErrors<'a> {
    user: &'a str,
    user_error: Option<&'a str>,
    form_error: Option<&'a str>,
}

/// `GET /auth/login`.
pub(crate) async fn get_login(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<LoginQuery>,
) -> Result<Markup, Error> {
    let redirect = query
        .redirect
        .as_deref()
        .and_then(urls::local_path)
        .unwrap_or("/");
    login_page(&state, &viewer, redirect, &LoginErrors::default()).await
}

async fn login_page(
    state: &AppState,
    viewer: &Viewer,
    redirect: &str,
    errors: &LoginErrors<'_>,
) -> Result<Markup, Error> {
    let csrf = viewer.csrf_token().await?;
    let controls = html! {
        input type="hidden" name="redirect" value=(redirect);
        (field("Username", "text", "user", errors.user, errors.user_error))
        (field("Password", "password", "password", "", None))
        @if let Some(error) = errors.form_error {
            div.alert.alert-danger { "login: " (error) }
        }
        div { button.btn.btn-primary type="submit" { "Log in" } }
    };
    let content = html! {
        h2 { "Login" }
        (post_form("login-form", "/auth/login", &csrf, controls))
        @if crate::github_login::is_available(state) {
            p.github-login {
                a.btn.btn-default href=(format!("/auth/github?redirect={}", crate::urls::encode_query(redirect))) { "Log in with GitHub" }
            }
        }
        @if !state.auth().is_configured() {
            div.alert.alert-warning {
                "The CI has not yet been configured with an administrator user. In the CI's logs \
                 you should find a URL containing a token - open this URL to create an 'admin' user."
            }
        }
    };
    Ok(page(
        &Chrome::new(state, viewer),
        "Login",
        Tab::Home,
        content,
    ))
}

/// `POST /auth/login`.
pub(crate) async fn post_login(
    State(state): State<AppState>,
    mut viewer: Viewer,
    request: Request,
) -> Result<Response, Error> {
    let addr = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let Form(form) = Form::<LoginForm>::from_request(request, &state)
        .await
        .map_err(|rejection| Error::BadRequest(rejection.body_text()))?;
    let redirect = urls::local_path(&form.redirect).unwrap_or("/").to_owned();
    if form.user.is_empty() {
        let errors = LoginErrors {
            user_error: Some("Cannot be empty"),
            ..LoginErrors::default()
        };
        let page = login_page(&state, &viewer, &redirect, &errors).await?;
        return Ok((StatusCode::BAD_REQUEST, page).into_response());
    }
    if !state.auth().allow_login_attempt(&form.user, addr) {
        tracing::warn!(user = %form.user, ?addr, "login attempts rate-limited");
        state.metrics().local_login_rejected.inc();
        let errors = LoginErrors {
            user: &form.user,
            form_error: Some("Too many login attempts; wait a minute and try again"),
            ..LoginErrors::default()
        };
        let page = login_page(&state, &viewer, &redirect, &errors).await?;
        return Ok((
            StatusCode::TOO_MANY_REQUESTS,
            [(
                header::RETRY_AFTER,
                crate::auth::LOGIN_REFILL.as_secs().to_string(),
            )],
            page,
        )
            .into_response());
    }
    if !state.auth().verify(&form.user, &form.password).await? {
        tracing::info!(user = %form.user, "incorrect user name or password");
        state.metrics().local_login_rejected.inc();
        let errors = LoginErrors {
            user: &form.user,
            form_error: Some("Invalid username/password"),
            ..LoginErrors::default()
        };
        let page = login_page(&state, &viewer, &redirect, &errors).await?;
        return Ok((StatusCode::BAD_REQUEST, page).into_response());
    }
    state.metrics().local_login_ok.inc();
    tracing::info!(user = %form.user, "logged in");
    let stamp = state.auth().stamp(&form.user);
    viewer
        .log_in(&form.user, UserAttrs::default(), stamp)
        .await?;
    Ok(Redirect::to(&redirect).into_response())
}

/// `POST /auth/logout` (CSRF-checked like every POST).
pub(crate) async fn post_logout(mut viewer: Viewer) -> Result<Redirect, Error> {
    viewer.log_out().await?;
    Ok(Redirect::to("/"))
}

/// `GET /auth/intro/{token}`: the first-run link, logging in as `admin` once.
pub(crate) async fn get_intro(
    State(state): State<AppState>,
    mut viewer: Viewer,
    Path(token): Path<String>,
) -> Result<Redirect, Error> {
    match state.auth().use_intro_token(&token) {
        IntroOutcome::LoggedIn => {
            state.metrics().local_login_ok.inc();
            tracing::info!("logged in as admin with the intro token");
            viewer.log_in("admin", UserAttrs::default(), None).await?;
            Ok(Redirect::to("/auth/setup"))
        }
        IntroOutcome::AlreadyConfigured => {
            state.metrics().local_login_rejected.inc();
            Err(Error::Forbidden(
                "Already initialised - log in as admin".to_owned(),
            ))
        }
        IntroOutcome::BadToken => {
            state.metrics().local_login_rejected.inc();
            Err(Error::Forbidden("Bad token".to_owned()))
        }
    }
}

/// `GET /auth/setup` (role `Admin`): the admin password form.
pub(crate) async fn get_setup(
    State(state): State<AppState>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
) -> Result<Markup, Error> {
    access::require(&state, &viewer, &[Role::Admin], &uri)?;
    setup_page(&state, &viewer, None, None).await
}

async fn setup_page(
    state: &AppState,
    viewer: &Viewer,
    password_error: Option<&str>,
    confirm_error: Option<&str>,
) -> Result<Markup, Error> {
    let csrf = viewer.csrf_token().await?;
    let controls = html! {
        div.form-group {
            label for="user" { "Username" }
            input #user.form-control type="text" name="name" value="admin" disabled;
        }
        (field("Password", "password", "password", "", password_error))
        p.help-block { (crate::auth::PASSWORD_RULE) }
        (field("Confirm", "password", "password2", "", confirm_error))
        button.btn.btn-default type="submit" { "Submit" }
    };
    let content = html! {
        h2 { "Set the admin password" }
        (post_form("auth-setup-form", "/auth/setup", &csrf, controls))
    };
    Ok(page(
        &Chrome::new(state, viewer),
        "Auth Setup",
        Tab::Home,
        content,
    ))
}

/// `POST /auth/setup` (role `Admin`): sets the admin password once, then logs out.
pub(crate) async fn post_setup(
    State(state): State<AppState>,
    mut viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Form(form): Form<SetupForm>,
) -> Result<Response, Error> {
    access::require(&state, &viewer, &[Role::Admin], &uri)?;
    let password_error = crate::auth::password_problem(&form.password);
    let confirm_error = (form.password2 != form.password).then_some("Values don't match!");
    if password_error.is_some() || confirm_error.is_some() {
        let page = setup_page(&state, &viewer, password_error, confirm_error).await?;
        return Ok((StatusCode::BAD_REQUEST, page).into_response());
    }
    match state.auth().set_admin_password(form.password).await? {
        SetupOutcome::AlreadyConfigured => Err(Error::BadRequest("Already configured!".to_owned())),
        SetupOutcome::Done => {
            viewer.log_out().await?;
            Ok(Redirect::to("/auth/login").into_response())
        }
    }
}
