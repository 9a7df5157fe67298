//! The command line: the options every datakit-ci program accepts ([`CommonArgs`]), the
//! `datakit-ci` binary's shell tests ([`ShellTests`]), and their validation (no I/O here; the
//! local CI does the checks that need the file system).

use std::path::PathBuf;

use clap::{Args, Parser};

use datakit_ci_engine::parse_canary;
use datakit_ci_notifications::{DeliveryConfig, Notifier, NotifySecret};
use datakit_ci_term::RepoId;
use datakit_ci_web::{
    Acl, ConnectionLimits, GithubGrantTimes, ListenAddr, MetricsToken, PublicUrl, SessionsBackend,
    WebConfig,
};

use crate::local::{CiOptions, LocalCiConfig, LocalRepoSpec, ShellConfig, TestSpec};
use crate::remote::RemoteUrl;
use crate::replica::ReadOnlyOptions;

mod docker;

pub use docker::DockerArgs;

/// Continuous integration for local Git repositories: runs every test on every branch, tag and
/// pull-request ref (`refs/pull/<n>/head`), and keeps statuses, logs and history in a Git
/// repository under the state directory.
#[derive(Debug, Parser)]
#[command(name = "datakit-ci", version)]
pub struct Cli {
    /// The options every datakit-ci program has.
    #[command(flatten)]
    pub common: CommonArgs,
    /// The tests to run.
    #[command(flatten)]
    pub tests: ShellTests,
}

/// The `datakit-ci` binary's tests: shell commands, and how they run.
#[derive(Debug, Args)]
pub struct ShellTests {
    /// A test, `NAME=COMMAND`: COMMAND runs with `sh -c` in a fresh clone of each target's head;
    /// `NAME@IMAGE=COMMAND` (or `NAME@build:STEP=COMMAND`, in the image `--docker-build STEP`
    /// builds): in a container of that image, with the head's tree in `/src`. Without any
    /// `--test`, each commit's pipeline file (`.datakit-ci.yml`) says what to run.
    #[arg(long = "test", value_name = "NAME[@IMAGE]=COMMAND")]
    pub tests: Vec<String>,
    /// The longest a test may run (e.g. `90s`, `20m`, `1h 30m`); a test that takes longer
    /// fails with `timed out after …` and its processes are killed.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub timeout: humantime::Duration,
    /// How many tests may run at once (default: the number of CPUs); the others wait, shown
    /// with their place in the queue.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Hand this variable of the CI's environment on to the tests (repeatable); they get only
    /// `CI`, `DATAKIT_CI_*`, `HOME` and `PATH` otherwise.
    #[arg(long = "pass-env", value_name = "NAME")]
    pub pass_env: Vec<String>,
    /// The most a pipeline step's `artifacts` may add up to (e.g. `100MiB`, `2GB`); a file
    /// that would pass it is dropped, named in the step's log, and the step fails.
    #[arg(long, value_name = "SIZE", default_value = "100MiB")]
    pub max_artifact_size: bytesize::ByteSize,
    /// Containerised tests: Docker hosts and image builds.
    #[command(flatten)]
    pub docker: DockerArgs,
}

impl ShellTests {
    /// Checks the tests' names and commands, and reads the variables to pass on from this
    /// process's environment.
    pub fn into_config(self) -> Result<ShellConfig, UsageError> {
        let mut tests: Vec<TestSpec> = Vec::new();
        let mut docker_tests = Vec::new();
        let mut names: Vec<String> = self
            .docker
            .docker_builds
            .iter()
            .filter_map(|b| b.split_once('=').map(|(n, _)| n.to_owned()))
            .collect();
        for value in &self.tests {
            let name = match docker::parse_docker_test(value)? {
                Some(test) => {
                    let name = test.name.clone();
                    docker_tests.push(test);
                    name
                }
                None => {
                    let test = parse_test(value)?;
                    let name = test.name.clone();
                    tests.push(test);
                    name
                }
            };
            if names.contains(&name) {
                return Err(UsageError::DuplicateTest(name));
            }
            names.push(name);
        }
        let docker = self.docker.into_config(docker_tests)?;
        let timeout: std::time::Duration = self.timeout.into();
        if timeout.is_zero() {
            return Err(UsageError::Timeout);
        }
        let jobs = match self.jobs {
            Some(0) => return Err(UsageError::Jobs),
            Some(jobs) => jobs,
            None => std::thread::available_parallelism().map_or(1, usize::from),
        };
        let mut pass_env = Vec::new();
        for name in self.pass_env {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(UsageError::PassEnv {
                    name,
                    reason: "not a variable name",
                });
            }
            let Some(value) = std::env::var_os(&name) else {
                return Err(UsageError::PassEnv {
                    name,
                    reason: "not set in the CI's environment",
                });
            };
            pass_env.push((name, value));
        }
        Ok(ShellConfig {
            tests,
            timeout: Some(timeout),
            jobs: Some(jobs),
            pass_env,
            docker,
            pipeline_secrets: None,
            max_artifact_size: Some(self.max_artifact_size.as_u64()),
        })
    }
}

/// The options every datakit-ci program accepts: the repositories to watch, the state, the
/// canaries and the web UI. Flatten it into a program's own clap parser, or let
/// [`run`](crate::run) do it.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// A repository to test, as `PATH` (id `local/<directory name>`) or `USER/REPO=PATH`.
    #[arg(
        long = "repo",
        value_name = "[USER/REPO=]PATH",
        required_unless_present_any = ["github_repos", "read_only_store"]
    )]
    pub repos: Vec<String>,
    /// The GitHub repositories and how to reach them.
    #[command(flatten)]
    pub github: crate::github::GithubArgs,
    /// Where to keep the state (`state.git`) and the CI's clones.
    #[arg(long, value_name = "DIR", default_value = "./var")]
    pub state_dir: PathBuf,
    /// The public URL of the web UI, used in status links and the first-run setup link
    /// (default: the `--listen` address, else `http://127.0.0.1:8080/`).
    #[arg(long, value_name = "URL")]
    pub web_ui: Option<String>,
    /// Only test this target (`USER/REPO/heads/BRANCH`, `…/tags/TAG` or `…/prs/N`); repeatable.
    #[arg(long = "canary", value_name = "TARGET")]
    pub canaries: Vec<String>,
    /// Serve the web UI on `http://ADDR:PORT` or `https://ADDR:PORT` (a self-signed certificate is
    /// made on first run).
    #[arg(long, value_name = "URL")]
    pub listen: Option<ListenAddr>,
    /// Where the web UI keeps its secrets (password file, TLS key) and where the secrets of
    /// pipeline steps are (`pipeline/NAME`, a file per secret); default `<state-dir>/secrets`.
    #[arg(long, value_name = "DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Where sessions live: `memory://` or `redis://HOST:PORT`.
    #[arg(long, value_name = "URL", default_value = "memory://")]
    pub sessions_backend: SessionsBackend,
    /// Who may read: `everyone`, `user:NAME`, `github-org:ORG`, comma-separated for any of them.
    #[arg(long, value_name = "ACL", default_value = "everyone")]
    pub can_read: Acl,
    /// Who may rebuild and cancel (same syntax as --can-read).
    #[arg(long, value_name = "ACL", default_value = "user:admin")]
    pub can_build: Acl,
    /// Serve `/metrics` to requests bearing a token whose SHA-256 is this (64 hex digits).
    #[arg(long, value_name = "HEX")]
    pub metrics_token_sha256: Option<MetricsToken>,
    /// Also serve `/metrics`, unauthenticated, on 127.0.0.1:PORT.
    #[arg(long, value_name = "PORT")]
    pub listen_prometheus: Option<u16>,
    /// The most of a build's log that is saved (e.g. `64MiB`, `500KB`); a longer log keeps its
    /// first and last halves of it, with a line saying what was cut.
    #[arg(long, value_name = "SIZE", default_value = "64MiB")]
    pub max_log_size: bytesize::ByteSize,
    /// Remove the logs of builds older than DURATION (e.g. `30d`), keeping their results, statuses
    /// and history; the disk is freed at start-up (the store is compacted then).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub keep_logs: Option<std::time::Duration>,
    /// POST a signed JSON event to URL when a target's result changes (fails, is fixed, is
    /// cancelled); repeatable.
    #[arg(long = "notify", value_name = "URL")]
    pub notify: Vec<String>,
    /// Sign notifications with the key in FILE (header `X-DataKit-CI-Signature-256`).
    #[arg(long, value_name = "FILE")]
    pub notify_secret_file: Option<PathBuf>,
    /// The most web connections open at once (default: half the open-files limit).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<std::num::NonZeroUsize>,
    /// How long a GitHub user's organisations and repository permissions are trusted before
    /// GitHub is asked again (`github-org:` and `can-read-github:` ACLs).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub github_grants_ttl: std::time::Duration,
    /// Push the state store (all its branches) to this Git remote after each flush of
    /// statuses, e.g. `https://user:token@git.example.org/ci/state.git`, `ssh://…` or a path;
    /// failures are retried and shown on the dashboard. Credentials in the URL are never shown.
    #[arg(long, value_name = "URL")]
    pub publish_store: Option<String>,
    /// Run no CI: serve the web UI, read-only, from a clone of the store that a CI publishes to
    /// URL (`--publish-store`), refreshed every `--refresh`. Needs `--listen`.
    #[arg(
        long,
        value_name = "URL",
        requires = "listen",
        conflicts_with_all = ["repos", "github_repos", "publish_store", "canaries", "notify", "keep_logs"]
    )]
    pub read_only_store: Option<String>,
    /// How often a read-only web UI fetches the published store (default `5s`).
    #[arg(long, value_name = "DURATION", requires = "read_only_store", value_parser = humantime::parse_duration)]
    pub refresh: Option<std::time::Duration>,
    /// More logging (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// How often a read-only web UI fetches the published store by default.
pub const DEFAULT_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// An argument that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// A `--repo` value is malformed.
    #[error("--repo {value:?}: {reason}")]
    Repo {
        /// The value given.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A `--github-*` option is malformed or missing.
    #[error("{option}: {reason}")]
    Github {
        /// The option.
        option: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A `--test` value is malformed.
    #[error("--test {value:?}: {reason}")]
    Test {
        /// The value given.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A Docker option's value is malformed.
    #[error("{option} {value:?}: {reason}")]
    Docker {
        /// The option, e.g. `--docker-host`.
        option: &'static str,
        /// The value given.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// Two tests (or a test and a `--docker-build` step) have the same name.
    #[error("--test: the name {0:?} is used twice")]
    DuplicateTest(String),
    /// A `--canary` value is malformed.
    #[error("--canary {value:?}: {source}")]
    Canary {
        /// The value given.
        value: String,
        /// What is wrong.
        #[source]
        source: datakit_ci_engine::ConfigError,
    },
    /// `--web-ui` is not an http(s) URL.
    #[error("--web-ui {0:?}: must start with http:// or https://")]
    WebUi(String),
    /// `--timeout` is zero.
    #[error("--timeout: must be longer than 0s")]
    Timeout,
    /// `--jobs` is zero.
    #[error("--jobs: must be at least 1")]
    Jobs,
    /// `--notify` or `--notify-secret-file` is unusable.
    #[error(transparent)]
    Notify(#[from] datakit_ci_notifications::NotifyError),
    /// `--max-log-size` is too small to keep a useful head and tail.
    #[error("--max-log-size: must be at least 4KiB")]
    MaxLogSize,
    /// `--notify-secret-file` without `--notify`.
    #[error("--notify-secret-file: no --notify URL to sign for")]
    NotifySecretAlone,
    /// A `--publish-store` or `--read-only-store` URL is unusable (the URL itself is not
    /// repeated: it may hold credentials).
    #[error("{option}: {source}")]
    Remote {
        /// The option.
        option: &'static str,
        /// What is wrong.
        #[source]
        source: crate::remote::RemoteUrlError,
    },
    /// `--read-only-store` with a `--can-read` that anonymous visitors do not pass: a read-only
    /// web UI has no logins, so nobody could read.
    #[error("--read-only-store: a read-only web UI has no logins, so --can-read must be everyone")]
    ReadOnlyAcl,
    /// `--refresh` is zero.
    #[error("--refresh: must be longer than 0s")]
    Refresh,
    /// An option of the program that a read-only web UI does not use.
    #[error("--read-only-store: {0} does not apply to a read-only web UI (it runs no jobs)")]
    ReadOnlyOption(String),
    /// A `--pass-env` variable cannot be passed on.
    #[error("--pass-env {name:?}: {reason}")]
    PassEnv {
        /// The variable's name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// The smallest `--max-log-size`.
const MIN_LOG_SIZE: u64 = 4096;

impl Cli {
    /// Checks the arguments and turns them into a configuration.
    pub fn into_config(self) -> Result<LocalCiConfig, UsageError> {
        let secrets_dir = self.common.secrets_dir.clone();
        let options = self.common.into_options()?;
        let mut shell = self.tests.into_config()?;
        shell.pipeline_secrets = secrets_dir.map(|dir| dir.join(crate::local::PIPELINE_SECRETS));
        Ok(LocalCiConfig {
            repos: options.repos,
            github: options.github,
            shell,
            state_dir: options.state_dir,
            web_ui: options.web_ui,
            canaries: options.canaries,
            web: options.web,
            notify: options.notify,
            max_log_size: options.max_log_size,
            keep_logs: options.keep_logs,
        })
    }
}

impl CommonArgs {
    /// Checks the options and turns them into what the CI needs.
    pub fn into_options(self) -> Result<CiOptions, UsageError> {
        let repos = self
            .repos
            .iter()
            .map(|value| parse_repo(value))
            .collect::<Result<_, _>>()?;
        let github = self.github.into_options()?;
        let canaries = self
            .canaries
            .iter()
            .map(|value| {
                parse_canary(value).map_err(|source| UsageError::Canary {
                    value: value.clone(),
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        let web_ui = match (&self.web_ui, &self.listen) {
            (Some(url), _) => url.clone(),
            (None, Some(listen)) => format!("{listen}/"),
            (None, None) => "http://127.0.0.1:8080/".to_owned(),
        };
        let public_url: PublicUrl = web_ui
            .parse()
            .map_err(|_| UsageError::WebUi(web_ui.clone()))?;
        let web = self.listen.map(|listen| {
            let secrets = self
                .secrets_dir
                .clone()
                .unwrap_or_else(|| self.state_dir.join("secrets"));
            let mut web = WebConfig::new(secrets)
                .public_url(public_url)
                .listen(listen)
                .sessions(self.sessions_backend.clone())
                .can_read(self.can_read.clone())
                .can_build(self.can_build.clone());
            if let Some(token) = self.metrics_token_sha256.clone() {
                web = web.metrics_token(token);
            }
            if let Some(port) = self.listen_prometheus {
                web = web.prometheus_listen(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
            }
            web.connection_limits(ConnectionLimits {
                max_connections: self.max_connections.map(std::num::NonZeroUsize::get),
                ..ConnectionLimits::default()
            })
            .github_grants(GithubGrantTimes {
                ttl: self.github_grants_ttl,
                ..GithubGrantTimes::default()
            })
        });
        let notify = match (self.notify.is_empty(), &self.notify_secret_file) {
            (true, None) => None,
            (true, Some(_)) => return Err(UsageError::NotifySecretAlone),
            (false, secret) => {
                let mut config = DeliveryConfig::new(self.notify.clone(), web_ui.clone());
                config.secret = secret.as_deref().map(NotifySecret::from_file).transpose()?;
                // Checks the URLs now, so that a bad one is a usage error.
                Notifier::new(config.clone())?;
                Some(config)
            }
        };
        if self.max_log_size.as_u64() < MIN_LOG_SIZE {
            return Err(UsageError::MaxLogSize);
        }
        let remote = |option, url: &str| {
            url.parse::<RemoteUrl>()
                .map_err(|source| UsageError::Remote { option, source })
        };
        let publish_store = self
            .publish_store
            .as_deref()
            .map(|url| remote("--publish-store", url))
            .transpose()?;
        let read_only = match &self.read_only_store {
            Some(url) => {
                let anonymous = datakit_ci_web::UserAttrs::default();
                if self.can_read.check(None, &anonymous) != datakit_ci_web::Decision::Yes {
                    return Err(UsageError::ReadOnlyAcl);
                }
                let refresh = self.refresh.unwrap_or(DEFAULT_REFRESH);
                if refresh.is_zero() {
                    return Err(UsageError::Refresh);
                }
                Some(ReadOnlyOptions {
                    remote: remote("--read-only-store", url)?,
                    refresh,
                })
            }
            None => None,
        };
        Ok(CiOptions {
            repos,
            github,
            state_dir: self.state_dir,
            web_ui,
            canaries,
            web,
            notify,
            max_log_size: self.max_log_size.as_u64(),
            keep_logs: self.keep_logs,
            publish_store,
            read_only,
        })
    }
}

fn parse_repo(value: &str) -> Result<LocalRepoSpec, UsageError> {
    let error = |reason: String| UsageError::Repo {
        value: value.to_owned(),
        reason,
    };
    if let Some((id, path)) = value.split_once('=')
        && id.contains('/')
    {
        let id: RepoId = id.parse().map_err(|e| error(format!("{e}")))?;
        if path.is_empty() {
            return Err(error("the path is empty".into()));
        }
        return Ok(LocalRepoSpec {
            id,
            path: PathBuf::from(path),
        });
    }
    let path = PathBuf::from(value);
    let absolute = std::path::absolute(&path).map_err(|e| error(e.to_string()))?;
    let name = absolute
        .components()
        .next_back()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    let id = RepoId::new("local", &name).map_err(|e| {
        error(format!(
            "cannot make an id from the directory name ({e}); give one as USER/REPO=PATH"
        ))
    })?;
    Ok(LocalRepoSpec { id, path })
}

fn parse_test(value: &str) -> Result<TestSpec, UsageError> {
    let error = |reason: &str| UsageError::Test {
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let (name, command) = value
        .split_once('=')
        .ok_or_else(|| error("expected NAME=COMMAND"))?;
    check_test_name(name).map_err(error)?;
    if command.trim().is_empty() {
        return Err(error("the command is empty"));
    }
    Ok(TestSpec {
        name: name.to_owned(),
        command: command.to_owned(),
    })
}

/// Checks a test's (or a build step's) name: it names statuses and cache branches.
fn check_test_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("the name must be made of letters, digits, '.', '_' and '-'");
    }
    if name.starts_with(['.', '-']) || name.ends_with('.') || name.contains("..") {
        return Err("the name must not start with '.' or '-', end with '.', or contain '..'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<LocalCiConfig, String> {
        let argv = std::iter::once("datakit-ci").chain(args.iter().copied());
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        cli.into_config().map_err(|e| e.to_string())
    }

    #[test]
    fn repos_take_an_optional_id() {
        let config = cli(&[
            "--repo",
            "me/app=/src/app",
            "--repo",
            "/src/my-lib",
            "--test",
            "t=true",
        ])
        .expect("valid");
        let ids: Vec<String> = config.repos.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(ids, ["me/app", "local/my-lib"]);
        assert_eq!(config.repos[0].path, PathBuf::from("/src/app"));
        assert_eq!(config.state_dir, PathBuf::from("./var"));
    }

    #[test]
    fn the_web_ui_defaults_to_the_listen_address() {
        let config = cli(&[
            "--repo",
            "/x",
            "--test",
            "t=true",
            "--listen",
            "http://127.0.0.1:8099",
        ])
        .expect("valid");
        assert_eq!(config.web_ui, "http://127.0.0.1:8099/");
        assert!(config.web.is_some());
        let config = cli(&["--repo", "/x", "--test", "t=true"]).expect("valid");
        assert_eq!(
            (config.web_ui.as_str(), config.web.is_none()),
            ("http://127.0.0.1:8080/", true)
        );
    }

    #[test]
    fn tests_run_with_a_timeout_a_job_limit_and_chosen_variables() {
        let config = cli(&["--repo", "/x", "--test", "t=true"]).expect("valid");
        assert_eq!(
            config.shell.timeout,
            Some(std::time::Duration::from_secs(3600))
        );
        assert_eq!(
            config.shell.jobs,
            Some(std::thread::available_parallelism().map_or(1, usize::from))
        );
        assert!(config.shell.pass_env.is_empty());
        let config = cli(&[
            "--repo",
            "/x",
            "--test",
            "t=true",
            "--timeout",
            "1h 30m",
            "--jobs",
            "3",
            "--pass-env",
            "PATH",
        ])
        .expect("valid");
        assert_eq!(
            config.shell.timeout,
            Some(std::time::Duration::from_secs(5400))
        );
        assert_eq!(config.shell.jobs, Some(3));
        assert_eq!(
            config.shell.pass_env,
            [(
                "PATH".to_owned(),
                std::env::var_os("PATH").expect("PATH is set")
            )]
        );
    }

    #[test]
    fn tests_can_run_in_images_and_built_images() {
        use crate::local::{DockerTestSpec, TestImage};
        let config = cli(&[
            "--repo",
            "/x",
            "--test",
            "unit@debian:bookworm=make test",
            "--test",
            "lint=true",
            "--test",
            "e2e@build:app=./e2e a=b",
            "--docker-build",
            "app=docker/Dockerfile",
            "--docker-host",
            "one=unix:///run/one.sock",
            "--docker-host",
            "two=tcp://127.0.0.1:2375",
            "--docker-jobs",
            "3",
            "--docker-prune-after",
            "2days",
            "--docker-prune-size",
            "10GiB",
        ])
        .expect("valid");
        let docker = &config.shell.docker;
        assert_eq!(
            docker.tests,
            [
                DockerTestSpec {
                    name: "unit".to_owned(),
                    image: TestImage::Published("debian:bookworm".to_owned()),
                    command: "make test".to_owned(),
                },
                DockerTestSpec {
                    name: "e2e".to_owned(),
                    image: TestImage::Built("app".to_owned()),
                    command: "./e2e a=b".to_owned(),
                },
            ]
        );
        assert_eq!(config.shell.tests.len(), 1);
        assert_eq!(docker.builds[0].dockerfile, "docker/Dockerfile");
        let hosts: Vec<(&str, &str)> = docker.hosts.iter().map(|h| (h.name(), h.url())).collect();
        assert_eq!(
            hosts,
            [
                ("one", "unix:///run/one.sock"),
                ("two", "tcp://127.0.0.1:2375")
            ]
        );
        assert_eq!(docker.jobs_per_host, 3);
        assert_eq!(
            docker.prune_after,
            Some(std::time::Duration::from_secs(2 * 86400))
        );
        assert_eq!(docker.prune_size, Some(10 * 1024 * 1024 * 1024));
        // By default: the local daemon, and no containerised test.
        let config = cli(&["--repo", "/x", "--test", "t=echo a@b=c"]).expect("valid");
        assert!(config.shell.docker.tests.is_empty());
        assert_eq!(config.shell.tests[0].command, "echo a@b=c");
        assert_eq!(
            config.shell.docker.hosts,
            [datakit_ci_docker::HostSpec::local_default()]
        );
    }

    #[test]
    fn bad_docker_arguments_are_named() {
        for (args, message) in [
            (
                &["--repo", "/x", "--test", "t@build:app=true"][..],
                r#"--test "t@build:app": no --docker-build app=DOCKERFILE"#,
            ),
            (
                &["--repo", "/x", "--test", "t@=true"],
                r#"--test "t@=true": expected NAME@IMAGE=COMMAND"#,
            ),
            (
                &["--repo", "/x", "--test", "a b@img=true"],
                r#"--test "a b@img=true": the name must be made of letters"#,
            ),
            (
                &["--repo", "/x", "--test", "t@img= "],
                r#"--test "t@img= ": the command is empty"#,
            ),
            (
                &[
                    "--repo",
                    "/x",
                    "--test",
                    "app@img=true",
                    "--docker-build",
                    "app=Dockerfile",
                ],
                r#"--test: the name "app" is used twice"#,
            ),
            (
                &["--repo", "/x", "--test", "t=true", "--docker-build", "app"],
                r#"--docker-build "app": expected NAME=DOCKERFILE"#,
            ),
            (
                &[
                    "--repo",
                    "/x",
                    "--test",
                    "t=true",
                    "--docker-host",
                    "h=http://x:1",
                ],
                r#"--docker-host "h=http://x:1": invalid Docker host URL "http://x:1""#,
            ),
            (
                &["--repo", "/x", "--test", "t=true", "--docker-jobs", "0"],
                r#"--docker-jobs "0": must be at least 1"#,
            ),
        ] {
            let error = cli(args).expect_err("invalid");
            assert!(error.starts_with(message), "{args:?}: {error}");
        }
    }

    #[test]
    fn bad_arguments_are_named() {
        for (args, message) in [
            (
                &["--repo", "/x", "--test", "build"][..],
                r#"--test "build": expected NAME=COMMAND"#,
            ),
            (
                &["--repo", "/x", "--test", "a b=true"],
                r#"--test "a b=true": the name must be made of letters"#,
            ),
            (
                &["--repo", "/x", "--test", "t=true", "--test", "t=false"],
                r#"--test: the name "t" is used twice"#,
            ),
            (
                &["--repo", "/x", "--test", "t= "],
                r#"--test "t= ": the command is empty"#,
            ),
            (
                &["--repo", "a/b/c=/x", "--test", "t=true"],
                r#"--repo "a/b/c=/x": invalid repo ID"#,
            ),
            (
                &["--repo", "/x", "--test", "t=true", "--canary", "me/x/prs/y"],
                r#"--canary "me/x/prs/y": Invalid PR number"#,
            ),
            (
                &["--repo", "/x", "--test", "t=true", "--web-ui", "ftp://x"],
                r#"--web-ui "ftp://x": must start with"#,
            ),
            (
                &["--repo", "/x", "--test", "t=true", "--timeout", "soon"],
                "error: invalid value 'soon' for '--timeout <DURATION>'",
            ),
            (
                &["--repo", "/x", "--test", "t=true", "--timeout", "0s"],
                "--timeout: must be longer than 0s",
            ),
            (
                &["--repo", "/x", "--test", "t=true", "--jobs", "0"],
                "--jobs: must be at least 1",
            ),
            (
                &[
                    "--repo",
                    "/x",
                    "--test",
                    "t=true",
                    "--pass-env",
                    "NO_SUCH_VARIABLE_HERE",
                ],
                r#"--pass-env "NO_SUCH_VARIABLE_HERE": not set in the CI's environment"#,
            ),
            (
                &["--repo", "/x", "--test", "t=true", "--pass-env", "A=B"],
                r#"--pass-env "A=B": not a variable name"#,
            ),
        ] {
            let error = cli(args).expect_err("invalid");
            assert!(error.starts_with(message), "{args:?}: {error}");
        }
    }
}
