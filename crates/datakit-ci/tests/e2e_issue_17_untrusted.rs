//! Issue 17 item 3 end to end: the binary against a fake GitHub (`datakit_ci_testkit::github`)
//! whose `clone_url` is a local bare repository. A pull request from a fork waits, running
//! nothing, until a Builder approves its head over real HTTP (with the CSRF token); a new push
//! waits again; a trusted pull request runs at once; secrets never reach the fork's steps. The
//! `--test` jobs are held the same way.

mod common;

use std::path::PathBuf;

use common::{Ci, Repo, Scratch, State, free_port, http_exchange, run_git, wait_until};
use datakit_ci::forge_github::sign;
use datakit_ci_testkit::github::{FakeGithub, FakePr, FakeRepo, PrOrigin, fixture};

const SECRET: &str = "webhook secret";
const TOKEN_VALUE: &str = "s3cr3t-v4lue-42";

/// GitHub hosting `me/proj` (a bare mirror of `work`), with the trusted PR 1 and PR 2 from the
/// fork `alice/proj`, and the binary testing it.
struct Hosted {
    work: Repo,
    bare: PathBuf,
    _hosting: tempfile::TempDir,
    fake: FakeGithub,
    state: State,
    ci: Ci,
    port: u16,
    main: String,
    trusted: String,
    fork: String,
}

/// Starts the binary with `tests` (none: the pipeline file) on a repository whose `main` holds
/// `file` as `.datakit-ci.yml`.
fn hosted(file: &str, tests: &[(&str, &str)]) -> Hosted {
    let work = Repo::new("proj");
    let main = work.commit(&work.rev("main"), "Pipeline", &[(".datakit-ci.yml", file)]);
    work.set_ref("refs/heads/main", &main);
    let trusted = work.commit(&main, "Trusted change", &[("a.txt", "a\n")]);
    work.set_ref("refs/pull/1/head", &trusted);
    let fork = work.commit(&main, "Change from a fork", &[("b.txt", "b\n")]);
    work.set_ref("refs/pull/2/head", &fork);
    let (hosting, bare) = work.mirror("proj.git");
    let fake = FakeGithub::start();
    let pr = |number: u64, head: &str| {
        (
            number,
            FakePr {
                number,
                head: head.to_owned(),
                title: format!("PR {number}"),
                user: "alice".to_owned(),
                base: "main".to_owned(),
            },
        )
    };
    fake.set_repo(
        "me/proj",
        FakeRepo {
            clone_url: bare.display().to_string(),
            branches: [("main".to_owned(), main.clone())].into(),
            tags: Default::default(),
            prs: [pr(1, &trusted), pr(2, &fork)].into(),
        },
    );
    fake.set_pr_origin(
        "me/proj",
        2,
        PrOrigin {
            head_repo: Some("alice/proj".to_owned()),
            author_association: "CONTRIBUTOR".to_owned(),
        },
    );
    let state = State::new();
    let secrets = state.dir().join("secrets");
    std::fs::create_dir_all(secrets.join("pipeline")).expect("the secrets directory");
    std::fs::set_permissions(
        &secrets,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod the secrets directory");
    std::fs::write(
        secrets.join("pipeline").join("TOKEN"),
        format!("{TOKEN_VALUE}\n"),
    )
    .expect("the secret");
    let token_file = secrets.join("github-token");
    std::fs::write(&token_file, "ghp_e2e_token\n").expect("write the token");
    let secret_file = secrets.join("webhook-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).expect("write the secret");
    let port = free_port();
    let listen = format!("http://127.0.0.1:{port}");
    let api = fake.url();
    let ci = Ci::start(
        &[],
        tests,
        &state,
        &[
            "--github-repo",
            "me/proj",
            "--github-api-url",
            &api,
            "--github-token-file",
            &token_file.display().to_string(),
            "--webhook-secret-file",
            &secret_file.display().to_string(),
            "--listen",
            &listen,
            "--can-build",
            "everyone",
        ],
    );
    Hosted {
        work,
        bare,
        _hosting: hosting,
        fake,
        state,
        ci,
        port,
        main,
        trusted,
        fork,
    }
}

impl Hosted {
    /// The description of `job` on `commit` once it is `state` and satisfies `wanted`.
    fn description(
        &self,
        commit: &str,
        job: &str,
        state: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        wait_until(
            &format!("{job} on {commit} to be {state}"),
            || {
                self.state
                    .status("me/proj", commit, job)
                    .filter(|status| status.state == state && wanted(&status.description))
                    .map(|status| status.description)
            },
            || {
                format!(
                    "status now: {:?}\n{}",
                    self.state.status("me/proj", commit, job),
                    self.ci.report()
                )
            },
        )
    }

    /// PR 2's page once it offers the approval of `head`, with its CSRF cookie and token.
    fn approval_form(&self, head: &str) -> (String, String) {
        let page = wait_until(
            "the page to offer the approval",
            || {
                http_exchange(
                    self.port,
                    "GET /me/proj/pr/2 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                )
                .filter(|response| response.contains(&format!("Approve head {}", &head[..8])))
            },
            || self.ci.report(),
        );
        assert!(
            page.contains("Untrusted pull request: pull request from a fork (alice/proj)"),
            "{page}"
        );
        assert!(page.contains("action=\"/approve/me/proj/pr/2\""), "{page}");
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
        (cookie, token)
    }

    /// `POST /approve/me/proj/pr/2` with `body`; the whole answer.
    fn post_approval(&self, body: &str, cookie: &str) -> String {
        http_exchange(
            self.port,
            &format!(
                "POST /approve/me/proj/pr/2 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
        .expect("the server answers")
    }

    /// Approves PR 2's current head `head` as a Builder would, through its page's form.
    fn approve(&self, head: &str) {
        let (cookie, token) = self.approval_form(head);
        let refused = self.post_approval("job=.pull-request", &cookie);
        assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
        let approved = self.post_approval(&format!("CSRFToken={token}&job=.pull-request"), &cookie);
        assert!(approved.starts_with("HTTP/1.1 303"), "{approved}");
    }

    /// Pushes a new commit to the fork's branch and tells the CI by a signed webhook; returns
    /// it.
    fn push_to_fork(&self) -> String {
        let pushed = self
            .work
            .commit(&self.fork, "More from the fork", &[("c.txt", "c\n")]);
        self.work.set_ref("refs/pull/2/head", &pushed);
        run_git(
            &self.bare,
            &[
                "fetch",
                "--quiet",
                &self.work.path().display().to_string(),
                "+refs/pull/2/head:refs/pull/2/head",
            ],
        );
        self.fake.edit_repo("me/proj", |repo| {
            if let Some(pr) = repo.prs.get_mut(&2) {
                pr.head = pushed.clone();
            }
        });
        let mut payload = fixture("webhooks/pull_request.synchronize.1.json");
        payload["repository"]["full_name"] = "me/proj".into();
        payload["pull_request"]["number"] = 2.into();
        payload["pull_request"]["head"]["sha"] = pushed.clone().into();
        payload["pull_request"]["head"]["repo"]["full_name"] = "alice/proj".into();
        payload["pull_request"]["base"]["ref"] = "main".into();
        payload["pull_request"]["base"]["repo"]["full_name"] = "me/proj".into();
        payload["pull_request"]["author_association"] = "CONTRIBUTOR".into();
        payload["pull_request"]["updated_at"] = "2030-01-01T00:00:00Z".into();
        let body = serde_json::to_vec(&payload).expect("JSON");
        let signature = sign(SECRET.as_bytes(), &body);
        let mut request = format!(
            "POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\nX-GitHub-Event: pull_request\r\n\
             X-GitHub-Delivery: push-1\r\nX-Hub-Signature-256: {signature}\r\n\r\n",
            body.len()
        );
        request.push_str(std::str::from_utf8(&body).expect("JSON is UTF-8"));
        let answer = http_exchange(self.port, &request).expect("the server answers");
        assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
        pushed
    }
}

/// The lines of `name` in `scratch` (the commits a step ran on), sorted: jobs of different
/// targets run in any order.
fn ran_on(scratch: &Scratch, name: &str) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(scratch.path(name))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// `commits`, sorted.
fn sorted(commits: &[&String]) -> Vec<String> {
    let mut commits: Vec<String> = commits.iter().map(|c| c.to_string()).collect();
    commits.sort();
    commits
}

#[test]
fn issue_17_a_fork_pull_request_runs_only_once_a_builder_approves_its_head() {
    let scratch = Scratch::new();
    let runs = scratch.shell_path("runs");
    let deploys = scratch.shell_path("deploys");
    let file = format!(
        "steps:\n  unit:\n    run: echo \"unit-$((40+2))\"; git rev-parse HEAD >> {runs}\n  deploy:\n    run: echo \"deploy-$((1+1))\"; git rev-parse HEAD >> {deploys}; echo \"$TOKEN\" >> {deploys}\n    secrets: [TOKEN]\n"
    );
    let ci = hosted(&file, &[]);
    let (main, trusted, fork) = (&ci.main, &ci.trusted, &ci.fork);

    // The branch and the trusted PR run at once; the trusted PR's step gets no secret either.
    assert_eq!(ci.description(main, "unit", "success", |_| true), "Passed");
    assert_eq!(
        ci.description(main, "deploy", "success", |_| true),
        "Passed"
    );
    assert_eq!(
        ci.description(trusted, "unit", "success", |_| true),
        "Passed"
    );
    let refused = ci.description(trusted, "deploy", "failure", |_| true);
    assert!(
        refused.starts_with("secrets are never given to pull requests"),
        "{refused}"
    );

    // Every job of the fork's PR waits, saying why, and none ran.
    let waiting = |head: &str| {
        format!(
            "Waiting for approval: pull request from a fork (alice/proj); its code runs once a Builder approves its head {} in the web UI",
            &head[..7]
        )
    };
    for job in ["unit", "deploy"] {
        assert_eq!(
            ci.description(fork, job, "pending", |d| d
                .starts_with("Waiting for approval")),
            waiting(fork)
        );
    }
    assert_eq!(ran_on(&scratch, "runs"), sorted(&[main, trusted]));
    assert_eq!(
        ci.state.show("github-metadata", "me/proj/pr/2/trust"),
        Some("fork: pull request from a fork (alice/proj)\n".to_owned())
    );

    // A Builder approves the head over HTTP (without the CSRF token: refused): it runs, and its
    // status names the approver; the step needing a secret still gets none.
    ci.approve(fork);
    assert_eq!(
        ci.description(fork, "unit", "success", |_| true),
        "Passed (pull request approved by anonymous)"
    );
    let refused = ci.description(fork, "deploy", "failure", |_| true);
    assert!(
        refused.starts_with("secrets are never given to pull requests"),
        "{refused}"
    );
    assert_eq!(ran_on(&scratch, "runs"), sorted(&[main, trusted, fork]));
    assert_eq!(
        ran_on(&scratch, "deploys"),
        sorted(&[main, &TOKEN_VALUE.to_owned()]),
        "only the branch's step got the secret"
    );
    assert_eq!(
        ci.state.show(
            "github-metadata",
            &format!("me/proj/commit/{fork}/approval/.pull-request")
        ),
        Some("anonymous\n".to_owned())
    );

    // A new push to the fork waits again, and runs once approved.
    let pushed = ci.push_to_fork();
    assert_eq!(
        ci.description(&pushed, "unit", "pending", |d| d
            .starts_with("Waiting for approval")),
        waiting(&pushed)
    );
    assert_eq!(
        ran_on(&scratch, "runs").len(),
        3,
        "the new head did not run"
    );
    ci.approve(&pushed);
    assert_eq!(
        ci.description(&pushed, "unit", "success", |_| true),
        "Passed (pull request approved by anonymous)"
    );
    assert!(ran_on(&scratch, "runs").contains(&pushed));
    let logs = ci.ci.report();
    assert!(!logs.contains(TOKEN_VALUE), "the secret is never printed");
}

#[test]
fn issue_17_test_jobs_of_a_fork_pull_request_wait_for_approval_too() {
    let scratch = Scratch::new();
    let command = format!(
        "echo \"unit-$((40+2))\"; git rev-parse HEAD >> {}",
        scratch.shell_path("runs")
    );
    let ci = hosted("steps: {}\n", &[("unit", &command)]);
    let (main, trusted, fork) = (&ci.main, &ci.trusted, &ci.fork);
    assert_eq!(ci.description(main, "unit", "success", |_| true), "Passed");
    assert_eq!(
        ci.description(trusted, "unit", "success", |_| true),
        "Passed"
    );
    let waiting = ci.description(fork, "unit", "pending", |d| {
        d.starts_with("Waiting for approval")
    });
    assert!(
        waiting.starts_with("Waiting for approval: pull request from a fork (alice/proj)"),
        "{waiting}"
    );
    assert!(
        !ran_on(&scratch, "runs").contains(fork),
        "the fork's job did not run"
    );
    ci.approve(fork);
    assert_eq!(
        ci.description(fork, "unit", "success", |_| true),
        "Passed (pull request approved by anonymous)"
    );
    assert!(ran_on(&scratch, "runs").contains(fork));
}
