//! The pipeline file's parser on any text: it never panics, a refused file names at least one
//! problem, every position is inside the text, and a parsed file's jobs are consistent (unique
//! names, needs that name jobs of the file, at most `MAX_JOBS - 1` of them).
#![no_main]

use std::collections::HashSet;

use datakit_ci_pipeline::{MAX_JOBS, TargetKind, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match parse(text) {
        Err(error) => {
            assert!(!error.problems.is_empty(), "a refused file names a problem");
            // YAML breaks lines at `\n`, `\r\n` and a lone `\r`.
            let lines = text.replace("\r\n", "\n").replace('\r', "\n").split('\n').count();
            for problem in &error.problems {
                if let Some(line) = problem.line {
                    assert!(line >= 1 && line <= lines + 1, "{problem:?} in {lines} lines");
                }
                assert!(!problem.message.is_empty());
            }
        }
        Ok(pipeline) => {
            let jobs = pipeline.jobs();
            assert!(jobs.len() < MAX_JOBS);
            let names: HashSet<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
            assert_eq!(names.len(), jobs.len(), "job names are unique");
            for job in jobs {
                for need in &job.needs {
                    assert!(names.contains(need.as_str()), "{need:?} is a job");
                }
                assert_eq!(job.definition_digest().len(), 64);
            }
            for kind in [
                TargetKind::Branch("main".to_owned()),
                TargetKind::Tag("v1.0".to_owned()),
                TargetKind::PullRequest {
                    number: 1,
                    base: "main".to_owned(),
                },
            ] {
                let applying = pipeline.jobs_for(&kind, Some(&["src/a".to_owned()]));
                assert!(applying.len() <= jobs.len());
            }
        }
    }
});
