//! The image a job's service runs: the job's image with the commit's tree in `/src`, built on
//! the manager (a service's container cannot be given files before it starts, as a host's
//! container is), and, with a registry, pushed there and named by digest, so that every node
//! runs exactly the image that was built.
//!
//! One image per (image, commit), built once however many jobs of the commit need it.

use std::collections::HashMap;
use std::sync::Arc;

use bollard::Docker;
use bollard::query_parameters::{BuildImageOptions, PushImageOptions};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use datakit_ci_git::Commit;
use datakit_ci_log::LiveLog;

use crate::image::Image;
use crate::{Error, SOURCE_DIR, archive, labels};

/// The repository name of the source images (under the registry, with one).
const REPOSITORY: &str = "datakit-ci-source";

/// The Dockerfile added at the root of the source image's context (the tree is under `src/`,
/// so it cannot clash with a file of the commit).
const DOCKERFILE: &str = "Dockerfile";

/// The source images made so far, by tag: each made once.
#[derive(Default)]
pub(crate) struct SourceImages {
    made: std::sync::Mutex<HashMap<String, Arc<tokio::sync::OnceCell<String>>>>,
}

/// Where the images go.
pub(crate) struct Target<'a> {
    pub(crate) docker: &'a Docker,
    pub(crate) host: &'a str,
    pub(crate) registry: Option<&'a str>,
    pub(crate) instance: &'a str,
}

impl SourceImages {
    /// The reference the services of jobs of `image` on `commit` run: with a registry,
    /// `<registry>/datakit-ci-source@sha256:…`; without, the image's id on the manager.
    pub(crate) async fn reference(
        &self,
        target: &Target<'_>,
        image: &Image,
        commit: &Commit,
        log: &LiveLog,
    ) -> Result<String, Error> {
        let tag = tag_of(image, commit);
        let cell = {
            let mut made = self.made.lock().expect("no code panics while holding it");
            made.entry(tag.clone()).or_default().clone()
        };
        cell.get_or_try_init(|| make(target, &tag, image, commit, log))
            .await
            .cloned()
    }
}

/// The tag of the source image of `image` on `commit`: a digest of both.
fn tag_of(image: &Image, commit: &Commit) -> String {
    let mut hasher = Sha256::new();
    hasher.update(image.reference().as_bytes());
    hasher.update(b"\n");
    hasher.update(commit.hash().as_str().as_bytes());
    hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Builds (unless the manager has it) and pushes (with a registry) the source image `tag`.
async fn make(
    target: &Target<'_>,
    tag: &str,
    image: &Image,
    commit: &Commit,
    log: &LiveLog,
) -> Result<String, Error> {
    let repository = match target.registry {
        Some(registry) => format!("{registry}/{REPOSITORY}"),
        None => REPOSITORY.to_owned(),
    };
    let name = format!("{repository}:{tag}");
    let api = |action: String| {
        let host = target.host.to_owned();
        move |source| Error::Api {
            host,
            action,
            source,
        }
    };
    let id = match target.docker.inspect_image(&name).await {
        Ok(inspected) => inspected.id.unwrap_or_default(),
        Err(e) if crate::host::is_not_found(&e) => {
            build(target, &repository, tag, image, commit, log).await?
        }
        Err(e) => return Err(api(format!("inspect the image {name}"))(e)),
    };
    let Some(registry) = target.registry else {
        return Ok(id);
    };
    let mut pushed = target.docker.push_image(
        &repository,
        Some(PushImageOptions {
            tag: Some(tag.to_owned()),
            ..Default::default()
        }),
        None,
    );
    // The registry's digest is in the push's last status (`<tag>: digest: sha256:… size: …`);
    // the image's `RepoDigests` also get it, but only once the daemon has recorded it.
    let mut digest = None;
    let mut statuses = Vec::new();
    while let Some(info) = pushed.next().await {
        let info = info.map_err(api(format!("push {name} to {registry}")))?;
        if let Some(detail) = info.error_detail {
            return Err(Error::Push {
                image: name,
                message: detail.message.unwrap_or_else(|| "no message".to_owned()),
            });
        }
        if let Some(status) = info.status {
            if let Some(found) = digest_in(&status) {
                digest = Some(found.to_owned());
            }
            statuses.push(status);
        }
    }
    if let Some(digest) = digest {
        return Ok(format!("{repository}@{digest}"));
    }
    let inspected = target
        .docker
        .inspect_image(&name)
        .await
        .map_err(api(format!("inspect the image {name}")))?;
    let prefix = format!("{repository}@");
    inspected
        .repo_digests
        .unwrap_or_default()
        .into_iter()
        .find(|d| d.starts_with(&prefix))
        .ok_or(Error::Push {
            image: name,
            message: format!(
                "{registry} gave no digest; the push said: {}",
                statuses.join("; ")
            ),
        })
}

/// The `sha256:<64 hex>` digest a push status gives, if it gives one.
fn digest_in(status: &str) -> Option<&str> {
    let start = status.find("digest: sha256:")? + "digest: ".len();
    let digest = status.get(start..start + "sha256:".len() + 64)?;
    digest[7..]
        .bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then_some(digest)
}

/// Builds `FROM <image>` plus the commit's tree in [`SOURCE_DIR`], tagged `<repository>:<tag>`.
async fn build(
    target: &Target<'_>,
    repository: &str,
    tag: &str,
    image: &Image,
    commit: &Commit,
    log: &LiveLog,
) -> Result<String, Error> {
    let dir = commit.repo().dir();
    let tree = archive::git_output(
        dir,
        &[
            "archive",
            "--format=tar",
            "--prefix=src/",
            commit.hash().as_str(),
        ],
    )
    .await?;
    let dockerfile = format!("FROM {}\nCOPY src/ {SOURCE_DIR}/\n", image.reference());
    let context = tokio::task::spawn_blocking(move || {
        archive::replace_file(&tree, DOCKERFILE, dockerfile.as_bytes())
    })
    .await
    .expect("adding a file to an archive does not panic")
    .map_err(|e| Error::BuildFailed {
        message: format!("cannot make the build context: {e}"),
    })?;
    log.log(&format!(
        "Making the image of commit {} in {} on Docker host {}",
        commit.hash().short(10),
        image.short(),
        target.host
    ));
    let options = BuildImageOptions {
        dockerfile: DOCKERFILE.to_owned(),
        t: Some(format!("{repository}:{tag}")),
        rm: true,
        forcerm: true,
        labels: Some(HashMap::from([
            (labels::INSTANCE.to_owned(), target.instance.to_owned()),
            (labels::KEY.to_owned(), format!("{REPOSITORY}:{tag}")),
        ])),
        ..Default::default()
    };
    let mut output =
        target
            .docker
            .build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(info) = output.next().await {
        let info = match info {
            Ok(info) => info,
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                return Err(Error::BuildFailed { message: error });
            }
            Err(source) => {
                return Err(Error::Api {
                    host: target.host.to_owned(),
                    action: "build the job's image".to_owned(),
                    source,
                });
            }
        };
        if let Some(detail) = info.error_detail {
            return Err(Error::BuildFailed {
                message: detail.message.unwrap_or_else(|| "no message".to_owned()),
            });
        }
    }
    let name = format!("{repository}:{tag}");
    let inspected = target
        .docker
        .inspect_image(&name)
        .await
        .map_err(|source| Error::Api {
            host: target.host.to_owned(),
            action: format!("inspect the image {name}"),
            source,
        })?;
    inspected.id.ok_or_else(|| Error::BuildFailed {
        message: format!("image {name} has no id"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_read_from_the_push_status() {
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(
            digest_in(&format!("ab12: digest: sha256:{hex} size: 527")),
            Some(format!("sha256:{hex}").as_str())
        );
        assert_eq!(digest_in("Pushed"), None);
        assert_eq!(digest_in("digest: sha256:short"), None);
    }
}
