//! The lists `/pr`, `/branch` and `/tag` (spec §1.5.4): one table per project of its targets of
//! that kind, each row with the target's link, head, job states and summary. PRs come newest
//! first (by number, descending); branches and tags by name, ascending. Every ref that is not a
//! tag is listed as a branch. Targets without jobs are left out, as in the original.
//!
//! A page shows [`LIST_PAGE`] targets (`?page=`, with links to the previous and next pages);
//! `?q=`, `?state=` and `?sort=failing` filter and reorder them (see [`filter`](super::filter)),
//! from a form that works without JavaScript. A live page ([`super::live`]): the tables follow
//! the builds.

use std::fmt::Write as _;
use std::ops::Range;

use axum::extract::{Extension, OriginalUri, Query, State};
use axum::response::Response;
use maud::{Markup, PreEscaped, html};

use datakit_ci_engine::Engine;
use datakit_ci_term::{JobOutput, RefName, RepoId, Target, TargetId};

use super::filter::{LIST_PAGE, ListFilter, ListQuery, failing_rank, state_word};
use super::live::{self, Live};
use super::model::{self, JobState, Kind};
use super::widgets;
use super::{Ci, title};
use crate::acl::Role;
use crate::pages::{Chrome, Tab, page};
use crate::{AppState, Error, Viewer, access, urls};

/// `GET /pr` (role `Reader`).
pub(crate) async fn get_prs(
    State(state): State<AppState>,
    Extension(ci): Extension<Ci>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<ListQuery>,
) -> Result<Response, Error> {
    list_page(&state, &ci, &viewer, &uri, Kind::Pr, &query).await
}

/// `GET /branch` (role `Reader`).
pub(crate) async fn get_branches(
    State(state): State<AppState>,
    Extension(ci): Extension<Ci>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<ListQuery>,
) -> Result<Response, Error> {
    list_page(&state, &ci, &viewer, &uri, Kind::Branch, &query).await
}

/// `GET /tag` (role `Reader`).
pub(crate) async fn get_tags(
    State(state): State<AppState>,
    Extension(ci): Extension<Ci>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<ListQuery>,
) -> Result<Response, Error> {
    list_page(&state, &ci, &viewer, &uri, Kind::Tag, &query).await
}

fn list_heading(kind: Kind) -> (Tab, &'static str, &'static str, &'static str) {
    match kind {
        Kind::Pr => (Tab::Prs, "PR status for", "PR", "/pr"),
        Kind::Branch => (Tab::Branches, "Branches for", "Ref", "/branch"),
        Kind::Tag => (Tab::Tags, "Tags for", "Ref", "/tag"),
    }
}

async fn list_page(
    state: &AppState,
    ci: &Ci,
    viewer: &Viewer,
    uri: &axum::http::Uri,
    kind: Kind,
    query: &ListQuery,
) -> Result<Response, Error> {
    access::require(state, viewer, &[Role::Reader], uri)?;
    let filter = query.filter()?;
    let page_number = query.page()?;
    let (tab, _, _, path) = list_heading(kind);
    let engine = ci.engine.clone();
    let chrome = Chrome::new(state, viewer);
    // The filter form stays out of the live region, so that refreshes leave what the reader
    // types alone; at most one refresh a second, as a page renders in tens of milliseconds.
    let live = Live {
        gap_ms: 1000,
        ..Live::default()
    };
    // Thousands of rows take milliseconds of CPU: keep them off the runtime's workers.
    tokio::task::spawn_blocking(move || {
        // The chrome is rendered around a placeholder, so that the rows are written into the
        // page once rather than copied into it; escaped text cannot produce the placeholder.
        let content = html! {
            (filter_form(path, &filter))
            (live.region(PreEscaped(PLACEHOLDER.to_owned())))
        };
        let frame = page(&chrome, &title(&engine), tab, content);
        let frame = frame.into_string();
        let (head, tail) = frame
            .split_once(PLACEHOLDER)
            .expect("the page holds its content once");
        render_tables(&engine, kind, &filter, page_number, head, tail)
    })
    .await
    .map(|page| live::response(page.into_string()))
    .map_err(Error::from)
}

/// The filter form: a plain `GET` form, so it works without JavaScript.
fn filter_form(path: &str, filter: &ListFilter) -> Markup {
    let states = [
        ("", "any state", None),
        ("failing", "failing", Some(JobState::Failure)),
        ("pending", "pending", Some(JobState::Pending)),
        ("passing", "passing", Some(JobState::Success)),
    ];
    html! {
        form.list-filter method="get" action=(path) {
            label { "Name " input type="search" name="q" value=(filter.q) placeholder="filter by name"; }
            " "
            label {
                "State "
                select name="state" {
                    @for (value, text, state) in states {
                        option value=(value) selected[filter.state == state] { (text) }
                    }
                }
            }
            " "
            label { input type="checkbox" name="sort" value="failing" checked[filter.failing_first]; " failing first" }
            " "
            button.btn.btn-sm type="submit" { "Filter" }
        }
    }
}

/// Where the tables go in the rendered chrome.
const PLACEHOLDER: &str = "<!--TABLES-->";

/// The page: `head`, one table per project with targets of `kind` on page `page_number` (those
/// with jobs that `filter` lets through, in list order), the pager, then `tail`.
///
/// The rows are written while visiting the engine's targets in place
/// ([`Engine::visit_targets`]), straight into one buffer per project, so the page copies no
/// target and allocates nothing per row; they are reordered afterwards only if the engine's
/// order (by [`TargetId`]) differs from the list's, and only the page's rows are copied out.
fn render_tables(
    engine: &Engine,
    kind: Kind,
    filter: &ListFilter,
    page_number: usize,
    head: &str,
    tail: &str,
) -> Markup {
    let repos: Vec<&RepoId> = engine.projects().map(|project| project.id()).collect();
    let mut tables: Vec<Table> = repos.iter().map(|_| Table::default()).collect();
    let mut scratch = String::new();
    engine.visit_targets(|id, target, jobs| {
        if jobs.is_empty() || model::kind(id) != kind {
            return;
        }
        if let Some(index) = repos.iter().position(|repo| *repo == id.repo()) {
            tables[index].push_row(id, target, jobs, kind, filter, &mut scratch);
        }
    });
    let (_, heading, first_column, path) = list_heading(kind);
    let total: usize = tables.iter().map(|table| table.rows.len()).sum();
    let pages = total.div_ceil(LIST_PAGE).max(1);
    let window = (page_number - 1).saturating_mul(LIST_PAGE)..page_number.saturating_mul(LIST_PAGE);
    let mut out = String::with_capacity(head.len() + 40_000 + 512 * repos.len() + tail.len());
    out.push_str(head);
    write_count(&mut out, &window, total, filter);
    let mut offset = 0;
    for (repo, table) in repos.iter().zip(&tables) {
        let len = table.rows.len();
        let shown = window.start.saturating_sub(offset).min(len)
            ..window.end.saturating_sub(offset).min(len);
        offset += len;
        if shown.is_empty() && !(len == 0 && page_number == 1) {
            continue;
        }
        out.push_str(r#"<div class="project"><h2>"#);
        out.push_str(heading);
        out.push(' ');
        escape(&mut out, &repo.to_string());
        out.push_str(r#"</h2><table class="table table-bordered table-hover targets"><tr><th>"#);
        out.push_str(first_column);
        out.push_str("</th>");
        if kind == Kind::Pr {
            out.push_str("<th>Title</th>");
        }
        out.push_str("<th>Head</th><th>State</th><th>Details</th></tr>");
        table.write_sorted(&mut out, shown, filter.failing_first);
        out.push_str("</table></div>");
    }
    write_pager(&mut out, path, filter, page_number, pages);
    out.push_str(tail);
    PreEscaped(out)
}

/// `Showing a–b of n [failing] targets [matching "q"]`.
fn write_count(out: &mut String, window: &Range<usize>, total: usize, filter: &ListFilter) {
    out.push_str(r#"<p class="list-count">"#);
    if window.start >= total {
        write!(out, "No targets on this page, of {total}")
    } else {
        write!(
            out,
            "Showing {}–{} of {total}",
            window.start + 1,
            window.end.min(total)
        )
    }
    .expect("writing to a String cannot fail");
    if let Some(state) = filter.state {
        out.push(' ');
        out.push_str(state_word(state));
    }
    out.push_str(" targets");
    if !filter.q.is_empty() {
        out.push_str(" matching “");
        escape(out, &filter.q);
        out.push('”');
    }
    out.push_str("</p>");
}

/// Links to the previous and next pages (plain links, kept by the filter).
fn write_pager(out: &mut String, path: &str, filter: &ListFilter, page: usize, pages: usize) {
    let mut query = String::new();
    filter.write_query(&mut query);
    let link = |out: &mut String, rel: &str, text: &str, number: usize| {
        write!(
            out,
            r#"<a rel="{rel}" class="btn btn-sm" href="{path}?{}page={number}">{text}</a> "#,
            query.replace('&', "&amp;")
        )
        .expect("writing to a String cannot fail");
    };
    out.push_str(r#"<nav class="pager">"#);
    if page > 1 {
        link(out, "prev", "← Previous", (page - 1).min(pages));
    }
    write!(out, "Page {page} of {pages} ").expect("writing to a String cannot fail");
    if page < pages {
        link(out, "next", "Next →", page + 1);
    }
    out.push_str("</nav>");
}

/// Where a row goes in its list: PRs newest first (by number, descending), refs by name.
#[derive(Clone, Debug)]
enum SortKey {
    Pr(std::cmp::Reverse<u64>),
    /// The ref's name, as a range of [`Table::keys`].
    Ref(Range<usize>),
}

/// The rows of one project's table, rendered in the engine's order.
#[derive(Default)]
struct Table {
    html: String,
    /// Each row's sort key, its [`failing_rank`] and its range of `html`.
    rows: Vec<(SortKey, u8, Range<usize>)>,
    /// The ref names the keys point into.
    keys: String,
}

impl Table {
    fn push_row(
        &mut self,
        id: &TargetId,
        target: &Target,
        jobs: &[(&str, Option<&JobOutput>)],
        kind: Kind,
        filter: &ListFilter,
        scratch: &mut String,
    ) {
        let state = model::worst_state(model::live_job_lines(jobs).map(|(_, state, _)| state));
        let start = self.html.len();
        let key = match id {
            TargetId::Pr(_, number) => {
                scratch.clear();
                write!(scratch, "{number}").expect("writing to a String cannot fail");
                if !filter.matches(scratch, model::title(target), state) {
                    return;
                }
                SortKey::Pr(std::cmp::Reverse(*number))
            }
            TargetId::Ref(_, name) => {
                let key_start = self.keys.len();
                push_ref_name(&mut self.keys, name);
                if !filter.matches(&self.keys[key_start..], None, state) {
                    self.keys.truncate(key_start);
                    return;
                }
                SortKey::Ref(key_start..self.keys.len())
            }
        };
        write_row(&mut self.html, id, target, jobs, kind, scratch);
        self.rows
            .push((key, failing_rank(state), start..self.html.len()));
    }

    fn key<'a>(&'a self, key: &SortKey) -> Result<&'a str, u64> {
        match key {
            SortKey::Pr(number) => Err(number.0),
            SortKey::Ref(range) => Ok(&self.keys[range.clone()]),
        }
    }

    fn ordering(&self, a: &SortKey, b: &SortKey) -> std::cmp::Ordering {
        match (self.key(a), self.key(b)) {
            (Ok(a), Ok(b)) => a.cmp(b),
            (Err(a), Err(b)) => b.cmp(&a),
            // One repository's targets of one kind are all PRs or all refs.
            (Ok(_), Err(_)) => std::cmp::Ordering::Greater,
            (Err(_), Ok(_)) => std::cmp::Ordering::Less,
        }
    }

    /// Appends the rows at positions `shown` of the list order (failing first if asked).
    fn write_sorted(&self, out: &mut String, shown: Range<usize>, failing_first: bool) {
        let mut order: Vec<usize> = (0..self.rows.len()).collect();
        let sorted = self
            .rows
            .windows(2)
            .all(|pair| self.ordering(&pair[0].0, &pair[1].0).is_le());
        if !sorted {
            order.sort_by(|a, b| self.ordering(&self.rows[*a].0, &self.rows[*b].0));
        }
        if failing_first {
            // A stable sort: each rank keeps the list order.
            order.sort_by_key(|index| self.rows[*index].1);
        }
        let len = order.len();
        for index in &order[shown.start.min(len)..shown.end.min(len)] {
            out.push_str(&self.html[self.rows[*index].2.clone()]);
        }
    }
}

/// Appends a ref's name as the list shows it (`heads/main`).
fn push_ref_name(out: &mut String, name: &RefName) {
    for (index, component) in name.components().iter().enumerate() {
        if index > 0 {
            out.push('/');
        }
        out.push_str(component);
    }
}

/// Appends `text`, escaped as maud escapes it.
/// (maud pushes byte by byte; this copies the runs between special characters at once.)
fn escape(out: &mut String, text: &str) {
    let mut start = 0;
    for (index, byte) in text.bytes().enumerate() {
        let replacement = match byte {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => continue,
        };
        out.push_str(&text[start..index]);
        out.push_str(replacement);
        start = index + 1;
    }
    out.push_str(&text[start..]);
}

/// Appends one row, exactly as the template in the tests renders it: the target's link, the PR
/// title, the head, a flag per job and the summary. `scratch` is reused between rows.
fn write_row(
    out: &mut String,
    id: &TargetId,
    target: &Target,
    jobs: &[(&str, Option<&JobOutput>)],
    kind: Kind,
    scratch: &mut String,
) {
    out.push_str(r#"<tr class="target"><td><a href=""#);
    scratch.clear();
    urls::write_target(scratch, id);
    escape(out, scratch);
    out.push_str(r#"">"#);
    match id {
        TargetId::Pr(_, number) => {
            write!(out, "{number}").expect("writing to a String cannot fail");
        }
        TargetId::Ref(_, name) => {
            scratch.clear();
            push_ref_name(scratch, name);
            escape(out, scratch);
        }
    }
    out.push_str("</a></td>");
    if kind == Kind::Pr {
        out.push_str("<td>");
        escape(out, model::title(target).unwrap_or(""));
        out.push_str("</td>");
    }
    let head = target.head();
    out.push_str(r#"<td><a class="head" href=""#);
    scratch.clear();
    urls::write_commit(scratch, id.repo(), head);
    escape(out, scratch);
    out.push_str(r#""><code>"#);
    escape(out, head.short(8));
    out.push_str(r#"</code></a></td><td><table class="ci-status-list"><tr>"#);
    for (name, state, _) in model::live_job_lines(jobs) {
        out.push_str("<td>");
        write_status_flag(out, state, name);
        out.push_str("</td>");
    }
    out.push_str("</tr></table></td><td>");
    scratch.clear();
    model::write_summary(model::live_job_lines(jobs), scratch);
    escape(out, scratch);
    out.push_str("</td></tr>");
}

/// Appends [`status_flag`](super::widgets::status_flag)`(state, Some(name))`.
fn write_status_flag(out: &mut String, state: JobState, name: &str) {
    let (class, icon, _) = widgets::classes(state);
    out.push_str(r#"<span class="status glyphicon "#);
    out.push_str(icon);
    out.push(' ');
    out.push_str(class);
    out.push_str(r#"" title=""#);
    escape(out, name);
    out.push_str(" : ");
    out.push_str(state.word());
    out.push_str(r#"" data-state=""#);
    out.push_str(state.word());
    out.push_str(r#"">"#);
    out.push_str(widgets::symbol(state));
    out.push_str("</span>");
}

#[cfg(test)]
mod tests {
    use datakit_ci_term::{CommitHash, JobResult, Logs, PrInfo, PrState, RefInfo};
    use maud::html;

    use super::*;
    use crate::ci::widgets::status_list;

    /// The row template the lists used before rows were written by hand; the hand-written rows
    /// must stay byte-identical to it.
    fn template_row(target: &Target, jobs: &[(&str, Option<&JobOutput>)], kind: Kind) -> String {
        let id = target.id();
        let jobs: Vec<model::Job> = jobs
            .iter()
            .map(|(name, output)| model::Job {
                name: (*name).to_owned(),
                output: output.cloned(),
                needs: Vec::new(),
            })
            .collect();
        let (_, details) = model::summary(&jobs);
        let head = target.head();
        let label = match &id {
            TargetId::Pr(_, number) => number.to_string(),
            TargetId::Ref(_, name) => name.to_string(),
        };
        html! {
            tr.target {
                td { a href=(urls::target(&id)) { (label) } }
                @if kind == Kind::Pr { td { (model::title(target).unwrap_or("")) } }
                td { a.head href=(urls::commit(id.repo(), head)) { code { (head.short(8)) } } }
                td { (status_list(&jobs)) }
                td { (details) }
            }
        }
        .into_string()
    }

    fn check(target: &Target, jobs: &[(&str, Option<&JobOutput>)], kind: Kind) {
        let mut written = String::new();
        write_row(
            &mut written,
            &target.id(),
            target,
            jobs,
            kind,
            &mut String::new(),
        );
        assert_eq!(written, template_row(target, jobs, kind));
    }

    fn output(result: JobResult) -> JobOutput {
        JobOutput {
            result,
            logs: Logs::Empty,
        }
    }

    #[test]
    fn written_rows_match_the_template() -> anyhow::Result<()> {
        let repo: RepoId = "me/p-r_o.j".parse()?;
        let head: CommitHash = "0123456789abcdef0123456789abcdef01234567".parse()?;
        let ok = output(JobResult::Success("built <fine> & \"done\"".to_owned()));
        let failed = output(JobResult::Failure("broke; badly (x)".to_owned()));
        let pending = output(JobResult::Pending("waiting".to_owned()));
        let jobs = [
            ("build", Some(&ok)),
            ("lint <&>", Some(&failed)),
            ("test", Some(&failed)),
            ("docs", None),
            ("e2e", Some(&pending)),
        ];
        let branch = Target::Ref(RefInfo {
            repo: repo.clone(),
            name: RefName::new(["heads", "feature", "a-b.c_d"])?,
            head: head.clone(),
        });
        let pr = Target::Pr(PrInfo {
            repo,
            number: 42,
            head,
            state: PrState::Open,
            title: "Fix <b>\"all\"</b> & more".to_owned(),
            owner: "me".to_owned(),
            base: "main".to_owned(),
            trust: datakit_ci_term::PrTrust::Unknown,
        });
        for jobs in [&jobs[..], &jobs[..3], &jobs[..1], &[]] {
            check(&branch, jobs, Kind::Branch);
            check(&pr, jobs, Kind::Pr);
        }
        Ok(())
    }

    /// The labels of the rows of `table`, in list order.
    fn labels(table: &Table) -> Vec<String> {
        let mut html = String::new();
        table.write_sorted(&mut html, 0..usize::MAX, false);
        html.split(r#"<tr class="target"><td><a href=""#)
            .skip(1)
            .filter_map(|row| {
                let (_, rest) = row.split_once("\">")?;
                let (label, _) = rest.split_once("</a>")?;
                Some(label.to_owned())
            })
            .collect()
    }

    #[test]
    fn rows_follow_the_list_order_not_the_engines() -> anyhow::Result<()> {
        let repo: RepoId = "me/proj".parse()?;
        let head: CommitHash = "0123456789abcdef0123456789abcdef01234567".parse()?;
        let ok = output(JobResult::Success("ok".to_owned()));
        let jobs = [("build", Some(&ok))];
        // The engine orders refs by component ("a" < "a-b"), the list by name ("-" < "/").
        let mut refs: Vec<TargetId> = ["heads/a/c", "heads/a-b", "heads/b"]
            .into_iter()
            .map(|name| Ok(TargetId::Ref(repo.clone(), name.parse()?)))
            .collect::<anyhow::Result<_>>()?;
        refs.sort();
        let mut table = Table::default();
        for id in &refs {
            let TargetId::Ref(_, name) = id else {
                unreachable!("refs only")
            };
            let target = Target::Ref(RefInfo {
                repo: repo.clone(),
                name: name.clone(),
                head: head.clone(),
            });
            table.push_row(
                id,
                &target,
                &jobs,
                Kind::Branch,
                &ListFilter::default(),
                &mut String::new(),
            );
        }
        assert_eq!(labels(&table), ["heads/a-b", "heads/a/c", "heads/b"]);

        let mut table = Table::default();
        for number in [2, 10, 30] {
            let target = Target::Pr(PrInfo {
                repo: repo.clone(),
                number,
                head: head.clone(),
                state: PrState::Open,
                title: String::new(),
                owner: "me".to_owned(),
                base: "main".to_owned(),
                trust: datakit_ci_term::PrTrust::Unknown,
            });
            table.push_row(
                &target.id(),
                &target,
                &jobs,
                Kind::Pr,
                &ListFilter::default(),
                &mut String::new(),
            );
        }
        assert_eq!(labels(&table), ["30", "10", "2"]);
        Ok(())
    }
}
