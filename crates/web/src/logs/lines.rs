//! The log viewer's lines (issue 21 item 3): [`LogLines`] splits a log's bytes into lines, each
//! a `div.line` with an anchor (`id="L42"`, a link to `#L42`), turns the original's `=== <title>`
//! heading lines into collapsible `<details>` sections, and marks the first error-looking line
//! (`class="line error-line"`, with an `id="failure"` target inside): the first of the lines
//! shown, or, when the saved log's index names the whole log's first one
//! ([`LogLines::with_first_error`]), that line only. The CI's own time stamps
//! (`[2026-12-07 18:12.29] `, see `LiveLog::log`) are wrapped in `span.ts`, which the viewer can
//! hide, and a section whose lines have time stamps ends with how long it took
//! (`p.section-took`).
//!
//! Colours come from [`AnsiHtml`], which carries them from line to line. Works chunk by chunk, so
//! live logs still stream; knows nothing of HTTP.

use std::fmt::Write as _;

use datakit_ci_log::{FirstError, is_heading, looks_like_error};

use crate::ansi::AnsiHtml;

/// A line longer than this without a newline is shown in pieces rather than held back.
const MAX_PARTIAL: usize = 64 * 1024;

/// A streaming converter of a log's bytes into numbered lines; one per HTTP response.
#[derive(Default)]
pub(crate) struct LogLines {
    ansi: AnsiHtml,
    /// The start of a line whose newline has not come yet.
    partial: Vec<u8>,
    /// Lines written so far.
    lines: u64,
    in_section: bool,
    failure: Option<u64>,
    /// The whole log's first error line, when known: then only that line is marked.
    known_failure: Option<Option<u64>>,
    /// The first and last time stamps of the open section, in seconds.
    section_times: Option<(i64, i64)>,
}

impl LogLines {
    pub(crate) fn new() -> LogLines {
        LogLines {
            ansi: AnsiHtml::new(),
            ..LogLines::default()
        }
    }

    /// A converter whose first line is number `first` (a part of a bigger log).
    pub(crate) fn starting_at(first: u64) -> LogLines {
        LogLines {
            lines: first.saturating_sub(1),
            ..LogLines::new()
        }
    }

    /// Marks the whole log's first error-looking line as `first_error` says (from the saved log's
    /// index), rather than the first of the lines converted; [`FirstError::NotSought`] changes
    /// nothing.
    pub(crate) fn with_first_error(mut self, first_error: FirstError) -> LogLines {
        self.known_failure = match first_error {
            FirstError::NotSought => None,
            FirstError::None => Some(None),
            FirstError::Line(line) => Some(Some(line)),
        };
        self
    }

    /// Converts the next chunk: its complete lines become HTML; a last line without its newline
    /// waits for the next chunk (or [`finish`](Self::finish)), unless it is very long.
    pub(crate) fn convert(&mut self, chunk: &[u8]) -> String {
        let mut out = String::with_capacity(chunk.len() * 2);
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&byte| byte == b'\n') {
            if self.partial.is_empty() {
                self.write_line(&mut out, &rest[..end]);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&rest[..end]);
                self.write_line(&mut out, &line);
            }
            rest = &rest[end + 1..];
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > MAX_PARTIAL {
            let line = std::mem::take(&mut self.partial);
            self.write_line(&mut out, &line);
        }
        out
    }

    /// The end of the log: its last line if it had no newline, the end of the open section,
    /// and a `failure` target at the end if no line looked like an error.
    pub(crate) fn finish(&mut self) -> String {
        let mut out = String::new();
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.write_line(&mut out, &line);
        }
        if self.in_section {
            self.end_section(&mut out);
        }
        match (self.failure, self.known_failure) {
            (Some(line), _) => write!(
                out,
                r##"<p class="failure-link"><a href="#L{line}">First error-looking line: {line}</a></p>"##
            )
            .expect("writing to a String cannot fail"),
            // The first error line is in another part of the log: the header links to it.
            (None, Some(Some(_))) => {}
            (None, _) => out.push_str(r#"<span id="failure"></span>"#),
        }
        out
    }

    fn write_line(&mut self, out: &mut String, line: &[u8]) {
        self.lines += 1;
        let number = self.lines;
        let heading = is_heading(line);
        if heading {
            if self.in_section {
                self.end_section(out);
            }
            write!(
                out,
                r#"<details class="section" id="S{number}" open><summary>"#
            )
            .expect("writing to a String cannot fail");
            self.in_section = true;
        }
        let stamp = time_stamp(line);
        if let (Some(seconds), true) = (stamp.map(|(_, seconds)| seconds), self.in_section) {
            self.section_times = Some(match self.section_times {
                Some((first, _)) => (first, seconds),
                None => (seconds, seconds),
            });
        }
        let error = match self.known_failure {
            Some(known) => known == Some(number),
            None => self.failure.is_none() && !heading && looks_like_error(line),
        };
        if error {
            self.failure = Some(number);
        }
        write!(
            out,
            r##"<div class="line{}" id="L{number}"><a class="ln" href="#L{number}" data-line="{number}"></a><span class="lt">"##,
            if error { " error-line" } else { "" },
        )
        .expect("writing to a String cannot fail");
        match stamp {
            Some((length, _)) => {
                out.push_str(r#"<span class="ts">"#);
                // A time stamp is ASCII digits and punctuation: nothing to escape.
                out.push_str(&String::from_utf8_lossy(&line[..length]));
                out.push_str("</span>");
                self.ansi.convert_into(&line[length..], out);
            }
            None => self.ansi.convert_into(line, out),
        }
        out.push_str("</span>");
        if error {
            out.push_str(r#"<span id="failure"></span>"#);
        }
        out.push_str("</div>");
        if heading {
            out.push_str(r#"</summary><div class="section-body">"#);
        }
    }
}

impl LogLines {
    /// Closes the open section, saying how long it took if its lines had time stamps.
    fn end_section(&mut self, out: &mut String) {
        out.push_str("</div>");
        if let Some((first, last)) = self.section_times.take() {
            let took = std::time::Duration::from_secs(u64::try_from(last - first).unwrap_or(0));
            write!(
                out,
                r#"<p class="section-took">took {}</p>"#,
                crate::time::duration(took)
            )
            .expect("writing to a String cannot fail");
        }
        out.push_str("</details>");
        self.in_section = false;
    }
}

/// The CI's time stamp at the start of `line` (`[YYYY-MM-DD HH:MM.SS] `): its length and the
/// time in seconds since an arbitrary epoch (only differences matter).
fn time_stamp(line: &[u8]) -> Option<(usize, i64)> {
    const SHAPE: &[u8] = b"[dddd-dd-dd dd:dd.dd] ";
    let stamp = line.get(..SHAPE.len())?;
    let fits = stamp.iter().zip(SHAPE).all(|(byte, shape)| match shape {
        b'd' => byte.is_ascii_digit(),
        other => byte == other,
    });
    if !fits {
        return None;
    }
    let field = |range: std::ops::Range<usize>| {
        stamp[range]
            .iter()
            .fold(0_i64, |n, digit| n * 10 + i64::from(digit - b'0'))
    };
    let days = days_from_civil(field(1..5), field(6..8), field(9..11));
    let seconds = days * 86_400 + field(12..14) * 3600 + field(15..17) * 60 + field(18..20);
    Some((SHAPE.len(), seconds))
}

/// The time of the CI's time stamp at the start of `line`, in seconds (see [`time_stamp`]).
pub(crate) fn stamp_seconds(line: &[u8]) -> Option<i64> {
    time_stamp(line).map(|(_, seconds)| seconds)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Converts `chunks` one after the other, then finishes.
    fn check(chunks: &[&[u8]], expected: &str) {
        let mut lines = LogLines::new();
        let mut html = String::new();
        for chunk in chunks {
            html.push_str(&lines.convert(chunk));
        }
        html.push_str(&lines.finish());
        assert_eq!(html, expected);
    }

    fn line(number: u64, class: &str, text: &str) -> String {
        format!(
            r##"<div class="line{class}" id="L{number}"><a class="ln" href="#L{number}" data-line="{number}"></a><span class="lt">{text}</span></div>"##
        )
    }

    #[test]
    fn lines_are_numbered_whatever_the_chunks() {
        let expected = format!(
            "{}{}{}<span id=\"failure\"></span>",
            line(1, "", "one &lt;1&gt;"),
            line(2, "", ""),
            line(3, "", "three")
        );
        check(&[b"one <1>\n\nthree"], &expected);
        check(&[b"on", b"e <1>\n", b"\nth", b"ree"], &expected);
    }

    #[test]
    fn headings_open_sections_and_colours_carry_over() {
        let expected = format!(
            "{}{}<details class=\"section\" id=\"S3\" open><summary>{}</summary><div class=\"section-body\">{}</div></details>\
             <details class=\"section\" id=\"S5\" open><summary>{}</summary><div class=\"section-body\">{}</div></details>\
             <span id=\"failure\"></span>",
            line(1, "", "before"),
            line(2, "", "<span class='fg-red'>red</span>"),
            line(3, "", "<span class='fg-red'>=== Build</span>"),
            line(4, "", "<span class='fg-red'>still red</span>"),
            line(5, "", "=== Test"),
            line(6, "", "ok"),
        );
        check(
            &[b"before\n\x1b[31mred\n=== Build\nstill red\x1b[0m\n=== Test\nok\n"],
            &expected,
        );
    }

    #[test]
    fn the_first_error_line_is_marked() {
        let mut lines = LogLines::new();
        let html = lines.convert(b"compiling\nerror[E0308]: mismatched types\nerror: again\n");
        assert!(
            html.contains(
                r##"<div class="line error-line" id="L2"><a class="ln" href="#L2" data-line="2"></a><span class="lt">error[E0308]: mismatched types</span><span id="failure"></span></div>"##
            ),
            "{html}"
        );
        assert_eq!(html.matches("error-line").count(), 1, "{html}");
        assert_eq!(
            lines.finish(),
            r##"<p class="failure-link"><a href="#L2">First error-looking line: 2</a></p>"##
        );
        assert!(!looks_like_error(b"test result: ok. 5 passed; 0 failed"));
        assert!(looks_like_error(b"[2026-12-07 18:12.29] Failed: exit 1"));
        assert!(!looks_like_error(
            b"[2026-12-07 18:12.29] Running \"sh\" \"-c\" \"echo error: x\""
        ));
    }

    #[test]
    fn time_stamps_are_marked_and_sections_say_how_long_they_took() {
        let stamped =
            |text: &str| format!(r#"<span class="ts">[2026-12-31 23:59.58] </span>{text}"#);
        let expected = format!(
            "<details class=\"section\" id=\"S1\" open><summary>{}</summary><div class=\"section-body\">{}{}</div>\
             <p class=\"section-took\">took 1m 3s</p></details><span id=\"failure\"></span>",
            line(1, "", "=== Build"),
            line(2, "", &stamped("Running make")),
            line(
                3,
                "",
                r#"<span class="ts">[2027-01-01 00:01.01] </span>done"#
            ),
        );
        check(
            &[b"=== Build\n[2026-12-31 23:59.58] Running make\n[2027-01-01 00:01.01] done\n"],
            &expected,
        );
        assert_eq!(time_stamp(b"[2026-12-31 23:59.5] x"), None);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn a_known_first_error_is_the_only_line_marked() {
        // The index says line 3 is the log's first error: line 2's error is not marked.
        let mut lines = LogLines::starting_at(2).with_first_error(FirstError::Line(3));
        let mut html = lines.convert(
            b"error: second
fatal: third
",
        );
        html.push_str(&lines.finish());
        assert!(html.contains(r#"<div class="line" id="L2">"#), "{html}");
        assert!(
            html.contains(r#"<div class="line error-line" id="L3">"#),
            "{html}"
        );
        assert_eq!(html.matches("error-line").count(), 1, "{html}");
        assert!(html.contains(r##"<a href="#L3">First error-looking line: 3</a>"##));
        // The first error is elsewhere: nothing marked, and no `#failure` target at the end.
        let mut lines = LogLines::starting_at(100).with_first_error(FirstError::Line(7));
        let mut html = lines.convert(
            b"error: later
",
        );
        html.push_str(&lines.finish());
        assert!(
            !html.contains("error-line") && !html.contains("failure"),
            "{html}"
        );
        // No error in the whole log: the end is the failure target, as without an index.
        let mut lines = LogLines::starting_at(1).with_first_error(FirstError::None);
        let mut html = lines.convert(
            b"error: looks like one
",
        );
        html.push_str(&lines.finish());
        assert!(!html.contains("error-line"), "{html}");
        assert!(html.ends_with(r#"<span id="failure"></span>"#), "{html}");
    }

    #[test]
    fn parts_of_a_log_keep_their_line_numbers() {
        let mut lines = LogLines::starting_at(41);
        let html = lines.convert(b"forty-one\n");
        assert_eq!(html, line(41, "", "forty-one"));
    }

    #[test]
    fn very_long_lines_are_not_held_back() {
        let mut lines = LogLines::new();
        let html = lines.convert(&vec![b'x'; MAX_PARTIAL + 1]);
        assert!(
            html.starts_with(r#"<div class="line" id="L1">"#),
            "{html:.80}"
        );
    }
}
