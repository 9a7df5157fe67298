//! Live pages (issue 21 item 2): the dashboard, the lists and target pages put what changes while
//! builds run into a `div#live` region and inline `static/live.js`, which follows the engine's
//! status changes (`GET /api/v1/events`) and swaps the region for a freshly rendered one. The
//! pages are complete without the script, so they still work without JavaScript.
//!
//! Knows nothing of what the regions hold.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{Markup, PreEscaped, html};

use datakit_ci_term::TargetId;

/// The script, inlined into live pages and allowed by its hash.
pub(crate) const LIVE_SCRIPT: &str = include_str!("../../static/live.js");

/// Which changes refresh a live region, and how often.
#[derive(Clone, Debug, Default)]
pub(crate) struct Live<'a> {
    /// Only this target's status changes (none: any change).
    pub(crate) target: Option<&'a TargetId>,
    /// At least this many milliseconds between two refreshes (pages listing many targets).
    pub(crate) gap_ms: u32,
    /// Refresh every so many seconds even without a change (0: never), while something runs.
    pub(crate) poll_seconds: u32,
}

impl Live<'_> {
    /// `content` in the live region, followed by the script.
    pub(crate) fn region(&self, content: Markup) -> Markup {
        html! {
            div #live data-live-target=[self.target.map(ToString::to_string)]
                data-live-gap=(self.gap_ms) data-live-poll=(self.poll_seconds) {
                (content)
            }
            script { (PreEscaped(LIVE_SCRIPT)) }
        }
    }
}

/// A live page's response: `html` with the policy that lets its script run.
pub(crate) fn response(html: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
            (
                header::CONTENT_SECURITY_POLICY,
                crate::csp::policy_with_script(LIVE_SCRIPT),
            ),
        ],
        html,
    )
        .into_response()
}
