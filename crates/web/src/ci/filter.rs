//! The query of the lists `/pr`, `/branch`, `/tag` and of `GET /api/v1/targets` (issue 21 item
//! 4): a page number (`?page=`, 1-based) or a cursor (`?after=`), a filter by name (`?q=`, a
//! case-insensitive substring of the target's name or PR title), a filter by state
//! (`?state=failing|pending|passing`) and the failing-first order (`?sort=failing`).
//!
//! Validates the raw query once; a bad value is a `400` naming it. Knows nothing of HTML.

use serde::Deserialize;

use datakit_ci_term::TargetId;

use super::model::JobState;
use crate::{Error, urls};

/// How many targets a page of a list shows.
pub(crate) const LIST_PAGE: usize = 100;
/// How many targets the JSON API returns at most per call, and by default.
pub(crate) const API_MAX_LIMIT: usize = 1000;
pub(crate) const API_DEFAULT_LIMIT: usize = 100;

/// The query string of a list, as sent.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    page: Option<String>,
    q: Option<String>,
    state: Option<String>,
    sort: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// Which targets a list shows and in which order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ListFilter {
    /// Lowercase (ASCII) substring a target's name or title must contain; empty: any.
    pub(crate) q: String,
    /// Only targets whose summary is in this state.
    pub(crate) state: Option<JobState>,
    /// Failing targets first, then pending, then passing (each in list order).
    pub(crate) failing_first: bool,
}

impl ListFilter {
    /// Whether a target named `name` (and titled `title`) in summary state `state` is listed.
    pub(crate) fn matches(&self, name: &str, title: Option<&str>, state: JobState) -> bool {
        if self.state.is_some_and(|wanted| wanted != state) {
            return false;
        }
        self.q.is_empty()
            || contains_ignore_ascii_case(name, &self.q)
            || title.is_some_and(|title| contains_ignore_ascii_case(title, &self.q))
    }

    /// Appends the filter's query parameters (`q=…&state=…&sort=…&`), each followed by `&`.
    pub(crate) fn write_query(&self, out: &mut String) {
        if !self.q.is_empty() {
            out.push_str("q=");
            out.push_str(&urls::encode_query(&self.q));
            out.push('&');
        }
        if let Some(state) = self.state {
            out.push_str("state=");
            out.push_str(state_word(state));
            out.push('&');
        }
        if self.failing_first {
            out.push_str("sort=failing&");
        }
    }
}

/// The rank of a state in the failing-first order.
pub(crate) fn failing_rank(state: JobState) -> u8 {
    match state {
        JobState::Failure => 0,
        JobState::Pending => 1,
        JobState::Success => 2,
    }
}

/// The word of `?state=` for `state`.
pub(crate) fn state_word(state: JobState) -> &'static str {
    match state {
        JobState::Failure => "failing",
        JobState::Pending => "pending",
        JobState::Success => "passing",
    }
}

impl ListQuery {
    /// The filter and order.
    pub(crate) fn filter(&self) -> Result<ListFilter, Error> {
        let state = match self.state.as_deref() {
            None | Some("" | "all") => None,
            Some("failing" | "failure") => Some(JobState::Failure),
            Some("pending") => Some(JobState::Pending),
            Some("passing" | "success") => Some(JobState::Success),
            Some(other) => {
                return Err(Error::BadRequest(format!(
                    "invalid state {other:?}: expected failing, pending, passing or all"
                )));
            }
        };
        let failing_first = match self.sort.as_deref() {
            None | Some("" | "name") => false,
            Some("failing") => true,
            Some(other) => {
                return Err(Error::BadRequest(format!(
                    "invalid sort {other:?}: expected name or failing"
                )));
            }
        };
        Ok(ListFilter {
            q: self.q.as_deref().unwrap_or("").trim().to_ascii_lowercase(),
            state,
            failing_first,
        })
    }

    /// The page number, from 1 (the default).
    pub(crate) fn page(&self) -> Result<usize, Error> {
        match self.page.as_deref() {
            None | Some("") => Ok(1),
            Some(text) => match text.parse::<usize>() {
                Ok(page) if page >= 1 => Ok(page),
                _ => Err(Error::BadRequest(format!(
                    "invalid page {text:?}: expected a whole number from 1"
                ))),
            },
        }
    }

    /// How many targets one API call returns.
    pub(crate) fn limit(&self) -> Result<usize, Error> {
        match self.limit.as_deref() {
            None | Some("") => Ok(API_DEFAULT_LIMIT),
            Some(text) => match text.parse::<usize>() {
                Ok(limit) if (1..=API_MAX_LIMIT).contains(&limit) => Ok(limit),
                _ => Err(Error::BadRequest(format!(
                    "invalid limit {text:?}: expected a whole number from 1 to {API_MAX_LIMIT}"
                ))),
            },
        }
    }

    /// The cursor: the last target of the previous call, if any.
    pub(crate) fn after(&self) -> Result<Option<Cursor>, Error> {
        match self.after.as_deref() {
            None | Some("") => Ok(None),
            Some(text) => Cursor::parse(text).map(Some),
        }
    }
}

/// Where an API call resumes: just after this target, in the order of the list (by rank first
/// when the order is failing first).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Cursor {
    /// The target's [`failing_rank`] (0 unless the order is failing first).
    pub(crate) rank: u8,
    pub(crate) id: TargetId,
}

impl Cursor {
    /// `<rank>.<target page path without the leading slash>`, e.g. `0.me/proj/ref/heads/main`.
    pub(crate) fn to_param(&self) -> String {
        format!("{}.{}", self.rank, &urls::target(&self.id)[1..])
    }

    fn parse(text: &str) -> Result<Cursor, Error> {
        let bad = |reason: &str| {
            Error::BadRequest(format!(
                "invalid cursor {text:?}: {reason} (pass the `next` of the previous answer)"
            ))
        };
        let (rank, path) = text.split_once('.').ok_or_else(|| bad("no rank"))?;
        let rank: u8 = match rank {
            "0" => 0,
            "1" => 1,
            "2" => 2,
            _ => return Err(bad("the rank is not 0, 1 or 2")),
        };
        let segments: Vec<String> = path
            .split('/')
            .map(|segment| {
                percent_encoding::percent_decode_str(segment)
                    .decode_utf8()
                    .map(|s| s.into_owned())
            })
            .collect::<Result<_, _>>()
            .map_err(|_| bad("not UTF-8"))?;
        let id = match segments.as_slice() {
            [user, repo, kind, number] if kind == "pr" => urls::parse_pr(user, repo, number),
            [user, repo, kind, rest @ ..] if kind == "ref" && !rest.is_empty() => {
                urls::parse_ref(user, repo, &rest.join("/"))
            }
            _ => return Err(bad("not a target")),
        }
        .map_err(|error| bad(&error.to_string()))?;
        Ok(Cursor { rank, id })
    }
}

/// Whether `haystack` contains `needle` (lowercase ASCII), ignoring ASCII case.
fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    let (haystack, needle) = (haystack.as_bytes(), needle.as_bytes());
    needle.len() <= haystack.len()
        && haystack
            .windows(needle.len())
            .any(|window| window.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> ListQuery {
        let text: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        serde_urlencoded_like(&text)
    }

    /// Parses a query as axum's `Query` would.
    fn serde_urlencoded_like(text: &str) -> ListQuery {
        let mut query = ListQuery::default();
        for (key, value) in form_urlencoded::parse(text.as_bytes()) {
            let value = Some(value.into_owned());
            match &*key {
                "page" => query.page = value,
                "q" => query.q = value,
                "state" => query.state = value,
                "sort" => query.sort = value,
                "after" => query.after = value,
                "limit" => query.limit = value,
                _ => {}
            }
        }
        query
    }

    #[test]
    fn filters_match_names_and_titles_ignoring_case() -> Result<(), Error> {
        let filter = query(&[("q", " Feat "), ("state", "failing")]).filter()?;
        assert!(filter.matches("heads/FEATURE/x", None, JobState::Failure));
        assert!(filter.matches("3", Some("A feat."), JobState::Failure));
        assert!(!filter.matches("heads/feature/x", None, JobState::Success));
        assert!(!filter.matches("heads/main", Some("main"), JobState::Failure));
        assert!(ListFilter::default().matches("x", None, JobState::Pending));
        let mut written = String::new();
        filter.write_query(&mut written);
        assert_eq!(written, "q=feat&state=failing&");
        Ok(())
    }

    #[test]
    fn bad_values_name_the_problem() {
        let message =
            |query: ListQuery| match (query.page(), query.filter(), query.limit(), query.after()) {
                (Err(e), ..) | (_, Err(e), ..) | (.., Err(e), _) | (.., Err(e)) => e.to_string(),
                _ => "ok".to_owned(),
            };
        assert_eq!(
            message(query(&[("page", "0")])),
            "invalid page \"0\": expected a whole number from 1"
        );
        assert_eq!(
            message(query(&[("page", "two")])),
            "invalid page \"two\": expected a whole number from 1"
        );
        assert_eq!(
            message(query(&[("state", "red")])),
            "invalid state \"red\": expected failing, pending, passing or all"
        );
        assert_eq!(
            message(query(&[("sort", "age")])),
            "invalid sort \"age\": expected name or failing"
        );
        assert_eq!(
            message(query(&[("limit", "5000")])),
            "invalid limit \"5000\": expected a whole number from 1 to 1000"
        );
        assert_eq!(
            message(query(&[("after", "9.me/proj/pr/3")])),
            "invalid cursor \"9.me/proj/pr/3\": the rank is not 0, 1 or 2 \
             (pass the `next` of the previous answer)"
        );
        assert_eq!(
            message(query(&[("after", "0.me/proj/pr/x")])),
            "invalid cursor \"0.me/proj/pr/x\": Invalid PR number \"x\" \
             (pass the `next` of the previous answer)"
        );
        assert_eq!(message(query(&[("page", "3"), ("state", "all")])), "ok");
    }

    #[test]
    fn cursors_round_trip() -> anyhow::Result<()> {
        for id in [
            TargetId::Pr("me/proj".parse()?, 3),
            TargetId::Ref("me/p.r".parse()?, "heads/a%2Fb/c".parse()?),
        ] {
            let cursor = Cursor { rank: 1, id };
            let param = cursor.to_param();
            assert_eq!(query(&[("after", &param)]).after()?, Some(cursor));
        }
        Ok(())
    }
}
