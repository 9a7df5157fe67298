//! The size and job limits, and a large file that is within them.

use datakit_ci_pipeline::{MAX_FILE_BYTES, MAX_JOBS, parse};

use crate::{check_err, ok};

fn matrix_file(a: usize, b: usize) -> String {
    let values = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    format!(
        "steps:\n  t:\n    run: x\n    matrix:\n      a: [{}]\n      b: [{}]\n",
        values(a),
        values(b)
    )
}

#[test]
fn a_file_over_the_size_limit_is_refused_before_parsing() {
    // Not even valid YAML: the size alone is reported.
    let text = format!("steps: [{}", "#".repeat(MAX_FILE_BYTES * 6 / 5 - 8));
    check_err(&text, "file is 1.2 MiB; the limit is 1 MiB");
    let text = format!("steps:\n  a:\n    run: x\n#{}", " ".repeat(MAX_FILE_BYTES));
    check_err(&text, "file is 1.1 MiB; the limit is 1 MiB");
    let mut text = String::from("steps:\n  a:\n    run: x\n#");
    text.push_str(&" ".repeat(MAX_FILE_BYTES - text.len()));
    assert_eq!(text.len(), MAX_FILE_BYTES);
    assert_eq!(ok(&text).jobs().len(), 1);
}

#[test]
fn the_job_limit() {
    assert_eq!(MAX_JOBS, 1000);
    assert_eq!(ok(&matrix_file(27, 37)).jobs().len(), 999);
    check_err(
        &matrix_file(25, 40),
        "the file makes 1000 jobs; the limit is 999",
    );
    check_err(
        &matrix_file(30, 40),
        "the file makes 1200 jobs; the limit is 999",
    );
}

#[test]
fn a_huge_matrix_is_refused_without_being_built() {
    let values = (0..100)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let keys: String = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|k| format!("      {k}: [{values}]\n"))
        .collect();
    let text = format!("steps:\n  t:\n    run: x\n    matrix:\n{keys}");
    check_err(&text, "the file makes 1000000000000 jobs; the limit is 999");
}

#[test]
fn jobs_of_several_steps_add_up() {
    let text = format!("{}  u:\n    run: y\n", matrix_file(27, 37));
    check_err(&text, "the file makes 1000 jobs; the limit is 999");
}

#[test]
fn a_500_job_file_parses() {
    // A sanity check of size, not of speed: 500 steps in a chain of needs.
    let mut text = String::from("steps:\n");
    for i in 0..500 {
        text.push_str(&format!(
            "  s{i}:\n    run: echo {i}\n    image: rust:1.95\n"
        ));
        if i > 0 {
            text.push_str(&format!("    needs: [s{}]\n", i - 1));
        }
    }
    let pipeline = match parse(&text) {
        Ok(pipeline) => pipeline,
        Err(error) => panic!("{error}"),
    };
    assert_eq!(pipeline.jobs().len(), 500);
    assert_eq!(
        pipeline.job("s499").map(|j| j.needs.clone()),
        Some(vec!["s498".into()])
    );
}
