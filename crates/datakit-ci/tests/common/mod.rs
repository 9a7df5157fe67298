//! Fixtures for the end-to-end tests of the `datakit-ci` binary: real Git repositories made with
//! the `git` command ([`Repo`]), the binary running on them ([`Ci`], killed on drop) and the
//! state store read back with `git show` ([`State`]).
//!
//! Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long any condition may take: builds run real `git clone`s on a shared, busy machine.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(50);

/// The `datakit-ci` binary under test.
pub(crate) fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_datakit-ci")
}

/// A `git` command with a fixed identity and no user or system configuration.
pub(crate) fn git(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    command
}

/// Runs `git args` in `dir` and returns its trimmed standard output; panics if it fails.
pub(crate) fn run_git(dir: &Path, args: &[&str]) -> String {
    let output = git(dir).args(args).output().expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?} in {}: {}\n{}",
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("git prints UTF-8 here")
        .trim_end()
        .to_owned()
}

/// Polls `condition` until it returns `Some`, or panics after [`DEADLINE`] with `what` and the
/// output of `context`.
pub(crate) fn wait_until<T>(
    what: &str,
    mut condition: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = condition() {
            return value;
        }
        if start.elapsed() > DEADLINE {
            panic!("timed out waiting for {what}\n{}", context());
        }
        std::thread::sleep(POLL);
    }
}

/// A scratch directory for files the test commands write outside their clone (run counters,
/// PID files, markers).
pub(crate) struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// A fresh, empty directory.
    pub(crate) fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// A path inside the directory (not created).
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The path of `name` as a shell word (the temporary directory's name needs no quoting,
    /// but quote it anyway).
    pub(crate) fn shell_path(&self, name: &str) -> String {
        format!("'{}'", self.path(name).display())
    }

    /// The number of lines of file `name` (0 if it does not exist).
    pub(crate) fn count_lines(&self, name: &str) -> usize {
        match std::fs::read_to_string(self.path(name)) {
            Ok(text) => text.lines().count(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => panic!("read {name}: {e}"),
        }
    }
}

/// A real Git repository in a temporary directory, with its `HEAD` detached so that every
/// branch is moved only by [`Repo::set_ref`].
pub(crate) struct Repo {
    _dir: tempfile::TempDir,
    path: PathBuf,
    name: String,
}

impl Repo {
    /// A repository in a directory called `name` (so its id is `local/<name>`), with one commit
    /// on `main`.
    pub(crate) fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join(name);
        std::fs::create_dir(&path).expect("create the repository directory");
        run_git(&path, &["init", "--quiet", "--initial-branch=main"]);
        // Name the repository in its first commit, so that two fixtures never share a commit.
        std::fs::write(path.join("README"), format!("test repository {name}\n"))
            .expect("write README");
        run_git(&path, &["add", "README"]);
        run_git(&path, &["commit", "--quiet", "-m", "Initial commit"]);
        run_git(&path, &["checkout", "--quiet", "--detach"]);
        Repo {
            _dir: dir,
            path,
            name: name.to_owned(),
        }
    }

    /// A bare mirror of this repository, as a forge hosts it: `<temporary dir>/<name>` (e.g.
    /// `proj.git`), with the directory that holds it.
    pub(crate) fn mirror(&self, name: &str) -> (tempfile::TempDir, PathBuf) {
        let hosting = tempfile::tempdir().expect("a temporary directory");
        let bare = hosting.path().join(name);
        run_git(
            hosting.path(),
            &[
                "clone",
                "--quiet",
                "--mirror",
                &self.path.display().to_string(),
                name,
            ],
        );
        (hosting, bare)
    }

    /// The repository's directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The repository's id as the binary derives it: `local/<directory name>`.
    pub(crate) fn id(&self) -> String {
        format!("local/{}", self.name)
    }

    /// The commit `rev` names.
    pub(crate) fn rev(&self, rev: &str) -> String {
        run_git(
            &self.path,
            &["rev-parse", "--verify", &format!("{rev}^{{commit}}")],
        )
    }

    /// The object `rev` names, unpeeled (an annotated tag's name gives the tag object).
    pub(crate) fn rev_object(&self, rev: &str) -> String {
        run_git(&self.path, &["rev-parse", "--verify", rev])
    }

    /// Makes a commit on top of `parent` deleting `paths` and returns its hash. No ref moves.
    pub(crate) fn commit_removing(&self, parent: &str, message: &str, paths: &[&str]) -> String {
        run_git(&self.path, &["checkout", "--quiet", "--detach", parent]);
        for path in paths {
            run_git(&self.path, &["rm", "--quiet", path]);
        }
        run_git(&self.path, &["commit", "--quiet", "-m", message]);
        self.rev("HEAD")
    }

    /// Makes a commit on top of `parent` writing `files` (path, contents; directories are made)
    /// and returns its hash. No ref moves.
    pub(crate) fn commit(&self, parent: &str, message: &str, files: &[(&str, &str)]) -> String {
        run_git(&self.path, &["checkout", "--quiet", "--detach", parent]);
        for (name, contents) in files {
            let path = self.path.join(name);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).expect("make the file's directory");
            }
            std::fs::write(path, contents).expect("write a file");
            run_git(&self.path, &["add", name]);
        }
        run_git(
            &self.path,
            &["commit", "--quiet", "--allow-empty", "-m", message],
        );
        self.rev("HEAD")
    }

    /// Points `refname` (e.g. `refs/heads/dev`, `refs/pull/3/head`) at `commit`.
    pub(crate) fn set_ref(&self, refname: &str, commit: &str) {
        run_git(&self.path, &["update-ref", refname, commit]);
    }

    /// Deletes `refname`.
    pub(crate) fn delete_ref(&self, refname: &str) {
        run_git(&self.path, &["update-ref", "-d", refname]);
    }

    /// Makes an annotated tag `name` on `commit`.
    pub(crate) fn annotated_tag(&self, name: &str, commit: &str) {
        run_git(
            &self.path,
            &[
                "tag",
                "--annotate",
                "-m",
                &format!("Release {name}"),
                name,
                commit,
            ],
        );
    }
}

/// A repository with `branches` branches `<prefix><i>` besides `main`, each on a commit of its
/// own; returns it with its targets' (branch, commit), `main` first.
pub(crate) fn repo_with_branches(
    name: &str,
    prefix: &str,
    branches: usize,
) -> (Repo, Vec<(String, String)>) {
    let repo = Repo::new(name);
    let main = repo.rev("main");
    let mut targets = vec![("main".to_owned(), main.clone())];
    for i in 0..branches {
        let commit = repo.commit(&main, &format!("build {i}"), &[("n", &format!("{i}\n"))]);
        let branch = format!("{prefix}{i}");
        repo.set_ref(&format!("refs/heads/{branch}"), &commit);
        targets.push((branch, commit));
    }
    (repo, targets)
}

/// What the test reads of the binary's output.
#[derive(Default)]
struct Output {
    stdout: Vec<String>,
    stdout_closed: bool,
    stderr: Vec<String>,
    stderr_closed: bool,
}

/// The `datakit-ci` binary running, with its standard output collected line by line. Dropping
/// it stops the binary (SIGTERM, then SIGKILL if it does not exit in time).
pub(crate) struct Ci {
    child: Child,
    output: Arc<(Mutex<Output>, Condvar)>,
    exit: Option<ExitStatus>,
}

impl Ci {
    /// Starts the binary with `args`.
    pub(crate) fn spawn<I, S>(args: I) -> Ci
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Ci::spawn_program(binary(), args)
    }

    /// Starts `program` with `args`: the binary, or a shell that `exec`s it.
    pub(crate) fn spawn_program<I, S>(program: &str, args: I) -> Ci
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let mut child = Command::new(program)
            .args(&args)
            .env("GIT_AUTHOR_NAME", "Test Author")
            .env("GIT_AUTHOR_EMAIL", "author@example.com")
            .env("GIT_COMMITTER_NAME", "Test Committer")
            .env("GIT_COMMITTER_EMAIL", "committer@example.com")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start datakit-ci");
        let output = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        spawn_stdout_reader(stdout, output.clone());
        spawn_stderr_reader(stderr, output.clone());
        Ci {
            child,
            output,
            exit: None,
        }
    }

    /// Starts the binary on `repos` with `tests` (name, command) and state in `state`, plus
    /// `extra` arguments.
    pub(crate) fn start(
        repos: &[&Repo],
        tests: &[(&str, &str)],
        state: &State,
        extra: &[&str],
    ) -> Ci {
        let mut args: Vec<OsString> = Vec::new();
        for repo in repos {
            args.push("--repo".into());
            args.push(repo.path().into());
        }
        for (name, command) in tests {
            args.push("--test".into());
            args.push(format!("{name}={command}").into());
        }
        args.push("--state-dir".into());
        args.push(state.dir().into());
        args.extend(extra.iter().map(OsString::from));
        Ci::spawn(args)
    }

    /// The process id of the binary.
    pub(crate) fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("PIDs fit in i32"))
    }

    /// The lines printed on standard output so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.output.0.lock().expect("output lock").stdout.clone()
    }

    /// Waits until a line of standard output equals `line`.
    pub(crate) fn wait_for_line(&self, line: &str) {
        self.wait_for(&format!("the line {line:?}"), |l| l == line);
    }

    /// Waits until a line of standard output satisfies `predicate` and returns it.
    pub(crate) fn wait_for(&self, what: &str, mut predicate: impl FnMut(&str) -> bool) -> String {
        let (lock, changed) = &*self.output;
        let start = Instant::now();
        let mut output = lock.lock().expect("output lock");
        loop {
            if let Some(line) = output.stdout.iter().find(|l| predicate(l)) {
                return line.clone();
            }
            let elapsed = start.elapsed();
            if elapsed > DEADLINE || output.stdout_closed {
                drop(output);
                panic!("no {what} on standard output\n{}", self.report());
            }
            output = changed
                .wait_timeout(output, DEADLINE - elapsed)
                .expect("output lock")
                .0;
        }
    }

    /// The binary's output so far, for failure messages.
    pub(crate) fn report(&self) -> String {
        report(&self.output)
    }

    /// The standard error output so far.
    pub(crate) fn stderr(&self) -> Vec<String> {
        self.output.0.lock().expect("output lock").stderr.clone()
    }

    /// Sends `signal` to the binary.
    pub(crate) fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal datakit-ci");
    }

    /// Waits for the binary to exit (panics after [`DEADLINE`]) and returns its status.
    pub(crate) fn wait(&mut self) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        let child = &mut self.child;
        let output = &self.output;
        let status = wait_until(
            "datakit-ci to exit",
            || child.try_wait().expect("wait for datakit-ci"),
            || report(output),
        );
        self.exit = Some(status);
        status
    }

    /// Sends SIGTERM and waits for the binary to exit.
    pub(crate) fn terminate(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait()
    }

    /// Kills the binary with SIGKILL (its guardian then kills its builds) and reaps it.
    pub(crate) fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
        self.wait();
    }
}

impl Drop for Ci {
    fn drop(&mut self) {
        if self.exit.is_some() {
            return;
        }
        if let Ok(None) = self.child.try_wait() {
            let _sent = kill(self.pid(), Signal::SIGTERM);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(POLL);
            }
            let _killed = self.child.kill();
        }
        let _reaped = self.child.wait();
    }
}

/// The binary's output so far, for failure messages.
fn report(output: &Arc<(Mutex<Output>, Condvar)>) -> String {
    let output = output.0.lock().expect("output lock");
    let stderr_tail = output.stderr.len().saturating_sub(40);
    format!(
        "--- stdout:\n{}\n--- stderr (last lines):\n{}",
        output.stdout.join("\n"),
        output.stderr[stderr_tail..].join("\n")
    )
}

fn spawn_stdout_reader(stdout: ChildStdout, output: Arc<(Mutex<Output>, Condvar)>) {
    std::thread::spawn(move || {
        let (lock, changed) = &*output;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            lock.lock().expect("output lock").stdout.push(line);
            changed.notify_all();
        }
        lock.lock().expect("output lock").stdout_closed = true;
        changed.notify_all();
    });
}

fn spawn_stderr_reader(stderr: impl Read + Send + 'static, output: Arc<(Mutex<Output>, Condvar)>) {
    std::thread::spawn(move || {
        let (lock, _) = &*output;
        for line in BufReader::new(stderr).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line).into_owned();
            lock.lock().expect("output lock").stderr.push(line);
        }
        lock.lock().expect("output lock").stderr_closed = true;
    });
}

/// Runs the binary with `args` until it exits (it must, within [`DEADLINE`]) and returns its exit
/// status, standard output and standard error.
pub(crate) fn run_to_exit<I, S>(args: I) -> (ExitStatus, Vec<String>, Vec<String>)
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let mut ci = Ci::spawn(args);
    let status = ci.wait();
    // The reader threads finish once the pipes close.
    wait_until(
        "the output pipes to close",
        || {
            let output = ci.output.0.lock().expect("output lock");
            (output.stdout_closed && output.stderr_closed).then_some(())
        },
        || ci.report(),
    );
    let stderr = ci.stderr();
    (status, ci.lines(), stderr)
}

/// One commit status as the binary writes it to `github-metadata`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Status {
    /// `pending`, `success` or `failure`.
    pub(crate) state: String,
    /// The description.
    pub(crate) description: String,
    /// The link to the web UI, if any.
    pub(crate) target_url: Option<String>,
}

/// A state directory (`--state-dir`), read with the `git` command.
pub(crate) struct State {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl State {
    /// A fresh state directory (not yet created, so the binary makes it).
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("var");
        State { _dir: dir, path }
    }

    /// The state directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.path
    }

    /// The state store, `<state dir>/state.git`.
    pub(crate) fn store(&self) -> PathBuf {
        self.path.join("state.git")
    }

    /// `git -C state.git show <branch>:<path>`, or `None` if it does not exist.
    pub(crate) fn show(&self, branch: &str, path: &str) -> Option<String> {
        if !self.store().exists() {
            return None;
        }
        let output = git(&self.store())
            .args(["show", &format!("{branch}:{path}")])
            .output()
            .expect("git runs");
        output
            .status
            .success()
            .then(|| String::from_utf8(output.stdout).expect("store files are UTF-8 here"))
    }

    /// The commit `branch` points at, or `None`.
    pub(crate) fn rev(&self, branch: &str) -> Option<String> {
        if !self.store().exists() {
            return None;
        }
        let output = git(&self.store())
            .args([
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{branch}^{{commit}}"),
            ])
            .output()
            .expect("git runs");
        output.status.success().then(|| {
            String::from_utf8(output.stdout)
                .expect("a hash")
                .trim()
                .to_owned()
        })
    }

    /// The entries of directory `path` on `branch` (`git show` of a tree), or `None`.
    pub(crate) fn list(&self, branch: &str, path: &str) -> Option<Vec<String>> {
        let text = self.show(branch, path)?;
        Some(
            text.lines()
                .skip_while(|line| !line.is_empty())
                .filter(|line| !line.is_empty())
                .map(|line| line.trim_end_matches('/').to_owned())
                .collect(),
        )
    }

    /// The store's branch names.
    pub(crate) fn branches(&self) -> Vec<String> {
        if !self.store().exists() {
            return Vec::new();
        }
        let text = run_git(
            &self.store(),
            &["for-each-ref", "--format=%(refname:short)", "refs/heads/"],
        );
        text.lines().map(str::to_owned).collect()
    }

    /// The commit subjects of `branch`, newest first.
    pub(crate) fn subjects(&self, branch: &str) -> Vec<String> {
        let text = run_git(&self.store(), &["log", "--format=%s", branch]);
        text.lines().map(str::to_owned).collect()
    }

    /// The status of `test` on `commit` of repository `repo_id`, if one is written.
    pub(crate) fn status(&self, repo_id: &str, commit: &str, test: &str) -> Option<Status> {
        let dir = format!("{repo_id}/commit/{commit}/status/ci/datakit/{test}");
        // Read every file from the same commit of the metadata branch.
        let metadata = self.rev("github-metadata")?;
        let state = self.show(&metadata, &format!("{dir}/state"))?;
        let description = self
            .show(&metadata, &format!("{dir}/description"))
            .unwrap_or_default();
        let target_url = self.show(&metadata, &format!("{dir}/target_url"));
        let strip = |value: String| {
            value
                .strip_suffix('\n')
                .unwrap_or_else(|| panic!("status value {value:?} ends with a newline"))
                .to_owned()
        };
        Some(Status {
            state: strip(state),
            description: strip(description),
            target_url: target_url.map(strip),
        })
    }

    /// Waits until the status of `test` on `commit` is `state`, and returns it.
    /// The description of `test`'s status on `commit` once its state is `state`.
    pub(crate) fn wait_for_description(
        &self,
        ci: &Ci,
        repo_id: &str,
        commit: &str,
        test: &str,
        state: &str,
    ) -> String {
        self.wait_for_status(ci, repo_id, commit, test, state)
            .description
    }

    pub(crate) fn wait_for_status(
        &self,
        ci: &Ci,
        repo_id: &str,
        commit: &str,
        test: &str,
        state: &str,
    ) -> Status {
        wait_until(
            &format!("{test} on {commit} to be {state}"),
            || {
                self.status(repo_id, commit, test)
                    .filter(|status| status.state == state)
            },
            || {
                format!(
                    "status now: {:?}\n{}",
                    self.status(repo_id, commit, test),
                    ci.report()
                )
            },
        )
    }
}

/// A port nothing listens on now.
pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("a bound address").port()
}

/// The body of `GET path` on 127.0.0.1:`port`, if the server answers `200`.
pub(crate) fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// Sends the raw HTTP/1.1 `request` to 127.0.0.1:`port` and returns the whole response (head and
/// body), or `None` if the server cannot be reached.
pub(crate) fn http_exchange(port: u16, request: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// The status line, headers and body of `GET path` (sent as is, never normalised).
pub(crate) fn http_get_bytes(port: u16, path: &str) -> (String, Vec<u8>) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the CI listens");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("sends the request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("reads the answer");
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&response[..end]).into_owned();
    (head, response[end + 4..].to_vec())
}

/// The artifacts (name, size, URL) the JSON API lists for `job` of the target `main` of
/// `local/app` when its head is `head`, once it lists `count` of them.
pub(crate) fn api_artifacts(
    ci: &Ci,
    port: u16,
    head: &str,
    job: &str,
    count: usize,
) -> Vec<(String, u64, String)> {
    wait_until(
        &format!("the API to list {count} artifacts of {job}"),
        || {
            let api = http_get(port, "/api/v1/targets/local/app/ref/heads/main")?;
            let api: serde_json::Value = serde_json::from_str(&api).ok()?;
            if api["head"] != head {
                return None;
            }
            let job = api["jobs"]
                .as_array()?
                .iter()
                .find(|j| j["name"] == job)?
                .clone();
            let listed: Vec<(String, u64, String)> = job["artifacts"]
                .as_array()
                .map(|artifacts| {
                    artifacts
                        .iter()
                        .map(|a| {
                            (
                                a["name"].as_str().unwrap_or_default().to_owned(),
                                a["size"].as_u64().unwrap_or_default(),
                                a["url"].as_str().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            (listed.len() == count).then_some(listed)
        },
        || ci.report(),
    )
}
