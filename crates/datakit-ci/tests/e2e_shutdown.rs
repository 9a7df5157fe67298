//! End-to-end tests of stopping the `datakit-ci` binary: SIGTERM during a build stops it cleanly
//! and kills the build; after a SIGKILL, a restart on the same state re-runs the interrupted step
//! and keeps the finished ones.

mod common;

use std::path::Path;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use common::{Ci, Repo, Scratch, State, wait_until};

/// Kills the process group of each PID on drop, so a failing test leaves no build behind.
struct Reaper {
    groups: Vec<Pid>,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for group in &self.groups {
            // The group is usually gone already; there is nothing to do if so.
            let _gone = killpg(*group, Signal::SIGKILL);
        }
    }
}

/// The PIDs written, one a line, to `path`.
fn pids(path: &Path) -> Vec<Pid> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .map(|line| Pid::from_raw(line.trim().parse().expect("a PID")))
        .collect()
}

/// Whether `pid` is a live (not zombie) process.
fn is_alive(pid: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn sigterm_during_a_build_exits_cleanly_and_kills_the_build() {
    let repo = Repo::new("stopping");
    let main = repo.rev("main");
    let scratch = Scratch::new();
    let state = State::new();
    let command = format!("echo $$ > {}; exec sleep 600", scratch.shell_path("pid"));
    let mut ci = Ci::start(&[&repo], &[("build", &command)], &state, &[]);
    let pid = wait_until(
        "the build to start",
        || {
            let pids = pids(&scratch.path("pid"));
            pids.first().copied()
        },
        || ci.report(),
    );
    let _reaper = Reaper { groups: vec![pid] };
    assert!(is_alive(pid), "the build runs");
    // The build runs, so its status soon says so (it may still say "Git fetch …" for a moment).
    let status = wait_until(
        "the pending status to name the build",
        || {
            state
                .status("local/stopping", &main, "build")
                .filter(|s| s.state == "pending" && s.description.contains(&main))
        },
        || ci.report(),
    );
    assert_eq!(status.description, format!("Run build on commit {main}"));

    let exit = ci.terminate();

    assert_eq!(exit.code(), Some(0), "{}", ci.report());
    wait_until(
        &format!("the build's sleep (PID {pid}) to die"),
        || (!is_alive(pid)).then_some(()),
        || ci.report(),
    );
    // The lock is released: the store opens.
    let store = datakit_ci::store::Store::open(&state.store());
    assert!(store.is_ok(), "{:?}", store.err());
}

#[test]
fn a_restart_after_sigkill_reruns_the_interrupted_step_only() {
    let repo = Repo::new("restarting");
    let main = repo.rev("main");
    let scratch = Scratch::new();
    let state = State::new();
    let slow = format!(
        "echo $$ >> {pids}; echo run >> {runs}; while [ ! -e {go} ]; do sleep 0.1; done; echo done",
        pids = scratch.shell_path("slow-pids"),
        runs = scratch.shell_path("slow-runs"),
        go = scratch.shell_path("go"),
    );
    let quick = format!("echo run >> {}", scratch.shell_path("quick-runs"));
    let tests = [("slow", slow.as_str()), ("quick", quick.as_str())];
    let mut first = Ci::start(&[&repo], &tests, &state, &[]);
    let quick_status = state.wait_for_status(&first, "local/restarting", &main, "quick", "success");
    state.wait_for_status(&first, "local/restarting", &main, "slow", "pending");
    let slow_pid = wait_until(
        "the slow build to start",
        || pids(&scratch.path("slow-pids")).first().copied(),
        || first.report(),
    );
    let mut reaper = Reaper {
        groups: vec![slow_pid],
    };

    first.kill();
    // The binary's guardian kills the build it left running.
    wait_until(
        "the interrupted build to die",
        || (!is_alive(slow_pid)).then_some(()),
        || first.report(),
    );
    assert_eq!(
        state
            .status("local/restarting", &main, "slow")
            .map(|s| s.state),
        Some("pending".to_owned())
    );
    assert_eq!(scratch.count_lines("slow-runs"), 1);
    std::fs::write(scratch.path("go"), "").expect("create the marker");

    let second = Ci::start(&[&repo], &tests, &state, &[]);
    let line = "local/restarting/heads/main slow: success (Passed)";
    second.wait_for_line(line);
    // Had the interrupted step been taken for a success, it would not have run again.
    assert_eq!(scratch.count_lines("slow-runs"), 2, "{}", second.report());
    reaper.groups.extend(pids(&scratch.path("slow-pids")));
    state.wait_for_status(&second, "local/restarting", &main, "slow", "success");
    assert_eq!(scratch.count_lines("quick-runs"), 1, "{}", second.report());
    assert_eq!(
        state.status("local/restarting", &main, "quick"),
        Some(quick_status)
    );
    let slow_lines: Vec<String> = second
        .lines()
        .into_iter()
        .filter(|l| l.contains(" slow: "))
        .collect();
    assert_eq!(
        slow_lines.iter().filter(|l| l.contains("success")).count(),
        1,
        "{slow_lines:?}"
    );
    assert_eq!(slow_lines.last().map(String::as_str), Some(line));
    assert_eq!(
        state
            .show(&format!("shell-of-slow-on-{main}"), "log")
            .map(|log| log.contains("done")),
        Some(true)
    );
}

/// Checks that [`is_alive`] tells a live process from a dead one, so the tests above can fail.
#[test]
fn liveness_check_sees_live_and_dead_processes() {
    let mut child = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("start sleep");
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("PIDs fit in i32"));
    assert!(is_alive(pid));
    kill(pid, Signal::SIGKILL).expect("kill sleep");
    wait_until(
        "the killed sleep to be a zombie",
        || (!is_alive(pid)).then_some(()),
        String::new,
    );
    child.wait().expect("reap sleep");
    assert!(!is_alive(pid));
}
