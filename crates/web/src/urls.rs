//! URL formats (spec §1.8): path-segment percent-encoding, log links, links into the published
//! state repository, and the checks that keep redirects on this site.

use std::fmt::Write as _;

use axum::http::{HeaderMap, header};
use datakit_ci_term::{CommitHash, RefName, RepoId, TargetId};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::{Error, WebConfig};

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

/// `/api/v1/artifacts/<enc branch>/<enc commit>/<path>`, each component of the artifact's path
/// encoded.
pub fn artifact(branch: &str, commit: &str, path: &str) -> String {
    let mut url = format!(
        "/api/v1/artifacts/{}/{}",
        encode_segment(branch),
        encode_segment(commit)
    );
    for component in path.split('/') {
        url.push('/');
        url.extend(utf8_percent_encode(component, SEGMENT));
    }
    url
}

/// The page of a target: `/<user>/<repo>/pr/<n>`, or `/<user>/<repo>/ref/` and the ref's
/// components, each encoded.
///
/// ```
/// use datakit_ci_term::{RefName, TargetId};
/// let feature = TargetId::Ref("me/proj".parse()?, RefName::branch("feature/x")?);
/// assert_eq!(datakit_ci_web::urls::target(&feature), "/me/proj/ref/heads/feature/x");
/// let pr = TargetId::Pr("me/proj".parse()?, 3);
/// assert_eq!(datakit_ci_web::urls::target(&pr), "/me/proj/pr/3");
/// # Ok::<(), datakit_ci_term::IdError>(())
/// ```
pub fn target(id: &TargetId) -> String {
    let mut url = String::new();
    write_target(&mut url, id);
    url
}

/// Appends [`target`]`(id)` to `out`: lists of thousands of targets write their links into one
/// buffer instead of allocating a string per link.
pub(crate) fn write_target(out: &mut String, id: &TargetId) {
    write_repo_prefix(out, id.repo());
    match id {
        TargetId::Pr(_, number) => {
            write!(out, "/pr/{number}").expect("writing to a String cannot fail");
        }
        TargetId::Ref(_, name) => {
            out.push_str("/ref");
            for component in name.components() {
                out.push('/');
                out.extend(utf8_percent_encode(component, SEGMENT));
            }
        }
    }
}

/// Appends [`commit`]`(repo, hash)` to `out`.
pub(crate) fn write_commit(out: &mut String, repo: &RepoId, hash: &CommitHash) {
    write_repo_prefix(out, repo);
    out.push_str("/commit/");
    out.push_str(hash.as_str());
}

/// `/<enc user>/<enc repo>`.
fn write_repo_prefix(out: &mut String, repo: &RepoId) {
    out.push('/');
    out.extend(utf8_percent_encode(repo.user(), SEGMENT));
    out.push('/');
    out.extend(utf8_percent_encode(repo.repo(), SEGMENT));
}

/// The JSON description of a target: `/api/v1/targets` and the target's page path.
pub fn api_target(id: &TargetId) -> String {
    format!("/api/v1/targets{}", target(id))
}

/// The JSON history of a target: `/api/v1/history` and the target's page path.
pub fn api_history(id: &TargetId) -> String {
    format!("/api/v1/history{}", target(id))
}

/// The page of a source commit: `/<user>/<repo>/commit/<hash>`.
pub fn commit(repo: &RepoId, hash: &CommitHash) -> String {
    let mut url = String::new();
    write_commit(&mut url, repo, hash);
    url
}

/// Where the "approve" form of a target's page posts: `/approve` and the target's path.
pub fn approve(target_page: &str) -> String {
    format!("/approve{target_page}")
}

/// Where the "rebuild failed jobs" form of a page posts: `/rebuild-failed` and the page's path.
pub fn rebuild_failed(page: &str) -> String {
    format!("/rebuild-failed{page}")
}

/// The repository of a page's `/<user>/<repo>/…` path (captured, already decoded).
pub(crate) fn parse_repo(user: &str, repo: &str) -> Result<RepoId, Error> {
    RepoId::new(user, repo).map_err(|e| Error::NotFound(format!("No such project: {e}")))
}

/// The PR target of `/<user>/<repo>/pr/<number>`.
pub(crate) fn parse_pr(user: &str, repo: &str, number: &str) -> Result<TargetId, Error> {
    let repo = parse_repo(user, repo)?;
    let number = number
        .parse()
        .map_err(|_| Error::NotFound(format!("Invalid PR number {number:?}")))?;
    Ok(TargetId::Pr(repo, number))
}

/// The ref target of `/<user>/<repo>/ref/<path…>`; `path` is the rest of the URL path, already
/// percent-decoded (by axum), split on `/` (spec §1.4 row 12). It is not decoded again: a ref
/// may be named `pct%2Fenc` (issue 14).
pub(crate) fn parse_ref(user: &str, repo: &str, path: &str) -> Result<TargetId, Error> {
    let repo = parse_repo(user, repo)?;
    let components: Vec<&str> = path.split('/').collect();
    let name =
        RefName::new(&components).map_err(|e| Error::NotFound(format!("Invalid ref name: {e}")))?;
    Ok(TargetId::Ref(repo, name))
}

/// A link into the published state repository, if one is configured (pages show no such link
/// otherwise).
pub(crate) fn state_repo(config: &WebConfig, path: &str) -> Option<String> {
    config
        .state_repo_url()
        .map(|base| format!("{}/{path}", base.trim_end_matches('/')))
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
    fn target_paths_round_trip() {
        for (path, shown) in [
            ("heads/main", "me/proj/heads/main"),
            ("heads/feature/x", "me/proj/heads/feature/x"),
            ("tags/v0.1", "me/proj/tags/v0.1"),
            ("v0.1", "me/proj/v0.1"),
        ] {
            let id = parse_ref("me", "proj", path).expect("valid ref");
            assert_eq!(id.to_string(), shown);
            assert_eq!(target(&id), format!("/me/proj/ref/{path}"));
        }
        let pr = parse_pr("me", "proj", "12").expect("valid PR");
        assert_eq!(target(&pr), "/me/proj/pr/12");
        assert_eq!(api_history(&pr), "/api/v1/history/me/proj/pr/12");
        for bad in ["heads/a b", "heads//x", "heads/..", ""] {
            assert!(parse_ref("me", "proj", bad).is_err(), "{bad:?}");
        }
        assert!(parse_pr("me", "proj", "x").is_err());
        assert!(parse_pr("me", "p r", "1").is_err());
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
