//! Building and running `git` commands in a directory, isolated from any repository the server
//! itself was started in. Knows nothing of caches, terms or locks.

use std::path::Path;
use std::sync::{Arc, Mutex};

use datakit_ci_process::{Cmd, ExitStatus, run_with_exit_status};

/// Environment variables that would make git operate on another repository than the one in its
/// working directory (e.g. when the server runs from a git hook).
const REPOSITORY_VARIABLES: [&str; 7] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
];

/// Configuration for every git command the plugin runs (through `GIT_CONFIG_*`, so logged command
/// lines stay as written). Many builds run git at once in one repository: automatic `gc`/
/// maintenance after a fetch repacks objects while temporary clones read them, and every
/// fetch rewrites `FETCH_HEAD`; under load (500 concurrent builds in the engine benchmark) both
/// made about 2% of builds fail.
const GIT_CONFIG: [(&str, &str); 3] = [
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    ("fetch.writeFetchHead", "false"),
];

/// `git <args>` run in `dir`, never prompting for credentials.
pub(crate) fn git<I, S>(dir: &Path, args: I) -> Cmd
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    git_with_header(dir, args, None)
}

/// `git <args>` run in `dir`, sending `authorization` (if any) as the `Authorization` header of
/// its http(s) requests (`http.extraHeader`, through the environment).
pub(crate) fn git_with_header<I, S>(dir: &Path, args: I, authorization: Option<&str>) -> Cmd
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let argv = std::iter::once("git".to_owned()).chain(args.into_iter().map(Into::into));
    let mut cmd = Cmd::new(argv)
        .expect("the argument vector starts with \"git\"")
        .cwd(dir)
        .env("GIT_TERMINAL_PROMPT", "0");
    for variable in REPOSITORY_VARIABLES {
        cmd = cmd.env_remove(variable);
    }
    let header = authorization.map(|value| format!("Authorization: {value}"));
    let config = GIT_CONFIG
        .iter()
        .map(|(key, value)| (*key, *value))
        .chain(header.as_deref().map(|header| ("http.extraHeader", header)));
    let mut count = 0;
    for (i, (key, value)) in config.enumerate() {
        cmd = cmd
            .env(format!("GIT_CONFIG_KEY_{i}"), key)
            .env(format!("GIT_CONFIG_VALUE_{i}"), value);
        count = i + 1;
    }
    cmd.env("GIT_CONFIG_COUNT", count.to_string())
}

/// What a command printed and how it ended.
pub(crate) struct Captured {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `cmd`, collecting its stdout and stderr separately.
pub(crate) async fn capture(cmd: Cmd) -> Result<Captured, datakit_ci_process::Error> {
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let (out_sink, err_sink) = (Arc::clone(&stdout), Arc::clone(&stderr));
    let cmd = cmd
        .stdout(move |chunk| lock(&out_sink).extend_from_slice(chunk))
        .stderr(move |chunk| lock(&err_sink).extend_from_slice(chunk));
    let status = run_with_exit_status(cmd).await?;
    let text = |buffer: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&lock(buffer)).into_owned();
    Ok(Captured {
        status,
        stdout: text(&stdout),
        stderr: text(&stderr),
    })
}

fn lock(buffer: &Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    buffer
        .lock()
        .expect("no code panics while holding an output buffer")
}
