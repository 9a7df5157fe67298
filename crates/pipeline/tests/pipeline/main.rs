//! Tests of the pipeline file through the public API: each feature has a `check_*` helper, and
//! each test is an input and the expected jobs or problems.

mod docs;
mod errors;
mod expand;
mod keys;
mod limits;
mod when;

use datakit_ci_pipeline::{Job, Pipeline, parse};

/// Parses `text`, which must be valid.
fn ok(text: &str) -> Pipeline {
    match parse(text) {
        Ok(pipeline) => pipeline,
        Err(error) => panic!("expected a valid file, got:\n{error}"),
    }
}

/// The only job of a valid one-step file.
fn only_job(text: &str) -> Job {
    let pipeline = ok(text);
    assert_eq!(pipeline.jobs().len(), 1, "expected one job");
    pipeline.jobs()[0].clone()
}

/// Parses `text`, which must be invalid, and compares its problems, one `LINE:COL: message`
/// a line, with `expected`.
fn check_err(text: &str, expected: &str) {
    match parse(text) {
        Ok(pipeline) => panic!("expected problems, got jobs {:?}", names(&pipeline)),
        Err(error) => {
            let shown: String = text.chars().take(300).collect();
            assert_eq!(error.to_string(), expected.trim(), "for input:\n{shown}");
        }
    }
}

fn names(pipeline: &Pipeline) -> Vec<&str> {
    pipeline.jobs().iter().map(|j| j.name.as_str()).collect()
}
