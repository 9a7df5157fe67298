//! The Git remote a state store is published to (`--publish-store`) or read from
//! (`--read-only-store`): its URL, which may hold credentials and is only ever shown redacted,
//! and the `git` runs that talk to it.
//!
//! The URL reaches `git` through its environment (`GIT_CONFIG_*`, as the remote
//! `remote.published.url`), never its command line, so neither process lists nor our logs
//! show it; what `git` prints is redacted before it is logged or shown.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// The name the remote has in the `git` runs (configured through the environment only).
const REMOTE_NAME: &str = "published";

/// The longest one `git push` or `git fetch` may take before it is killed (a remote that
/// accepts the connection and then says nothing).
const GIT_TIMEOUT: Duration = Duration::from_secs(600);

/// The URL of a Git remote, e.g. `https://user:token@git.example.org/ci/state.git`,
/// `ssh://git@host/state.git`, `git@host:state.git` or a local path. `Display` and `Debug`
/// show it with its credentials (the userinfo of a `scheme://` URL) replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    url: String,
}

/// A remote URL that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct RemoteUrlError {
    reason: &'static str,
}

impl std::str::FromStr for RemoteUrl {
    type Err = RemoteUrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let refuse = |reason| Err(RemoteUrlError { reason });
        if url.trim().is_empty() {
            return refuse("the URL is empty");
        }
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return refuse("the URL has spaces or control characters");
        }
        if url.starts_with('-') {
            return refuse("the URL starts with '-'");
        }
        Ok(RemoteUrl {
            url: url.to_owned(),
        })
    }
}

impl RemoteUrl {
    /// The URL with the userinfo of a `scheme://user:password@host/…` URL replaced by `***`.
    pub fn redacted(&self) -> String {
        match self.userinfo() {
            Some(userinfo) => self.url.replacen(&format!("{userinfo}@"), "***@", 1),
            None => self.url.clone(),
        }
    }

    /// The userinfo of a `scheme://userinfo@host/…` URL, if any.
    fn userinfo(&self) -> Option<&str> {
        let (_, rest) = self.url.split_once("://")?;
        let authority = rest.split('/').next().unwrap_or(rest);
        authority.rsplit_once('@').map(|(userinfo, _)| userinfo)
    }

    /// `text` (something `git` printed) with the URL and its credentials redacted.
    pub fn redact(&self, text: &str) -> String {
        let text = text.replace(&self.url, &self.redacted());
        match self.userinfo() {
            Some(userinfo) => text.replace(&format!("{userinfo}@"), "***@"),
            None => text,
        }
    }

    /// Runs `git -C repo ARGS` (where `published` names this remote) with no terminal prompt,
    /// automatic gc off, and at most [`GIT_TIMEOUT`]; fails with what `git` printed, redacted.
    pub(crate) async fn git(&self, repo: &Path, args: &[&str]) -> Result<String, GitError> {
        let mut command = tokio::process::Command::new("git");
        command
            .arg("-C")
            .arg(repo)
            // The store packs and merges its own objects; a gc started by git could delete packs
            // the store has open.
            .args(["-c", "gc.auto=0", "-c", "maintenance.auto=false"])
            .args(args)
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", format!("remote.{REMOTE_NAME}.url"))
            .env("GIT_CONFIG_VALUE_0", &self.url)
            // A remote asking for a password fails instead of waiting for an answer.
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let what = args.first().copied().unwrap_or("git").to_owned();
        let child = command.spawn().map_err(|source| GitError::Spawn {
            command: what.clone(),
            source,
        })?;
        let output = match tokio::time::timeout(GIT_TIMEOUT, child.wait_with_output()).await {
            Ok(output) => output.map_err(|source| GitError::Spawn {
                command: what.clone(),
                source,
            })?,
            Err(_) => {
                return Err(GitError::Failed {
                    command: what,
                    message: format!(
                        "no answer within {}",
                        humantime::format_duration(GIT_TIMEOUT)
                    ),
                });
            }
        };
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message: Vec<&str> = stderr
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect();
        let message = match message.as_slice() {
            [] => format!("git {what} exited with {}", output.status),
            lines => lines.join("; "),
        };
        Err(GitError::Failed {
            command: what,
            message: truncate(&self.redact(&message), 500),
        })
    }
}

/// The name of the remote in the arguments of [`RemoteUrl::git`].
pub(crate) const REMOTE: &str = REMOTE_NAME;

impl std::fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Debug for RemoteUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteUrl({:?})", self.redacted())
    }
}

/// A `git` run against the remote failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// `git` could not be started.
    #[error("cannot run git {command}")]
    Spawn {
        /// The git command (`push`, `fetch`, …).
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `git` failed; the message is what it printed, redacted.
    #[error("git {command} failed: {message}")]
    Failed {
        /// The git command.
        command: String,
        /// What it printed (credentials redacted).
        message: String,
    },
}

/// `text` cut to at most `max` bytes, on a character boundary, with `…` if cut.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> RemoteUrl {
        text.parse().expect("a valid URL")
    }

    #[test]
    fn credentials_never_show() {
        let remote = url("https://ci-bot:s3cr%40t@git.example.org:8443/ci/state.git");
        assert_eq!(
            remote.redacted(),
            "https://***@git.example.org:8443/ci/state.git"
        );
        assert_eq!(
            format!("{remote} {remote:?}"),
            "https://***@git.example.org:8443/ci/state.git \
             RemoteUrl(\"https://***@git.example.org:8443/ci/state.git\")"
        );
        assert_eq!(
            remote.redact(
                "fatal: unable to access 'https://ci-bot:s3cr%40t@git.example.org:8443/ci/state.git/': \
                 could not resolve; also https://ci-bot:s3cr%40t@git.example.org/"
            ),
            "fatal: unable to access 'https://***@git.example.org:8443/ci/state.git/': \
             could not resolve; also https://***@git.example.org/"
        );
        // Nothing to hide: unchanged.
        for plain in [
            "https://git.example.org/a@b/state.git",
            "git@github.com:me/state.git",
            "/srv/state.git",
        ] {
            assert_eq!(url(plain).redacted(), plain);
        }
    }

    #[test]
    fn unusable_urls_are_refused() {
        for (text, reason) in [
            ("", "the URL is empty"),
            ("https://x/a b", "the URL has spaces or control characters"),
            ("--upload-pack=evil", "the URL starts with '-'"),
        ] {
            let error = text.parse::<RemoteUrl>().expect_err("invalid");
            assert_eq!(error.to_string(), reason, "{text:?}");
        }
    }
}
