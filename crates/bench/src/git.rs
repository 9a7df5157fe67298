//! Running `git` in the benchmarks' scratch repositories, with a fixed identity and none of the
//! machine's configuration: [`command`] to build one, [`output`] and [`run_with_input`] to run
//! any command, [`git`] and [`git_stdin`] for both at once.

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, bail};

/// `git args…` in `dir`; its standard output.
pub(crate) async fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = command(dir);
    cmd.args(args);
    output(cmd).await
}

/// [`git`] with `input` on its standard input.
pub(crate) async fn git_stdin(dir: &Path, args: &[&str], input: &str) -> anyhow::Result<String> {
    let mut cmd = command(dir);
    cmd.args(args);
    run_with_input(cmd, input.to_owned()).await
}

/// A `git` command run in `dir`, with a fixed author and committer and no user configuration.
pub(crate) fn command(dir: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "Bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs `cmd`, failing unless it exits with status 0; returns its standard output.
pub(crate) async fn output(mut cmd: tokio::process::Command) -> anyhow::Result<String> {
    let shown = format!("{:?}", cmd.as_std());
    let output = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .with_context(|| format!("run {shown}"))?;
    if !output.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).with_context(|| format!("output of {shown} is not UTF-8"))
}

/// Runs `cmd` with `input` on its standard input, failing unless it exits with status 0.
pub(crate) async fn run_with_input(
    mut cmd: tokio::process::Command,
    input: String,
) -> anyhow::Result<String> {
    use tokio::io::AsyncWriteExt;
    let shown = format!("{:?}", cmd.as_std());
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("run {shown}"))?;
    let mut stdin = child.stdin.take().context("no stdin pipe")?;
    let writer = tokio::spawn(async move {
        stdin.write_all(input.as_bytes()).await?;
        stdin.shutdown().await
    });
    let output = child
        .wait_with_output()
        .await
        .with_context(|| format!("wait for {shown}"))?;
    writer
        .await
        .context("stdin writer")?
        .with_context(|| format!("write to {shown}"))?;
    if !output.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).with_context(|| format!("output of {shown} is not UTF-8"))
}
