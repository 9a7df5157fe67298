//! A real image registry: Debian's `docker-registry` (the Distribution project's registry),
//! with a configuration and storage of the harness's, listening on `127.0.0.1:REGISTRY_PORT`
//! of the host. The host's daemon treats registries on 127.0.0.0/8 as insecure (plain HTTP) by
//! default, so nothing in its configuration changes; the cluster's workers reach the same
//! address through forwarders of their own (see [`super::Cluster`]).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use super::{DATA_DIR, LOCK_FILE, RUN_DIR};
use crate::error::HarnessError;
use crate::host::{self, Daemon, Lock};

/// The port the registry listens on, on the host's loopback and, through forwarders, on every
/// worker's.
pub const REGISTRY_PORT: u16 = 35731;

/// The registry of the tests, running; images pushed to it can be pulled by digest on every
/// node of the cluster as `127.0.0.1:REGISTRY_PORT/NAME@sha256:…`.
#[derive(Debug, Clone)]
pub struct Registry {
    address: String,
}

impl Registry {
    /// Starts the registry unless it runs (reused across test programs and processes; the
    /// storage survives restarts), and waits until it answers.
    pub fn ensure() -> Result<Registry, HarnessError> {
        host::check_programs(host::DOCKERD_PROGRAMS)?;
        host::check_programs(host::SWARM_PROGRAMS)?;
        host::create_dir(&run_dir())?;
        let _lock = Lock::acquire(LOCK_FILE.as_ref())?;
        Self::ensure_locked()
    }

    /// [`Registry::ensure`] for a caller that holds the harness's lock.
    pub(crate) fn ensure_locked() -> Result<Registry, HarnessError> {
        let registry = Registry {
            address: format!("127.0.0.1:{REGISTRY_PORT}"),
        };
        let daemon = daemon();
        if daemon.pid().is_none() {
            let storage = PathBuf::from(DATA_DIR).join("registry");
            host::create_dir(&storage)?;
            let config = run_dir().join("registry.yml");
            host::write_file(
                &config,
                &format!(
                    "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    \
                     rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {}\n",
                    storage.display(),
                    registry.address
                ),
            )?;
            let config = config.display().to_string();
            daemon.start(None, &["docker-registry", "serve", &config])?;
        }
        host::wait_until(Duration::from_secs(20), "the registry to answer", || {
            Ok(registry.answers())
        })
        .map_err(|e| daemon.with_log(e))?;
        Ok(registry)
    }

    /// `127.0.0.1:PORT`, the registry's address on every node.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Pushes the host daemon's `image` (`NAME:TAG`) to the registry and returns the reference
    /// every node can pull: `127.0.0.1:PORT/NAME@sha256:…`. The local tag made for the push is
    /// removed again (the image stays).
    pub fn push(&self, image: &str) -> Result<String, HarnessError> {
        // Tests push at once: one's `rmi` of the tag must not pull it from under another's push.
        let _lock = Lock::acquire(LOCK_FILE.as_ref())?;
        let (name, _) = image.rsplit_once(':').unwrap_or((image, "latest"));
        let tagged = format!("{}/{image}", self.address);
        host::run("docker", &["tag", image, &tagged])?;
        let pushed = host::run("docker", &["push", &tagged]);
        let _ = host::run("docker", &["rmi", &tagged]);
        let output = pushed?;
        // The last line of `docker push` is `TAG: digest: sha256:… size: N`.
        let digest = output
            .split_whitespace()
            .find(|word| word.starts_with("sha256:"))
            .ok_or_else(|| HarnessError::Unexpected {
                what: format!("the digest in the output of docker push {tagged}"),
                got: output.clone(),
            })?;
        Ok(format!("{}/{name}@{digest}", self.address))
    }

    /// Whether `GET /v2/` answers with the registry's API version header.
    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(&self.address) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!(
            "GET /v2/ HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.address
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.") && answer.contains("Docker-Distribution-Api-Version")
    }
}

fn run_dir() -> PathBuf {
    PathBuf::from(RUN_DIR)
}

pub(crate) fn daemon() -> Daemon {
    Daemon {
        program: "docker-registry",
        pidfile: run_dir().join("registry.pid"),
        log: run_dir().join("registry.log"),
    }
}

/// Stops the registry and deletes what it stored.
pub(crate) fn remove() -> Result<(), HarnessError> {
    if let Some(pid) = daemon().pid() {
        let _ = host::run("kill", &["-KILL", &pid.to_string()]);
    }
    let storage = PathBuf::from(DATA_DIR).join("registry");
    if storage.exists() {
        std::fs::remove_dir_all(&storage).map_err(|source| HarnessError::Io {
            what: format!("remove {}", storage.display()),
            source,
        })?;
    }
    Ok(())
}
