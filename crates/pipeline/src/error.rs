//! Problems found in a pipeline file, and the error that lists them. Knows nothing of YAML.

use std::fmt;

use crate::node::Pos;

/// One problem, with its 1-based position when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the offending key or value.
    pub line: Option<usize>,
    /// 1-based column of the offending key or value.
    pub column: Option<usize>,
    /// What is wrong, lowercase, without a final period.
    pub message: String,
}

impl Problem {
    /// `FILE:LINE:COL: message`, or `FILE: message` without a position.
    pub fn display_in(&self, file: &str) -> String {
        match (self.line, self.column) {
            (Some(line), Some(column)) => format!("{file}:{line}:{column}: {}", self.message),
            (Some(line), None) => format!("{file}:{line}: {}", self.message),
            _ => format!("{file}: {}", self.message),
        }
    }

    pub(crate) fn at(pos: Option<Pos>, message: impl Into<String>) -> Self {
        Problem {
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    /// `LINE:COL: message`, or the message alone without a position.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "{line}:{column}: {}", self.message),
            (Some(line), None) => write!(f, "{line}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// A pipeline file that cannot be used: every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_problems(.problems))]
pub struct ParseError {
    /// The problems, sorted by position (problems without one come first).
    pub problems: Vec<Problem>,
}

fn display_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `, did you mean "X"?` when one of `known` is within two edits of `given`, else nothing.
pub(crate) fn did_you_mean<'a>(given: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    known
        .into_iter()
        .map(|candidate| (levenshtein(given, candidate), candidate))
        // Two edits turn "zz" into "a": the distance must also be short of the whole word.
        .filter(|(distance, _)| *distance <= 2 && *distance < given.chars().count())
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| format!(", did you mean {candidate:?}?"))
        .unwrap_or_default()
}

/// Edit distance in characters (insertions, deletions, substitutions).
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levenshtein_counts_edits() {
        assert_eq!(levenshtein("need", "needs"), 1);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("same", "same"), 0);
    }

    #[test]
    fn did_you_mean_picks_the_closest_within_two() {
        assert_eq!(
            did_you_mean("need", ["run", "needs"]),
            r#", did you mean "needs"?"#
        );
        assert_eq!(
            did_you_mean("timout", ["timeout", "image"]),
            r#", did you mean "timeout"?"#
        );
        assert_eq!(did_you_mean("zzzzzz", ["run", "needs"]), "");
        assert_eq!(did_you_mean("zz", ["a"]), "");
        assert_eq!(
            did_you_mean("biuld", ["build"]),
            r#", did you mean "build"?"#
        );
    }

    #[test]
    fn display_lists_every_problem_with_its_position() {
        let error = ParseError {
            problems: vec![
                Problem {
                    line: Some(2),
                    column: Some(3),
                    message: "one".into(),
                },
                Problem {
                    line: None,
                    column: None,
                    message: "two".into(),
                },
            ],
        };
        assert_eq!(error.to_string(), "2:3: one\ntwo");
        assert_eq!(
            error.problems[0].display_in(".datakit-ci.yml"),
            ".datakit-ci.yml:2:3: one"
        );
        assert_eq!(
            error.problems[1].display_in(".datakit-ci.yml"),
            ".datakit-ci.yml: two"
        );
    }
}
