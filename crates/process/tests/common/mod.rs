//! Helpers of the tests of processes that leave their process group (issue 14, defect 8): scripts
//! that escape by `setsid` or a double fork and write the escapee's PID to a file.
#![allow(dead_code)]

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use datakit_ci_process::Cmd;
use nix::unistd::Pid;

/// Starts, with `setsid`, a child in a session of its own that writes its PID to `escapee.pid`,
/// then waits for it.
pub(crate) const SETSID_SCRIPT: &str = r#"
setsid sh -c 'echo $$ > escapee.pid.tmp; mv escapee.pid.tmp escapee.pid; exec sleep 1000' >/dev/null 2>&1 &
wait
"#;

/// Double-forks into the background (a subshell that exits at once) in a session of its own;
/// the escapee writes its PID to `escapee.pid`. The script then waits for the PID file and
/// sleeps, or exits if `$1` is `exit`.
pub(crate) const DOUBLE_FORK_SCRIPT: &str = r#"
(setsid sh -c 'echo $$ > escapee.pid.tmp; mv escapee.pid.tmp escapee.pid; exec sleep 1000' >/dev/null 2>&1 &)
while [ ! -e escapee.pid ]; do sleep 0.01; done
if [ "$1" = exit ]; then exit 0; fi
exec sleep 1000
"#;

/// `sh -c script sh args…` in `dir`.
pub(crate) fn sh_in(dir: &Path, script: &str, args: &[&str]) -> Cmd {
    let mut argv = vec!["sh", "-c", script, "sh"];
    argv.extend_from_slice(args);
    Cmd::new(argv).expect("non-empty argv").cwd(dir)
}

/// The PID in `dir/escapee.pid`, once written (with a deadline).
pub(crate) async fn escapee(dir: &Path) -> Result<Pid> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = fs::read_to_string(dir.join("escapee.pid"))
            && let Ok(pid) = text.trim().parse()
        {
            return Ok(Pid::from_raw(pid));
        }
        if Instant::now() > deadline {
            bail!("the script never wrote escapee.pid");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The state letter of `pid` (`R`, `S`, `Z`…), or `None` if there is no such process.
pub(crate) fn state(pid: Pid) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Whether `pid` is a live (not zombie) process.
pub(crate) fn alive(pid: Pid) -> bool {
    state(pid).is_some_and(|state| !matches!(state, 'Z' | 'X'))
}

/// The session of `pid`.
pub(crate) fn session(pid: Pid) -> Option<Pid> {
    nix::unistd::getsid(Some(pid)).ok()
}

/// Waits (with a deadline) until `pid` is no longer alive; a zombie left for another parent to
/// reap counts as dead.
pub(crate) async fn assert_dies(pid: Pid) -> Result<()> {
    wait_for(&format!("process {pid} to die"), || !alive(pid)).await
}

/// Waits (with a deadline) until `pid` is gone entirely: dead and reaped.
pub(crate) async fn assert_reaped(pid: Pid) -> Result<()> {
    wait_for(&format!("process {pid} to be reaped"), || {
        state(pid).is_none()
    })
    .await
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if condition() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
