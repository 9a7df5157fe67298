//! Running `git` in the benchmarks' scratch repositories, with a fixed identity and none of the
//! machine's configuration.

use std::path::Path;

use anyhow::{Context, ensure};

/// `git args…` in `dir` with a fixed identity; its standard output.
pub(crate) async fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    git_stdin(dir, args, "").await
}

/// [`git`] with `input` on its standard input.
pub(crate) async fn git_stdin(dir: &Path, args: &[&str], input: &str) -> anyhow::Result<String> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "Bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("run git {args:?}"))?;
    let mut stdin = child.stdin.take().context("git's stdin")?;
    stdin.write_all(input.as_bytes()).await?;
    drop(stdin);
    let output = child.wait_with_output().await?;
    ensure!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8(output.stdout)?)
}
