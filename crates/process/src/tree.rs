//! Owning whole process trees: every process a [`Cmd`](crate::Cmd) starts, and everything it
//! starts in turn, carries a marker in its environment, so that it can be found and killed even
//! after it left its process group (`setsid`, a double fork into the background) or outlived the
//! program that started it (a `kill -9` of the CI).
//!
//! The marker is the variable [`MARKER_VAR`] = `<owner>/<run>`: [`owner_id`] names this process
//! (unique among the machine's processes), `<run>` counts the runs of this process. Three things
//! use it:
//!
//! - **The end of a run** (`run.rs`) kills what is left of it: the process group, then the marked
//!   processes that escaped the group. Where they are depends on [`become_subreaper`]: a program
//!   that is a child subreaper (the `datakit-ci` binary) adopts its builds' orphans, so it only
//!   looks at its own children (cheap enough to do at every build's end, and it also reaps the
//!   orphans that exited, which would otherwise stay zombies); without it, a cancelled or timed
//!   out run scans every process of the machine.
//! - **A [`Guardian`]**, a small process that outlives its program: when the program dies, even by
//!   SIGKILL, the guardian notices (its stdin reaches end-of-file) and kills every process marked
//!   with the program's owner id.
//! - **The next start** of a program on the same state kills what a previous run left
//!   ([`kill_owned_by`]), in case its guardian died with it.
//!
//! The marker is in the environment, so a process that clears its environment *and* leaves the
//! process group escapes it; builds that only `setsid`, double-fork or daemonise are caught.
//! Linux's cgroups would catch those too, but a CI cannot always create one (this project's
//! machines run it in a container with read-only cgroups), and a parent-death signal would need
//! `unsafe` `pre_exec` code and only reaches the direct child, not the tree.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::{Pid, getpgrp, getpid, getsid};

use crate::Error;

/// The environment variable that marks every process of a run: `<owner id>/<run number>`.
pub const MARKER_VAR: &str = "DATAKIT_CI_PROCESS";

/// The environment variable that starts a program in guardian mode ([`guardian_main_if_asked`]),
/// naming the owner id whose processes it kills.
const GUARDIAN_VAR: &str = "DATAKIT_CI_GUARDIAN_OF";

/// How many rounds of killing a sweep makes at most: each round kills every marked process it
/// sees, so more rounds are only needed for processes forked meanwhile.
const MAX_ROUNDS: usize = 200;

/// The pause between two rounds of a sweep, for killed processes to die.
const ROUND_PAUSE: Duration = Duration::from_millis(10);

/// Whether [`become_subreaper`] succeeded in this process.
static SUBREAPER: AtomicBool = AtomicBool::new(false);

/// The number of the next run of this process.
static NEXT_RUN: AtomicU64 = AtomicU64::new(1);

/// This process's owner id: the prefix of its runs' markers.
///
/// It is `<pid>-<hex nanoseconds>` of the first call, unique among the processes that can be
/// alive at the same time on this machine. A program records it (e.g. in its state directory)
/// so that its next start can [kill what this run left](kill_owned_by).
pub fn owner_id() -> &'static str {
    static OWNER: OnceLock<String> = OnceLock::new();
    OWNER.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{}-{nanos:x}", std::process::id())
    })
}

/// A fresh marker value for one run: `<owner id>/<n>`.
pub(crate) fn new_marker() -> String {
    format!(
        "{}/{}",
        owner_id(),
        NEXT_RUN.fetch_add(1, Ordering::Relaxed)
    )
}

/// Makes this process a child subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`): the processes its
/// builds orphan (by `setsid` and a double fork, or because their parent died) become its
/// children instead of init's, so the end of each run finds, kills and reaps them among this
/// process's children.
///
/// This affects the whole process: call it once, early, in a program that runs builds (the
/// `datakit-ci` binary does). Such a program must start its other children either in its own
/// process group or as leaders of their own group (as `tokio::process::Command` and this crate
/// do): a child of the program in neither, or in another session, is taken for an orphan and
/// reaped when it exits.
pub fn become_subreaper() -> Result<(), Error> {
    nix::sys::prctl::set_child_subreaper(true).map_err(|errno| Error::Subreaper {
        source: io::Error::from(errno),
    })?;
    SUBREAPER.store(true, Ordering::Relaxed);
    Ok(())
}

/// Whether [`become_subreaper`] succeeded in this process.
pub(crate) fn is_subreaper() -> bool {
    SUBREAPER.load(Ordering::Relaxed)
}

/// Kills (SIGKILL) every process of this machine whose marker starts with `<owner>/`, until
/// none is left, and returns how many were killed.
///
/// For a program's start, to kill what a previous run of it left (its recorded [`owner_id`]),
/// and for the [`Guardian`]. Processes of other users are not looked at. Blocks: the processes
/// get a few milliseconds to die between rounds.
pub fn kill_owned_by(owner: &str) -> usize {
    let prefix = format!("{MARKER_VAR}={owner}/");
    sweep_blocking(&|pid| marker_matches(pid, prefix.as_bytes(), false), None)
}

/// Kills what is left of the run marked `marker` whose process group was `pgid` (already
/// killed), blocking until it is gone: used when a run future is dropped.
pub(crate) fn sweep_run_blocking(marker: &str, pgid: Pid) {
    let entry = format!("{MARKER_VAR}={marker}");
    let adopted = is_subreaper().then_some(Adopted {
        pgid,
        entry: &entry,
    });
    sweep_blocking(&|pid| marker_matches(pid, entry.as_bytes(), true), adopted);
}

/// Kills what is left of the run marked `marker` whose process group was `pgid` (already
/// killed). With `scan_all` (a cancel or timeout), every process of the machine is scanned for
/// the marker, as well as a subreaper's adopted children: a process killed in one round may
/// leave children that the kernel re-parents only after the next round has looked, so only a
/// scan by marker finds them for sure. Without `scan_all` (a run that ended by itself), only a
/// subreaper's own children are looked at (nothing is done without a subreaper).
pub(crate) async fn sweep_run(marker: &str, pgid: Pid, scan_all: bool) {
    let entry = format!("{MARKER_VAR}={marker}");
    let subreaper = is_subreaper();
    if !subreaper && !scan_all {
        return;
    }
    let adopted = Adopted {
        pgid,
        entry: &entry,
    };
    for _ in 0..MAX_ROUNDS {
        let mut killed = 0;
        if subreaper {
            killed += sweep_children(&adopted);
        }
        if scan_all {
            killed += sweep_all(&|pid| marker_matches(pid, entry.as_bytes(), true));
        }
        if killed == 0 {
            return;
        }
        tokio::time::sleep(ROUND_PAUSE).await;
    }
    tracing::warn!("processes of run {marker} still appear after {MAX_ROUNDS} rounds of killing");
}

/// What identifies a run's processes among a subreaper's adopted children.
struct Adopted<'a> {
    /// The run's process group.
    pgid: Pid,
    /// The run's `MARKER_VAR=<marker>` entry.
    entry: &'a str,
}

/// Rounds of [`sweep_all`] (and of [`sweep_children`], given `adopted`) until one kills
/// nothing.
fn sweep_blocking(matches: &dyn Fn(Pid) -> bool, adopted: Option<Adopted<'_>>) -> usize {
    let mut total = 0;
    for _ in 0..MAX_ROUNDS {
        let killed = adopted.as_ref().map_or(0, sweep_children) + sweep_all(matches);
        if killed == 0 {
            return total;
        }
        total += killed;
        std::thread::sleep(ROUND_PAUSE);
    }
    tracing::warn!("marked processes still appear after {MAX_ROUNDS} rounds of killing");
    total
}

/// One round over every process of the machine: SIGKILL to each that `matches`. Returns how
/// many were sent.
fn sweep_all(matches: &dyn Fn(Pid) -> bool) -> usize {
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    let me = getpid();
    let mut killed = 0;
    for entry in entries.flatten() {
        let Some(pid) = parse_pid(&entry.file_name()) else {
            continue;
        };
        if pid != me && matches(pid) && send_kill(pid) {
            killed += 1;
        }
    }
    killed
}

/// One round over this subreaper's children: reaps every adopted orphan that exited, and sends
/// SIGKILL to each live one of the run (in its process group, or marked with its entry).
/// Returns how many were sent.
fn sweep_children(run: &Adopted<'_>) -> usize {
    let own_group = getpgrp();
    let Ok(own_session) = getsid(None) else {
        return 0;
    };
    let mut killed = 0;
    for pid in own_children() {
        let Some(stat) = Stat::read(pid) else {
            continue;
        };
        // What this program starts is in its process group, or leads a group of its own, in
        // its session; anything else among its children was adopted.
        let adopted = stat.session != own_session || (stat.group != own_group && stat.group != pid);
        if !adopted {
            continue;
        }
        if stat.zombie {
            // Nobody else waits for an adopted orphan: reap it.
            let _reaped = waitpid(pid, Some(WaitPidFlag::WNOHANG));
        } else if (stat.group == run.pgid || marker_matches(pid, run.entry.as_bytes(), true))
            && send_kill(pid)
        {
            killed += 1;
        }
    }
    killed
}

/// This process's children, from `/proc/self/task/<tid>/children` of each of its threads.
fn own_children() -> Vec<Pid> {
    let mut children = Vec::new();
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return children;
    };
    for task in tasks.flatten() {
        let Ok(text) = fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        children.extend(
            text.split_ascii_whitespace()
                .filter_map(|word| word.parse().ok())
                .map(Pid::from_raw),
        );
    }
    children
}

/// SIGKILL to `pid`; whether it was sent (a process already gone is not an error).
fn send_kill(pid: Pid) -> bool {
    match kill(pid, Signal::SIGKILL) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(errno) => {
            tracing::warn!("Failed to kill process {pid}: {errno}");
            false
        }
    }
}

/// Whether the environment of `pid` has an entry equal to `entry` (`exact`) or starting with
/// it. A process that is gone, a zombie (no environment) or another user's gives `false`.
fn marker_matches(pid: Pid, entry: &[u8], exact: bool) -> bool {
    let Ok(environ) = read_small(&Path::new("/proc").join(pid.to_string()).join("environ")) else {
        return false;
    };
    environ.split(|&b| b == 0).any(|variable| {
        if exact {
            variable == entry
        } else {
            variable.starts_with(entry)
        }
    })
}

/// Reads a `/proc` file whole.
fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    fs::File::open(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A directory name of `/proc` that is a process id.
fn parse_pid(name: &OsStr) -> Option<Pid> {
    let name = name.as_bytes();
    if name.is_empty() || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(name)
        .ok()?
        .parse()
        .ok()
        .map(Pid::from_raw)
}

/// What `/proc/<pid>/stat` says of a process.
struct Stat {
    zombie: bool,
    group: Pid,
    session: Pid,
}

impl Stat {
    fn read(pid: Pid) -> Option<Stat> {
        let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name, in parentheses, may hold anything: the fields follow the last ')'.
        let (_, rest) = text.rsplit_once(") ")?;
        let mut fields = rest.split_ascii_whitespace();
        let state = fields.next()?;
        let _parent = fields.next()?;
        let group = fields.next()?.parse().ok()?;
        let session = fields.next()?.parse().ok()?;
        Some(Stat {
            zombie: state == "Z" || state == "X",
            group: Pid::from_raw(group),
            session: Pid::from_raw(session),
        })
    }
}

/// A process that kills every process of its program's owner id when the program dies,
/// however it dies.
///
/// [`Guardian::start`] runs the program itself again (its `/proc/self/exe`) in guardian mode:
/// the program must call [`guardian_main_if_asked`] first thing in `main` (`datakit_ci::run`
/// does). The guardian waits for end-of-file on its stdin, a pipe whose only writer is this
/// process: the kernel closes it when this process exits, by SIGKILL too. It runs in a process
/// group of its own, so that a Ctrl-C in the terminal does not kill it first. Dropping the
/// `Guardian` closes the pipe and waits for the guardian's last sweep.
#[derive(Debug)]
pub struct Guardian {
    child: Child,
    pipe: Option<ChildStdin>,
}

impl Guardian {
    /// Starts the guardian of this process's [`owner_id`].
    pub fn start() -> Result<Guardian, Error> {
        let spawn_error = |source| Error::Guardian { source };
        let program = std::env::current_exe().map_err(spawn_error)?;
        let mut child = std::process::Command::new(program)
            .env(GUARDIAN_VAR, owner_id())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .map_err(spawn_error)?;
        let pipe = child.stdin.take();
        Ok(Guardian { child, pipe })
    }

    /// The guardian's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        drop(self.pipe.take());
        if let Err(error) = self.child.wait() {
            tracing::warn!("Error waiting for the guardian process: {error}");
        }
    }
}

/// If this process was started as a [`Guardian`], does the guardian's work and exits; otherwise
/// returns at once. Call it first thing in `main` of a program that starts a guardian.
pub fn guardian_main_if_asked() {
    let Some(owner) = std::env::var_os(GUARDIAN_VAR) else {
        return;
    };
    let owner = owner.to_string_lossy().into_owned();
    // Wait for the program to exit: nothing is ever written to the pipe.
    let mut sink = Vec::new();
    let _eof = io::stdin().lock().read_to_end(&mut sink);
    kill_owned_by(&owner);
    std::process::exit(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_unique_and_name_the_owner() {
        let (a, b) = (new_marker(), new_marker());
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("{}/", owner_id())), "{a}");
        assert!(owner_id().starts_with(&format!("{}-", std::process::id())));
    }

    #[test]
    fn pids_are_parsed_from_proc_names() {
        assert_eq!(parse_pid(OsStr::new("123")), Some(Pid::from_raw(123)));
        assert_eq!(parse_pid(OsStr::new("self")), None);
        assert_eq!(parse_pid(OsStr::new("")), None);
    }

    #[test]
    fn own_stat_is_read() {
        let stat = Stat::read(getpid()).expect("this process has a stat");
        assert!(!stat.zombie);
        assert_eq!(stat.group, getpgrp());
        assert_eq!(Ok(stat.session), getsid(None));
    }
}
