//! End-to-end tests of issue 18, item 6 ("sharing state") through the real binary, real `git`
//! and real HTTP: `--publish-store` pushes the state store to a Git remote (a clone of it passes
//! `git fsck --strict`), a failing push shows on the dashboard until the remote is back, and a
//! second process with `--read-only-store` serves what the CI publishes, refusing writes.

mod common;

use std::path::Path;

use common::{Ci, Repo, Scratch, State, free_port, http_exchange, http_get, run_git, wait_until};

/// The dashboard's row for the publishing trouble, if it shows one.
fn publish_trouble(port: u16) -> Option<String> {
    let page = http_get(port, "/")?;
    let start = page.find("<th>publish store</th>")?;
    let end = page[start..]
        .find("</tr>")
        .map_or(page.len(), |end| start + end);
    Some(page[start..end].to_owned())
}

/// The branches of a bare repository, with their commits.
fn refs(repo: &Path) -> String {
    run_git(
        repo,
        &[
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            "refs/heads/",
        ],
    )
}

#[test]
fn issue_18_the_store_is_published_a_failed_push_shows_until_the_remote_returns() {
    let repo = Repo::new("published");
    let state = State::new();
    let scratch = Scratch::new();
    // The remote does not exist yet: every push fails until it does.
    let remote = scratch.path("remote.git");
    let port = free_port();
    let listen = format!("http://127.0.0.1:{port}");
    let mut ci = Ci::start(
        &[&repo],
        &[("build", "true")],
        &state,
        &[
            "--listen",
            &listen,
            "--publish-store",
            remote.to_str().expect("a UTF-8 path"),
        ],
    );
    let main = repo.rev("main");
    ci.wait_for_line(&format!("{}/heads/main build: success (Passed)", repo.id()));
    let trouble = wait_until(
        "the dashboard to show that publishing fails",
        || publish_trouble(port),
        || ci.report(),
    );
    assert!(
        trouble.contains("cannot push the store to") && trouble.contains("retrying in"),
        "{trouble}"
    );

    // The remote comes back: the next retry publishes, and the trouble goes.
    run_git(
        scratch.path("").as_path(),
        &["init", "--quiet", "--bare", "remote.git"],
    );
    wait_until(
        "the published metadata to have the status",
        || {
            let published = run_git(&remote, &["for-each-ref", "refs/heads/github-metadata"]);
            (!published.is_empty()).then_some(())
        },
        || ci.report(),
    );
    wait_until(
        "the trouble to be resolved",
        || {
            http_get(port, "/")
                .filter(|page| !page.contains("<th>publish store</th>"))
                .map(drop)
        },
        || format!("{:?}\n{}", publish_trouble(port), ci.report()),
    );
    let status_path = format!("{}/commit/{main}/status/ci/datakit/build/state", repo.id());
    assert_eq!(
        run_git(
            &remote,
            &["show", &format!("github-metadata:{status_path}")]
        ),
        "success"
    );

    // After a clean stop, the last flush is published: the remote's branches are the store's.
    assert!(ci.terminate().success(), "{}", ci.report());
    assert_eq!(refs(&remote), refs(&state.store()));
    assert!(
        state.branches().iter().any(|b| b.starts_with("status-")),
        "{:?}",
        state.branches()
    );
    // Read elsewhere with plain git: a clone of the published store is whole and valid.
    let clone = scratch.path("clone.git");
    run_git(
        scratch.path("").as_path(),
        &[
            "clone",
            "--quiet",
            "--mirror",
            remote.to_str().expect("a UTF-8 path"),
            "clone.git",
        ],
    );
    datakit_ci_testkit::assert_fsck_clean(&clone);
    assert_eq!(refs(&clone), refs(&state.store()));
    assert!(
        run_git(
            &clone,
            &[
                "log",
                "--format=%s",
                "status-local-published-ref-heads-main"
            ]
        )
        .contains("build -> "),
        "the history is readable from the clone"
    );
}

#[test]
fn issue_18_credentials_in_the_publish_url_are_never_shown() {
    let repo = Repo::new("secretive");
    let state = State::new();
    // Nothing listens there: every push fails, and says where it failed.
    let url = format!(
        "http://ci-bot:s3cr3t-t0ken@127.0.0.1:{}/state.git",
        free_port()
    );
    let port = free_port();
    let listen = format!("http://127.0.0.1:{port}");
    let ci = Ci::start(
        &[&repo],
        &[("build", "true")],
        &state,
        &["--listen", &listen, "--publish-store", &url],
    );
    let trouble = wait_until(
        "the dashboard to show that publishing fails",
        || publish_trouble(port),
        || ci.report(),
    );
    assert!(trouble.contains("http://***@127.0.0.1:"), "{trouble}");
    ci.wait_for_line(&format!("{}/heads/main build: success (Passed)", repo.id()));
    let everything = format!(
        "{}\n{}",
        ci.report(),
        http_get(port, "/").unwrap_or_default()
    );
    assert!(!everything.contains("s3cr3t"), "{everything}");
    assert!(!trouble.contains("s3cr3t"), "{trouble}");
}

#[test]
fn issue_18_a_read_only_web_ui_serves_the_published_store_and_refuses_writes() {
    let repo = Repo::new("mirrored");
    let state = State::new();
    let scratch = Scratch::new();
    run_git(
        scratch.path("").as_path(),
        &["init", "--quiet", "--bare", "remote.git"],
    );
    let remote = scratch.path("remote.git");
    let remote_url = remote.to_str().expect("a UTF-8 path");
    // The test fails on a commit that has a file FAIL.
    let ci = Ci::start(
        &[&repo],
        &[("build", "test ! -e FAIL")],
        &state,
        &["--publish-store", remote_url],
    );
    ci.wait_for_line(&format!("{}/heads/main build: success (Passed)", repo.id()));
    // The replica shows the repositories monitored when it starts: start it once published.
    let main = repo.rev("main");
    let status_path = format!(
        "github-metadata:{}/commit/{main}/status/ci/datakit/build/state",
        repo.id()
    );
    wait_until(
        "the status to be published",
        || {
            let output = common::git(&remote)
                .args(["show", &status_path])
                .output()
                .expect("git runs");
            output.status.success().then_some(())
        },
        || ci.report(),
    );

    let replica_state = State::new();
    let port = free_port();
    let listen = format!("http://127.0.0.1:{port}");
    let replica = Ci::spawn([
        "--read-only-store",
        remote_url,
        "--refresh",
        "200ms",
        "--state-dir",
        replica_state.dir().to_str().expect("a UTF-8 path"),
        "--listen",
        &listen,
    ]);
    let target = format!("/api/v1/targets/{}/ref/heads/main", repo.id());
    let shown = wait_until(
        "the read-only web UI to show the published status",
        || http_get(port, &target).filter(|body| body.contains(r#""state":"success""#)),
        || format!("{}\n--- CI:\n{}", replica.report(), ci.report()),
    );
    assert!(shown.contains(&format!(r#""head":"{main}""#)), "{shown}");
    assert!(
        shown.contains(r#""name":"build","state":"success""#),
        "{shown}"
    );

    // A new head fails on the CI: the read-only web UI shows it after a refresh, and prints it.
    let failing = repo.commit(&main, "fail", &[("FAIL", "yes\n")]);
    repo.set_ref("refs/heads/main", &failing);
    ci.wait_for("the failure on the CI", |line| {
        line.starts_with(&format!("{}/heads/main build: failure", repo.id()))
    });
    let shown = wait_until(
        "the read-only web UI to show the new failure",
        || {
            http_get(port, &target).filter(|body| {
                body.contains(&format!(r#""head":"{failing}""#))
                    && body.contains(r#""name":"build","state":"failure""#)
            })
        },
        || format!("{}\n--- CI:\n{}", replica.report(), ci.report()),
    );
    assert!(shown.contains("exited with status 1"), "{shown}");
    replica.wait_for("the failure's status line", |line| {
        line.starts_with(&format!("{}/heads/main build: failure", repo.id()))
    });
    // Its history and logs are readable there too.
    let history = http_get(
        port,
        &format!("/api/v1/history/{}/ref/heads/main", repo.id()),
    )
    .expect("the history");
    assert!(
        history.contains(r#""subject":"build -> "#) && history.contains(&failing),
        "{history}"
    );
    let page = http_get(port, &format!("/{}/ref/heads/main", repo.id())).expect("the page");
    let log = page
        .split("href=\"")
        .filter_map(|part| part.split('"').next())
        .find(|href| href.starts_with("/log/saved/"))
        .unwrap_or_else(|| panic!("a saved log link in {page}"))
        .replace("&amp;", "&");
    assert!(http_get(port, &log).is_some(), "{log}");

    // Writes are refused, with a message saying why; the replica writes nothing to its clone.
    for (path, body) in [
        ("/log/rebuild/shell-of-build-on-x", ""),
        ("/auth/login", "user=admin&password=secret"),
    ] {
        let response = http_exchange(
            port,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: \
                 application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: \
                 close\r\n\r\n{body}",
                body.len()
            ),
        )
        .expect("an answer");
        assert!(response.starts_with("HTTP/1.1 403"), "{path}: {response}");
        assert!(
            response.contains("This web UI is read-only") && response.contains("rebuilds"),
            "{path}: {response}"
        );
    }
    let clone = replica_state.dir().join("replica.git");
    wait_until(
        "the clone to have the published branches",
        || (refs(&clone) == refs(&remote)).then_some(()),
        || format!("{}\n{}", refs(&clone), refs(&remote)),
    );
    // The CI's statuses arrived; the read-only UI ran nothing (no clone of the repository).
    assert!(!replica_state.dir().join("repos").exists());
    assert!(!replica_state.dir().join("state.git").exists());
}

#[test]
fn issue_18_read_only_options_are_checked() {
    let state = State::new();
    let dir = state.dir().to_str().expect("a UTF-8 path");
    for (args, message) in [
        (
            &["--read-only-store", "/srv/state.git", "--state-dir", dir][..],
            "--listen <URL>",
        ),
        (
            &[
                "--read-only-store",
                "/srv/state.git",
                "--listen",
                "http://127.0.0.1:1",
                "--can-read",
                "user:alice",
                "--state-dir",
                dir,
            ],
            "--read-only-store: a read-only web UI has no logins, so --can-read must be everyone",
        ),
        (
            &[
                "--read-only-store",
                "/srv/state.git",
                "--listen",
                "http://127.0.0.1:1",
                "--test",
                "build=true",
                "--state-dir",
                dir,
            ],
            "--read-only-store: --test does not apply to a read-only web UI",
        ),
        (
            &[
                "--repo",
                "/x",
                "--publish-store",
                "https://x/a b",
                "--state-dir",
                dir,
            ],
            "--publish-store: the URL has spaces or control characters",
        ),
        (
            &["--repo", "/x", "--refresh", "1s", "--state-dir", dir],
            "--read-only-store <URL>",
        ),
    ] {
        let (status, _, stderr) = common::run_to_exit(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr:?}");
        assert!(
            stderr.iter().any(|line| line.contains(message)),
            "{args:?}: {stderr:?}"
        );
    }
}

#[test]
fn issue_18_a_read_only_web_ui_shows_a_failing_refresh_until_the_remote_returns() {
    let scratch = Scratch::new();
    let remote = scratch.path("remote.git");
    let state = State::new();
    let port = free_port();
    let listen = format!("http://127.0.0.1:{port}");
    let replica = Ci::spawn([
        "--read-only-store",
        remote.to_str().expect("a UTF-8 path"),
        "--refresh",
        "200ms",
        "--state-dir",
        state.dir().to_str().expect("a UTF-8 path"),
        "--listen",
        &listen,
    ]);
    let trouble = |page: &str| page.contains("<th>published store</th>");
    let page = wait_until(
        "the dashboard to show that refreshing fails",
        || http_get(port, "/").filter(|page| trouble(page)),
        || replica.report(),
    );
    assert!(
        page.contains("cannot fetch the published store from"),
        "{page}"
    );
    run_git(
        scratch.path("").as_path(),
        &["init", "--quiet", "--bare", "remote.git"],
    );
    wait_until(
        "the trouble to be resolved",
        || http_get(port, "/").filter(|page| !trouble(page)).map(drop),
        || replica.report(),
    );
}
