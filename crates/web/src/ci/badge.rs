//! Status badges for READMEs (issue 21 item 7): `GET /badge/<user>/<repo>/<ref path>.svg` (e.g.
//! `/badge/me/proj/heads/main.svg`), `?job=<name>` for one job: an SVG saying `passing`,
//! `failing` or `pending`, from the live state, or the latest recorded one of a target no longer
//! tracked.
//!
//! Public only: a badge is served only if the read ACL lets anonymous visitors read, whoever
//! asks (a badge is meant to be embedded on other sites); otherwise, like an unknown target or
//! job, it is a `404`. Answered with `Cache-Control: no-cache` so READMEs show the current state.

use axum::extract::{Extension, Query, RawPathParams, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use datakit_ci_term::TargetId;

use super::Ci;
use super::model::{self, JobState};
use crate::acl::{Decision, Role, UserAttrs};
use crate::{AppState, Error, urls};

/// The query of a badge.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct BadgeQuery {
    /// One job's badge instead of the target's.
    job: Option<String>,
}

/// `GET /badge/{user}/{repo}/{*path}` where the path ends in `.svg` (public targets only).
pub(crate) async fn get_badge(
    State(state): State<AppState>,
    Extension(ci): Extension<Ci>,
    params: RawPathParams,
    Query(query): Query<BadgeQuery>,
) -> Result<Response, Error> {
    let public = state
        .config()
        .access()
        .check(Role::Reader, None, &UserAttrs::default())
        == Decision::Yes;
    if !public {
        return Err(Error::NotFound("No such badge".to_owned()));
    }
    let id = badge_target(&params)?;
    if !ci
        .engine
        .projects()
        .any(|project| project.id() == id.repo())
    {
        return Err(Error::NotFound(format!("No such project {}", id.repo())));
    }
    let shown = model::shown_state(&ci.engine, &id, None)
        .await?
        .ok_or_else(|| Error::NotFound(format!("No target {id}")))?;
    let (label, state) = match &query.job {
        Some(name) => {
            let job = shown
                .jobs
                .iter()
                .find(|job| &job.name == name)
                .ok_or_else(|| Error::NotFound(format!("No job {name:?} of {id}")))?;
            (name.as_str(), job.state())
        }
        None => ("ci", model::summary(&shown.jobs).0),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        badge_svg(label, state),
    )
        .into_response())
}

/// The target of a badge path: `<ref path>.svg`.
fn badge_target(params: &RawPathParams) -> Result<TargetId, Error> {
    let param = |name: &str| {
        params
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
            .ok_or_else(|| Error::BadRequest(format!("missing path parameter {name:?}")))
    };
    let path = param("path")?;
    let path = path
        .strip_suffix(".svg")
        .ok_or_else(|| Error::NotFound(format!("No such badge {path:?}: badges end in .svg")))?;
    urls::parse_ref(param("user")?, param("repo")?, path)
}

/// The word and colour a badge shows for `state`.
fn look(state: JobState) -> (&'static str, &'static str) {
    match state {
        JobState::Success => ("passing", "#2e7d32"),
        JobState::Failure => ("failing", "#c62828"),
        JobState::Pending => ("pending", "#b08800"),
    }
}

/// An approximate text width in pixels (11px Verdana-like, as badges are usually drawn).
fn text_width(text: &str) -> usize {
    text.chars().count() * 7 + 10
}

/// The badge: `label` on grey, the state's word on its colour.
pub(crate) fn badge_svg(label: &str, state: JobState) -> String {
    let (word, colour) = look(state);
    let (left, right) = (text_width(label), text_width(word));
    let label = escape_xml(label);
    let width = left + right;
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" aria-label="{label}: {word}"><title>{label}: {word}</title><rect width="{left}" height="20" fill="#555"/><rect x="{left}" width="{right}" height="20" fill="{colour}"/><g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11"><text x="{lx}" y="14">{label}</text><text x="{rx}" y="14">{word}</text></g></svg>"##,
        lx = left / 2,
        rx = left + right / 2,
    )
}

/// `text` with XML's special characters escaped (for text and attribute values).
fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters, even escaped.
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `svg` with a real XML parser and returns its texts, in order.
    fn texts(svg: &str) -> Vec<String> {
        let document = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{e}: {svg}"));
        let root = document.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert_eq!(
            root.tag_name().namespace(),
            Some("http://www.w3.org/2000/svg")
        );
        root.descendants()
            .filter(|node| node.has_tag_name("text"))
            .map(|node| node.text().unwrap_or("").to_owned())
            .collect()
    }

    #[test]
    fn badges_are_valid_svg_saying_the_state() {
        assert_eq!(
            texts(&badge_svg("ci", JobState::Success)),
            ["ci", "passing"]
        );
        assert_eq!(
            texts(&badge_svg("ci", JobState::Failure)),
            ["ci", "failing"]
        );
        assert_eq!(
            texts(&badge_svg("ci", JobState::Pending)),
            ["ci", "pending"]
        );
        let hostile = "lint <&> \"quoted\" 'x'\u{1}";
        let svg = badge_svg(hostile, JobState::Failure);
        assert_eq!(texts(&svg), ["lint <&> \"quoted\" 'x'\u{FFFD}", "failing"]);
        let document = roxmltree::Document::parse(&svg).expect("valid XML");
        assert_eq!(
            document.root_element().attribute("aria-label"),
            Some("lint <&> \"quoted\" 'x'\u{FFFD}: failing")
        );
        assert!(svg.contains("fill=\"#c62828\""), "{svg}");
    }
}
