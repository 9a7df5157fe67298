//! The pipeline file, `.datakit-ci.yml`: what a repository asks the CI to run (issue 17).
//!
//! [`parse`] reads the file's text and returns a [`Pipeline`], the list of its [`Job`]s, or a
//! [`ParseError`] listing every [`Problem`] found, each with its line and column. A
//! [`Pipeline`] answers which jobs apply to a target ([`Pipeline::jobs_for`], from each
//! job's [`When`]); a [`Job`] says where it runs ([`Runner`]), what it needs, its
//! [`Retry`] and [`Schedule`], and its [`Job::definition_digest`]. [`json_schema`] describes
//! the format for editors.
//!
//! This crate is pure: it reads only the text it is given and depends on none of our crates.
//!
//! ```
//! use datakit_ci_pipeline::{parse, Runner, TargetKind};
//!
//! let pipeline = parse(
//!     "steps:
//!   build:
//!     image: rust:1.95
//!     run: cargo build
//!   test:
//!     needs: [build]
//!     matrix:
//!       os: [linux, macos]
//!     run: cargo test
//! ",
//! )?;
//! let names: Vec<&str> = pipeline.jobs().iter().map(|j| j.name.as_str()).collect();
//! assert_eq!(names, ["build", "test (os=linux)", "test (os=macos)"]);
//! let test = pipeline.job("test (os=macos)").expect("the job exists");
//! assert_eq!(test.needs, ["build"]);
//! assert_eq!(test.env["os"], "macos");
//! assert_eq!(test.runner, Runner::Host);
//! assert_eq!(pipeline.jobs_for(&TargetKind::Branch("main".into()), None).len(), 3);
//!
//! let error = parse("steps:\n  build:\n    run: make\n    need: [lint]\n").unwrap_err();
//! assert_eq!(error.to_string(), r#"4:5: unknown key "need", did you mean "needs"?"#);
//! # Ok::<(), datakit_ci_pipeline::ParseError>(())
//! ```
//!
//! # The file
//!
//! The file is YAML with one key at the top, `steps`: a mapping from step names to steps, in
//! the order the CI shows them. A key this page does not name is an error, anywhere.
//!
//! ## `run` (required)
//! The shell script of the step.
//! ```yaml
//! steps:
//!   build:
//!     run: |
//!       cargo build --locked
//!       cargo test
//! ```
//!
//! ## `image` or `dockerfile`
//! Where the script runs: in a container of a Docker `image`, in one of an image built from a
//! `dockerfile`, or (neither given) on the CI's own host. Both at once is an error.
//! `dockerfile` is the Dockerfile's path (the build context is then the repository root), or
//! a mapping with `file`, `context` (a directory, default `.`) and build `args`.
//! ```yaml
//! steps:
//!   lint:
//!     image: rust:1.95
//!     run: cargo clippy
//!   test:
//!     dockerfile: {file: ci/Dockerfile, context: ci, args: {RUST: "1.95"}}
//!     run: cargo test
//! ```
//!
//! ## `needs`
//! Steps that must succeed first; together they make a graph without cycles. Needing a step
//! with a matrix means needing all its jobs.
//! ```yaml
//!     needs: [build, lint]
//! ```
//!
//! ## `matrix`
//! One job per combination of values: keys in file order, the first varying slowest. Jobs
//! are named `step (key=value, key2=value2)`, and each value is set in the job's environment
//! under its key (over an `env` entry of the same name). Keys are environment names; values
//! are strings, numbers or booleans, taken as written (`1.90` stays `1.90`).
//! ```yaml
//!     matrix:
//!       os: [linux, macos]
//!       rust: [1.90, 1.95]
//! ```
//! makes `test (os=linux, rust=1.90)`, `test (os=linux, rust=1.95)`,
//! `test (os=macos, rust=1.90)`, `test (os=macos, rust=1.95)`. A file that makes
//! [`MAX_JOBS`] jobs or more is refused.
//!
//! ## `env` and `secrets`
//! Environment variables (names `[A-Za-z_][A-Za-z0-9_]*`, values strings, numbers or
//! booleans), and the names of the secrets the job gets (same rule for names).
//! ```yaml
//!     env: {RUST_BACKTRACE: 1, PROFILE: release}
//!     secrets: [CRATES_IO_TOKEN]
//! ```
//!
//! ## `timeout`
//! How long a job may run, like `90s`, `30m` or `1h 30m`: more than 0, at most 24 hours;
//! the default is 1 hour.
//! ```yaml
//!     timeout: 30m
//! ```
//!
//! ## `pool` and `stall_timeout`
//! Where a job in an image may run and when it counts as stuck, for the Swarm executor
//! (`--executor swarm`): `pool` keeps the job on the nodes labelled `pool=<name>`
//! (`docker node update --label-add pool=gpu NODE`); a job that gives no output and whose task
//! does not change state for `stall_timeout` is removed and submitted again. Neither changes
//! the job's digest: where a job runs does not change its work.
//! ```yaml
//!     pool: gpu
//!     stall_timeout: 10m
//! ```
//!
//! ## `retry`
//! How many times a job may run in all (`attempts`, 1 to 10, default 1) and after which
//! failures (`on`): `timeout`, `infrastructure` (the CI could not run it) or an exit code
//! from 1 to 255.
//! ```yaml
//!     retry: {attempts: 3, on: [infrastructure, 137]}
//! ```
//!
//! ## `when`
//! The targets a step applies to: `branches` and `tags` are globs of names, `pull_requests`
//! a boolean, `paths` globs of which one changed file must match. A key left out restricts
//! nothing (`branches: []` means no branch). In globs `*` stays within a directory
//! (`src/*` matches `src/a`, not `src/a/b`) and `**` crosses directories (`src/**`).
//! ```yaml
//!     when:
//!       branches: [main, "release/*"]
//!       tags: ["v*"]
//!       pull_requests: false
//!       paths: ["src/**", Cargo.lock]
//! ```
//!
//! ## `allow_failure` and `manual`
//! A job that may fail without failing the target; a job that runs only when started by hand.
//! ```yaml
//!     allow_failure: true
//!     manual: true
//! ```
//!
//! ## `schedule`
//! A cron pattern of five fields (minute, hour, day of month, month, day of week), in UTC.
//! ```yaml
//!     schedule: "0 3 * * MON-FRI"
//! ```
//!
//! ## `artifacts` and `inputs`
//! Files to keep after the job (paths or globs), and the repository paths (files or
//! directories) the job reads — none means the whole tree. Paths are relative to the
//! repository root, without `..`.
//! ```yaml
//!     artifacts: [target/release/app, "reports/*.xml"]
//!     inputs: [src, Cargo.toml, Cargo.lock]
//! ```
//!
//! # Problems
//!
//! A file with problems gives no jobs at all. [`parse`] reports every problem it can find in
//! one pass, each at the line and column of the offending key or value, shown by
//! [`Problem::display_in`] as `.datakit-ci.yml:4:5: unknown key "need", did you mean "needs"?`.
//! A YAML syntax error is reported alone; otherwise unknown keys, wrong types, invalid values,
//! duplicate keys, unknown or cyclic `needs` (`cycle in needs: a -> b -> a`) and duplicate job
//! names all come together. A file over [`MAX_FILE_BYTES`] is refused before it is read.

mod de;
mod error;
mod expand;
mod file;
mod job;
mod node;
mod schedule;
mod validate;
mod when;

use std::collections::HashMap;

pub use error::{ParseError, Problem};
pub use job::{Job, Retry, RetryOn, Runner};
pub use schedule::Schedule;
pub use when::{TargetKind, When};

use crate::de::Collector;
use crate::expand::Named;
use crate::file::FileDoc;
use crate::node::Kind;

/// The name of the pipeline file, at the repository root.
pub const FILE_NAME: &str = ".datakit-ci.yml";

/// The largest pipeline file read, in bytes; a bigger one is refused before parsing.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// A file that makes this many jobs or more, after matrix expansion, is refused.
pub const MAX_JOBS: usize = 1000;

/// The jobs of a pipeline file.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// In file order; a step's matrix jobs in expansion order.
    jobs: Vec<Job>,
    by_name: HashMap<String, usize>,
}

impl Pipeline {
    /// Every job, in file order (a step's matrix jobs in expansion order).
    pub fn jobs(&self) -> &[Job] {
        &self.jobs
    }

    /// The job of this name.
    pub fn job(&self, name: &str) -> Option<&Job> {
        self.by_name.get(name).map(|&i| &self.jobs[i])
    }

    /// The jobs that apply to `target`, whose changed files are `changed_paths` (`None` when
    /// unknown: `paths` then restricts nothing), in file order. See [`When::applies`].
    ///
    /// A job applies on its own `when`, whatever its needs do: if a job it needs does not
    /// apply to this target, that need is simply dropped for this target (the job does not
    /// wait for it). The returned jobs keep their full `needs`; callers building the graph
    /// for this target skip needs that name jobs not returned.
    pub fn jobs_for(&self, target: &TargetKind, changed_paths: Option<&[String]>) -> Vec<&Job> {
        self.jobs
            .iter()
            .filter(|job| job.when.applies(target, changed_paths))
            .collect()
    }
}

/// Parses and checks a whole pipeline file.
///
/// Every problem is collected, not just the first: a YAML syntax error alone (the rest
/// cannot be read), or else every unknown key, wrong type and invalid value of every step,
/// and the problems between steps (unknown or cyclic needs, duplicate job names, limits).
pub fn parse(text: &str) -> Result<Pipeline, ParseError> {
    let fail = |problems: Vec<Problem>| ParseError { problems };
    if text.len() > MAX_FILE_BYTES {
        return Err(fail(vec![Problem {
            line: None,
            column: None,
            message: format!("file is {}; the limit is 1 MiB", mebibytes(text.len())),
        }]));
    }
    let mut root = match node::parse_tree(text) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return Err(fail(vec![Problem {
                line: None,
                column: None,
                message: r#"the file is empty; it needs a "steps" mapping"#.to_owned(),
            }]));
        }
        Err(problem) => return Err(fail(vec![problem])),
    };
    let mut problems = Vec::new();
    node::dedup_keys(&mut root, &mut problems);
    if let Kind::Map(entries) = &root.kind
        && !entries
            .iter()
            .any(|(k, _)| k.scalar_text().as_deref() == Some("steps"))
    {
        // Said plainly rather than as serde's "missing key", with the unknown keys if any.
        problems.push(Problem::at(
            None,
            r#"the file has no "steps"; it needs a mapping from step names to steps"#,
        ));
    }
    // `steps:` with nothing after it is an empty list of steps, not a type error.
    if let Kind::Map(entries) = &root.kind
        && let Some((key, _)) = entries.iter().find(|(k, v)| {
            k.scalar_text().as_deref() == Some("steps") && matches!(v.kind, Kind::Null)
        })
    {
        problems.push(Problem::at(
            key.pos,
            r#""steps" is empty; add at least one step"#,
        ));
        return Err(fail(problems));
    }
    let collector = Collector::default();
    let file: Result<FileDoc, Problem> = de::from_node(&root, &collector);
    problems.append(&mut collector.problems.take());
    let mut steps = Vec::new();
    match file {
        Ok(file) => {
            if file.steps.value.is_empty() {
                problems.push(Problem::at(
                    file.steps.pos,
                    r#""steps" is empty; add at least one step"#,
                ));
            }
            for (name, doc) in file.steps.value {
                let step = doc.0.map(|doc| validate::step(&name, doc, &mut problems));
                steps.push(Named {
                    name: name.value,
                    step,
                });
            }
        }
        Err(problem) => {
            if !problem.message.starts_with("missing key \"steps\"") {
                problems.push(problem);
            }
        }
    }
    let jobs = expand::jobs(&steps, &mut problems);
    if !problems.is_empty() {
        // File order; problems about the whole file (no position) first.
        problems.sort_by_key(|p| (p.line, p.column));
        problems.dedup();
        return Err(fail(problems));
    }
    let by_name = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| (job.name.clone(), i))
        .collect();
    Ok(Pipeline { jobs, by_name })
}

/// The JSON Schema of the file, generated from the types `parse` reads, for editors.
pub fn json_schema() -> serde_json::Value {
    schemars::schema_for!(FileDoc).to_value()
}

/// `1.2 MiB`, rounded up so that a file over the limit never shows as exactly `1.0 MiB`.
fn mebibytes(bytes: usize) -> String {
    let tenths = bytes.saturating_mul(10).div_ceil(1 << 20);
    format!("{}.{} MiB", tenths / 10, tenths % 10)
}
