//! Checks one step as read (`file::StepDoc`) and turns it into a `Step` of plain values. Every
//! problem of the step is collected; relations between steps are `expand`'s.

use std::collections::BTreeMap;
use std::time::Duration;

use indexmap::IndexMap;

use crate::de::{At, ScalarText};
use crate::error::{Problem, did_you_mean};
use crate::file::{DockerfileDoc, RetryDoc, RetryOnDoc, StepDoc, WhenDoc};
use crate::job::{Retry, RetryOn, Runner};
use crate::node::Pos;
use crate::schedule::Schedule;
use crate::when::{Patterns, When};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60 * 60);
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
const MAX_ATTEMPTS: i64 = 10;

/// A step whose keys are each valid on their own.
#[derive(Debug)]
pub(crate) struct Step {
    pub(crate) name: String,
    pub(crate) name_pos: Option<Pos>,
    pub(crate) run: String,
    pub(crate) runner: Runner,
    pub(crate) needs: Vec<At<String>>,
    pub(crate) matrix: Vec<(String, Vec<String>)>,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) secrets: Vec<String>,
    pub(crate) timeout: Duration,
    pub(crate) retry: Retry,
    pub(crate) when: When,
    pub(crate) allow_failure: bool,
    pub(crate) manual: bool,
    pub(crate) schedule: Option<Schedule>,
    pub(crate) artifacts: Vec<String>,
    pub(crate) inputs: Vec<String>,
    pub(crate) pool: Option<String>,
    pub(crate) stall_timeout: Option<Duration>,
}

/// Checks `doc`, the step named `name`; its problems go to `problems`.
pub(crate) fn step(name: &At<String>, doc: StepDoc, problems: &mut Vec<Problem>) -> Step {
    let mut p = Problems(problems);
    if name.value.trim().is_empty() || name.value.chars().any(char::is_control) {
        p.add(
            name.pos,
            format!(
                "invalid step name {:?}: it must be a non-empty line of text",
                name.value
            ),
        );
    }
    let runner = runner(doc.image.0, doc.dockerfile.0, &mut p);
    let matrix = doc
        .matrix
        .0
        .unwrap_or_default()
        .into_iter()
        .map(|(key, values)| {
            p.env_name(&key, "matrix key");
            if values.value.is_empty() {
                p.add(key.pos, format!("matrix key {:?} has no values", key.value));
            }
            let values = values.value.into_iter().map(|v| v.value.0).collect();
            (key.value, values)
        })
        .collect::<Vec<_>>();
    let env = env_map(
        doc.env.0.unwrap_or_default(),
        "environment variable",
        &mut p,
    );
    let secrets = doc
        .secrets
        .0
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            p.env_name(&s, "secret name");
            s.value
        })
        .collect();
    let timeout = doc
        .timeout
        .0
        .map_or(DEFAULT_TIMEOUT, |t| timeout(&t, &mut p));
    let stall_timeout = doc.stall_timeout.0.map(|t| self::timeout(&t, &mut p));
    let pool = doc.pool.0.map(|pool| {
        let valid = !pool.value.is_empty()
            && pool
                .value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid {
            p.add(
                pool.pos,
                format!(
                    "invalid pool {:?}: use ASCII letters, digits, '.', '_' and '-'",
                    pool.value
                ),
            );
        }
        pool.value
    });
    let retry = doc.retry.0.map(|r| retry(r, &mut p)).unwrap_or_default();
    let when = doc
        .when
        .0
        .map(|w| when(w.value, &mut p))
        .unwrap_or_default();
    let schedule = doc
        .schedule
        .0
        .and_then(|s| match Schedule::parse(&s.value) {
            Ok(schedule) => Some(schedule),
            Err(message) => {
                p.add(s.pos, message);
                None
            }
        });
    let artifacts = doc
        .artifacts
        .0
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            if p.repository_path(&a, "artifact")
                && let Err(message) = crate::when::glob(&a.value)
            {
                p.add(a.pos, message);
            }
            a.value
        })
        .collect();
    let inputs = doc
        .inputs
        .0
        .unwrap_or_default()
        .into_iter()
        .map(|i| {
            p.repository_path(&i, "input");
            i.value
        })
        .collect();
    Step {
        name: name.value.clone(),
        name_pos: name.pos,
        // An unreadable `run` is already a problem; the empty script is never used.
        run: doc.run.0.map(|r| r.value).unwrap_or_default(),
        runner,
        needs: doc.needs.0.unwrap_or_default(),
        matrix,
        env,
        secrets,
        timeout,
        retry,
        when,
        allow_failure: doc.allow_failure.0.unwrap_or(false),
        manual: doc.manual.0.unwrap_or(false),
        schedule,
        artifacts,
        inputs,
        pool,
        stall_timeout,
    }
}

struct Problems<'a>(&'a mut Vec<Problem>);

impl Problems<'_> {
    fn add(&mut self, pos: Option<Pos>, message: impl Into<String>) {
        self.0.push(Problem::at(pos, message));
    }

    /// Environment names, and so secret names (secrets are also files named after them):
    /// `[A-Za-z_][A-Za-z0-9_]*`.
    fn env_name(&mut self, name: &At<String>, what: &str) -> bool {
        let mut chars = name.value.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            self.add(
                name.pos,
                format!(
                    "invalid {what} {:?}: use letters, digits and _, not starting with a digit",
                    name.value
                ),
            );
        }
        valid
    }

    /// A relative path inside the repository: not empty, no leading `/`, no `..`.
    fn repository_path(&mut self, path: &At<String>, what: &str) -> bool {
        let reason = if path.value.is_empty() {
            Some("it is empty")
        } else if path.value.starts_with('/') {
            Some("it must be relative to the repository root")
        } else if path.value.split('/').any(|c| c == "..") {
            Some("it must not leave the repository (..)")
        } else if path.value.contains('\\') {
            Some("use / between directories")
        } else {
            None
        };
        if let Some(reason) = reason {
            self.add(
                path.pos,
                format!("invalid {what} path {:?}: {reason}", path.value),
            );
        }
        reason.is_none()
    }
}

fn runner(
    image: Option<At<String>>,
    dockerfile: Option<At<DockerfileDoc>>,
    p: &mut Problems<'_>,
) -> Runner {
    match (image, dockerfile) {
        (Some(_), Some(dockerfile)) => {
            p.add(
                dockerfile.pos,
                r#""image" and "dockerfile" cannot both be given"#,
            );
            Runner::Host
        }
        (Some(image), None) => {
            if image.value.trim().is_empty() {
                p.add(image.pos, "the image name is empty");
            }
            Runner::Image(image.value)
        }
        (None, Some(dockerfile)) => match dockerfile.value {
            DockerfileDoc::Path(file) => {
                p.repository_path(
                    &At {
                        pos: dockerfile.pos,
                        value: file.clone(),
                    },
                    "Dockerfile",
                );
                Runner::Dockerfile {
                    file,
                    context: ".".to_owned(),
                    args: BTreeMap::new(),
                }
            }
            DockerfileDoc::Spec(spec) => {
                p.repository_path(&spec.file, "Dockerfile");
                let context = match spec.context {
                    Some(context) => {
                        p.repository_path(&context, "context");
                        context.value
                    }
                    None => ".".to_owned(),
                };
                Runner::Dockerfile {
                    file: spec.file.value,
                    context,
                    args: env_map(spec.args, "build argument", p),
                }
            }
        },
        (None, None) => Runner::Host,
    }
}

fn env_map(
    map: IndexMap<At<String>, ScalarText>,
    what: &str,
    p: &mut Problems<'_>,
) -> BTreeMap<String, String> {
    map.into_iter()
        .map(|(name, value)| {
            p.env_name(&name, what);
            (name.value, value.0)
        })
        .collect()
}

fn timeout(text: &At<String>, p: &mut Problems<'_>) -> Duration {
    match humantime::parse_duration(&text.value) {
        Ok(d) if d.is_zero() => {
            p.add(text.pos, "the timeout must be more than 0");
            DEFAULT_TIMEOUT
        }
        Ok(d) if d > MAX_TIMEOUT => {
            p.add(
                text.pos,
                format!("the timeout {:?} is over the limit of 24h", text.value),
            );
            DEFAULT_TIMEOUT
        }
        Ok(d) => d,
        Err(e) => {
            p.add(
                text.pos,
                format!(
                    "invalid duration {:?}: {e} (write e.g. 90s, 30m, 1h)",
                    text.value
                ),
            );
            DEFAULT_TIMEOUT
        }
    }
}

fn retry(doc: RetryDoc, p: &mut Problems<'_>) -> Retry {
    let attempts = match doc.attempts {
        None => 1,
        Some(At { value, .. }) if (1..=MAX_ATTEMPTS).contains(&value) => {
            u32::try_from(value).unwrap_or(1)
        }
        Some(At { pos, value }) => {
            p.add(
                pos,
                format!("retry attempts must be between 1 and {MAX_ATTEMPTS}, not {value}"),
            );
            1
        }
    };
    let on = doc
        .on
        .into_iter()
        .filter_map(|on| match on.value {
            RetryOnDoc::Word(word) => match word.as_str() {
                "timeout" => Some(RetryOn::Timeout),
                "infrastructure" => Some(RetryOn::Infrastructure),
                _ => {
                    let hint = did_you_mean(&word, ["timeout", "infrastructure"]);
                    p.add(
                        on.pos,
                        format!("unknown retry condition {word:?}{hint} (use timeout, infrastructure or an exit code)"),
                    );
                    None
                }
            },
            RetryOnDoc::Code(code) => match u8::try_from(code) {
                Ok(code) if code >= 1 => Some(RetryOn::ExitCode(code)),
                _ => {
                    p.add(on.pos, format!("exit code must be between 1 and 255, not {code}"));
                    None
                }
            },
        })
        .collect();
    Retry { attempts, on }
}

fn when(doc: WhenDoc, p: &mut Problems<'_>) -> When {
    When::new(
        doc.branches.and_then(|g| patterns(g, p)),
        doc.tags.and_then(|g| patterns(g, p)),
        doc.pull_requests,
        doc.paths.and_then(|g| patterns(g, p)),
    )
}

fn patterns(globs: Vec<At<String>>, p: &mut Problems<'_>) -> Option<Patterns> {
    let positions: Vec<Option<Pos>> = globs.iter().map(|g| g.pos).collect();
    match Patterns::new(globs.into_iter().map(|g| g.value).collect()) {
        Ok(patterns) => Some(patterns),
        Err(errors) => {
            for (index, message) in errors {
                p.add(positions.get(index).copied().flatten(), message);
            }
            None
        }
    }
}
