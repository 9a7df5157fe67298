//! Problems: exact messages at exact positions, all of them at once.

use datakit_ci_pipeline::parse;

use crate::check_err;

#[test]
fn a_yaml_syntax_error_is_the_only_problem() {
    check_err("steps: [\n", "1:8: unclosed bracket '['");
    check_err(
        "steps:\n  a:\n    run: x\n    needs: b: c\n",
        "4:13: mapping values are not allowed in this context",
    );
    check_err(
        "steps:\n  a:\n    run: x\n---\nother: 1\n",
        "5:1: the file holds more than one YAML document (---); a pipeline is one",
    );
    check_err(
        "steps:\n\ta:\n",
        "2:2: tabs disallowed within this context (block indentation)",
    );
}

#[test]
fn empty_file_missing_or_empty_steps() {
    check_err("", r#"the file is empty; it needs a "steps" mapping"#);
    check_err(
        "# nothing yet\n",
        r#"the file is empty; it needs a "steps" mapping"#,
    );
    check_err(
        "stepz:\n  a:\n    run: x\n",
        r#"
the file has no "steps"; it needs a mapping from step names to steps
1:1: unknown key "stepz", did you mean "steps"?"#,
    );
    check_err(
        "on: 1\non: 2\n",
        r#"
the file has no "steps"; it needs a mapping from step names to steps
1:1: unknown key "on"
2:1: duplicate key "on" (first at line 1)"#,
    );
    check_err(
        "steps:\n",
        r#"1:1: "steps" is empty; add at least one step"#,
    );
    check_err(
        "steps: {}\n",
        r#"1:8: "steps" is empty; add at least one step"#,
    );
    check_err(
        "- a\n",
        r#"1:1: expected a mapping with the key "steps", found a list"#,
    );
    check_err("steps: [a]\n", "1:8: expected a mapping, found a list");
}

#[test]
fn unknown_keys_everywhere_each_with_a_suggestion_when_close() {
    check_err(
        r#"steps:
  build:
    run: make
    need: [lint]
    imag: rust
    timout: 5m
    colour: blue
    retry: {attempts: 2, onn: [timeout]}
    when: {branch: [main]}
"#,
        r#"
4:5: unknown key "need", did you mean "needs"?
5:5: unknown key "imag", did you mean "image"?
6:5: unknown key "timout", did you mean "timeout"?
7:5: unknown key "colour"
8:26: unknown key "onn", did you mean "on"?
9:12: unknown key "branch", did you mean "branches"?"#,
    );
    check_err(
        "steps:\n  a:\n    run: x\n    dockerfile: {file: D, contxt: .}\n",
        r#"4:27: unknown key "contxt", did you mean "context"?"#,
    );
    check_err(
        "steps:\n  a:\n    run: x\n    dockerfile: {file: D, bogus: 1, other: 2}\n",
        r#"
4:27: unknown key "bogus"
4:37: unknown key "other""#,
    );
}

#[test]
fn wrong_types_point_at_the_value_and_every_key_is_checked() {
    check_err(
        r#"steps:
  a:
    run: [make]
    image: {name: x}
    needs: b
    manual: maybe
    timeout: [1]
  b: []
  c: 3
"#,
        r#"
3:10: expected a string, found a list
4:12: expected a string, found a mapping
5:12: expected a list, found the string "b"
6:13: expected a boolean, found the string "maybe"
7:14: expected a string, found a list
8:6: expected a mapping of step keys (run, image, needs, ...), found a list
9:6: expected a mapping of step keys (run, image, needs, ...), found the number 3"#,
    );
}

#[test]
fn missing_run_points_at_the_step() {
    check_err(
        "steps:\n  build:\n    image: rust\n",
        r#"2:3: missing key "run""#,
    );
}

#[test]
fn needs_unknown_self_and_cycles() {
    check_err(
        r#"steps:
  build:
    run: x
    needs: [biuld, lint]
  lint:
    run: x
    needs: [lint]
"#,
        r#"
4:13: unknown step "biuld" in needs, did you mean "build"?
7:13: step "lint" needs itself"#,
    );
    check_err(
        r#"steps:
  a:
    run: x
    needs: [b]
  b:
    run: x
    needs: [c]
  c:
    run: x
    needs: [a]
  d:
    run: x
    needs: [a]
"#,
        "4:13: cycle in needs: a -> b -> c -> a",
    );
    check_err(
        "steps:\n  a:\n    run: x\n    needs: [b]\n  b:\n    run: x\n    needs: [a]\n",
        "4:13: cycle in needs: a -> b -> a",
    );
}

#[test]
fn bad_values_each_with_its_message() {
    check_err(
        r#"steps:
  a:
    run: x
    timeout: 5 parsecs
    schedule: "61 * * * *"
    when: {branches: ["[a"], paths: ["src/{a"]}
    retry: {attempts: 0, on: [timout, 0, 256, 3, -1]}
    secrets: [a-b, 1A]
    matrix: {os: [], my-key: [a]}
    env: {"BAD NAME": x}
  b:
    run: x
    timeout: 0s
  c:
    run: x
    timeout: 25h
    retry: {attempts: 11}
    schedule: "0 0 * *"
    artifacts: ["/abs", "../up", "[x"]
    inputs: ["", "a/../../b", 'a\b']
"#,
        r#"
4:14: invalid duration "5 parsecs": unknown time unit "parsecs", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations) (write e.g. 90s, 30m, 1h)
5:15: invalid schedule "61 * * * *": Component error: Number out of bounds
6:23: error parsing glob '[a': unclosed character class; missing ']'
6:38: error parsing glob 'src/{a': unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)
7:23: retry attempts must be between 1 and 10, not 0
7:31: unknown retry condition "timout", did you mean "timeout"? (use timeout, infrastructure or an exit code)
7:39: exit code must be between 1 and 255, not 0
7:42: exit code must be between 1 and 255, not 256
7:50: exit code must be between 1 and 255, not -1
8:15: invalid secret name "a-b": use letters, digits and _, not starting with a digit
8:20: invalid secret name "1A": use letters, digits and _, not starting with a digit
9:14: matrix key "os" has no values
9:22: invalid matrix key "my-key": use letters, digits and _, not starting with a digit
10:11: invalid environment variable "BAD NAME": use letters, digits and _, not starting with a digit
13:14: the timeout must be more than 0
16:14: the timeout "25h" is over the limit of 24h
17:23: retry attempts must be between 1 and 10, not 11
18:15: invalid schedule "0 0 * *": a schedule has 5 fields (minute hour day month weekday), this one has 4
19:17: invalid artifact path "/abs": it must be relative to the repository root
19:25: invalid artifact path "../up": it must not leave the repository (..)
19:34: error parsing glob '[x': unclosed character class; missing ']'
20:14: invalid input path "": it is empty
20:18: invalid input path "a/../../b": it must not leave the repository (..)
20:31: invalid input path "a\\b": use / between directories"#,
    );
}

#[test]
fn image_and_dockerfile_together() {
    check_err(
        "steps:\n  a:\n    run: x\n    dockerfile: {context: ci}\n",
        r#"4:5: missing key "file""#,
    );
    check_err(
        "steps:\n  a:\n    run: x\n    dockerfile: [Dockerfile]\n",
        "4:17: expected a path or a mapping with file, context and args, found a list",
    );
    check_err(
        "steps:\n  a:\n    run: x\n    image: rust\n    dockerfile: Dockerfile\n",
        r#"5:17: "image" and "dockerfile" cannot both be given"#,
    );
    check_err(
        "steps:\n  a:\n    run: x\n    dockerfile: {file: /Dockerfile, context: ../up}\n",
        r#"
4:24: invalid Dockerfile path "/Dockerfile": it must be relative to the repository root
4:46: invalid context path "../up": it must not leave the repository (..)"#,
    );
}

#[test]
fn duplicate_step_names_and_keys() {
    check_err(
        "steps:\n  a:\n    run: x\n  a:\n    run: y\n",
        r#"4:3: duplicate key "a" (first at line 2)"#,
    );
    check_err(
        "steps:\n  a:\n    run: x\n    run: y\n",
        r#"4:5: duplicate key "run" (first at line 3)"#,
    );
}

#[test]
fn duplicate_job_names_after_expansion() {
    check_err(
        "steps:\n  test (os=linux):\n    run: x\n  test:\n    run: y\n    matrix: {os: [linux, mac]}\n",
        r#"4:3: job name "test (os=linux)" is made by both step "test (os=linux)" and step "test""#,
    );
    check_err(
        "steps:\n  t:\n    run: x\n    matrix: {os: [a, a]}\n",
        r#"2:3: job name "t (os=a)" is made by both step "t" and step "t""#,
    );
}

#[test]
fn problems_of_different_steps_are_all_reported_in_file_order() {
    check_err(
        "steps:\n  a:\n    run: x\n    needs: [zz]\n  b:\n    run: [y]\n  c:\n    run: z\n    timeout: nope\n",
        r#"
4:13: unknown step "zz" in needs
6:10: expected a string, found a list
9:14: invalid duration "nope": expected number at 0 (write e.g. 90s, 30m, 1h)"#,
    );
}

#[test]
fn problems_display_with_the_file_name() {
    let error = match parse("steps:\n  a:\n    rn: x\n") {
        Ok(_) => panic!("expected problems"),
        Err(error) => error,
    };
    let shown: Vec<String> = error
        .problems
        .iter()
        .map(|p| p.display_in(".datakit-ci.yml"))
        .collect();
    assert_eq!(
        shown,
        [
            r#".datakit-ci.yml:2:3: missing key "run""#,
            r#".datakit-ci.yml:3:5: unknown key "rn", did you mean "run"?"#,
        ]
    );
}

#[test]
fn every_prefix_of_a_file_parses_or_says_why_without_panicking() {
    let text = r#"# CI
steps:
  build: &build
    run: make
    image: "rust:1.95"
    env: {A: 1, B: "two"}
  test:
    <<: *build
    needs: [build]
    matrix: {os: [linux, macos]}
    when: {branches: ["release/*"], paths: ["src/**"]}
    retry: {attempts: 2, on: [timeout, 137]}
    dockerfile: {file: ci/Dockerfile, args: {X: y}}
    schedule: "0 3 * * *"
---
other: document
"#;
    let lines = text.lines().count();
    let mut outcomes = (0, 0);
    for (end, _) in text.char_indices() {
        match parse(&text[..end]) {
            Ok(_) => outcomes.0 += 1,
            Err(error) => {
                outcomes.1 += 1;
                assert!(!error.problems.is_empty(), "an error lists its problems");
                for problem in &error.problems {
                    assert!(
                        problem.line.is_none_or(|l| (1..=lines + 1).contains(&l)),
                        "{problem:?}"
                    );
                    assert!(!problem.message.is_empty());
                }
            }
        }
    }
    // Some prefixes are whole files, most are not.
    assert!(outcomes.0 > 0 && outcomes.1 > 0, "{outcomes:?}");
}
