//! The `Cmd` builder: what to run, where, with which input, and where its output goes.
//!
//! This module only describes a command; running it (pipes, process groups, killing) is
//! `run`'s concern.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use datakit_ci_log::LiveLog;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// A callback receiving chunks of a child's output as they arrive.
pub(crate) type OutputCallback = Box<dyn FnMut(&[u8]) + Send + 'static>;

/// The default time a process group gets between SIGTERM and SIGKILL.
const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);

/// A command to run: an argument vector, no shell unless the caller puts `sh -c` in it.
///
/// Built with [`Cmd::new`] and `self -> Self` setters, then passed to [`crate::run`] or
/// [`crate::run_with_exit_status`].
///
/// Defaults:
/// - working directory and environment are inherited from this process (see [`Cmd::env_clear`]);
/// - **stdin is `/dev/null`**: a CI job must never read the server's terminal. Use
///   [`Cmd::stdin`] to feed data;
/// - stdout and stderr are merged (`2>&1`, the same pipe, so their relative order is kept) and
///   go to the [`Cmd::stdout`] callback and the [`Cmd::log`] live log, if any;
/// - no timeout, no cancellation, 5 seconds between SIGTERM and SIGKILL when killing.
#[must_use = "a command does nothing until it is run"]
pub struct Cmd {
    pub(crate) argv: Vec<String>,
    pub(crate) shown: Option<Vec<String>>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) env: Vec<(OsString, Option<OsString>)>,
    pub(crate) env_clear: bool,
    pub(crate) stdin: Option<Vec<u8>>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) cancel: Option<CancellationToken>,
    pub(crate) log: Option<LiveLog>,
    pub(crate) stdout: Option<OutputCallback>,
    pub(crate) stderr: Option<OutputCallback>,
    pub(crate) kill_grace: Duration,
}

impl Cmd {
    /// Creates a command from its argument vector; the first element is the program.
    ///
    /// Fails with [`Error::EmptyCommand`] if `argv` is empty.
    pub fn new<I, S>(argv: I) -> Result<Cmd, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let argv: Vec<String> = argv.into_iter().map(Into::into).collect();
        if argv.is_empty() {
            return Err(Error::EmptyCommand);
        }
        Ok(Cmd {
            argv,
            shown: None,
            cwd: None,
            env: Vec::new(),
            env_clear: false,
            stdin: None,
            timeout: None,
            cancel: None,
            log: None,
            stdout: None,
            stderr: None,
            kill_grace: DEFAULT_KILL_GRACE,
        })
    }

    /// Runs the child in `dir` instead of this process's working directory.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Sets the environment variable `key` to `value` for the child.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    /// Starts the child's environment empty instead of inheriting this process's (the variables
    /// set with [`Cmd::env`] are still given): a build must not see the server's credentials.
    pub fn env_clear(mut self) -> Self {
        self.env_clear = true;
        self.env.clear();
        self
    }

    /// Removes the environment variable `key` from the child's (inherited) environment.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env.push((key.into(), None));
        self
    }

    /// Feeds `data` to the child's stdin, then closes it.
    ///
    /// Without this the child's stdin is `/dev/null`.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// Shows `shown` instead of the real argument vector in logs and error messages, so that
    /// secrets passed on the command line stay out of them.
    pub fn log_cmd(mut self, shown: Vec<String>) -> Self {
        self.shown = Some(shown);
        self
    }

    /// Kills the child's process group if it runs longer than `timeout`; the run then fails
    /// with [`Error::Timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Kills the child's process group when `token` is cancelled; the run then fails with
    /// [`Error::Cancelled`].
    pub fn cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Writes a timestamped `Running <display>` line to `log`, then streams the child's output
    /// (both streams) into it.
    pub fn log(mut self, log: LiveLog) -> Self {
        self.log = Some(log);
        self
    }

    /// Passes each chunk of the child's stdout to `callback` as it arrives.
    ///
    /// Unless [`Cmd::stderr`] is also given, stderr goes to the same pipe (`2>&1`), so this
    /// callback sees both streams in the order the child wrote them.
    pub fn stdout(mut self, callback: impl FnMut(&[u8]) + Send + 'static) -> Self {
        self.stdout = Some(Box::new(callback));
        self
    }

    /// Reads stderr separately from stdout and passes each chunk of it to `callback`.
    pub fn stderr(mut self, callback: impl FnMut(&[u8]) + Send + 'static) -> Self {
        self.stderr = Some(Box::new(callback));
        self
    }

    /// Time the process group gets to exit after SIGTERM before it is sent SIGKILL, when the
    /// command is cancelled or times out (default 5 seconds).
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// The command as shown to users: each argument (of the [`Cmd::log_cmd`] vector if given)
    /// quoted like OCaml's `%S`, separated by spaces, e.g. `"git" "fetch" "origin"`.
    pub fn display(&self) -> String {
        let shown = self.shown.as_ref().unwrap_or(&self.argv);
        let quoted: Vec<String> = shown.iter().map(|arg| quote(arg)).collect();
        quoted.join(" ")
    }
}

impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cmd")
            .field("display", &self.display())
            .field("cwd", &self.cwd)
            .field("timeout", &self.timeout)
            .field("kill_grace", &self.kill_grace)
            .finish_non_exhaustive()
    }
}

/// Quotes `arg` like OCaml's `%S` (`String.escaped` between double quotes): `"` and `\` are
/// backslash-escaped, `\n` `\t` `\r` `\b` use their short escapes, and every other byte outside
/// printable ASCII is written as a three-digit decimal escape `\ddd`.
fn quote(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for &byte in arg.as_bytes() {
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\r' => out.push_str("\\r"),
            0x08 => out.push_str("\\b"),
            b' '..=b'~' => out.push(char::from(byte)),
            _ => out.push_str(&format!("\\{byte:03}")),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(argv: &[&str], expect: &str) {
        let cmd = Cmd::new(argv.iter().copied()).expect("non-empty argv");
        assert_eq!(cmd.display(), expect);
    }

    #[test]
    fn display_quotes_each_argument() {
        check(&["git", "fetch", "origin"], r#""git" "fetch" "origin""#);
        check(
            &["sh", "-c", "echo \"hi\"\n"],
            r#""sh" "-c" "echo \"hi\"\n""#,
        );
        check(&["a\\b\tc"], r#""a\\b\tc""#);
        check(&["\u{1}x\u{7f}"], r#""\001x\127""#);
        check(&["é"], r#""\195\169""#);
        check(&[""], r#""""#);
    }

    #[test]
    fn log_cmd_replaces_the_display() {
        let cmd = Cmd::new(["curl", "-H", "token: s3cret"])
            .expect("non-empty argv")
            .log_cmd(vec!["curl".into(), "-H".into(), "token: ***".into()]);
        assert_eq!(cmd.display(), r#""curl" "-H" "token: ***""#);
    }

    #[test]
    fn empty_argv_is_rejected() {
        let err = Cmd::new(Vec::<String>::new()).expect_err("empty argv must fail");
        assert!(matches!(err, Error::EmptyCommand), "{err}");
    }
}
