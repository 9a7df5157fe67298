//! Running a [`Cmd`]: spawning it in its own process group, streaming its output, and killing
//! the whole group on cancellation, timeout or when the run future is dropped, with the
//! processes that left the group (found by their marker, see `tree`).
//!
//! Knows nothing of caches or terms; the only outside component it talks to is the live log.

use std::ffi::OsString;
use std::future;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::time::Instant;

use datakit_ci_log::LiveLog;

use crate::cmd::{Cmd, OutputCallback};
use crate::tree::{self, MARKER_VAR};
use crate::{Error, ExitStatus, format_duration};

/// Largest chunk of output read (and passed to callbacks) at once.
const CHUNK_SIZE: usize = 64 * 1024;

/// How often the process group is checked for survivors while it is being killed.
const KILL_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Runs `cmd` to completion and returns how it ended.
///
/// A non-zero exit or a death by signal is a normal result here, not an `Err`; errors are
/// failures to start or talk to the child ([`Error::Spawn`], [`Error::Io`]),
/// [`Error::Cancelled`] and [`Error::Timeout`]. On cancellation or timeout the child's whole
/// process group gets SIGTERM, then SIGKILL once the [grace period](Cmd::kill_grace) is over,
/// and the child is reaped before this returns. Dropping the returned future kills the group
/// with SIGKILL. In all these cases the processes of the run that left the group are killed too
/// (see the [crate docs](crate)); when the child exits by itself, what is left of its group gets
/// SIGKILL, and so do the processes that left it if this program is a
/// [subreaper](crate::become_subreaper).
pub async fn run_with_exit_status(cmd: Cmd) -> Result<ExitStatus, Error> {
    let command_line = cmd.display();
    let Cmd {
        argv,
        shown: _,
        cwd,
        env,
        env_clear,
        stdin,
        timeout,
        cancel,
        log,
        stdout: mut stdout_callback,
        stderr: mut stderr_callback,
        kill_grace,
    } = cmd;

    tracing::info!("Running {command_line}");
    if let Some(log) = &log {
        log.log(&format!("Running {command_line}"));
    }

    let spawn_error = |source: io::Error| Error::Spawn {
        display: command_line.clone(),
        source,
    };

    let (program, args) = argv.split_first().expect("Cmd::new rejects an empty argv");
    let mut command = match program_in_child_path(program, &env) {
        Some(path) => {
            let mut command = Command::new(path);
            command.arg0(program);
            command
        }
        None => Command::new(program),
    };
    command.args(args).process_group(0);
    if let Some(dir) = &cwd {
        command.current_dir(dir);
    }
    if env_clear {
        command.env_clear();
    }
    for (key, value) in &env {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    // Last, so that the caller's environment cannot hide it.
    let marker = tree::new_marker();
    command.env(MARKER_VAR, &marker);
    command.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let merged_output = if stderr_callback.is_some() {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        None
    } else {
        // One pipe for both streams (2>&1), so the reader sees them in the order written.
        let (reader, writer) = io::pipe().map_err(spawn_error)?;
        let writer_for_stderr = writer.try_clone().map_err(spawn_error)?;
        command.stdout(writer).stderr(writer_for_stderr);
        let reader = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader))
            .map_err(spawn_error)?;
        Some(reader)
    };

    let mut child = command.spawn().map_err(spawn_error)?;
    // The command holds our copies of the pipes' write ends: close them, or the output
    // never reaches end-of-file.
    drop(command);
    let pid = child
        .id()
        .expect("a child that has not been waited for has a pid");
    let pgid = Pid::from_raw(i32::try_from(pid).expect("a pid fits in pid_t"));
    let mut group = GroupGuard {
        pgid: Some(pgid),
        marker: marker.clone(),
    };

    let stdout_reader: Option<Pin<Box<dyn AsyncRead + Send>>> = match merged_output {
        Some(reader) => Some(Box::pin(reader)),
        None => child
            .stdout
            .take()
            .map(|out| Box::pin(out) as Pin<Box<dyn AsyncRead + Send>>),
    };
    let stderr_reader = child.stderr.take();
    let stdin_pipe = child.stdin.take();

    let outcome = {
        let work = async {
            let (stdin_result, stdout_result, stderr_result, status) = tokio::join!(
                feed_stdin(stdin_pipe, stdin),
                pump(stdout_reader, stdout_callback.as_mut(), log.as_ref()),
                pump(stderr_reader, stderr_callback.as_mut(), log.as_ref()),
                child.wait(),
            );
            let io_error = |source: io::Error| Error::Io {
                display: command_line.clone(),
                source,
            };
            stdin_result.map_err(io_error)?;
            stdout_result.map_err(io_error)?;
            stderr_result.map_err(io_error)?;
            status.map_err(io_error)
        };
        let cancelled = async {
            match &cancel {
                Some(token) => token.cancelled().await,
                None => future::pending().await,
            }
        };
        let timed_out = async {
            match timeout {
                Some(timeout) => tokio::time::sleep(timeout).await,
                None => future::pending().await,
            }
        };
        tokio::select! {
            result = work => Outcome::Finished(result),
            () = cancelled => Outcome::Cancelled,
            () = timed_out => Outcome::TimedOut,
        }
    };

    let error = match outcome {
        Outcome::Finished(Ok(status)) => {
            // The child is reaped; its group lives on while a member does.
            signal_group(pgid, Signal::SIGKILL);
            group.disarm();
            tree::sweep_run(&marker, pgid, false).await;
            return exit_status(status, &command_line);
        }
        Outcome::Finished(Err(error)) => {
            tracing::warn!("Error {error} from {command_line}");
            error
        }
        Outcome::Cancelled => {
            let message = format!("Switch was turned off, so killing process {command_line}");
            tracing::info!("{message}");
            if let Some(log) = &log {
                log.log(&message);
            }
            Error::Cancelled
        }
        Outcome::TimedOut => {
            let timeout = timeout.expect("only a command with a timeout can time out");
            let message = format!("Timeout (of {}) expired", format_duration(timeout));
            tracing::info!("{message}");
            if let Some(log) = &log {
                log.log(&message);
            }
            Error::Timeout { timeout }
        }
    };
    kill_group(&mut child, &mut group, kill_grace).await;
    tree::sweep_run(&marker, pgid, true).await;
    Err(error)
}

/// Runs `cmd` like [`run_with_exit_status`] and fails unless it exits with status 0.
///
/// Also fails with [`Error::Cancelled`] if the command's cancellation token was cancelled, even
/// when the child managed to exit successfully.
pub async fn run(cmd: Cmd) -> Result<(), Error> {
    let command_line = cmd.display();
    let cancel = cmd.cancel.clone();
    let status = run_with_exit_status(cmd).await?;
    if cancel.is_some_and(|token| token.is_cancelled()) {
        return Err(Error::Cancelled);
    }
    match status {
        ExitStatus::Exited(0) => Ok(()),
        ExitStatus::Exited(code) => Err(Error::Exited {
            display: command_line,
            code,
        }),
        ExitStatus::Signaled(signal) => Err(Error::Signaled {
            display: command_line,
            signal: crate::signal_name(signal),
        }),
    }
}

/// How the wait for a child ended.
enum Outcome {
    Finished(Result<std::process::ExitStatus, Error>),
    Cancelled,
    TimedOut,
}

/// Where `program` is in the `PATH` the child gets, when that is not this process's: `None` if
/// `program` holds a `/`, if the child keeps this process's `PATH` (or has none), or if it is
/// not found there (the spawn then says so).
///
/// When the child's `PATH` differs from ours, the standard library must look the program up
/// after forking, so it cannot use `posix_spawn` and forks instead, copying the page tables of
/// this process, which is large: with 500 builds at once in a clean environment (which sets
/// `PATH`), each build cost about 30 ms more CPU. Given a path, it spawns without copying.
fn program_in_child_path(program: &str, env: &[(OsString, Option<OsString>)]) -> Option<PathBuf> {
    if program.contains('/') {
        return None;
    }
    let (_, path) = env.iter().rev().find(|(key, _)| key == "PATH")?;
    std::env::split_paths(path.as_ref()?)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable_file(candidate))
}

/// Whether `path` is a regular file (or a link to one) that someone may execute.
fn is_executable_file(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

/// Kills a process group with SIGKILL when dropped, unless disarmed, and then (on a thread of
/// its own) the processes marked with `marker`: a dropped run future must not leave its
/// processes behind.
struct GroupGuard {
    pgid: Option<Pid>,
    marker: String,
}

impl GroupGuard {
    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            tracing::info!("Run dropped, so killing process group {pgid}");
            signal_group(pgid, Signal::SIGKILL);
            let marker = std::mem::take(&mut self.marker);
            let sweep = std::thread::Builder::new()
                .name("kill-dropped-run".to_owned())
                .spawn(move || tree::sweep_run_blocking(&marker, pgid));
            if let Err(error) = sweep {
                tracing::warn!("Cannot start a thread to kill the rest of run {pgid}: {error}");
            }
        }
    }
}

/// Sends SIGTERM to the group, waits up to `grace` for all of it to exit (reaping the
/// child), then sends SIGKILL to whatever is left and reaps the child.
async fn kill_group(child: &mut Child, group: &mut GroupGuard, grace: Duration) {
    let Some(pgid) = group.pgid else {
        return;
    };
    signal_group(pgid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    // Reap the leader as soon as it exits: a zombie still counts as a member of the group.
    if let Ok(Err(error)) = tokio::time::timeout_at(deadline, child.wait()).await {
        tracing::warn!("Error waiting for process group {pgid} to exit: {error}");
    }
    loop {
        if !group_exists(pgid) {
            break;
        }
        if Instant::now() >= deadline {
            tracing::info!("Process group {pgid} still running after SIGTERM, sending SIGKILL");
            signal_group(pgid, Signal::SIGKILL);
            break;
        }
        tokio::time::sleep(KILL_POLL_INTERVAL).await;
    }
    if let Err(error) = child.wait().await {
        tracing::warn!("Error reaping process group leader {pgid}: {error}");
    }
    group.disarm();
}

/// Sends `signal` to every process of the group `pgid`; a group that is already gone is fine.
fn signal_group(pgid: Pid, signal: Signal) {
    match killpg(pgid, signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(errno) => tracing::warn!("Failed to send {signal} to process group {pgid}: {errno}"),
    }
}

/// Whether any process (zombies included) is still in the group `pgid`.
fn group_exists(pgid: Pid) -> bool {
    !matches!(killpg(pgid, None), Err(Errno::ESRCH))
}

/// Writes `data` to the child's stdin and closes it; a child that exits without reading all
/// of it is not an error.
async fn feed_stdin(pipe: Option<ChildStdin>, data: Option<Vec<u8>>) -> io::Result<()> {
    let (Some(mut pipe), Some(data)) = (pipe, data) else {
        return Ok(());
    };
    match pipe.write_all(&data).await {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}

/// Reads `reader` to end-of-file in chunks, passing each to `callback` and `log`.
async fn pump(
    reader: Option<impl AsyncRead + Unpin>,
    mut callback: Option<&mut OutputCallback>,
    log: Option<&LiveLog>,
) -> io::Result<()> {
    let Some(mut reader) = reader else {
        return Ok(());
    };
    let mut buffer = vec![0; CHUNK_SIZE];
    loop {
        let len = reader.read(&mut buffer).await?;
        if len == 0 {
            return Ok(());
        }
        let chunk = &buffer[..len];
        if let Some(callback) = callback.as_mut() {
            callback(chunk);
        }
        if let Some(log) = log {
            log.write(chunk);
        }
    }
}

/// Converts the OS's wait status to ours.
fn exit_status(status: std::process::ExitStatus, display: &str) -> Result<ExitStatus, Error> {
    if let Some(code) = status.code() {
        Ok(ExitStatus::Exited(code))
    } else if let Some(signal) = status.signal() {
        Ok(ExitStatus::Signaled(signal))
    } else {
        Err(Error::Io {
            display: display.to_owned(),
            source: io::Error::other(format!("unexpected wait status {status}")),
        })
    }
}
