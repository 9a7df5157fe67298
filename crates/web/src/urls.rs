//! URL formats (spec §1.8): path-segment percent-encoding, log links, links into the published
//! state repository, and the checks that keep redirects on this site.

use axum::http::{HeaderMap, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::WebConfig;

/// RFC 3986 path-segment encoding: unreserved characters, sub-delimiters, `:` and `@` are kept;
/// everything else, `/` included, becomes `%XX`.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// Encodes `s` as one path segment.
///
/// ```
/// assert_eq!(datakit_ci_web::urls::encode_segment("log-of/a b"), "log-of%2Fa%20b");
/// ```
pub fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// Encodes `s` for a query-string value (`&`, `=`, `+` and `#` encoded too).
pub fn encode_query(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `/log/live/<enc branch>`.
pub fn live_log(branch: &str) -> String {
    format!("/log/live/{}", encode_segment(branch))
}

/// `/log/saved/<enc branch>/<enc commit>`.
pub fn saved_log(branch: &str, commit: &str) -> String {
    format!(
        "/log/saved/{}/{}",
        encode_segment(branch),
        encode_segment(commit)
    )
}

/// A link into the published state repository, or `/error/no-state-repo` if none is configured.
pub(crate) fn state_repo(config: &WebConfig, path: &str) -> String {
    match config.state_repo_url() {
        Some(base) => format!("{}/{path}", base.trim_end_matches('/')),
        None => "/error/no-state-repo".to_owned(),
    }
}

/// `target` if it is a path on this site (`/…`, but not `//host` or `/\host`), for redirects.
pub fn local_path(target: &str) -> Option<&str> {
    let ok = target.starts_with('/')
        && !target.starts_with("//")
        && !target.starts_with("/\\")
        && !target.chars().any(|c| c.is_control());
    ok.then_some(target)
}

/// Where "back" is: the path of the `Referer` if it is on this site, else `fallback`.
pub(crate) fn back(headers: &HeaderMap, config: &WebConfig, fallback: String) -> String {
    let Some(referer) = headers
        .get(header::REFERER)
        .and_then(|value| value.to_str().ok())
    else {
        return fallback;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok());
    let path = ["http://", "https://"].iter().find_map(|scheme| {
        let rest = referer.strip_prefix(scheme)?;
        let (authority, path) = match rest.find('/') {
            Some(index) => rest.split_at(index),
            None => (rest, "/"),
        };
        (Some(authority) == host || authority == config.public().authority()).then_some(path)
    });
    path.and_then(local_path)
        .map(str::to_owned)
        .unwrap_or(fallback)
}
