//! End-to-end tests of issue 14, defect 8: a `kill -9` of the `datakit-ci` binary leaves no
//! build running (its guardian kills them, and the next start kills what is left if the guardian
//! died too) and no temporary clone behind (they live in `<state-dir>/tmp/`, emptied at start);
//! crash trials at random moments while many jobs run.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use common::{Ci, Repo, Scratch, State, repo_with_branches, wait_until};

/// Every build of these tests runs at once, whatever the number of CPUs (`--jobs`).
const ALL_AT_ONCE: &[&str] = &["--jobs", "1000"];

/// The PIDs written, one a line, to `path`.
fn pids(path: &Path) -> Vec<Pid> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| line.trim().parse().ok())
        .map(Pid::from_raw)
        .collect()
}

/// Whether `pid` is a live (not zombie) process.
fn is_alive(pid: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// The lines of `path` (none if it does not exist).
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The entries of the state directory's `tmp/`, where the builds' clones are made.
fn temp_entries(state: &State) -> Vec<String> {
    match std::fs::read_dir(state.dir().join("tmp")) {
        Ok(entries) => entries
            .map(|entry| {
                entry
                    .expect("a directory entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The guardian process of the binary `ci`: its child started with `DATAKIT_CI_GUARDIAN_OF`.
fn guardian_of(ci: Pid) -> Option<Pid> {
    let tasks = std::fs::read_dir(format!("/proc/{ci}/task")).ok()?;
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|word| word.parse().ok())
                .collect::<Vec<i32>>()
        })
        .map(Pid::from_raw)
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|&b| b == 0)
                    .any(|variable| variable.starts_with(b"DATAKIT_CI_GUARDIAN_OF="))
            })
        })
}

/// Kills every PID of `path` on drop, so a failing test leaves no build behind.
struct Reaper<'a> {
    files: Vec<&'a Path>,
}

impl Drop for Reaper<'_> {
    fn drop(&mut self) {
        for file in &self.files {
            for pid in pids(file) {
                // Usually dead already; there is nothing to do if so.
                let _gone = kill(pid, Signal::SIGKILL);
            }
        }
    }
}

/// A build that records its PID, its directory and its commit, starts a process in a session
/// of its own (recording its PID too), and waits for the file `go`.
fn blocking_build(scratch: &Scratch) -> String {
    format!(
        r#"echo $$ >> {pids}; pwd >> {dirs}; git rev-parse HEAD >> {runs}; setsid sh -c "echo \$\$ >> {escapees}; exec sleep 600" >/dev/null 2>&1 & while [ ! -e {go} ]; do sleep 0.1; done"#,
        pids = scratch.shell_path("pids"),
        dirs = scratch.shell_path("dirs"),
        runs = scratch.shell_path("runs"),
        escapees = scratch.shell_path("escapees"),
        go = scratch.shell_path("go"),
    )
}

/// Waits until `count` builds have started (and their escapees too).
fn wait_for_builds(scratch: &Scratch, count: usize, ci: &Ci) {
    wait_until(
        &format!("{count} builds to start"),
        || {
            (pids(&scratch.path("pids")).len() >= count
                && pids(&scratch.path("escapees")).len() >= count)
                .then_some(())
        },
        || ci.report(),
    );
}

/// Waits until none of the PIDs in the files `names` of `scratch` is alive.
fn wait_for_deaths(scratch: &Scratch, names: &[&str], report: impl Fn() -> String) {
    wait_until(
        "the builds of the killed binary to die",
        || {
            names
                .iter()
                .all(|name| !pids(&scratch.path(name)).into_iter().any(is_alive))
                .then_some(())
        },
        || {
            let alive: Vec<Pid> = names
                .iter()
                .flat_map(|name| pids(&scratch.path(name)))
                .filter(|pid| is_alive(*pid))
                .collect();
            format!("alive: {alive:?}\n{}", report())
        },
    );
}

/// Waits until every target's `build` is a success on standard output.
fn wait_for_successes(ci: &Ci, repo: &Repo, targets: &[(String, String)]) {
    for (branch, _) in targets {
        ci.wait_for_line(&format!(
            "{}/heads/{branch} build: success (Passed)",
            repo.id()
        ));
    }
}

#[test]
fn issue_14_kill_9_kills_the_builds_and_a_restart_removes_their_clones() {
    let (repo, targets) = repo_with_branches("crashing", "b", 5);
    let scratch = Scratch::new();
    let pid_files = [scratch.path("pids"), scratch.path("escapees")];
    let _reaper = Reaper {
        files: pid_files.iter().map(|p| p.as_path()).collect(),
    };
    let state = State::new();
    let build = blocking_build(&scratch);
    let tests = [("build", build.as_str())];
    let mut first = Ci::start(&[&repo], &tests, &state, ALL_AT_ONCE);
    wait_for_builds(&scratch, targets.len(), &first);
    assert!(guardian_of(first.pid()).is_some(), "{}", first.report());
    // Every clone is in the state directory.
    let temp = state.dir().join("tmp");
    for dir in lines(&scratch.path("dirs")) {
        assert!(Path::new(&dir).starts_with(&temp), "{dir}");
    }
    // One clone and one HOME directory per build.
    let entries = temp_entries(&state);
    let clones: Vec<&String> = entries
        .iter()
        .filter(|name| name.starts_with("with_clone"))
        .collect();
    assert_eq!(clones.len(), targets.len(), "{entries:?}");
    assert!(
        entries
            .iter()
            .all(|name| name.starts_with("with_clone") || name.starts_with("home-")),
        "{entries:?}"
    );

    first.kill();
    // The guardian kills the builds, the processes that left their group included.
    wait_for_deaths(&scratch, &["pids", "escapees"], || first.report());
    std::fs::write(scratch.path("go"), "").expect("create the marker");

    let second = Ci::start(&[&repo], &tests, &state, ALL_AT_ONCE);
    wait_for_successes(&second, &repo, &targets);
    // Each commit ran twice: interrupted, then again after the restart.
    let mut runs: BTreeMap<String, usize> = BTreeMap::new();
    for commit in lines(&scratch.path("runs")) {
        *runs.entry(commit).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = targets
        .iter()
        .map(|(_, commit)| (commit.clone(), 2))
        .collect();
    assert_eq!(runs, expected, "{}", second.report());
    wait_until(
        "the clones to be removed",
        || temp_entries(&state).is_empty().then_some(()),
        || format!("{:?}\n{}", temp_entries(&state), second.report()),
    );
    drop(second);
    datakit_ci_testkit::assert_fsck_clean(&state.store());
}

#[test]
fn issue_14_a_restart_kills_what_a_crashed_run_left_when_its_guardian_died_too() {
    let (repo, targets) = repo_with_branches("orphaned", "b", 2);
    let scratch = Scratch::new();
    let pid_files = [scratch.path("pids"), scratch.path("escapees")];
    let _reaper = Reaper {
        files: pid_files.iter().map(|p| p.as_path()).collect(),
    };
    let state = State::new();
    let build = blocking_build(&scratch);
    let tests = [("build", build.as_str())];
    let mut first = Ci::start(&[&repo], &tests, &state, ALL_AT_ONCE);
    wait_for_builds(&scratch, targets.len(), &first);
    let guardian = wait_until(
        "the guardian to be found",
        || guardian_of(first.pid()),
        || first.report(),
    );
    kill(guardian, Signal::SIGKILL).expect("kill the guardian");
    first.kill();
    let escapees = pids(&scratch.path("escapees"));
    assert!(
        escapees.iter().all(|pid| is_alive(*pid)),
        "without a guardian the builds outlive the binary"
    );

    let second = Ci::start(&[&repo], &tests, &state, ALL_AT_ONCE);
    // The leftovers die, and the builds run again (once each).
    for pid in &escapees {
        wait_until(
            &format!("the leftover process {pid} to die"),
            || (!is_alive(*pid)).then_some(()),
            || second.report(),
        );
    }
    wait_until(
        "the builds to run again",
        || (lines(&scratch.path("runs")).len() >= 2 * targets.len()).then_some(()),
        || second.report(),
    );
    std::fs::write(scratch.path("go"), "").expect("create the marker");
    wait_for_successes(&second, &repo, &targets);
    assert_eq!(lines(&scratch.path("runs")).len(), 2 * targets.len());
    wait_until(
        "the clones to be removed",
        || temp_entries(&state).is_empty().then_some(()),
        || second.report(),
    );
}

/// A small deterministic generator (xorshift), seeded from the clock and printed, so that a
/// failing trial can be replayed with `DATAKIT_CI_CRASH_SEED`.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Kill -9 of the binary at random moments while many jobs run (issue 14 asks for 50 jobs and
/// 10 trials: `DATAKIT_CI_CRASH_JOBS=50 DATAKIT_CI_CRASH_TRIALS=10`); after the last restart
/// every target is a success, no step whose success was printed ran again, no process of the
/// killed runs is alive, no clone is left and the store passes `git fsck --strict`.
#[test]
fn issue_14_crash_trials() {
    let jobs = usize::try_from(env_number("DATAKIT_CI_CRASH_JOBS", 8)).expect("a count");
    let trials = env_number("DATAKIT_CI_CRASH_TRIALS", 3);
    let seed = env_number(
        "DATAKIT_CI_CRASH_SEED",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1,
    );
    eprintln!("crash trials: {trials} trials, {jobs} jobs, seed {seed}");
    let mut random = Random(seed);
    let (repo, targets) = repo_with_branches("trials", "b", jobs.saturating_sub(1));
    let scratch = Scratch::new();
    let pid_files = [scratch.path("pids"), scratch.path("escapees")];
    let _reaper = Reaper {
        files: pid_files.iter().map(|p| p.as_path()).collect(),
    };
    let state = State::new();
    // Each build takes 0.5 to 2 seconds (by its commit), with a process in a session of its own.
    let build = format!(
        r#"c=$(git rev-parse HEAD); echo $$ >> {pids}; echo "start $c" >> {runs}; setsid sh -c "echo \$\$ >> {escapees}; exec sleep 600" >/dev/null 2>&1 & n=$(printf %d 0x$(echo $c | cut -c1-2)); sleep $((n % 4 / 2)).$((n % 2 * 5)); sleep 0.5; echo "end $c" >> {runs}"#,
        pids = scratch.shell_path("pids"),
        runs = scratch.shell_path("runs"),
        escapees = scratch.shell_path("escapees"),
    );
    let tests = [("build", build.as_str())];
    let success = |branch: &str| format!("{}/heads/{branch} build: success (Passed)", repo.id());
    // The commits whose success a killed run printed, and how many times each had started then.
    let mut finished: BTreeMap<String, usize> = BTreeMap::new();
    let starts = |commit: &str| {
        lines(&scratch.path("runs"))
            .iter()
            .filter(|line| **line == format!("start {commit}"))
            .count()
    };
    let mut kills_while_building = 0;
    for trial in 0..trials {
        let mut ci = Ci::start(&[&repo], &tests, &state, ALL_AT_ONCE);
        let delay = Duration::from_millis(200 + random.below(3000));
        let start = Instant::now();
        while start.elapsed() < delay {
            std::thread::sleep(Duration::from_millis(20));
        }
        let running = pids(&scratch.path("escapees"))
            .into_iter()
            .filter(|pid| is_alive(*pid))
            .count();
        if running > 0 {
            kills_while_building += 1;
        }
        ci.kill();
        for (branch, commit) in &targets {
            if ci.lines().contains(&success(branch)) {
                finished
                    .entry(commit.clone())
                    .or_insert_with(|| starts(commit));
            }
        }
        eprintln!(
            "trial {trial}: killed after {delay:?} with {running} builds running; {} of {} finished",
            finished.len(),
            targets.len()
        );
        wait_for_deaths(&scratch, &["pids", "escapees"], || ci.report());
    }
    let last = Ci::start(&[&repo], &tests, &state, ALL_AT_ONCE);
    // A restart prints no line for a status it finds already written: read the statuses.
    for (_, commit) in &targets {
        state.wait_for_status(&last, &repo.id(), commit, "build", "success");
    }
    for (commit, started) in &finished {
        assert_eq!(
            starts(commit),
            *started,
            "the finished step of {commit} ran again\n{}",
            last.report()
        );
    }
    // Every run that ended is a start that ended; each commit ended at least once.
    let ended: BTreeSet<String> = lines(&scratch.path("runs"))
        .iter()
        .filter_map(|line| line.strip_prefix("end ").map(str::to_owned))
        .collect();
    for (_, commit) in &targets {
        assert!(ended.contains(commit), "{commit} never ended");
    }
    wait_until(
        "the clones to be removed",
        || temp_entries(&state).is_empty().then_some(()),
        || last.report(),
    );
    let report = last.report();
    drop(last);
    // The last run's builds have ended, and what they left in the background was killed: no
    // process of any run is alive.
    wait_for_deaths(&scratch, &["pids", "escapees"], || report.clone());
    datakit_ci_testkit::assert_fsck_clean(&state.store());
    eprintln!(
        "crash trials: {trials} trials ({kills_while_building} killed while building), {jobs} jobs, {} starts in all",
        lines(&scratch.path("runs"))
            .iter()
            .filter(|line| line.starts_with("start "))
            .count()
    );
}
