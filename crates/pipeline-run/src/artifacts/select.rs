//! Which files are a step's artifacts: its `artifacts` globs, matched against paths relative to
//! the checkout, and the per-step size limit. Pure: callers offer the files they find (walking a
//! directory, or reading a container's archive) and get the decision back.
//!
//! A pattern selects the files it matches and everything under the directories it matches
//! (`reports` keeps the whole directory). `*` stays within a directory, `**` crosses them, as
//! the pipeline crate validates them. Links are never kept (following one could read outside the
//! checkout); a file that would take the total past the limit is dropped, and the step fails
//! saying which (see the crate documentation).

use std::sync::Mutex;

use datakit_ci_docker::{CopiedKind, CopyOutSink};
use globset::{GlobBuilder, GlobMatcher};

/// The default total size of a step's artifacts (the binary's `--max-artifact-size`).
pub const DEFAULT_MAX_ARTIFACT_SIZE: u64 = 100 << 20;

/// A job's artifact patterns, compiled.
#[derive(Debug)]
pub(crate) struct Patterns {
    texts: Vec<String>,
    matchers: Vec<GlobMatcher>,
}

impl Patterns {
    /// Compiles `texts` (validated by the pipeline crate already; a bad one is named).
    pub(crate) fn new(texts: &[String]) -> Result<Patterns, String> {
        let matchers = texts
            .iter()
            .map(|text| {
                GlobBuilder::new(text.trim_end_matches('/'))
                    .literal_separator(true)
                    .build()
                    .map(|glob| glob.compile_matcher())
                    .map_err(|e| format!("invalid artifact pattern {text:?}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Patterns {
            texts: texts.to_vec(),
            matchers,
        })
    }

    /// Where to look: for each pattern the directories before its first glob character (or the
    /// whole path when it has none; `""`: the checkout), without those inside another.
    pub(crate) fn roots(&self) -> Vec<String> {
        let mut roots: Vec<String> = self.texts.iter().map(|t| literal_prefix(t)).collect();
        roots.sort();
        roots.dedup();
        let mut kept: Vec<String> = Vec::new();
        for root in roots {
            let inside = kept
                .iter()
                .any(|k| k.is_empty() || root == *k || root.starts_with(&format!("{k}/")));
            if !inside {
                kept.push(root);
            }
        }
        kept
    }

    /// The first pattern selecting `path`: matching it or one of its directories.
    pub(crate) fn selecting(&self, path: &str) -> Option<usize> {
        let mut candidate = path;
        loop {
            if let Some(index) = self.matchers.iter().position(|m| m.is_match(candidate)) {
                return Some(index);
            }
            candidate = &candidate[..candidate.rfind('/')?];
        }
    }

    /// The first pattern whose literal directories go through `path` (a link on the way to
    /// what it names).
    fn leading_through(&self, path: &str) -> Option<usize> {
        self.texts.iter().position(|text| {
            let prefix = literal_prefix(text);
            prefix == path || prefix.starts_with(&format!("{path}/"))
        })
    }
}

/// The leading components of `pattern` that hold no glob character.
fn literal_prefix(pattern: &str) -> String {
    pattern
        .trim_end_matches('/')
        .split('/')
        .take_while(|c| !c.contains(['*', '?', '[', ']', '{', '}', '\\']))
        .collect::<Vec<_>>()
        .join("/")
}

/// The files offered so far, and what was decided: a [`CopyOutSink`] for containers, and what
/// the walk of a host step's checkout reports to.
#[derive(Debug)]
pub(crate) struct Selection {
    patterns: Patterns,
    limit: u64,
    state: Mutex<Report>,
}

/// What a collection kept and left, for the step's log and result.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    /// The files kept, with their sizes, in the order found.
    pub(crate) kept: Vec<(String, u64)>,
    /// The files dropped because the total would have passed the limit.
    pub(crate) over_limit: Vec<(String, u64)>,
    /// Selected paths that are links or special files, never kept, and why.
    pub(crate) skipped: Vec<(String, &'static str)>,
    /// The patterns that selected nothing (not even a link).
    pub(crate) unmatched: Vec<String>,
    /// Why the files could not all be looked at (a daemon error, Swarm).
    pub(crate) failures: Vec<String>,
    matched: Vec<bool>,
    total: u64,
}

impl Selection {
    /// A selection by `patterns`, keeping at most `limit` bytes in all.
    pub(crate) fn new(patterns: Patterns, limit: u64) -> Selection {
        let matched = vec![false; patterns.texts.len()];
        Selection {
            patterns,
            limit,
            state: Mutex::new(Report {
                matched,
                ..Report::default()
            }),
        }
    }

    /// The patterns.
    pub(crate) fn patterns(&self) -> &Patterns {
        &self.patterns
    }

    /// What was decided, once every file was offered.
    pub(crate) fn report(&self) -> Report {
        let mut report = lock(&self.state).clone();
        if report.failures.is_empty() {
            report.unmatched = self
                .patterns
                .texts
                .iter()
                .zip(&report.matched)
                .filter(|(_, matched)| !**matched)
                .map(|(text, _)| text.clone())
                .collect();
        }
        report
    }

    /// The limit in bytes.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }
}

impl CopyOutSink for Selection {
    fn offer(&self, path: &str, size: u64, kind: CopiedKind) -> bool {
        let selected = match kind {
            // A link where a pattern's path goes through is reported as such, not as a
            // pattern that matched nothing.
            CopiedKind::Link => self
                .patterns
                .selecting(path)
                .or_else(|| self.patterns.leading_through(path)),
            _ => self.patterns.selecting(path),
        };
        let Some(index) = selected else {
            return false;
        };
        let mut state = lock(&self.state);
        state.matched[index] = true;
        let reason = match kind {
            CopiedKind::Link => Some("a link (links are never followed)"),
            CopiedKind::Other => Some("not a regular file"),
            CopiedKind::File if datakit_ci_cache::artifact_path(path).is_err() => {
                Some("a name the store cannot hold")
            }
            CopiedKind::File => None,
        };
        if let Some(reason) = reason {
            state.skipped.push((path.to_owned(), reason));
            return false;
        }
        if state.total.saturating_add(size) > self.limit {
            state.over_limit.push((path.to_owned(), size));
            return false;
        }
        state.total += size;
        state.kept.push((path.to_owned(), size));
        true
    }

    fn failed(&self, message: &str) {
        lock(&self.state).failures.push(message.to_owned());
    }
}

impl Report {
    /// The lines the step's log gets about its artifacts.
    pub(crate) fn log_lines(&self, limit: u64) -> Vec<String> {
        let mut lines = Vec::new();
        for failure in &self.failures {
            lines.push(format!("Artifacts: {failure}"));
        }
        for pattern in &self.unmatched {
            lines.push(format!(
                "Warning: the artifact pattern {pattern:?} matched no file"
            ));
        }
        for (path, reason) in &self.skipped {
            lines.push(format!("Artifact {path} not kept: {reason}"));
        }
        for (path, size) in &self.over_limit {
            lines.push(format!(
                "Artifact {path} ({}) dropped: the step's artifacts would pass the limit of {} (--max-artifact-size)",
                human_size(*size),
                human_size(limit)
            ));
        }
        if !self.kept.is_empty() {
            let total: u64 = self.kept.iter().map(|(_, size)| size).sum();
            lines.push(format!(
                "Artifacts kept: {} {} ({})",
                self.kept.len(),
                if self.kept.len() == 1 {
                    "file"
                } else {
                    "files"
                },
                human_size(total)
            ));
            for (path, size) in &self.kept {
                lines.push(format!("  {path} ({})", human_size(*size)));
            }
        }
        lines
    }

    /// The step's failure when files were dropped for the limit: a step whose deliverables are
    /// missing must not look green.
    pub(crate) fn over_limit_failure(&self, limit: u64) -> Option<String> {
        let (first, size) = self.over_limit.first()?;
        let more = match self.over_limit.len() {
            1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        Some(format!(
            "artifacts over the limit of {}: dropped {first} ({}){more}",
            human_size(limit),
            human_size(*size)
        ))
    }
}

/// `bytes` for people: `512 B`, `1.5 KiB`, `100 MiB`.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The state is updated by single pushes and additions.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(texts: &[&str]) -> Patterns {
        Patterns::new(&texts.iter().map(|t| t.to_string()).collect::<Vec<_>>()).expect("valid")
    }

    #[test]
    fn patterns_select_files_and_whole_directories() {
        let p = patterns(&["out.txt", "reports/*.xml", "dist", "**/*.log"]);
        assert_eq!(p.selecting("out.txt"), Some(0));
        assert_eq!(p.selecting("reports/a.xml"), Some(1));
        // `*` stays within a directory.
        assert_eq!(p.selecting("reports/sub/a.xml"), None);
        assert_eq!(p.selecting("reports/a.txt"), None);
        assert_eq!(p.selecting("dist/app/bin"), Some(2));
        assert_eq!(p.selecting("a/b/c.log"), Some(3));
        assert_eq!(p.selecting("distant"), None);
        assert_eq!(p.selecting("src/main.rs"), None);
    }

    #[test]
    fn roots_are_the_literal_directories_without_nesting() {
        assert_eq!(
            patterns(&["reports/*.xml", "reports/unit/x", "out.txt", "a/b*/c"]).roots(),
            ["a", "out.txt", "reports"]
        );
        assert_eq!(patterns(&["*.txt", "reports/x"]).roots(), [""]);
        assert_eq!(patterns(&["dist/"]).roots(), ["dist"]);
    }

    #[test]
    fn the_limit_drops_what_does_not_fit_and_keeps_what_does() {
        let selection = Selection::new(patterns(&["*.bin", "missing/*", "link", "via/x"]), 100);
        assert!(selection.offer("a.bin", 60, CopiedKind::File));
        assert!(!selection.offer("b.bin", 50, CopiedKind::File));
        // A smaller file after it still fits.
        assert!(selection.offer("c.bin", 40, CopiedKind::File));
        assert!(!selection.offer("d.bin", 1, CopiedKind::File));
        assert!(!selection.offer("link", 0, CopiedKind::Link));
        // A link on the way to a pattern's path.
        assert!(!selection.offer("via", 0, CopiedKind::Link));
        // Not selected: ignored, not counted.
        assert!(!selection.offer("src/x.rs", 1000, CopiedKind::File));
        let report = selection.report();
        assert_eq!(
            report.kept,
            [("a.bin".to_owned(), 60), ("c.bin".to_owned(), 40)]
        );
        assert_eq!(
            report.over_limit,
            [("b.bin".to_owned(), 50), ("d.bin".to_owned(), 1)]
        );
        assert_eq!(report.unmatched, ["missing/*"]);
        assert_eq!(
            report.skipped,
            [
                ("link".to_owned(), "a link (links are never followed)"),
                ("via".to_owned(), "a link (links are never followed)")
            ]
        );
        assert_eq!(
            report.over_limit_failure(100).as_deref(),
            Some("artifacts over the limit of 100 B: dropped b.bin (50 B) and 1 more")
        );
        let lines = report.log_lines(100);
        assert!(
            lines.contains(
                &"Warning: the artifact pattern \"missing/*\" matched no file".to_owned()
            ),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"Artifacts kept: 2 files (100 B)".to_owned()),
            "{lines:?}"
        );
    }

    #[test]
    fn a_failed_copy_reports_no_unmatched_patterns_and_no_limit_failure() {
        let selection = Selection::new(patterns(&["out"]), 10);
        selection.failed("artifacts are not collected on Swarm");
        let report = selection.report();
        assert!(report.unmatched.is_empty());
        assert_eq!(report.over_limit_failure(10), None);
        assert_eq!(
            report.log_lines(10),
            ["Artifacts: artifacts are not collected on Swarm"]
        );
    }

    #[test]
    fn sizes_are_shown_in_binary_units() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(100 << 20), "100 MiB");
    }
}
