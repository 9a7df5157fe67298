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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_follow_rfc_3986() {
        assert_eq!(encode_segment("a/b c%d"), "a%2Fb%20c%25d");
        assert_eq!(
            encode_segment("A-z0_9.~!$&'()*+,;=:@"),
            "A-z0_9.~!$&'()*+,;=:@"
        );
        assert_eq!(encode_segment("é"), "%C3%A9");
        assert_eq!(saved_log("b/1", "abc"), "/log/saved/b%2F1/abc");
        assert_eq!(encode_query("a+b/c=d&e"), "a%2Bb%2Fc%3Dd%26e");
    }

    #[test]
    fn only_local_paths_are_redirect_targets() {
        assert_eq!(local_path("/settings?x=1"), Some("/settings?x=1"));
        for bad in [
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example/",
            "settings",
            "/a\nb",
        ] {
            assert_eq!(local_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn back_is_the_referer_on_this_site() {
        let config =
            WebConfig::new("/s").public_url("https://ci.example.org/".parse().expect("valid"));
        let back_from = |referer: &str, host: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::REFERER, referer.parse().expect("header"));
            headers.insert(header::HOST, host.parse().expect("header"));
            back(&headers, &config, "/fallback".to_owned())
        };
        assert_eq!(
            back_from("http://127.0.0.1:8080/log/live/x", "127.0.0.1:8080"),
            "/log/live/x"
        );
        assert_eq!(
            back_from("https://ci.example.org/pr?a=1", "proxy:80"),
            "/pr?a=1"
        );
        assert_eq!(
            back_from("https://evil.example/x", "ci.example.org"),
            "/fallback"
        );
        assert_eq!(
            back(&HeaderMap::new(), &config, "/fallback".to_owned()),
            "/fallback"
        );
    }
}
