//! Issue 15 end to end: the `datakit-ci` binary against a fake GitHub
//! (`datakit_ci_testkit::github`) whose `clone_url` is a local bare repository. The PRs and
//! branches the API lists are tested and their statuses POSTed back; a signed push webhook adds
//! a branch; unsigned and replayed deliveries change nothing.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};

use common::{Ci, Repo, Scratch, State, run_git, wait_until};
use datakit_ci::forge_github::sign;
use datakit_ci_testkit::github::{Failure, FakeGithub, FakePr, FakeRepo, PostedStatus, fixture};

const SECRET: &str = "webhook secret";
/// A port nothing listens on now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("a bound address").port()
}

/// The body of `GET path`, whatever the status.
fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the web UI");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the answer");
    response
}

/// POSTs a webhook delivery to the binary; returns the answer's status.
fn deliver(port: u16, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the web UI");
    let mut request = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send the head");
    stream.write_all(body).expect("send the body");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the answer");
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {response:?}"))
}

fn status(commit: &str, state: &str, description: &str) -> PostedStatus {
    PostedStatus {
        repo: "me/proj".to_owned(),
        sha: commit.to_owned(),
        context: "ci/datakit/unit".to_owned(),
        state: state.to_owned(),
        description: description.to_owned(),
        target_url: Some(format!(
            "https://ci.example.test/me/proj/commit/{commit}?test=unit"
        )),
    }
}

#[test]
fn the_binary_tests_what_github_lists_and_follows_signed_webhooks() {
    // The repository GitHub "hosts": a bare mirror of a work tree.
    let work = Repo::new("proj");
    let main = work.rev("main");
    let feature = work.commit(&main, "Feature", &[("feature", "yes\n")]);
    work.set_ref("refs/heads/feature", &feature);
    let broken = work.commit(&main, "Break it", &[("fail", "yes\n")]);
    work.set_ref("refs/pull/1/head", &broken);
    let (_hosting, bare) = work.mirror("proj.git");

    let fake = FakeGithub::start();
    fake.set_repo(
        "me/proj",
        FakeRepo {
            clone_url: bare.display().to_string(),
            branches: [
                ("main".to_owned(), main.clone()),
                ("feature".to_owned(), feature.clone()),
            ]
            .into(),
            tags: Default::default(),
            prs: [(
                1,
                FakePr {
                    number: 1,
                    head: broken.clone(),
                    title: "Break it".to_owned(),
                    user: "octocat".to_owned(),
                    base: "main".to_owned(),
                },
            )]
            .into(),
        },
    );
    let secrets = tempfile::tempdir().expect("a temporary directory");
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, "ghp_e2e_token\n").expect("write the token");
    let secret_file = secrets.path().join("webhook-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).expect("write the secret");

    let state = State::new();
    // An OAuth App for "Log in with GitHub", in the secrets directory.
    let secrets_dir = state.dir().join("secrets");
    std::fs::create_dir_all(&secrets_dir).expect("create the secrets directory");
    std::fs::set_permissions(
        &secrets_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod the secrets directory");
    std::fs::write(secrets_dir.join("github-oauth-client-id"), "the-client\n").expect("write");
    std::fs::write(secrets_dir.join("github-oauth-client-secret"), "shh\n").expect("write");
    let scratch = Scratch::new();
    let command = format!("echo run >> {}; test ! -e fail", scratch.shell_path("runs"));
    let port = free_port();
    let listen = format!("http://127.0.0.1:{port}");
    let api = fake.url();
    let ci = Ci::start(
        &[],
        &[("unit", &command)],
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
            "--web-ui",
            "https://ci.example.test/",
        ],
    );
    ci.wait_for_line("me/proj/heads/main unit: success (Passed)");
    ci.wait_for_line("me/proj/heads/feature unit: success (Passed)");
    let failed = ci.wait_for("the PR's failure", |line| {
        line.starts_with("me/proj/prs/1 unit: failure (")
    });
    let failing = failed
        .strip_prefix("me/proj/prs/1 unit: failure (")
        .and_then(|rest| rest.strip_suffix(')'))
        .expect("a description")
        .to_owned();
    assert!(failing.starts_with("command \"sh\" \"-c\""), "{failing}");
    let wanted = [
        status(&main, "success", "Passed"),
        status(&feature, "success", "Passed"),
        status(&broken, "failure", &failing),
    ];
    wait_until(
        "the final statuses to be POSTed",
        || {
            wanted
                .iter()
                .all(|s| fake.statuses().contains(s))
                .then_some(())
        },
        || format!("posted: {:#?}\n{}", fake.statuses(), ci.report()),
    );
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer ghp_e2e_token")),
        "every request carries the token"
    );
    assert!(
        ci.stderr()
            .iter()
            .all(|line| !line.contains("ghp_e2e_token")),
        "the token is never logged"
    );

    // The dashboard shows the connection's health.
    let dashboard = http_get(port, "/");
    assert!(
        dashboard.contains("GitHub: last webhook never · last sync ")
            && dashboard.contains(" ago · rate limit left 4999 · statuses waiting "),
        "{dashboard}"
    );

    // The PR's page names its author and links to it on GitHub.
    let pr_page = http_get(port, "/me/proj/pr/1");
    assert!(pr_page.contains("PR 1 (Break it)"), "{pr_page}");
    assert!(
        pr_page.contains(r#"By <span class="author">octocat</span>"#),
        "{pr_page}"
    );
    assert!(
        pr_page.contains(&format!(
            r#"<a class="forge-link" href="{api}/me/proj/pull/1">View on GitHub</a>"#
        )),
        "{pr_page}"
    );

    // "Log in with GitHub" leads to the fake's authorize page.
    let login = http_get(port, "/auth/github");
    assert!(login.starts_with("HTTP/1.1 303"), "{login}");
    assert!(
        login.contains(&format!(
            "location: {api}/login/oauth/authorize?client_id=the-client&"
        )),
        "{login}"
    );

    // A push GitHub announces by webhook: a new branch.
    let hotfix = work.commit(&main, "Hotfix", &[("hotfix", "yes\n")]);
    work.set_ref("refs/heads/hotfix", &hotfix);
    run_git(
        &bare,
        &[
            "fetch",
            "--quiet",
            &work.path().display().to_string(),
            "refs/heads/hotfix:refs/heads/hotfix",
        ],
    );
    let mut push = fixture("webhooks/push.branch.1.json");
    push["ref"] = "refs/heads/hotfix".into();
    push["after"] = hotfix.clone().into();
    push["head_commit"]["id"] = hotfix.clone().into();
    push["repository"]["full_name"] = "me/proj".into();
    let body = serde_json::to_vec(&push).expect("JSON");
    let signature = sign(SECRET.as_bytes(), &body);
    let wrong = sign(b"guess", &body);
    let headers = |signature: &'static str, delivery: &'static str| {
        vec![
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", signature),
        ]
    };
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    assert_eq!(
        deliver(
            port,
            &[("X-GitHub-Event", "push"), ("X-GitHub-Delivery", "u1")],
            &body
        ),
        401,
        "unsigned"
    );
    assert_eq!(
        deliver(port, &headers(leak(wrong), "u2"), &body),
        401,
        "wrongly signed"
    );
    assert_eq!(
        deliver(
            port,
            &headers(leak(signature.clone()), "u3"),
            &body[..body.len() / 2]
        ),
        401,
        "truncated"
    );
    assert_eq!(
        deliver(port, &headers(leak(signature.clone()), "d1"), &body),
        202
    );
    assert_eq!(
        deliver(port, &headers(leak(signature), "d1"), &body),
        200,
        "replayed"
    );
    ci.wait_for_line("me/proj/heads/hotfix unit: success (Passed)");
    let wanted = status(&hotfix, "success", "Passed");
    wait_until(
        "the hotfix's status to be POSTed",
        || fake.statuses().contains(&wanted).then_some(()),
        || format!("posted: {:#?}\n{}", fake.statuses(), ci.report()),
    );
    let final_statuses = fake
        .statuses()
        .into_iter()
        .filter(|s| s.state != "pending")
        .count();
    assert_eq!(
        final_statuses,
        4,
        "one final status per target: {:#?}",
        fake.statuses()
    );

    // GitHub's "Re-run" button on main's check run: the job runs again.
    assert_eq!(scratch.count_lines("runs"), 4, "one run per target");
    let mut rerun = fixture("webhooks/check_run.rerequested.1.json");
    rerun["repository"]["full_name"] = "me/proj".into();
    rerun["check_run"]["name"] = "ci/datakit/unit".into();
    rerun["check_run"]["head_sha"] = main.clone().into();
    let body = serde_json::to_vec(&rerun).expect("JSON");
    let signature = leak(sign(SECRET.as_bytes(), &body));
    let headers = [
        ("X-GitHub-Event", "check_run"),
        ("X-GitHub-Delivery", "r1"),
        ("X-Hub-Signature-256", signature),
    ];
    assert_eq!(deliver(port, &headers, &body), 202);
    wait_until(
        "main's job to run again",
        || (scratch.count_lines("runs") == 5).then_some(()),
        || ci.report(),
    );
}

#[test]
fn statuses_github_never_acknowledged_are_sent_after_a_kill_9() {
    let work = Repo::new("proj");
    let main = work.rev("main");
    let fake = FakeGithub::start();
    fake.set_repo(
        "me/proj",
        FakeRepo {
            clone_url: work.path().display().to_string(),
            branches: [("main".to_owned(), main.clone())].into(),
            ..FakeRepo::default()
        },
    );
    // GitHub is down: every status POST fails.
    fake.fail_next_statuses(&[Failure::Status(503); 1000]);
    let secrets = tempfile::tempdir().expect("a temporary directory");
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, "ghp_e2e_token\n").expect("write the token");
    let state = State::new();
    let api = fake.url();
    let token = token_file.display().to_string();
    let args = [
        "--github-repo",
        "me/proj",
        "--github-api-url",
        &api,
        "--github-token-file",
        &token,
        "--web-ui",
        "https://ci.example.test/",
    ];
    let mut ci = Ci::start(&[], &[("unit", "true")], &state, &args);
    ci.wait_for_line("me/proj/heads/main unit: success (Passed)");
    wait_until(
        "a status POST to fail",
        || {
            fake.requests()
                .iter()
                .any(|r| r.method == "POST" && r.status == 503)
                .then_some(())
        },
        || ci.report(),
    );
    ci.kill();
    assert_eq!(fake.statuses(), [], "nothing was acknowledged");

    // GitHub is back; the CI restarts on the same state.
    fake.clear_failures();
    let ci = Ci::start(&[], &[("unit", "true")], &state, &args);
    let wanted = status(&main, "success", "Passed");
    wait_until(
        "the status to arrive",
        || fake.statuses().contains(&wanted).then_some(()),
        || format!("posted: {:#?}\n{}", fake.statuses(), ci.report()),
    );
    assert_eq!(fake.statuses(), [wanted], "only the latest state, once");
    let repo_lookups = fake
        .requests()
        .iter()
        .filter(|r| r.path == "/repos/me/proj")
        .count();
    assert_eq!(
        repo_lookups, 1,
        "the restart reused its clone without asking for clone_url"
    );
}

#[test]
fn a_private_repository_is_cloned_and_fetched_over_https_with_the_token() {
    let work = Repo::new("proj");
    let main = work.rev("main");
    let proposed = work.commit(&main, "Propose", &[("feature", "yes\n")]);
    work.set_ref("refs/pull/1/head", &proposed);
    let (hosting, _) = work.mirror("proj.git");
    let fake = FakeGithub::start();
    fake.serve_git(hosting.path().to_owned(), "ghp_e2e_token");
    fake.set_repo(
        "me/proj",
        FakeRepo {
            clone_url: format!("{}/git/proj.git", fake.url()),
            branches: [("main".to_owned(), main.clone())].into(),
            prs: [(
                1,
                FakePr {
                    number: 1,
                    head: proposed.clone(),
                    title: "Propose".to_owned(),
                    user: "octocat".to_owned(),
                    base: "main".to_owned(),
                },
            )]
            .into(),
            ..FakeRepo::default()
        },
    );
    let secrets = tempfile::tempdir().expect("a temporary directory");
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, "ghp_e2e_token\n").expect("write the token");
    let state = State::new();
    let api = fake.url();
    let token = token_file.display().to_string();
    let ci = Ci::start(
        &[],
        &[("unit", "test -e README")],
        &state,
        &[
            "--github-repo",
            "me/proj",
            "--github-api-url",
            &api,
            "--github-token-file",
            &token,
        ],
    );
    ci.wait_for_line("me/proj/heads/main unit: success (Passed)");
    ci.wait_for_line("me/proj/prs/1 unit: success (Passed)");
    let git_requests: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/git/"))
        .collect();
    assert!(
        git_requests
            .iter()
            .any(|r| r.method == "POST" && r.path.ends_with("git-upload-pack")),
        "objects came over https: {git_requests:?}"
    );
    assert!(
        git_requests.iter().all(|r| r.status == 200),
        "every git request was authenticated: {git_requests:?}"
    );
    assert!(
        ci.stderr()
            .iter()
            .all(|line| !line.contains("ghp_e2e_token") && !line.contains("eC1hY2Nlc3MtdG9rZW46")),
        "the credentials are never logged"
    );
}

/// An RSA key made by `openssl` (PKCS#1, as GitHub hands out App keys), in `dir`.
fn app_key_file(dir: &std::path::Path) -> std::path::PathBuf {
    let key = dir.join("app.pem");
    let status = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("2048")
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl genrsa");
    key
}

#[test]
fn as_an_app_a_failed_jobs_check_run_shows_the_end_of_its_log() {
    let work = Repo::new("proj");
    let main = work.rev("main");
    let (_hosting, bare) = work.mirror("proj.git");
    let fake = FakeGithub::start();
    fake.set_repo(
        "me/proj",
        FakeRepo {
            clone_url: bare.display().to_string(),
            branches: [("main".to_owned(), main.clone())].into(),
            ..FakeRepo::default()
        },
    );
    let secrets = tempfile::tempdir().expect("a temporary directory");
    let key = app_key_file(secrets.path());
    let state = State::new();
    let api = fake.url();
    let command = r"for i in $(seq 1 40); do printf '\033[31mline %s\033[0m\n' $i; done; exit 3";
    let ci = Ci::start(
        &[],
        &[("unit", command)],
        &state,
        &[
            "--github-repo",
            "me/proj",
            "--github-api-url",
            &api,
            "--github-app-id",
            "7",
            "--github-app-key",
            &key.display().to_string(),
            "--web-ui",
            "https://ci.example.test/",
        ],
    );
    ci.wait_for("main's failure", |line| {
        line.starts_with("me/proj/heads/main unit: failure (")
    });
    let summary = wait_until(
        "the completed check run",
        || {
            fake.check_runs()
                .iter()
                .rev()
                .find(|call| call.body["conclusion"] == "failure")
                .and_then(|call| call.body["output"]["summary"].as_str().map(str::to_owned))
        },
        || format!("check runs: {:#?}\n{}", fake.check_runs(), ci.report()),
    );
    assert!(summary.contains("\nline 40\n"), "{summary}");
    assert!(summary.contains("\n```\n"), "in a code block: {summary}");
    assert!(!summary.contains('\u{1b}'), "escapes removed: {summary}");
    assert!(
        !summary.contains("\nline 1\n"),
        "only the last lines: {summary}"
    );
    assert!(
        summary.ends_with(&format!(
            "[Logs and history](https://ci.example.test/me/proj/commit/{main}?test=unit)"
        )),
        "{summary}"
    );
}

#[test]
fn a_check_run_sent_after_a_restart_still_shows_the_log() {
    let work = Repo::new("proj");
    let main = work.rev("main");
    let fake = FakeGithub::start();
    fake.set_repo(
        "me/proj",
        FakeRepo {
            clone_url: work.path().display().to_string(),
            branches: [("main".to_owned(), main.clone())].into(),
            ..FakeRepo::default()
        },
    );
    // GitHub is down for statuses: nothing of the job is told before the kill.
    fake.fail_next_statuses(&[Failure::Status(503); 1000]);
    let secrets = tempfile::tempdir().expect("a temporary directory");
    let key = app_key_file(secrets.path()).display().to_string();
    let state = State::new();
    let api = fake.url();
    let args = [
        "--github-repo",
        "me/proj",
        "--github-api-url",
        &api,
        "--github-app-id",
        "7",
        "--github-app-key",
        &key,
    ];
    let command = "echo the reason it failed; exit 1";
    let mut ci = Ci::start(&[], &[("unit", command)], &state, &args);
    ci.wait_for("main's failure", |line| {
        line.starts_with("me/proj/heads/main unit: failure (")
    });
    wait_until(
        "a status POST to fail",
        || {
            fake.requests()
                .iter()
                .any(|r| r.method == "POST" && r.status == 503)
                .then_some(())
        },
        || ci.report(),
    );
    // The build is in the commit index: the restarted CI can find its log there before its
    // engine has evaluated the branch again.
    wait_until(
        "the commit index to list main",
        || state.list("commit-index", &format!("me/proj/commit/{main}/")),
        || ci.report(),
    );
    ci.kill();
    assert_eq!(fake.check_runs().len(), 0, "no check run before the kill");

    fake.clear_failures();
    let ci = Ci::start(&[], &[("unit", command)], &state, &args);
    let summary = wait_until(
        "the check run",
        || {
            fake.check_runs()
                .iter()
                .find(|call| call.body["conclusion"] == "failure")
                .and_then(|call| call.body["output"]["summary"].as_str().map(str::to_owned))
        },
        || format!("check runs: {:#?}\n{}", fake.check_runs(), ci.report()),
    );
    assert!(
        summary.contains("\nthe reason it failed\n"),
        "the log survives the restart: {summary}"
    );
}
