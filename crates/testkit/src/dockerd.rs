//! A `dockerd` of the harness in a network namespace of its own: its configuration, its start
//! and the wait until it answers (`Layout`, shared with the swarm's workers), and [`Daemon`],
//! a standalone one that a test starts and stops (a second Docker host for the Docker plugin's
//! tests, issue 16). A standalone daemon is never part of the swarm: its namespace, paths and
//! cgroup parent (`dkcd-NAME`, `/run/datakit-ci-dockerd/NAME`, `/var/lib/datakit-ci-dockerd/NAME`,
//! `datakit-ci-dockerd-NAME`) are distinct from the swarm's (`dkcs-*`), so starting, stopping or
//! killing one never disturbs the shared cluster.
//!
//! ```no_run
//! use datakit_ci_testkit::dockerd::Daemon;
//! let second = Daemon::start("my-test")?;
//! second.load_image(datakit_ci_testkit::docker::ensure_busybox_image()?)?;
//! println!("second daemon at {}", second.docker_host());
//! second.stop()?; // as a machine that is lost: every process killed at once
//! // Dropping it removes its namespace, mounts and files.
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::HarnessError;
use crate::host;

/// The standalone daemons' sockets, configurations, pid files and logs, one directory each.
const RUN_DIR: &str = "/run/datakit-ci-dockerd";
/// The standalone daemons' data roots.
const DATA_DIR: &str = "/var/lib/datakit-ci-dockerd";

/// Where a `dockerd` of the harness keeps its state, and where it runs.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// Its socket, exec root, pid files, log and configuration.
    pub(crate) run_dir: PathBuf,
    /// Its images and containers.
    pub(crate) data_root: PathBuf,
    /// The network namespace it runs in (`/var/run/netns/NAME`), which holds its bridge and
    /// iptables rules.
    pub(crate) netns: String,
    /// The cgroup its containers go under.
    pub(crate) cgroup_parent: String,
}

impl Layout {
    /// Its Unix socket.
    pub(crate) fn socket(&self) -> PathBuf {
        self.run_dir.join("docker.sock")
    }

    /// `unix://` and its socket.
    pub(crate) fn docker_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The daemon's process, as the harness tracks it.
    pub(crate) fn process(&self) -> host::Daemon {
        host::Daemon {
            program: "dockerd",
            pidfile: self.run_dir.join("daemon.pid"),
            log: self.run_dir.join("dockerd.log"),
        }
    }

    /// Runs `docker -H <its socket> args`.
    pub(crate) fn docker(&self, args: &[&str]) -> Result<String, HarnessError> {
        let socket = self.docker_host();
        let mut all = vec!["-H", socket.as_str()];
        all.extend_from_slice(args);
        host::run("docker", &all)
    }

    /// Starts the daemon in its namespace (which must exist) with its data root kept, and waits
    /// until it answers.
    pub(crate) fn start(&self) -> Result<(), HarnessError> {
        let daemon = self.process();
        host::create_dir(&self.run_dir)?;
        host::create_dir(&self.data_root)?;
        // A daemon killed the hard way leaves its mounts, and runtime state that its containerd
        // would wait on when it starts (shims that are gone): start as after a reboot, which
        // empties /run, with the data root kept.
        host::unmount_under(&self.data_root)?;
        let exec_root = self.run_dir.join("exec");
        host::unmount_under(&exec_root)?;
        remove_dir(&exec_root)?;
        // A pid file left by a killed daemon would stop the next one if its pid were reused.
        let _ = std::fs::remove_file(self.run_dir.join("docker.pid"));
        let config_file = self.run_dir.join("daemon.json");
        host::write_file(&config_file, &self.config())?;
        let config_file = config_file.display().to_string();
        daemon.start(
            Some(&self.netns),
            &["dockerd", "--config-file", &config_file],
        )?;
        host::wait_until(
            Duration::from_secs(60),
            &format!("the dockerd in {} to answer", self.netns),
            || Ok(daemon.pid().is_some() && self.docker(&["version"]).is_ok()),
        )
        .map_err(|e| daemon.with_log(e))
    }

    /// The daemon's `daemon.json` (written by hand: every value is a path or a word of ours):
    /// its own paths and socket instead of the host's configuration, and the host's storage
    /// driver, which works on this file system. Its bridge and iptables rules are in its own
    /// namespace (its `docker0` does not clash with the host's), so its containers have a
    /// network.
    fn config(&self) -> String {
        let dir = self.run_dir.display();
        format!(
            r#"{{
  "data-root": "{data}",
  "exec-root": "{dir}/exec",
  "pidfile": "{dir}/docker.pid",
  "hosts": ["unix://{dir}/docker.sock"],
  "iptables": true,
  "ip-masq": true,
  "storage-driver": "{driver}",
  "cgroup-parent": "{cgroup}",
  "log-driver": "json-file",
  "log-opts": {{"max-size": "10m", "max-file": "2"}}
}}
"#,
            data = self.data_root.display(),
            driver = host_storage_driver(),
            cgroup = self.cgroup_parent,
        )
    }

    /// Kills every process of the daemon (its `containerd`, shims and containers too) with
    /// SIGKILL, as a machine that is lost.
    pub(crate) fn kill(&self) -> Result<(), HarnessError> {
        host::kill_node(&self.netns)
    }

    /// Kills the daemon and removes its mounts, files and data root (not its namespace).
    pub(crate) fn remove(&self) -> Result<(), HarnessError> {
        self.kill()?;
        for dir in [&self.data_root, &self.run_dir] {
            host::unmount_under(dir)?;
            remove_dir(dir)?;
        }
        Ok(())
    }
}

/// A `dockerd` of its own that a test starts, in a network namespace of its own with its own
/// socket and data root, outside the swarm. Dropping it kills it and removes its namespace,
/// mounts and files.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    layout: Layout,
}

impl Daemon {
    /// Starts the daemon called `name` (ASCII lowercase letters, digits and `-`, at most 40:
    /// make it unique to the test, e.g. with the process id), removing first whatever an
    /// earlier daemon of that name left (a test that was killed); waits until it answers.
    pub fn start(name: &str) -> Result<Daemon, HarnessError> {
        let valid = !name.is_empty()
            && name.len() <= 40
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(HarnessError::Unexpected {
                what: "daemon name (use a-z, 0-9 and '-', at most 40)".to_owned(),
                got: name.to_owned(),
            });
        }
        host::check_programs(host::DOCKERD_PROGRAMS)?;
        let daemon = Daemon {
            name: name.to_owned(),
            layout: Layout {
                run_dir: Path::new(RUN_DIR).join(name),
                data_root: Path::new(DATA_DIR).join(name),
                netns: format!("dkcd-{name}"),
                cgroup_parent: format!("datakit-ci-dockerd-{name}"),
            },
        };
        daemon.layout.remove()?;
        // No veth: the tests reach the daemon by its socket, and its containers need no way out.
        if host::netns_exists(&daemon.layout.netns) {
            host::run("ip", &["netns", "del", &daemon.layout.netns])?;
        }
        host::run("ip", &["netns", "add", &daemon.layout.netns])?;
        host::run(
            "ip",
            &["-n", &daemon.layout.netns, "link", "set", "lo", "up"],
        )?;
        daemon.layout.start()?;
        tracing::info!(name, socket = %daemon.socket().display(), "started a standalone dockerd");
        Ok(daemon)
    }

    /// Its name, as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its Unix socket.
    pub fn socket(&self) -> PathBuf {
        self.layout.socket()
    }

    /// `unix://` and its socket, for `docker -H`, `DOCKER_HOST` and `--docker-host`.
    pub fn docker_host(&self) -> String {
        self.layout.docker_host()
    }

    /// Runs `docker -H <its socket> args` and returns what it printed, trimmed.
    pub fn docker(&self, args: &[&str]) -> Result<String, HarnessError> {
        self.layout.docker(args)
    }

    /// Copies `image` from the host's daemon into this one (`docker save`, then `docker load`):
    /// the machine has no registry to pull from.
    pub fn load_image(&self, image: &str) -> Result<(), HarnessError> {
        let archive = self.layout.run_dir.join("image.tar");
        let path = archive.display().to_string();
        host::run("docker", &["save", "-o", &path, image])?;
        let loaded = self.docker(&["load", "-q", "-i", &path]);
        let _ = std::fs::remove_file(&archive);
        loaded.map(|_| ())
    }

    /// Kills the daemon, its `containerd` and its containers with SIGKILL, as a machine that
    /// is lost: from then on its socket refuses connections. Returns once they are gone.
    pub fn stop(&self) -> Result<(), HarnessError> {
        tracing::info!(name = %self.name, "killing the standalone dockerd");
        self.layout.kill()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let removed = self.layout.remove();
        host::delete_netns(&self.layout.netns, None);
        remove_cgroups(&self.layout.cgroup_parent);
        if let Err(error) = removed {
            tracing::error!(name = %self.name, %error, "cannot remove the standalone dockerd");
            eprintln!(
                "cannot remove the standalone dockerd {}: {error}",
                self.name
            );
        }
    }
}

/// Removes `dir` and everything in it, if it exists.
fn remove_dir(dir: &Path) -> Result<(), HarnessError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|source| HarnessError::Io {
            what: format!("remove {}", dir.display()),
            source,
        })?;
    }
    Ok(())
}

/// Removes the (empty, once the daemon's containers are gone) cgroups named `name` under every
/// hierarchy (cgroup v1: one per controller; v2: one), which the daemon made for its
/// containers and does not remove: each test's daemon has a name of its own, so they would
/// pile up.
fn remove_cgroups(name: &str) {
    let root = Path::new("/sys/fs/cgroup");
    let mut candidates = vec![root.join(name)];
    if let Ok(entries) = std::fs::read_dir(root) {
        candidates.extend(entries.flatten().map(|entry| entry.path().join(name)));
    }
    for dir in candidates {
        remove_cgroup(&dir);
    }
}

/// Removes cgroup `dir` and the cgroups below it (a killed container's), deepest first: a cgroup
/// goes with `rmdir` once it has no process and no child, whatever control files it shows.
fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&entry.path());
            }
        }
    }
    // Not there, or still used (a process outlived the kill): nothing to do about it here.
    let _ = std::fs::remove_dir(dir);
}

/// The host daemon's storage driver (`overlay2`, `fuse-overlayfs`, …), which works on the file
/// system the harness's data roots share with it.
fn host_storage_driver() -> String {
    host::run("docker", &["info", "--format", "{{.Driver}}"])
        .ok()
        .filter(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or_else(|| "vfs".to_owned())
}
