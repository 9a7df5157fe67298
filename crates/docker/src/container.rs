//! One container's life: create it (labelled), copy the commit's tree in, attach to its output,
//! start it, stream what it prints into the live log, read how it ended (exit status, OOM
//! kill), copy files out if asked (`copy_out.rs`), and remove it — also when the run is
//! cancelled, times out or is dropped.
//!
//! Knows nothing of caches or hosts' pools: it runs one container on a daemon it is given.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, RemoveContainerOptions,
    UploadToContainerOptions, WaitContainerOptions,
};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use datakit_ci_log::LiveLog;

use crate::copy_out::{self, CopyOut};
use crate::host::{is_connection_error, is_not_found};
use crate::{Error, archive, display_command};

/// What to run in a container.
pub(crate) struct RunSpec<'a> {
    /// The host's name and URL (for messages, and to remove the container if the run is
    /// dropped).
    pub host_name: &'a str,
    pub host_url: &'a str,
    /// The image's name or id.
    pub image: &'a str,
    pub argv: &'a [String],
    /// `NAME=VALUE`.
    pub env: Vec<String>,
    pub workdir: &'a str,
    pub user: Option<&'a str>,
    /// Bytes; also the limit of memory plus swap (no swap), so that going over it is an OOM kill
    /// rather than a slow crawl through swap.
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
    pub labels: HashMap<String, String>,
    /// The repository and commit whose tree goes to `/src`.
    pub source: Option<(&'a Path, &'a str)>,
    pub timeout: Option<Duration>,
    /// Files to copy out once the command has ended by itself, before the removal.
    pub copy_out: Option<&'a CopyOut>,
}

/// Runs `spec` in a new container on `docker`, streaming its output into `log`, and removes the
/// container. `Err(Error::Cancelled)` if `cancel` fires first, `Err(Error::Timeout)` if the
/// timeout expires first; the container is killed and removed in both cases.
pub(crate) async fn run(
    docker: &Docker,
    spec: &RunSpec<'_>,
    log: &LiveLog,
    cancel: &CancellationToken,
) -> Result<(), Error> {
    let api = |action: &str| {
        let (host, action) = (spec.host_name.to_owned(), action.to_owned());
        move |source| Error::Api {
            host,
            action,
            source,
        }
    };
    let body = ContainerCreateBody {
        image: Some(spec.image.to_owned()),
        cmd: Some(spec.argv.to_vec()),
        env: Some(spec.env.clone()),
        working_dir: Some(spec.workdir.to_owned()),
        user: spec.user.map(str::to_owned),
        labels: Some(spec.labels.clone()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        open_stdin: Some(false),
        host_config: Some(HostConfig {
            memory: spec.memory.map(|m| i64::try_from(m).unwrap_or(i64::MAX)),
            memory_swap: spec.memory.map(|m| i64::try_from(m).unwrap_or(i64::MAX)),
            nano_cpus: spec.cpus.map(|c| (c * 1e9) as i64),
            // Removed by us once its exit status is read.
            auto_remove: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    // Named before it exists, so that the guard can remove it even if the run is dropped while
    // the daemon creates it (the CI stopping just then).
    let name = container_name(spec);
    let mut guard = ContainerGuard {
        docker: docker.clone(),
        url: spec.host_url.to_owned(),
        id: name.clone(),
        created: false,
        removed: false,
    };
    let options = CreateContainerOptions {
        name: Some(name),
        ..Default::default()
    };
    let created = docker.create_container(Some(options), body).await;
    if created.is_err() {
        // Nothing was created.
        guard.removed = true;
    }
    let created = match created {
        Ok(created) => created,
        Err(e) if is_not_found(&e) => {
            return Err(Error::UnknownImage {
                image: spec.image.to_owned(),
                host: spec.host_name.to_owned(),
            });
        }
        Err(e) if is_connection_error(&e) => {
            return Err(Error::Unreachable {
                url: spec.host_url.to_owned(),
                source: e,
            });
        }
        Err(e) => return Err(api("create the container")(e)),
    };
    guard.id.clone_from(&created.id);
    guard.created = true;
    let id = created.id;
    let short = &id[..id.len().min(12)];
    let work = async {
        if let Some((dir, commit)) = spec.source {
            copy_source(docker, spec.host_name, &id, dir, commit).await?;
        }
        let attached = docker
            .attach_container(
                &id,
                Some(AttachContainerOptions {
                    stdout: true,
                    stderr: true,
                    stream: true,
                    logs: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(api("attach to the container"))?;
        docker
            .start_container(&id, None)
            .await
            .map_err(api("start the container"))?;
        log.log(&format!(
            "Running {} in container {short} of image {} on Docker host {}",
            display_command(spec.argv),
            short_image(spec.image),
            spec.host_name
        ));
        let mut output = attached.output;
        while let Some(chunk) = output.next().await {
            match chunk {
                Ok(chunk) => log.write(&chunk.into_bytes()),
                Err(e) => {
                    tracing::debug!(error = %e, "the container's output stream failed");
                    break;
                }
            }
        }
        // The output ends when the container does; wait for its state to say so.
        let mut wait = docker.wait_container(
            &id,
            Some(WaitContainerOptions {
                condition: "not-running".to_owned(),
            }),
        );
        while let Some(result) = wait.next().await {
            match result {
                Ok(_) | Err(bollard::errors::Error::DockerContainerWaitError { .. }) => {}
                Err(e) => return Err(api("wait for the container")(e)),
            }
        }
        let inspected = docker
            .inspect_container(&id, None)
            .await
            .map_err(api("inspect the container"))?;
        let state = inspected.state.unwrap_or_default();
        // The command ended by itself, passing or failing: its files are still there (a failed
        // run's reports are often what people need most).
        if let Some(copy) = spec.copy_out {
            copy_out::copy(docker, spec.host_name, &id, spec.workdir, copy).await;
        }
        if state.oom_killed == Some(true) {
            return Err(Error::OutOfMemory {
                limit: spec.memory.map_or_else(|| "none".to_owned(), format_bytes),
            });
        }
        match state.exit_code {
            Some(0) => Ok(()),
            Some(code) => Err(Error::Exit {
                command: display_command(spec.argv),
                code,
            }),
            None => Err(Error::Exit {
                command: display_command(spec.argv),
                code: -1,
            }),
        }
    };
    let timeout = async {
        match spec.timeout {
            Some(timeout) => tokio::time::sleep(timeout).await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        biased;
        () = cancel.cancelled() => {
            log.log(&format!("Cancelled: removing container {short}"));
            Err(Error::Cancelled)
        }
        () = timeout => {
            let timeout = spec.timeout.expect("the timer only fires with a timeout");
            log.log(&format!(
                "Timed out after {}: removing container {short}",
                humantime::format_duration(timeout)
            ));
            Err(Error::Timeout { timeout })
        }
        outcome = work => outcome,
    };
    guard.remove().await;
    outcome
}

/// Copies the tree of `commit` in the repository `dir` to `/src` in the container.
async fn copy_source(
    docker: &Docker,
    host: &str,
    id: &str,
    dir: &Path,
    commit: &str,
) -> Result<(), Error> {
    let prefix = format!("{}/", crate::SOURCE_DIR.trim_start_matches('/'));
    let (mut child, stream) = archive::archive_stream(dir, commit, &prefix)?;
    let uploaded = docker
        .upload_to_container(
            id,
            Some(UploadToContainerOptions {
                path: "/".to_owned(),
                ..Default::default()
            }),
            bollard::body_try_stream(stream),
        )
        .await;
    let status = child.wait().await;
    let archive_failed = |message: String| Error::Git {
        args: format!("archive {commit}"),
        dir: dir.to_owned(),
        message,
    };
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => return Err(archive_failed(status.to_string())),
        Err(e) => return Err(archive_failed(e.to_string())),
    }
    uploaded.map_err(|source| Error::Api {
        host: host.to_owned(),
        action: format!("copy the commit's tree into the container {id}"),
        source,
    })
}

/// Removes a container: at the end of a run, or when the run is dropped (the CI shutting down,
/// a panic), so that no container outlives its build.
struct ContainerGuard {
    docker: Docker,
    url: String,
    /// The container's name until the daemon has answered its creation, then its id.
    id: String,
    /// Whether the daemon answered the creation.
    created: bool,
    removed: bool,
}

impl ContainerGuard {
    async fn remove(&mut self) {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match self.docker.remove_container(&self.id, Some(options)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            // What could not be removed now is removed when the CI next starts.
            Err(e) => tracing::warn!(container = %self.id, error = %e, "cannot remove container"),
        }
        self.removed = true;
    }
}

impl Drop for ContainerGuard {
    /// Dropped before [`ContainerGuard::remove`] ran: the run's future was dropped, e.g. by the
    /// runtime shutting down, when no task can run any more. The removal is one HTTP request
    /// made synchronously, on a plain socket: it blocks this thread for as long as the daemon
    /// takes to kill the container (a fraction of a second), which only happens on this
    /// abnormal path; a container it cannot remove is removed when the CI next starts.
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        // Dropped while the creation was on its way, the name may not be known to the daemon
        // yet (it answers 404 for a container it is still creating): ask again for a while.
        let attempts = if self.created { 1 } else { 10 };
        for attempt in 1..=attempts {
            match remove_now(&self.url, &self.id) {
                Ok(Removal::Removed) => {
                    tracing::info!(container = %self.id, "removed the container of a dropped run");
                    return;
                }
                Ok(Removal::NotFound) if attempt < attempts => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(Removal::NotFound) => return,
                Err(e) => {
                    tracing::warn!(container = %self.id, error = %e, "cannot remove container");
                    return;
                }
            }
        }
    }
}

/// What a synchronous removal found.
pub(crate) enum Removal {
    Removed,
    NotFound,
}

/// `DELETE /containers/<id>?force=true&v=true` on the daemon at `url`, synchronously.
fn remove_now(url: &str, id: &str) -> std::io::Result<Removal> {
    delete_now(url, &format!("/containers/{id}?force=true&v=true"))
}

/// `DELETE <path>` on the daemon at `url`, synchronously (for removals when no task can run
/// any more).
pub(crate) fn delete_now(url: &str, path: &str) -> std::io::Result<Removal> {
    let request = format!(
        "DELETE {path} HTTP/1.1\r\nHost: docker\r\n\
         Connection: close\r\nContent-Length: 0\r\n\r\n"
    );
    let timeout = Some(Duration::from_secs(10));
    let mut response = Vec::new();
    if let Some(path) = url.strip_prefix("unix://") {
        let mut socket = std::os::unix::net::UnixStream::connect(path)?;
        socket.set_read_timeout(timeout)?;
        socket.set_write_timeout(timeout)?;
        socket.write_all(request.as_bytes())?;
        socket.read_to_end(&mut response)?;
    } else if let Some(address) = url.strip_prefix("tcp://") {
        let mut socket = std::net::TcpStream::connect(address)?;
        socket.set_read_timeout(timeout)?;
        socket.set_write_timeout(timeout)?;
        socket.write_all(request.as_bytes())?;
        socket.read_to_end(&mut response)?;
    }
    let status_line = String::from_utf8_lossy(&response);
    let status_line = status_line.lines().next().unwrap_or_default();
    if status_line.contains(" 204") || status_line.contains(" 200") {
        Ok(Removal::Removed)
    } else if status_line.contains(" 404") {
        Ok(Removal::NotFound)
    } else {
        Err(std::io::Error::other(format!(
            "the daemon answered {status_line:?}"
        )))
    }
}

/// A name no other container has: `datakit-ci-` and a digest of the step's labels and the time.
fn container_name(spec: &RunSpec<'_>) -> String {
    let mut labels: Vec<_> = spec.labels.iter().collect();
    labels.sort();
    let mut seed = Vec::new();
    for (name, value) in labels {
        seed.extend_from_slice(format!("{name}={value}\n").as_bytes());
    }
    unique_name(&seed)
}

/// A name no other container or service has: `datakit-ci-` and a digest of `seed`, the time
/// and the process id.
pub(crate) fn unique_name(seed: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(seed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.update(nanos.to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    let hex: String = hasher.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("datakit-ci-{hex}")
}

/// The first 10 characters of an image id, or the name.
fn short_image(image: &str) -> &str {
    match image.strip_prefix("sha256:") {
        Some(hex) => &hex[..hex.len().min(10)],
        None => image,
    }
}

/// `bytes` in the largest binary unit that divides it (`512 MiB`, `1 GiB`, `1000 B`).
pub(crate) fn format_bytes(bytes: u64) -> String {
    for (unit, size) in [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{} {unit}", bytes / size);
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_shown_in_binary_units() {
        assert_eq!(format_bytes(512 << 20), "512 MiB");
        assert_eq!(format_bytes(2 << 30), "2 GiB");
        assert_eq!(format_bytes(1000), "1000 B");
        assert_eq!(format_bytes(1536 << 10), "1536 KiB");
    }
}
