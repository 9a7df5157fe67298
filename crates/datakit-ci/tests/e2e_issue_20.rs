//! End-to-end tests of issue 20 ("operating it for real") through the real binary on real Git
//! repositories: `--jobs` bounds how many tests run at once and queued jobs show their place
//! (on standard output and in the JSON API), and `--timeout` kills a test's whole process tree.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;

use common::{Ci, Repo, Scratch, State, wait_until};

/// `--jobs 2` with 10 branches: never more than 2 tests at once; the others are queued, with
/// their place, in the status lines and the API.
#[test]
fn issue_20_jobs_bounds_the_tests_running_at_once_and_shows_the_queue() {
    let repo = Repo::new("queued");
    let main = repo.rev("main");
    for index in 0..10 {
        let commit = repo.commit(
            &main,
            &format!("Commit {index}"),
            &[("n", &format!("{index}\n"))],
        );
        repo.set_ref(&format!("refs/heads/b{index}"), &commit);
    }
    let scratch = Scratch::new();
    std::fs::create_dir(scratch.path("running")).expect("create the running directory");
    // Each test notes how many tests run beside it, holding its place for a while.
    let test = format!(
        "mkdir {running}/$$ && ls {running} | wc -l >> {seen} && sleep 1 && rmdir {running}/$$",
        running = scratch.shell_path("running"),
        seen = scratch.shell_path("seen"),
    );
    let port = free_port();
    let listen = format!("http://127.0.0.1:{port}");
    let state = State::new();
    let ci = Ci::start(
        &[&repo],
        &[("build", &test)],
        &state,
        &["--jobs", "2", "--listen", &listen],
    );
    // While the queue is long, the API shows a queued job with its place, and the dashboard
    // lists the queue.
    let queued = wait_until(
        "the API to show a queued job",
        || {
            (0..10).find_map(|index| {
                let path = format!("/api/v1/targets/local/queued/ref/heads/b{index}");
                let detail = http_get(port, &path)?;
                detail
                    .contains(r#""queue":{"pool":"jobs","place":"#)
                    .then_some(detail)
            })
        },
        || ci.report(),
    );
    assert!(
        queued.contains(r#""description":"Waiting for resource in \"jobs\"""#),
        "{queued}"
    );
    let dashboard = wait_until(
        "the dashboard to list the queue",
        || http_get(port, "/").filter(|page| page.contains(r#"<ol class="queue">"#)),
        || ci.report(),
    );
    assert!(dashboard.contains("local/queued/heads/b"), "{dashboard}");
    for index in 0..10 {
        ci.wait_for_line(&format!(
            "local/queued/heads/b{index} build: success (Passed)"
        ));
    }
    ci.wait_for("a queued status line", |line| {
        line.ends_with(r#"build: pending (Waiting for resource in "jobs")"#)
    });
    let seen = std::fs::read_to_string(scratch.path("seen")).expect("read the counts");
    let counts: Vec<usize> = seen
        .lines()
        .map(|line| line.trim().parse().expect("a count"))
        .collect();
    assert!(counts.len() >= 10, "{counts:?}");
    assert!(
        counts.iter().all(|&n| n <= 2),
        "more than 2 at once: {counts:?}"
    );
}

/// `--timeout`: 20 tests (and main's) that each start a process tree (a child in a session of its own, a
/// grandchild in the background) time out with `timed out after 1s`, and none of their
/// processes is left.
#[test]
fn issue_20_a_timeout_kills_the_whole_process_tree() {
    let repo = Repo::new("slow");
    let main = repo.rev("main");
    for index in 0..20 {
        let commit = repo.commit(
            &main,
            &format!("Commit {index}"),
            &[("n", &format!("{index}\n"))],
        );
        repo.set_ref(&format!("refs/heads/s{index}"), &commit);
    }
    let scratch = Scratch::new();
    let pids = scratch.shell_path("pids");
    let test = format!(
        "setsid sh -c 'echo $$ >> {pids}; sleep 600' & \
         (sleep 600 & echo $! >> {pids}; wait) & \
         echo $$ >> {pids}; sleep 600"
    );
    let state = State::new();
    let ci = Ci::start(
        &[&repo],
        &[("build", &test)],
        &state,
        &["--timeout", "1s", "--jobs", "21"],
    );
    for index in 0..20 {
        ci.wait_for_line(&format!(
            "local/slow/heads/s{index} build: failure (timed out after 1s)"
        ));
    }
    let pids: Vec<u32> = std::fs::read_to_string(scratch.path("pids"))
        .expect("read the pids")
        .lines()
        .map(|line| line.trim().parse().expect("a pid"))
        .collect();
    assert_eq!(
        pids.len(),
        3 * 21,
        "three processes per test, on main and 20 branches: {pids:?}"
    );
    let alive = || -> Vec<u32> {
        pids.iter()
            .copied()
            .filter(|pid| is_running(*pid))
            .collect()
    };
    wait_until(
        "every process of the timed-out tests to be gone",
        || alive().is_empty().then_some(()),
        || format!("still running: {:?}\n{}", alive(), ci.report()),
    );
}

/// With a low open-files limit (256, so at most 128 connections), 200 clients that each send half a request header and hold
/// their connection neither stop the CI from building (it needs descriptors for `git`, its store
/// and the builds) nor keep the web UI from answering once their header timeout closes them.
#[test]
fn issue_20_held_connections_leave_the_ci_building_under_a_low_descriptor_limit() {
    let repo = Repo::new("held");
    let main = repo.rev("main");
    let port = free_port();
    let listen = format!("http://127.0.0.1:{port}");
    let state = State::new();
    let args = [
        "--nofile=256:256".to_owned(),
        common::binary().to_owned(),
        "--repo".to_owned(),
        repo.path().display().to_string(),
        "--test".to_owned(),
        "build=true".to_owned(),
        "--state-dir".to_owned(),
        state.dir().display().to_string(),
        "--listen".to_owned(),
        listen,
    ];
    let ci = Ci::spawn_program("prlimit", args);
    ci.wait_for_line("local/held/heads/main build: success (Passed)");
    wait_until(
        "the web UI to answer",
        || http_get(port, "/api/v1/projects"),
        || ci.report(),
    );

    let mut held = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .expect("send half a header");
        held.push(stream);
    }
    // Builds go on: a new branch is built while the clients hold their connections.
    let commit = repo.commit(&main, "More", &[("more", "1\n")]);
    repo.set_ref("refs/heads/more", &commit);
    ci.wait_for_line("local/held/heads/more build: success (Passed)");
    // The server closed the held connections after its header timeout, and answers again.
    wait_until(
        "the web UI to answer again",
        || http_get(port, "/api/v1/projects"),
        || ci.report(),
    );
    // One deadline for all, so that a server that never closes them fails in a minute.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let closed = held
        .iter()
        .filter(|stream| {
            let mut reader: &TcpStream = stream;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            reader
                .set_read_timeout(Some(left.max(std::time::Duration::from_millis(10))))
                .is_ok()
                && match reader.read(&mut [0; 64]) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
                }
        })
        .count();
    assert_eq!(closed, 200, "connections still open\n{}", ci.report());
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("a bound address").port()
}

/// The body of `GET path` on 127.0.0.1:`port`, if the server answers `200`.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// Whether process `pid` exists and is not a zombie.
fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}
