//! The benchmark report: one line per figure (`name: value unit (target: …)`), printed as soon as
//! it is measured, and the closing `N of M targets met` line. Knows nothing of what is measured.

use std::fmt;
use std::time::Duration;

/// What a figure should be for its target to be met.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target {
    /// Reported only; does not count towards the total.
    None,
    /// Met when the value is at least this.
    AtLeast(f64),
    /// Met when the value is at most this.
    AtMost(f64),
}

impl Target {
    /// `None` when there is no target, else whether `value` meets it.
    fn is_met_by(self, value: f64) -> Option<bool> {
        match self {
            Target::None => None,
            Target::AtLeast(bound) => Some(value >= bound),
            Target::AtMost(bound) => Some(value <= bound),
        }
    }
}

/// One measured figure.
#[derive(Clone, Debug)]
pub(crate) struct Figure {
    name: String,
    value: f64,
    unit: &'static str,
    target: Target,
}

impl Figure {
    /// A figure without a target.
    pub(crate) fn new(name: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Figure {
            name: name.into(),
            value,
            unit,
            target: Target::None,
        }
    }

    /// A duration in milliseconds, without a target.
    pub(crate) fn millis(name: impl Into<String>, duration: Duration) -> Self {
        Figure::new(name, duration.as_secs_f64() * 1e3, "ms")
    }

    /// A duration in seconds, without a target.
    pub(crate) fn seconds(name: impl Into<String>, duration: Duration) -> Self {
        Figure::new(name, duration.as_secs_f64(), "s")
    }

    /// The same figure with `target`.
    #[must_use]
    pub(crate) fn target(self, target: Target) -> Self {
        Figure { target, ..self }
    }
}

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = self.unit;
        write!(f, "{}: {} {unit} (target: ", self.name, number(self.value))?;
        match (self.target, self.target.is_met_by(self.value)) {
            (Target::AtLeast(bound), Some(met)) => {
                write!(f, "≥ {} {unit}, {}", bound_number(bound), verdict(met))?
            }
            (Target::AtMost(bound), Some(met)) => {
                write!(f, "≤ {} {unit}, {}", bound_number(bound), verdict(met))?
            }
            _ => f.write_str("none")?,
        }
        f.write_str(")")
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// A target bound: whole numbers without decimals.
fn bound_number(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        number(value)
    }
}

/// About three significant digits, without an exponent.
fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 || magnitude == 0.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// The figures measured so far.
#[derive(Debug, Default)]
pub(crate) struct Report {
    figures: Vec<Figure>,
}

impl Report {
    /// Prints `figure` and keeps it for the summary.
    pub(crate) fn add(&mut self, figure: Figure) {
        println!("{figure}");
        self.figures.push(figure);
    }

    /// The closing line: how many of the figures that have a target met it.
    pub(crate) fn summary(&self) -> String {
        let verdicts: Vec<bool> = self
            .figures
            .iter()
            .filter_map(|figure| figure.target.is_met_by(figure.value))
            .collect();
        let met = verdicts.iter().filter(|met| **met).count();
        format!("{met} of {} targets met", verdicts.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_show_value_unit_and_verdict() {
        let mut report = Report::default();
        let faster = Figure::new("store: speed-up", 31.25, "×").target(Target::AtLeast(20.0));
        let rss = Figure::new("log: RSS growth", 9.5, "MiB").target(Target::AtMost(8.0));
        let plain = Figure::new("cache: lookups", 1_234_567.0, "lookups/s");
        assert_eq!(
            faster.to_string(),
            "store: speed-up: 31.2 × (target: ≥ 20 ×, met)"
        );
        assert_eq!(
            rss.to_string(),
            "log: RSS growth: 9.50 MiB (target: ≤ 8 MiB, MISSED)"
        );
        assert_eq!(
            plain.to_string(),
            "cache: lookups: 1234567 lookups/s (target: none)"
        );
        report.add(faster);
        report.add(rss);
        report.add(plain);
        assert_eq!(report.summary(), "1 of 2 targets met");
    }
}
