//! HTML pages: the common chrome (spec §1.5.1), form helpers, and one module per group of pages.
//!
//! Pages are `maud` templates, so every interpolated value is escaped. Engine-facing pages
//! (dashboard, targets, commits) live in the `ci` module and use [`page`] and [`Chrome`].

pub(crate) mod accounts;
pub(crate) mod auth;
pub(crate) mod errors;
pub(crate) mod home;
pub(crate) mod settings;

use maud::{DOCTYPE, Markup, html};

use crate::csrf::CSRF_FIELD;
use crate::{AppState, Viewer};

/// The navbar tabs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    /// `/`.
    Home,
    /// `/pr`.
    Prs,
    /// `/branch`.
    Branches,
    /// `/tag`.
    Tags,
    /// `/settings`.
    Settings,
}

const TABS: [(Tab, &str, &str); 5] = [
    (Tab::Home, "Home", "/"),
    (Tab::Prs, "PRs", "/pr"),
    (Tab::Branches, "Branches", "/branch"),
    (Tab::Tags, "Tags", "/tag"),
    (Tab::Settings, "Settings", "/settings"),
];

/// What the page chrome shows around every page: the CI's name and who is logged in.
#[derive(Clone, Debug)]
pub struct Chrome {
    ci_name: String,
    user: Option<String>,
}

impl Chrome {
    /// The chrome for `viewer` on this web UI.
    pub fn new(state: &AppState, viewer: &Viewer) -> Chrome {
        Chrome {
            ci_name: state.config().ci_name().to_owned(),
            user: viewer.user().map(str::to_owned),
        }
    }
}

/// A complete HTML page: head, navbar (with `tab` active), then `content`.
pub fn page(chrome: &Chrome, title: &str, tab: Tab, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href="/css/style.css";
            }
            body {
                nav.navbar {
                    div.container {
                        a.navbar-brand href="/" { (chrome.ci_name) }
                        ul.nav.navbar-nav {
                            @for (t, label, href) in TABS {
                                li class=[(t == tab).then_some("active")] { a href=(href) { (label) } }
                            }
                        }
                        ul.nav.navbar-nav.navbar-right {
                            li { a href="/user/profile" { (chrome.user.as_deref().unwrap_or("not logged in")) } }
                        }
                    }
                }
                div.container { div.content { (content) } }
            }
        }
    }
}

/// A POST form to `action` carrying the CSRF token as a hidden field.
pub fn post_form(class: &str, action: &str, csrf_token: &str, controls: Markup) -> Markup {
    html! {
        form class=(class) method="post" action=(action) {
            input type="hidden" name=(CSRF_FIELD) value=(csrf_token);
            (controls)
        }
    }
}

/// A labelled input (`div.form-group`), with its error if any. `value` is the previous value to
/// show again (never pass a password).
pub(crate) fn field(
    label: &str,
    kind: &str,
    name: &str,
    value: &str,
    error: Option<&str>,
) -> Markup {
    let id = format!("field-{name}");
    html! {
        div.form-group {
            label for=(id) { (label) }
            input.form-control id=(id) type=(kind) name=(name) value=(value);
            @if let Some(error) = error {
                div.alert.alert-danger { (error) }
            }
        }
    }
}
