//! What the harness does to the machine (for the swarm and the standalone daemons): programs it runs, daemons it starts detached (so they
//! outlive the test program that started them, for the next one to reuse), processes it kills,
//! network namespaces, veth pairs and mounts.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::HarnessError;

/// Runs `program args` and returns what it printed, trimmed; fails naming the command and its
/// error output unless it succeeds.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String, HarnessError> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| HarnessError::Spawn {
            program: program.to_owned(),
            source,
        })?;
    if !output.status.success() {
        return Err(HarnessError::Command {
            command: format!("{program} {}", args.join(" ")),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The programs a `dockerd` of the harness needs, with the Debian package that has each.
pub(crate) const DOCKERD_PROGRAMS: &[(&str, &str)] = &[
    ("docker", "docker.io"),
    ("dockerd", "docker.io"),
    ("ip", "iproute2"),
    ("nsenter", "util-linux"),
    ("setsid", "util-linux"),
    ("kill", "procps"),
];

/// The programs the swarm needs besides [`DOCKERD_PROGRAMS`].
pub(crate) const SWARM_PROGRAMS: &[(&str, &str)] =
    &[("socat", "socat"), ("docker-registry", "docker-registry")];

/// Fails naming the Debian package to install unless every program of `needed` is on `PATH`.
pub(crate) fn check_programs(needed: &[(&'static str, &'static str)]) -> Result<(), HarnessError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for (program, package) in needed {
        let found = std::env::split_paths(&path).any(|dir| dir.join(program).is_file());
        if !found {
            return Err(HarnessError::MissingProgram { program, package });
        }
    }
    Ok(())
}

/// An exclusive `flock` on a file, released when dropped (or when the process dies, so a
/// crashed test never leaves the cluster locked).
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
}

fn open_lock_file(path: &Path) -> Result<File, HarnessError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| HarnessError::Io {
            what: format!("open the lock file {}", path.display()),
            source,
        })
}

impl Lock {
    /// Waits for the lock.
    pub(crate) fn acquire(path: &Path) -> Result<Lock, HarnessError> {
        let file = open_lock_file(path)?;
        file.lock().map_err(|source| HarnessError::Io {
            what: format!("lock {}", path.display()),
            source,
        })?;
        Ok(Lock { _file: file })
    }

    /// The lock if nobody holds it.
    pub(crate) fn try_acquire(path: &Path) -> Result<Option<Lock>, HarnessError> {
        let file = open_lock_file(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Lock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(source)) => Err(HarnessError::Io {
                what: format!("lock {}", path.display()),
                source,
            }),
        }
    }
}

pub(crate) fn create_dir(path: &Path) -> Result<(), HarnessError> {
    std::fs::create_dir_all(path).map_err(|source| HarnessError::Io {
        what: format!("create {}", path.display()),
        source,
    })
}

pub(crate) fn write_file(path: &Path, contents: &str) -> Result<(), HarnessError> {
    std::fs::write(path, contents).map_err(|source| HarnessError::Io {
        what: format!("write {}", path.display()),
        source,
    })
}

/// A daemon the harness starts: its program, its pid file and its log.
#[derive(Debug, Clone)]
pub(crate) struct Daemon {
    /// The name its command line must contain, so that a recycled pid is not taken for it.
    pub(crate) program: &'static str,
    pub(crate) pidfile: PathBuf,
    pub(crate) log: PathBuf,
}

impl Daemon {
    /// The daemon's pid if it is running.
    pub(crate) fn pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(&self.pidfile)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        process_runs(pid, self.program).then_some(pid)
    }

    /// Starts `command` (whose command line contains `program`) in a session of its own, forked
    /// away from this process so that it outlives the test program, in network namespace
    /// `netns` if given; writes its pid file and waits until the process runs.
    pub(crate) fn start(&self, netns: Option<&str>, command: &[&str]) -> Result<(), HarnessError> {
        // `sh` writes its own pid, then becomes the daemon (through `nsenter`, which execs without
        // forking when it enters a network namespace only).
        let mut args: Vec<String> = vec![
            "-f".into(),
            "sh".into(),
            "-c".into(),
            "echo $$ > \"$0\"; exec \"$@\"".into(),
            self.pidfile.display().to_string(),
        ];
        if let Some(netns) = netns {
            args.push("nsenter".into());
            args.push(format!("--net=/var/run/netns/{netns}"));
        }
        args.extend(command.iter().map(|s| (*s).to_owned()));
        let _ = std::fs::remove_file(&self.pidfile);
        // Appended to, so that the log of a daemon that was killed stays to read.
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|source| HarnessError::Io {
                what: format!("create {}", self.log.display()),
                source,
            })?;
        let log_err = log.try_clone().map_err(|source| HarnessError::Io {
            what: format!("open {}", self.log.display()),
            source,
        })?;
        let status = Command::new("setsid")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .status()
            .map_err(|source| HarnessError::Spawn {
                program: "setsid".to_owned(),
                source,
            })?;
        if !status.success() {
            return Err(HarnessError::Command {
                command: format!("setsid {}", args.join(" ")),
                status: status.to_string(),
                stderr: String::new(),
            });
        }
        wait_until(
            Duration::from_secs(10),
            &format!("{} to start", self.program),
            || Ok(self.pid().is_some()),
        )
        .map_err(|e| self.with_log(e))
    }

    /// Adds the end of the daemon's log to a failure.
    pub(crate) fn with_log(&self, error: HarnessError) -> HarnessError {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        HarnessError::Daemon {
            program: self.program,
            log: self.log.clone(),
            tail: tail.join("\n"),
            source: Box::new(error),
        }
    }
}

/// Whether `pid` is a live (not zombie) process whose command line contains `program`.
fn process_runs(pid: u32, program: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name in parentheses, which may itself contain spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    if matches!(state, Some('Z' | 'X') | None) {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| String::from_utf8_lossy(&cmdline).contains(program))
        .unwrap_or(false)
}

/// Kills with SIGKILL every process in network namespace `netns` and every descendant of one
/// (the containers, which have namespaces of their own, are the shims' children): a node lost
/// the hard way. The processes are stopped first, so that none forks or is orphaned (and so
/// lost from the tree) between the look and the kill.
pub(crate) fn kill_node(netns: &str) -> Result<(), HarnessError> {
    let Ok(ns) = std::fs::metadata(format!("/var/run/netns/{netns}")) else {
        return Ok(());
    };
    for _ in 0..20 {
        let victims = node_processes(ns.ino())?;
        if victims.is_empty() {
            return Ok(());
        }
        signal("-STOP", &victims);
        // Children forked before the stop took effect.
        let victims = node_processes(ns.ino())?;
        signal("-STOP", &victims);
        signal("-KILL", &victims);
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(HarnessError::Timeout {
        what: format!("the processes of {netns} to end"),
        waited: Duration::from_secs(2),
    })
}

fn signal(signal: &str, pids: &[u32]) {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let mut args = vec![signal];
    args.extend(pids.iter().map(String::as_str));
    // A process may end between the look and the signal: that is what we want anyway.
    let _ = run("kill", &args);
}

/// The live processes in the network namespace with inode `ns` and their descendants.
fn node_processes(ns: u64) -> Result<Vec<u32>, HarnessError> {
    let entries = std::fs::read_dir("/proc").map_err(|source| HarnessError::Io {
        what: "list /proc".to_owned(),
        source,
    })?;
    let mut parents = Vec::new();
    let mut chosen = std::collections::HashSet::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Some(ppid) = parent_of(pid) else {
            continue;
        };
        let in_ns = std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.ino() == ns);
        if in_ns {
            chosen.insert(pid);
        }
        parents.push((pid, ppid));
    }
    loop {
        let before = chosen.len();
        for (pid, ppid) in &parents {
            if chosen.contains(ppid) {
                chosen.insert(*pid);
            }
        }
        if chosen.len() == before {
            break;
        }
    }
    Ok(chosen
        .into_iter()
        .filter(|pid| process_runs(*pid, ""))
        .collect())
}

/// The parent of live process `pid`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: the state, then the parent's pid.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Lazily unmounts every mount under `dir` (deepest first): a daemon killed with SIGKILL
/// leaves its layer and `fuse-overlayfs` mounts behind.
pub(crate) fn unmount_under(dir: &Path) -> Result<(), HarnessError> {
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| HarnessError::Io {
            what: "read /proc/self/mountinfo".to_owned(),
            source,
        })?;
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(&prefix) || *point == prefix.trim_end_matches('/'))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    for point in points {
        // Mount points with spaces are escaped (\040) in mountinfo; ours have none.
        let _ = run("umount", &["-l", point]);
    }
    Ok(())
}

/// Polls `ready` every 100 ms until it says yes, for at most `limit`.
pub(crate) fn wait_until(
    limit: Duration,
    what: &str,
    mut ready: impl FnMut() -> Result<bool, HarnessError>,
) -> Result<(), HarnessError> {
    let start = Instant::now();
    loop {
        if ready()? {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(HarnessError::Timeout {
                what: what.to_owned(),
                waited: limit,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether network namespace `name` exists.
pub(crate) fn netns_exists(name: &str) -> bool {
    Path::new("/var/run/netns").join(name).exists()
}

/// Makes network namespace `netns` joined to the host by a veth pair: `host_if` on the host
/// with `host_addr`, `eth0` in the namespace with `addr`, each the other's point-to-point peer
/// (no bridge: the host's Docker filters bridged traffic), and a default route to the host.
pub(crate) fn make_netns(
    netns: &str,
    host_if: &str,
    host_addr: &str,
    addr: &str,
) -> Result<(), HarnessError> {
    // A half-made namespace (an interrupted earlier run) is made again from scratch.
    if netns_exists(netns) {
        let _ = run("ip", &["netns", "del", netns]);
    }
    let _ = run("ip", &["link", "del", host_if]);
    run("ip", &["netns", "add", netns])?;
    run(
        "ip",
        &[
            "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", netns,
        ],
    )?;
    let host_local = format!("{host_addr}/32");
    let peer = format!("{addr}/32");
    run(
        "ip",
        &["addr", "add", &host_local, "peer", &peer, "dev", host_if],
    )?;
    run("ip", &["link", "set", host_if, "up"])?;
    run(
        "ip",
        &[
            "-n",
            netns,
            "addr",
            "add",
            &peer,
            "peer",
            &host_local,
            "dev",
            "eth0",
        ],
    )?;
    run("ip", &["-n", netns, "link", "set", "eth0", "up"])?;
    run("ip", &["-n", netns, "link", "set", "lo", "up"])?;
    run(
        "ip",
        &["-n", netns, "route", "add", "default", "via", host_addr],
    )?;
    Ok(())
}

/// Deletes network namespace `netns` (its veth pair, host end `host_if`, goes with it).
pub(crate) fn delete_netns(netns: &str, host_if: Option<&str>) {
    let _ = run("ip", &["netns", "del", netns]);
    if let Some(host_if) = host_if {
        let _ = run("ip", &["link", "del", host_if]);
    }
}
