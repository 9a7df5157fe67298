//! Issue 17 end to end: the binary without `--test` runs each commit's `.datakit-ci.yml`, on real
//! Git repositories — needs, skipped jobs, `when` filters, the path-based cache (a docs-only
//! change runs nothing else again), an invalid file, a missing file, and a file edited on a
//! branch.

mod common;

use std::ffi::OsString;

use common::{Ci, Repo, Scratch, State, free_port, http_get, wait_until};

/// The description of a job of `commit` of `local/app` once it has state `wanted`.
fn description(state: &State, ci: &Ci, commit: &str, job: &str, wanted: &str) -> String {
    state.wait_for_description(ci, "local/app", commit, job, wanted)
}

#[test]
fn issue_17_the_pipeline_file_runs_each_commits_jobs_and_reruns_only_changed_inputs() {
    let scratch = Scratch::new();
    let runs = scratch.shell_path("runs");
    let file = format!(
        "steps:
  build:
    run: echo build >> {runs} && test -e src/ok
    inputs: [src]
  test:
    run: echo test >> {runs}
    needs: [build]
    inputs: [src, tests]
  docs:
    run: echo docs >> {runs}
    inputs: [docs]
  release:
    run: echo release >> {runs}
    needs: [test]
    when:
      branches: [main]
"
    );
    let repo = Repo::new("app");
    let initial = repo.rev("main");
    let first = repo.commit(
        &initial,
        "Add the pipeline",
        &[
            (".datakit-ci.yml", &file),
            ("src/ok", "1\n"),
            ("tests/t", "t\n"),
            ("docs/index", "a\n"),
        ],
    );
    repo.set_ref("refs/heads/main", &first);
    let state = State::new();
    let port = free_port();
    let listen = format!("http://127.0.0.1:{port}");
    let ci = Ci::start(&[&repo], &[], &state, &["--listen", &listen]);

    for job in ["build", "test", "docs", "release"] {
        assert_eq!(description(&state, &ci, &first, job, "success"), "Passed");
    }
    // The target's page draws the jobs' needs: a node per job, an edge per need.
    let page = wait_until(
        "the target page to show the graph",
        || {
            http_get(port, "/local/app/ref/heads/main")
                .filter(|page| page.contains("<svg class=\"pipeline-graph\""))
        },
        || ci.report(),
    );
    for job in ["build", "test", "docs", "release", "pipeline"] {
        assert!(
            page.contains(&format!("data-job=\"{job}\"")),
            "{job}: {page}"
        );
    }
    for (from, to) in [("build", "test"), ("test", "release")] {
        assert!(
            page.contains(&format!("data-from=\"{from}\" data-to=\"{to}\"")),
            "{from} -> {to}: {page}"
        );
    }
    assert_eq!(page.matches("class=\"edge\"").count(), 2, "{page}");
    let api = http_get(port, "/api/v1/targets/local/app/ref/heads/main").expect("the API answers");
    assert!(
        api.contains(
            r#""name":"release","state":"success","description":"Passed","needs":["test"]"#
        ),
        "{api}"
    );
    assert_eq!(
        description(&state, &ci, &first, "pipeline", "success"),
        "4 jobs from .datakit-ci.yml"
    );
    let count = |what: &str| {
        std::fs::read_to_string(scratch.path("runs"))
            .unwrap_or_default()
            .lines()
            .filter(|line| *line == what)
            .count()
    };
    assert_eq!((count("build"), count("test"), count("docs")), (1, 1, 1));

    // A docs-only change runs again the docs and `release`, whose inputs are the whole tree
    // (the default), and nothing else.
    let docs_only = repo.commit(&first, "Docs", &[("docs/index", "b\n")]);
    repo.set_ref("refs/heads/main", &docs_only);
    assert_eq!(
        description(&state, &ci, &docs_only, "docs", "success"),
        "Passed"
    );
    assert_eq!(
        description(&state, &ci, &docs_only, "release", "success"),
        "Passed"
    );
    let unchanged = format!("Unchanged since {}", &first[..7]);
    for job in ["build", "test"] {
        assert_eq!(
            description(&state, &ci, &docs_only, job, "success"),
            unchanged,
            "{job}"
        );
    }
    assert_eq!(
        (
            count("build"),
            count("test"),
            count("docs"),
            count("release")
        ),
        (1, 1, 2, 2)
    );

    // A failing need skips its dependants; `release` is for `main` only.
    let broken = repo.commit_removing(&docs_only, "Break the build", &["src/ok"]);
    repo.set_ref("refs/heads/broken", &broken);
    let failure = description(&state, &ci, &broken, "build", "failure");
    assert!(failure.contains("exited with status 1"), "{failure}");
    assert_eq!(
        description(&state, &ci, &broken, "test", "failure"),
        "Skipped: build failed"
    );
    assert_eq!(
        description(&state, &ci, &broken, "docs", "success"),
        format!("Unchanged since {}", &docs_only[..7])
    );
    assert_eq!(
        description(&state, &ci, &broken, "pipeline", "success"),
        "3 jobs from .datakit-ci.yml"
    );
    assert_eq!(state.status("local/app", &broken, "release"), None);

    // An invalid file fails the plan with its problems; other targets keep working.
    let typo = repo.commit(
        &docs_only,
        "Typo",
        &[(".datakit-ci.yml", "steps:\n  a:\n    rn: x\n")],
    );
    repo.set_ref("refs/heads/typo", &typo);
    assert_eq!(
        description(&state, &ci, &typo, "pipeline", "failure"),
        "Invalid .datakit-ci.yml:2:3: missing key \"run\" (and 1 more problem: see the log)"
    );
    // The check's log lists every problem.
    let blob = repo.rev_object(&format!("{typo}:.datakit-ci.yml"));
    let log = state
        .show(&format!("pipeline-file-{blob}"), "log")
        .expect("the check's log");
    assert!(
        log.contains(".datakit-ci.yml:2:3: missing key \"run\"")
            && log.contains(".datakit-ci.yml:3:5: unknown key \"rn\", did you mean \"run\"?"),
        "{log}"
    );
    assert_eq!(
        description(&state, &ci, &docs_only, "build", "success"),
        unchanged,
        "other targets keep their statuses"
    );
    // A commit without the file says so.
    repo.set_ref("refs/heads/old", &initial);
    assert_eq!(
        description(&state, &ci, &initial, "pipeline", "failure"),
        format!("No .datakit-ci.yml in commit {}", &initial[..7])
    );

    // A branch that edits the file gets the jobs of its own version.
    let edited = repo.commit(
        &docs_only,
        "Only lint",
        &[(
            ".datakit-ci.yml",
            &format!("steps:\n  lint:\n    run: echo lint >> {runs}\n"),
        )],
    );
    repo.set_ref("refs/heads/main", &edited);
    assert_eq!(
        description(&state, &ci, &edited, "lint", "success"),
        "Passed"
    );
    assert_eq!(
        description(&state, &ci, &edited, "pipeline", "success"),
        "1 job from .datakit-ci.yml"
    );
    assert_eq!(state.status("local/app", &edited, "build"), None);
    assert_eq!(count("build"), 2, "only the broken branch built again");
}

#[test]
fn issue_17_check_and_plan_report_problems_and_what_would_run() {
    use common::run_to_exit;
    let scratch = Scratch::new();
    // `check`: a valid file, and one with several problems, each as FILE:LINE:COL.
    let good = scratch.path("good.yml");
    std::fs::write(
        &good,
        "steps:\n  a:\n    run: make\n  b:\n    run: make b\n    matrix:\n      os: [linux, mac]\n",
    )
    .expect("write");
    let (status, stdout, _) = run_to_exit([OsString::from("check"), good.clone().into()]);
    assert!(status.success());
    assert_eq!(stdout, [format!("{}: valid, 3 jobs", good.display())]);
    let bad = scratch.path("bad.yml");
    std::fs::write(
        &bad,
        "steps:\n  a:\n    run: make\n    needs: [b]\n  b:\n    run: make\n    needs: [a]\n  c:\n    run: x\n    schedule: \"61 * * * *\"\n    tiemout: 5m\n",
    )
    .expect("write");
    let (status, _, stderr) = run_to_exit([OsString::from("check"), bad.clone().into()]);
    assert_eq!(status.code(), Some(1));
    let shown = bad.display().to_string();
    assert!(
        stderr
            .iter()
            .any(|l| l.starts_with(&format!("{shown}:")) && l.contains("cycle in needs")),
        "{stderr:?}"
    );
    assert!(
        stderr.iter().any(|l| l.starts_with(&format!(
            "{shown}:11:5: unknown key \"tiemout\", did you mean \"timeout\"?"
        ))),
        "{stderr:?}"
    );
    assert!(
        stderr
            .iter()
            .any(|l| l.starts_with(&format!("{shown}:10:"))),
        "{stderr:?}"
    );
    let (status, _, stderr) =
        run_to_exit([OsString::from("check"), scratch.path("absent.yml").into()]);
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.iter().any(|l| l.contains("cannot read")),
        "{stderr:?}"
    );

    // `plan`: nothing recorded yet, then what a run recorded, then what a change would run.
    let runs = scratch.shell_path("runs");
    let repo = Repo::new("app");
    let file = format!(
        "steps:\n  build:\n    run: echo build >> {runs}\n    inputs: [src]\n  docs:\n    run: echo docs >> {runs}\n    inputs: [docs]\n"
    );
    let first = repo.commit(
        &repo.rev("main"),
        "Pipeline",
        &[
            (".datakit-ci.yml", &file),
            ("src/a", "1\n"),
            ("docs/a", "1\n"),
        ],
    );
    repo.set_ref("refs/heads/main", &first);
    let state = State::new();
    let plan = || {
        let (status, stdout, stderr) = run_to_exit([
            OsString::from("plan"),
            "--repo".into(),
            repo.path().into(),
            "--ref".into(),
            "main".into(),
            "--state-dir".into(),
            state.dir().into(),
        ]);
        assert!(status.success(), "{stderr:?}");
        stdout
    };
    let before = plan();
    assert_eq!(
        before[0],
        format!(
            "2 jobs of .datakit-ci.yml for commit {} (branch main):",
            &first[..7]
        )
    );
    assert!(
        before[1].contains("build")
            && before[1].contains("run")
            && before[1].contains("no run with these inputs"),
        "{before:?}"
    );

    let mut ci = Ci::start(&[&repo], &[], &state, &[]);
    description(&state, &ci, &first, "build", "success");
    description(&state, &ci, &first, "docs", "success");
    assert!(ci.terminate().success());
    let after = plan();
    for line in &after[1..] {
        assert!(
            line.contains(&format!("recorded passed on {}", &first[..7])),
            "{after:?}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(scratch.path("runs"))
            .expect("runs")
            .lines()
            .count(),
        2
    );

    let second = repo.commit(&first, "Change the source", &[("src/a", "2\n")]);
    repo.set_ref("refs/heads/main", &second);
    let changed = plan();
    let build = changed
        .iter()
        .find(|l| l.trim_start().starts_with("build"))
        .expect("build");
    assert!(
        build.contains(&format!("run      src changed since {}", &first[..7])),
        "{changed:?}"
    );
    let docs = changed
        .iter()
        .find(|l| l.trim_start().starts_with("docs"))
        .expect("docs");
    assert!(docs.contains("recorded passed on"), "{changed:?}");
    assert_eq!(
        std::fs::read_to_string(scratch.path("runs"))
            .expect("runs")
            .lines()
            .count(),
        2,
        "plan runs nothing"
    );
}

#[test]
fn issue_17_retry_runs_a_step_again_on_the_listed_failures_only() {
    let scratch = Scratch::new();
    // Each script fails its first run (leaving a marker), and passes the next.
    let flaky = |marker: &str, failure: &str| {
        let marker = scratch.shell_path(marker);
        format!(
            "if [ -e {marker} ]; then echo second run; else touch {marker}; echo first run; {failure}; fi"
        )
    };
    let file = format!(
        "steps:
  listed:
    run: {listed}
    retry:
      attempts: 3
      on: [7]
  unlisted:
    run: {unlisted}
    retry:
      attempts: 3
      on: [5, timeout]
  slow:
    run: {slow}
    timeout: 2s
    retry:
      attempts: 2
      on: [timeout]
",
        listed = flaky("listed", "exit 7"),
        unlisted = flaky("unlisted", "exit 7"),
        slow = flaky("slow", "sleep 60"),
    );
    let repo = Repo::new("app");
    let initial = repo.rev("main");
    let head = repo.commit(&initial, "Retries", &[(".datakit-ci.yml", &file)]);
    repo.set_ref("refs/heads/main", &head);
    let state = State::new();
    let ci = Ci::start(&[&repo], &[], &state, &[]);

    assert_eq!(
        description(&state, &ci, &head, "listed", "success"),
        "Passed on attempt 2 of 3"
    );
    let failure = description(&state, &ci, &head, "unlisted", "failure");
    assert!(failure.contains("exited with status 7"), "{failure}");
    assert_eq!(
        description(&state, &ci, &head, "slow", "success"),
        "Passed on attempt 2 of 2"
    );
    // Every attempt's output is in the step's one log, after a heading.
    let log_of = |job: &str| {
        let prefix = format!("pipeline-{job}-of-");
        let branch = state
            .branches()
            .into_iter()
            .find(|b| b.starts_with(&prefix))
            .expect("the step's cache branch");
        state.show(&branch, "log").expect("the step's log")
    };
    let listed = log_of("listed");
    let (first, second) = listed
        .split_once("=== Attempt 2 of 3 (after exit status 7) ===")
        .unwrap_or_else(|| panic!("no heading in {listed}"));
    assert!(
        first.contains("first run") && second.contains("second run"),
        "{listed}"
    );
    let unlisted = log_of("unlisted");
    assert!(
        unlisted.contains("first run") && !unlisted.contains("=== Attempt"),
        "{unlisted}"
    );
    let slow = log_of("slow");
    assert!(
        slow.contains("=== Attempt 2 of 2 (after a timeout) ===") && slow.contains("second run"),
        "{slow}"
    );
}

#[test]
fn issue_17_secrets_are_given_to_branch_steps_masked_and_never_to_pull_requests() {
    let state = State::new();
    let secrets = state.dir().join("secrets").join("pipeline");
    std::fs::create_dir_all(&secrets).expect("the secrets directory");
    std::fs::write(secrets.join("TOKEN"), "s3cr3t-v4lue-42\n").expect("the secret");
    // The value is printed whole, and split across two writes of the step's output.
    let file = "steps:
  uses:
    run: echo \"token=$TOKEN\"; printf 'split=%.7s' \"$TOKEN\"; sleep 1; printf '%s\\n' \"${TOKEN#???????}\"
    secrets: [TOKEN]
  missing:
    run: \"true\"
    secrets: [TOKEN, NOPE]
";
    let repo = Repo::new("app");
    let initial = repo.rev("main");
    let head = repo.commit(&initial, "Secrets", &[(".datakit-ci.yml", file)]);
    repo.set_ref("refs/heads/main", &head);
    let proposed = repo.commit(&head, "Proposed", &[("README", "changed\n")]);
    repo.set_ref("refs/pull/3/head", &proposed);
    let ci = Ci::start(&[&repo], &[], &state, &[]);

    assert_eq!(description(&state, &ci, &head, "uses", "success"), "Passed");
    let branch = state
        .branches()
        .into_iter()
        .find(|b| b.starts_with("pipeline-uses-of-"))
        .expect("the step's cache branch");
    let log = state.show(&branch, "log").expect("the step's log");
    assert!(
        log.contains("token=***\n") && log.contains("split=***\n"),
        "{log}"
    );
    assert!(!log.contains("s3cr3t") && !log.contains("v4lue"), "{log}");

    let missing = description(&state, &ci, &head, "missing", "failure");
    assert!(
        missing.starts_with("missing secret \"NOPE\": no file ") && !missing.contains("s3cr3t"),
        "{missing}"
    );

    // A pull request's steps never get secrets.
    let refused = description(&state, &ci, &proposed, "uses", "failure");
    assert_eq!(
        refused,
        "secrets are never given to pull requests, and this step needs \"TOKEN\": it runs on branches and tags only"
    );
    assert_eq!(
        state
            .branches()
            .iter()
            .filter(|b| b.starts_with("pipeline-uses-of-"))
            .count(),
        1,
        "the pull request's step did not run"
    );
}

#[test]
fn issue_17_a_manual_step_waits_for_a_builders_approval_in_the_web_ui() {
    use common::http_exchange;
    let scratch = Scratch::new();
    let runs = scratch.shell_path("runs");
    let repo = Repo::new("app");
    let file = format!(
        "steps:\n  build:\n    run: echo build >> {runs}\n  deploy:\n    run: echo deploy >> {runs}\n    needs: [build]\n    manual: true\n"
    );
    let head = repo.commit(&repo.rev("main"), "Pipeline", &[(".datakit-ci.yml", &file)]);
    repo.set_ref("refs/heads/main", &head);
    let state = State::new();
    let port = free_port();
    let listen = format!("http://127.0.0.1:{port}");
    let ci = Ci::start(
        &[&repo],
        &[],
        &state,
        &["--listen", &listen, "--can-build", "everyone"],
    );
    assert_eq!(
        description(&state, &ci, &head, "build", "success"),
        "Passed"
    );
    assert_eq!(
        description(&state, &ci, &head, "deploy", "pending"),
        "Waiting for approval by a Builder in the web UI"
    );
    let runs_of = |what: &str| {
        std::fs::read_to_string(scratch.path("runs"))
            .unwrap_or_default()
            .lines()
            .filter(|line| *line == what)
            .count()
    };
    assert_eq!(runs_of("deploy"), 0);

    // The page offers Approve; its form carries a CSRF token bound to a nonce cookie.
    let page = wait_until(
        "the page to offer Approve",
        || {
            http_exchange(
                port,
                "GET /local/app/ref/heads/main HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            )
            .filter(|response| response.contains("action=\"/approve/local/app/ref/heads/main\""))
        },
        || ci.report(),
    );
    let cookie = page
        .lines()
        .find_map(|line| {
            line.strip_prefix("set-cookie: ")
                .or_else(|| line.strip_prefix("Set-Cookie: "))
        })
        .and_then(|value| value.split(';').next())
        .expect("a CSRF nonce cookie")
        .to_owned();
    let token = page
        .split("name=\"CSRFToken\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token")
        .to_owned();
    let post = |body: &str, cookie: &str| {
        http_exchange(
            port,
            &format!(
                "POST /approve/local/app/ref/heads/main HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
        .expect("the server answers")
    };
    // Without the token, or for a job the target does not have, nothing is approved.
    let refused = post("job=deploy", &cookie);
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    let unknown = post(&format!("CSRFToken={token}&job=nope"), &cookie);
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
    assert!(unknown.contains("no such job"), "{unknown}");
    assert_eq!(runs_of("deploy"), 0);

    let approved = post(&format!("CSRFToken={token}&job=deploy"), &cookie);
    assert!(approved.starts_with("HTTP/1.1 303"), "{approved}");
    assert_eq!(
        description(&state, &ci, &head, "deploy", "success"),
        "Passed (approved by anonymous)"
    );
    assert_eq!(runs_of("deploy"), 1);
    // The approval is in the metadata, with who gave it, and in the target's history.
    assert_eq!(
        state.show(
            "github-metadata",
            &format!("local/app/commit/{head}/approval/deploy")
        ),
        Some("anonymous\n".to_owned())
    );
    let history = wait_until(
        "the history to record the approved run",
        || {
            http_exchange(
                port,
                "GET /api/v1/history/local/app/ref/heads/main HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            )
            .filter(|response| response.contains("Passed (approved by anonymous)"))
        },
        || ci.report(),
    );
    assert!(history.contains("Waiting for approval"), "{history}");
}
