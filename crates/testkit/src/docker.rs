//! The real Docker engine, for the tests of the Docker plugin and of the binary: a busybox base
//! image made here (the engine has no registry to pull from), and the removal of what a test's
//! CI instance made. Synchronous: each call runs the Engine API on a thread and runtime of its
//! own, so it works inside and outside async tests.

use std::collections::HashMap;
use std::sync::OnceLock;

use bollard::Docker;
use bollard::query_parameters::{
    BuildImageOptions, ListContainersOptions, ListImagesOptions, RemoveContainerOptions,
    RemoveImageOptions,
};
use futures::StreamExt;

/// The base image of the tests: Debian's static busybox, a link per applet, `/etc/passwd`.
pub const BUSYBOX_IMAGE: &str = "datakit-ci-test/busybox:1";

/// Where Debian's `busybox-static` puts the binary.
const BUSYBOX_BINARY: &str = "/bin/busybox";

/// The label every container and image of a CI instance carries.
const INSTANCE_LABEL: &str = "datakit-ci.instance";

/// Makes [`BUSYBOX_IMAGE`] unless the engine has it (once per test program; concurrent programs
/// may both build it, with the same result). Fails with a message naming what is missing.
pub fn ensure_busybox_image() -> Result<&'static str, String> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| on_own_runtime(build_busybox_image))
        .clone()
        .map(|()| BUSYBOX_IMAGE)
}

/// Removes every container and image labelled `datakit-ci.instance=<instance>`.
pub fn remove_instance(instance: &str) -> Result<(), String> {
    let instance = instance.to_owned();
    on_own_runtime(move || async move {
        let docker = connect().await?;
        for id in containers_of(&docker, &instance).await? {
            let options = RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            };
            docker
                .remove_container(&id, Some(options))
                .await
                .map_err(|e| format!("remove container {id}: {e}"))?;
        }
        let images = docker
            .list_images(Some(ListImagesOptions {
                filters: Some(instance_filter(&instance)),
                ..Default::default()
            }))
            .await
            .map_err(|e| format!("list images: {e}"))?;
        for image in images {
            let options = RemoveImageOptions {
                force: true,
                ..Default::default()
            };
            // An image may be gone already, with the image built on it.
            let _ = docker.remove_image(&image.id, Some(options), None).await;
        }
        Ok(())
    })
}

/// The ids of the containers (running or not) labelled `datakit-ci.instance=<instance>`.
pub fn containers_of_instance(instance: &str) -> Result<Vec<String>, String> {
    let instance = instance.to_owned();
    on_own_runtime(move || async move {
        let docker = connect().await?;
        containers_of(&docker, &instance).await
    })
}

async fn containers_of(docker: &Docker, instance: &str) -> Result<Vec<String>, String> {
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(instance_filter(instance)),
            ..Default::default()
        }))
        .await
        .map_err(|e| format!("list containers: {e}"))?;
    Ok(containers.into_iter().filter_map(|c| c.id).collect())
}

fn instance_filter(instance: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_owned(),
        vec![format!("{INSTANCE_LABEL}={instance}")],
    )])
}

async fn connect() -> Result<Docker, String> {
    Docker::connect_with_unix_defaults()
        .map_err(|e| e.to_string())?
        .negotiate_version()
        .await
        .map_err(|e| format!("cannot reach the Docker daemon: {e}"))
}

fn on_own_runtime<T, F, Fut>(work: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, String>>,
{
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(work())
    })
    .join()
    .map_err(|_| "the Docker helper panicked".to_owned())?
}

async fn build_busybox_image() -> Result<(), String> {
    let docker = connect().await?;
    if docker.inspect_image(BUSYBOX_IMAGE).await.is_ok() {
        return Ok(());
    }
    let context = busybox_context().map_err(|e| {
        format!("cannot make the context of {BUSYBOX_IMAGE}: {e} (install Debian's busybox-static)")
    })?;
    let options = BuildImageOptions {
        t: Some(BUSYBOX_IMAGE.to_owned()),
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let mut output = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(info) = output.next().await {
        let info = info.map_err(|e| format!("cannot build {BUSYBOX_IMAGE}: {e}"))?;
        if let Some(detail) = info.error_detail {
            return Err(format!("cannot build {BUSYBOX_IMAGE}: {detail:?}"));
        }
    }
    Ok(())
}

/// A build context: `FROM scratch`, the busybox binary with a link per applet, users, `/tmp`.
fn busybox_context() -> std::io::Result<Vec<u8>> {
    let busybox = std::fs::read(BUSYBOX_BINARY)?;
    let list = std::process::Command::new(BUSYBOX_BINARY)
        .arg("--list")
        .output()?;
    let mut tar = tar::Builder::new(Vec::new());
    let file = |tar: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        tar.append_data(&mut header, path, data)
    };
    file(
        &mut tar,
        "Dockerfile",
        b"FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\nCMD [\"sh\"]\n",
        0o644,
    )?;
    file(&mut tar, "rootfs/bin/busybox", &busybox, 0o755)?;
    file(
        &mut tar,
        "rootfs/etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
        0o644,
    )?;
    file(
        &mut tar,
        "rootfs/etc/group",
        b"root:x:0:\nnogroup:x:65534:\n",
        0o644,
    )?;
    for dir in ["rootfs/tmp/", "rootfs/root/"] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o1777);
        header.set_size(0);
        tar.append_data(&mut header, dir, &[][..])?;
    }
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet.is_empty() || applet == "busybox" {
            continue;
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        tar.append_link(&mut header, format!("rootfs/bin/{applet}"), "busybox")?;
    }
    tar.into_inner()
}
