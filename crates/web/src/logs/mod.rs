//! Log pages (spec §1.4 rows 14–15, §1.6): `GET /log/live/{branch}` follows a running build's
//! live log; `GET /log/saved/{branch}/{commit}` shows the `log` file of a store commit. `?raw`
//! gives the bytes as `text/plain`.
//!
//! Every log page has a header ([`log_header`]): the job and target when the link that led here
//! named them (`?target=<target page>&job=<name>`, as target pages' log links do), the branch, the
//! state, links to the raw text and back, a "jump to failure" link for failed builds, and a
//! search box the page's script shows. The lines are numbered, with anchors (`#L42`).

mod frame;
mod lines;
mod window;

pub(crate) use window::TailCache;

use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use datakit_ci_log::index::{FirstError, INDEX_FILE, LogIndex, TAIL_FILE};
use datakit_ci_store::{BranchName, CommitId, StorePath};
use maud::html;

use crate::acl::{Decision, Role};
use crate::{AppState, Error, Viewer, access, pages, urls};
use frame::{Frame, LogSource, html_response, raw_response};

/// Where a log page was reached from: the target page and job named in its query, if any.
#[derive(Debug, Default, PartialEq, Eq)]
struct LogContext {
    /// The target page's local path (e.g. `/me/proj/ref/heads/main`).
    target: Option<String>,
    job: Option<String>,
    /// The commit the job ran on (a full or short hash).
    commit: Option<String>,
}

impl LogContext {
    /// From `?target=…&job=…`; a target that is not a path on this site is ignored.
    fn from_query(query: Option<&str>) -> LogContext {
        let mut context = LogContext::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "target" => {
                    context.target = urls::local_path(&value)
                        .filter(|path| !path.is_empty())
                        .map(str::to_owned);
                }
                "job" if !value.is_empty() => context.job = Some(value.into_owned()),
                "commit" if is_hex(&value) => context.commit = Some(value.into_owned()),
                _ => {}
            }
        }
        context
    }

    /// `?target=…&job=…` to carry to another log page (empty without either).
    fn to_query(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(target) = &self.target {
            query.append_pair("target", target);
        }
        if let Some(job) = &self.job {
            query.append_pair("job", job);
        }
        if let Some(commit) = &self.commit {
            query.append_pair("commit", commit);
        }
        query.finish()
    }
}

/// Whether `text` looks like a commit hash (4 to 40 hex digits).
fn is_hex(text: &str) -> bool {
    (4..=40).contains(&text.len()) && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// The commit page of `commit` in the repository of `target` (a target page's path,
/// `/<user>/<repo>/…`).
fn commit_page(target: &str, commit: &str) -> String {
    let mut parts = target.trim_start_matches('/').splitn(3, '/');
    match (parts.next(), parts.next()) {
        (Some(user), Some(repo)) => format!("/{user}/{repo}/commit/{commit}"),
        _ => target.to_owned(),
    }
}

/// What a log page's header shows.
struct HeaderInfo<'a> {
    branch: &'a str,
    /// `running`, `passed`, `failed` or `finished`.
    state: &'static str,
    raw_url: String,
    context: &'a LogContext,
    /// How long the build took, when the log tells.
    took: Option<std::time::Duration>,
    /// More buttons (history, artefacts, cancel).
    buttons: maud::Markup,
    /// Where "jump to failure" goes: `#failure` on this page, or the part of the log holding
    /// the first error line (from the saved log's index).
    failure_href: String,
}

/// The header of every log page.
fn log_header(info: &HeaderInfo<'_>) -> maud::Markup {
    let (back, back_label) = match &info.context.target {
        Some(target) => (target.clone(), "Back to the target"),
        None => ("/".to_owned(), "Back to the dashboard"),
    };
    html! {
        header.log-header {
            nav.crumbs { a.back href=(back) { "← " (back_label) } }
            p.log-meta {
                span class={ "log-state log-state-" (info.state) } { (info.state) }
                @if let Some(job) = &info.context.job { " · job " strong.job { (job) } }
                @if let Some(target) = &info.context.target {
                    " · target " a.target href=(target) { (target.trim_start_matches('/')) }
                }
                @if let (Some(commit), Some(target)) = (&info.context.commit, &info.context.target) {
                    " · commit " a.commit href=(commit_page(target, commit)) { code { (commit.get(..8).unwrap_or(commit)) } }
                }
                @if let Some(took) = info.took { " · took " span.took { (crate::time::duration(took)) } }
                " · branch " code.branch { (info.branch) }
            }
            div.btn-group {
                (info.buttons)
                a.btn.btn-default.btn-sm.raw href=(info.raw_url) { "Raw" }
                @if info.state == "failed" {
                    " " a.btn.btn-default.btn-sm.jump-to-failure href=(info.failure_href) { "Jump to failure" }
                }
            }
            div.log-tools hidden {
                button.btn.btn-default.btn-sm #toggle-ts type="button" aria-pressed="true" { "Time stamps" }
                @if info.state == "running" {
                    " " button.btn.btn-default.btn-sm #follow type="button" aria-pressed="true" { "Follow" }
                }
            }
            form #log-search .log-search hidden {
                input type="search" name="q" placeholder="Search this log" aria-label="Search this log";
                " " button.btn.btn-default.btn-sm type="submit" { "Find next" }
                " " span #log-search-count {}
            }
        }
    }
}

/// Whether the query asks for the raw log (`?raw`, `?raw=1`, `?x&raw`).
fn wants_raw(query: Option<&str>) -> bool {
    query.is_some_and(|query| {
        query
            .split('&')
            .any(|part| part == "raw" || part.starts_with("raw="))
    })
}

/// `GET /log/live/{branch}` (role `Reader`).
pub(crate) async fn get_live_log(
    State(state): State<AppState>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Path(branch): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, Error> {
    access::require(&state, &viewer, &[Role::Reader], &uri)?;
    let name = BranchName::new(branch.clone()).ok();
    let head = match &name {
        Some(name) => state.store().branch(name).head().await?,
        None => None,
    };
    let Some(log) = state.logs().get(&branch) else {
        return match head {
            Some(head) => {
                let mut target = urls::saved_log(&branch, &head.id().to_string());
                if wants_raw(query.as_deref()) {
                    target.push_str("?raw");
                } else {
                    let context = LogContext::from_query(query.as_deref()).to_query();
                    if !context.is_empty() {
                        target.push('?');
                        target.push_str(&context);
                    }
                }
                Ok(Redirect::temporary(&target).into_response())
            }
            None => {
                tracing::warn!(branch, "live log not found, and no saved branch either");
                Err(Error::NotFound(format!(
                    "No live or saved log for branch {branch:?}"
                )))
            }
        };
    };
    let source = LogSource::Live {
        stream: log.stream(),
        shutdown: state.shutdown_token().clone(),
    };
    if wants_raw(query.as_deref()) {
        return Ok(raw_response(source));
    }
    let history = urls::state_repo(state.config(), &format!("commits/{branch}/log"));
    let may_cancel = log.can_cancel()
        && state
            .config()
            .access()
            .check(Role::Builder, viewer.user(), viewer.attrs())
            == Decision::Yes;
    let cancel_form = if may_cancel {
        let csrf = viewer.csrf_token().await?;
        Some(pages::post_form(
            "cancel",
            &format!("/cancel/{}", urls::encode_segment(&branch)),
            &csrf,
            html! { button.btn.btn-default.btn-sm type="submit" { "Cancel" } },
        ))
    } else {
        None
    };
    let context = LogContext::from_query(query.as_deref());
    let frame = Frame {
        title: format!("Logging to branch {branch}"),
        header: html! {
            (log_header(&HeaderInfo {
                branch: &branch,
                state: "running",
                raw_url: format!("{}?raw", urls::live_log(&branch)),
                context: &context,
                took: None,
                failure_href: "#failure".to_owned(),
                buttons: html! {
                    @if let (Some(_), Some(history)) = (&head, &history) {
                        a.btn.btn-default.btn-sm href=(history) { "History" }
                        " "
                    }
                    @if let Some(form) = cancel_form {
                        (form)
                        " "
                    }
                },
            }))
            p { "Still running..." }
        },
        footer: html! { p.complete { "This log is now complete." } },
    };
    Ok(html_response(
        &frame,
        source,
        lines::LogLines::starting_at(1),
    ))
}

/// The head of cache branch `branch` if retention removed its logs (its `log` is then the
/// note saying so).
pub(crate) async fn removed_log(
    store: &datakit_ci_store::Store,
    branch: &str,
) -> Option<datakit_ci_store::Snapshot> {
    let name = datakit_ci_store::BranchName::new(branch).ok()?;
    let head = store.branch(&name).head().await.ok()??;
    let snapshot = head.tree();
    let marker = StorePath::new("log-removed").ok()?;
    snapshot.exists(&marker).ok()?.then_some(snapshot)
}

/// `GET /log/saved/{branch}/{commit}` (role `Reader`): the whole log if small, else its tail,
/// or the lines of `?lines=A-B`; `?find=<text>` answers the numbers of the lines holding it
/// (JSON, for the viewer's search); `?raw` the bytes.
pub(crate) async fn get_saved_log(
    State(state): State<AppState>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Path((branch, commit)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, Error> {
    access::require(&state, &viewer, &[Role::Reader], &uri)?;
    let id: CommitId = commit
        .parse()
        .map_err(|_| Error::NotFound(format!("Invalid commit id {commit:?}")))?;
    let snapshot = match state.store().commit(id).await {
        Ok(found) => found.tree(),
        Err(error) => match removed_log(state.store(), &branch).await {
            // The log was removed by retention, and its commit compacted away: show the note the
            // branch has instead.
            Some(snapshot) => snapshot,
            None => {
                tracing::info!(%error, %id, "saved log commit not found");
                return Err(Error::NotFound(format!("No such commit {id}")));
            }
        },
    };
    let request = SavedRequest::from_query(query.as_deref())?;
    let wants_tail = request == SavedRequest::Page(window::Selection::Default);
    let mut stored =
        tokio::task::spawn_blocking(move || StoredLog::read(snapshot, wants_tail)).await??;
    if !stored.exists {
        return Err(Error::NotFound(format!("Commit {id} has no log")));
    }
    let failed = stored.failed;
    let read_error = |commit: &str| {
        let commit = commit.to_owned();
        move |source| Error::ReadLog { commit, source }
    };
    let selection = match request {
        SavedRequest::Raw => {
            return Ok(raw_response(LogSource::saved(stored.open().await?)));
        }
        SavedRequest::Find(needle) => {
            let mut reader = stored.open().await?;
            let (lines, more) =
                tokio::task::spawn_blocking(move || window::find(&mut reader, &needle))
                    .await?
                    .map_err(read_error(&commit))?;
            return Ok(
                axum::Json(serde_json::json!({ "lines": lines, "more": more })).into_response(),
            );
        }
        SavedRequest::Page(selection) => selection,
    };
    let cached = match selection {
        window::Selection::Default => state.log_tails().get(&commit),
        window::Selection::Lines(_) => None,
    };
    let window = match (cached, stored.indexed_tail.take()) {
        (Some(window), _) => window,
        (None, Some(window)) => {
            let window = std::sync::Arc::new(window);
            state
                .log_tails()
                .put(commit.clone(), std::sync::Arc::clone(&window));
            window
        }
        (None, None) => {
            let mut reader = stored.open().await?;
            let window = std::sync::Arc::new(
                tokio::task::spawn_blocking(move || window::select(&mut reader, selection, failed))
                    .await?
                    .map_err(read_error(&commit))?,
            );
            if selection == window::Selection::Default && window.more_before() {
                state
                    .log_tails()
                    .put(commit.clone(), std::sync::Arc::clone(&window));
            }
            window
        }
    };
    // What is known of the whole log's first error line: from the window (its index, or the
    // whole log read), the index, or an earlier reading of the whole log.
    let first_error = window
        .first_error
        .or(stored.index.map(|index| index.first_error))
        .or_else(|| {
            state
                .log_tails()
                .get(&commit)
                .and_then(|tail| tail.first_error)
        })
        .unwrap_or(FirstError::NotSought);
    let config = state.config();
    let context = LogContext::from_query(query.as_deref());
    let state_word = if failed { "failed" } else { "passed" };
    let page_url = |range: window::LineRange| {
        let mut url = format!(
            "{}?lines={}-{}",
            urls::saved_log(&branch, &commit),
            range.from,
            range.to
        );
        let context = context.to_query();
        if !context.is_empty() {
            url.push('&');
            url.push_str(&context);
        }
        url
    };
    let first = window.first_line;
    let after = first + window.line_count();
    let earlier = window.more_before().then(|| {
        page_url(window::LineRange {
            from: first.saturating_sub(EARLIER_LINES).max(1),
            to: first - 1,
        })
    });
    let later = window.more_after.then(|| {
        page_url(window::LineRange {
            from: after,
            to: after + EARLIER_LINES - 1,
        })
    });
    let took = (!window.more_before() && !window.more_after)
        .then(|| log_duration(&window.bytes))
        .flatten();
    let failure_href = match first_error {
        FirstError::Line(line) if !(first..after).contains(&line) => format!(
            "{}#L{line}",
            page_url(window::LineRange {
                from: line.saturating_sub(FAILURE_CONTEXT).max(1),
                to: line + FAILURE_CONTEXT,
            })
        ),
        _ => "#failure".to_owned(),
    };
    let frame = Frame {
        title: format!("Log from commit {id}"),
        header: html! {
            (log_header(&HeaderInfo {
                branch: &branch,
                state: state_word,
                raw_url: format!("{}?raw", urls::saved_log(&branch, &commit)),
                context: &context,
                took,
                failure_href,
                buttons: html! {
                    // Links into the published state repository, when there is one.
                    @if let Some(history) = urls::state_repo(config, &format!("commits/{branch}/log")) {
                        a.btn.btn-default.btn-sm href=(history) { "History" }
                        " "
                    }
                    @if let Some(tree) = urls::state_repo(config, &format!("tree/{branch}")) {
                        a.btn.btn-default.btn-sm href=(tree) { "Artefacts" }
                        " "
                    }
                },
            }))
            p {
                "Loaded from commit "
                @match urls::state_repo(config, &format!("commit/{id}")) {
                    Some(link) => a href=(link) { (id) },
                    None => code { (id) },
                }
            }
            @if let Some(earlier) = &earlier {
                nav.log-part.log-earlier {
                    "Lines 1–" (first - 1) " are not shown. "
                    a.btn.btn-default.btn-sm.load-earlier href=(earlier) rel="prev" { "Show earlier lines" }
                }
            }
        },
        footer: html! {
            @if let Some(later) = &later {
                nav.log-part.log-later {
                    "Lines from " (after) " are not shown. "
                    a.btn.btn-default.btn-sm.load-later href=(later) rel="next" { "Show later lines" }
                }
            }
        },
    };
    Ok(html_response(
        &frame,
        LogSource::part(axum::body::Bytes::from_owner(ArcBytes(window))),
        lines::LogLines::starting_at(first).with_first_error(first_error),
    ))
}

/// What a saved log's commit holds, read without reading the log itself.
struct StoredLog {
    snapshot: datakit_ci_store::Snapshot,
    exists: bool,
    failed: bool,
    /// Its index, if it was saved with one that can be read.
    index: Option<LogIndex>,
    /// The default window from the stored tail, if asked for and usable.
    indexed_tail: Option<window::Window>,
}

impl StoredLog {
    /// Reads what `snapshot` says of its log (blocking); with `wants_tail`, its stored tail.
    fn read(
        snapshot: datakit_ci_store::Snapshot,
        wants_tail: bool,
    ) -> Result<StoredLog, datakit_ci_store::Error> {
        let exists = snapshot.exists(&StorePath::new(LOG_FILE)?)?;
        let failed = snapshot.exists(&StorePath::new("failure")?)?;
        let index = match snapshot.read_file(&StorePath::new(INDEX_FILE)?)? {
            Some(text) => LogIndex::parse(&text)
                .inspect_err(|error| {
                    tracing::warn!(%error, "ignoring a saved log's index; reading the log instead");
                })
                .ok(),
            None => None,
        };
        let indexed_tail = match (&index, wants_tail) {
            (Some(index), true) => snapshot
                .read_file(&StorePath::new(TAIL_FILE)?)?
                .and_then(|tail| window::from_index(index, tail)),
            _ => None,
        };
        if wants_tail && index.is_some() && indexed_tail.is_none() {
            tracing::warn!("a saved log's stored tail does not fit its index; reading the log");
        }
        Ok(StoredLog {
            snapshot,
            exists,
            failed,
            index,
            indexed_tail,
        })
    }

    /// A reader of the whole log.
    async fn open(&self) -> Result<datakit_ci_store::FileReader, Error> {
        let snapshot = self.snapshot.clone();
        tokio::task::spawn_blocking(move || snapshot.open_file(&StorePath::new(LOG_FILE)?))
            .await??
            .ok_or_else(|| Error::NotFound("The log is gone".to_owned()))
    }
}

/// How many lines before and after the first error line "jump to failure" loads.
const FAILURE_CONTEXT: u64 = 2_000;

/// A shown window's bytes, shared with the tail cache rather than copied.
struct ArcBytes(std::sync::Arc<window::Window>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0.bytes
    }
}

/// The saved log's file (DESIGN §6.1).
const LOG_FILE: &str = "log";

/// How many lines an "earlier" or "later" link loads.
const EARLIER_LINES: u64 = 5_000;

/// What a saved log's query asks for.
#[derive(Debug, PartialEq, Eq)]
enum SavedRequest {
    /// `?raw`: the bytes.
    Raw,
    /// `?find=<text>`: the numbers of the lines containing it, as JSON.
    Find(String),
    /// The page, with the whole log, its tail, or `?lines=A-B`.
    Page(window::Selection),
}

impl SavedRequest {
    fn from_query(query: Option<&str>) -> Result<SavedRequest, Error> {
        if wants_raw(query) {
            return Ok(SavedRequest::Raw);
        }
        let mut request = SavedRequest::Page(window::Selection::Default);
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "find" => return Ok(SavedRequest::Find(value.into_owned())),
                "lines" => {
                    let range = window::LineRange::parse(&value).map_err(Error::BadRequest)?;
                    request = SavedRequest::Page(window::Selection::Lines(range));
                }
                _ => {}
            }
        }
        Ok(request)
    }
}

/// How long the build of a whole log took: from its first to its last time stamp.
fn log_duration(log: &[u8]) -> Option<std::time::Duration> {
    let mut stamps = log
        .split(|&byte| byte == b'\n')
        .filter_map(lines::stamp_seconds);
    let first = stamps.next()?;
    let last = stamps.next_back()?;
    u64::try_from(last - first)
        .ok()
        .map(std::time::Duration::from_secs)
}

#[cfg(test)]
mod tests {
    #[test]
    fn raw_query() {
        assert!(super::wants_raw(Some("raw")));
        assert!(super::wants_raw(Some("a=1&raw=1")));
        assert!(!super::wants_raw(Some("draw")));
        assert!(!super::wants_raw(None));
    }

    #[test]
    fn log_context_keeps_local_targets_only() {
        let context =
            super::LogContext::from_query(Some("target=%2Fme%2Fproj%2Fpr%2F3&job=lint+all"));
        assert_eq!(context.target.as_deref(), Some("/me/proj/pr/3"));
        assert_eq!(context.job.as_deref(), Some("lint all"));
        assert_eq!(
            context.to_query(),
            "target=%2Fme%2Fproj%2Fpr%2F3&job=lint+all"
        );
        for elsewhere in ["https://evil.example/", "//evil.example/x", "me/proj"] {
            let query = format!("target={}", crate::urls::encode_query(elsewhere));
            assert_eq!(super::LogContext::from_query(Some(&query)).target, None);
        }
    }
}
