//! The image build cache: `Builder` builds an image from a commit's tree (a Dockerfile and a
//! context directory) on a Docker host, and caches the image id on the branch
//! `docker-build-<label>-of-<digest>`, where the digest covers every input of the build — the
//! context's Git tree, the Dockerfile (after any `FROM` rewrite), the build arguments, the ids of
//! the base images and the host — so that an unchanged input never builds again, whatever commit
//! it comes from. A recorded image that the host no longer has is built again.
//!
//! Knows nothing of how hosts connect (`host.rs`) or how the tree is read (`archive.rs`).

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::BuildImageOptions;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use datakit_ci_cache::{Build, Builder as CacheBuilder, Cache};
use datakit_ci_git::{Commit, Services};
use datakit_ci_pool::Holder;
use datakit_ci_store::{BranchName, Snapshot, StorePath};
use datakit_ci_term::{JobId, Status, Term};

use crate::host::{Host, Hosts, is_not_found};
use crate::image::Image;
use crate::layers::Intermediates;
use crate::{Error, archive, error_chain, labels, validate_label};

/// What a [`Builder`] builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildConfig {
    /// The Dockerfile, relative to the repository's root (default `Dockerfile`). It must be
    /// inside the context directory.
    pub dockerfile: String,
    /// The context directory, relative to the repository's root (default `.`).
    pub context: String,
    /// `--build-arg NAME=VALUE`s, in order. Their values are part of the cache key's digest
    /// (not stored in clear).
    pub build_args: Vec<(String, String)>,
    /// The longest the build may take (not counting the wait for a slot); `None`: no limit.
    pub timeout: Option<Duration>,
}

impl Default for BuildConfig {
    /// `Dockerfile` at the root, the whole tree as the context, no arguments, no timeout.
    fn default() -> BuildConfig {
        BuildConfig {
            dockerfile: "Dockerfile".to_owned(),
            context: ".".to_owned(),
            build_args: Vec::new(),
            timeout: None,
        }
    }
}

/// Builds images from commits, with cached results. Cheap to clone.
///
/// A build runs on the first host (in the order given to [`Hosts`]) that answers, holding one of
/// its slots; the image it makes is labelled `datakit-ci.instance` and `datakit-ci.key`, and its
/// intermediate containers are removed even when it fails.
#[derive(Clone)]
pub struct Builder {
    cache: Cache<ImageBuild>,
}

/// What one build is of. Its digest names the branch.
#[derive(Clone)]
struct BuildKey {
    commit: Commit,
    host: String,
    /// The context directory, `""` for the root.
    context: String,
    /// The Dockerfile's path inside the context.
    dockerfile: String,
    /// The Dockerfile to use instead of the context's, after a `FROM` rewrite.
    rewritten: Option<String>,
    digest: String,
}

impl Builder {
    /// A builder named `label` (it names the cache branches and the cache `docker build
    /// <label>`; 1 to 64 ASCII letters, digits, `.`, `_`, `-`) of `config`, on `hosts`, recorded
    /// through `services`. Paths with `..`, empty components or a leading `/` are refused.
    pub fn new(
        hosts: &Hosts,
        label: &str,
        config: BuildConfig,
        services: &Services,
    ) -> Result<Builder, Error> {
        validate_label(label)?;
        let context = archive::check_path("context directory", &config.context)?;
        let dockerfile = archive::check_path("Dockerfile path", &config.dockerfile)?;
        if dockerfile.is_empty() {
            return Err(Error::InvalidPath {
                what: "Dockerfile path",
                path: config.dockerfile,
                reason: "it is empty".to_owned(),
            });
        }
        let builder = ImageBuild {
            hosts: hosts.clone(),
            label: label.to_owned(),
            context,
            dockerfile,
            config,
        };
        let cache = Cache::new(
            builder,
            services.store.clone(),
            services.logs.clone(),
            &services.cache_metrics,
        );
        Ok(Builder { cache })
    }

    /// The builder's label.
    pub fn label(&self) -> &str {
        &self.cache.builder().label
    }

    /// The image built from the commit `commit` evaluates to, starting from `from` if given:
    /// see [`Builder::build_on`].
    pub fn build(&self, commit: Term<Commit>, from: Option<Term<Image>>) -> Term<Image> {
        let builder = self.clone();
        match from {
            None => commit.and_then(move |commit| builder.build_on(&commit, None)),
            Some(from) => Term::pair(commit, from)
                .and_then(move |(commit, from)| builder.build_on(&commit, Some(&from))),
        }
    }

    /// The image built from `commit`'s tree, or the one recorded for the same inputs.
    ///
    /// With `from`, the Dockerfile's first line, which must be `FROM <image> …`, names `from`'s
    /// id instead (so a pipeline can pin the base image it built or chose), and the build goes
    /// to `from`'s host. The build's output streams into its live log; a failed build fails the
    /// term with the daemon's message. A recorded image that the host no longer has (pruned) is
    /// built again.
    pub fn build_on(&self, commit: &Commit, from: Option<&Image>) -> Term<Image> {
        let cache = self.cache.clone();
        let (commit, from) = (commit.clone(), from.cloned());
        let key = {
            let cache = cache.clone();
            Term::from_fn(move |_| {
                let (cache, commit, from) = (cache.clone(), commit.clone(), from.clone());
                async move {
                    match cache.builder().key(commit, from.as_ref()).await {
                        Ok(key) => Status::ok(key),
                        Err(e) => Status::failure(error_chain(&e)),
                    }
                }
            })
        };
        Term::job_id().zip(key).and_then(move |(job, key)| {
            let cache = cache.clone();
            cache
                .find(job.clone(), key.clone())
                .and_then(move |image| still_there(&cache, &job, &key, image))
        })
    }
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let build = self.cache.builder();
        f.debug_struct("Builder")
            .field("label", &build.label)
            .field("config", &build.config)
            .finish()
    }
}

/// `image` if its host still has it; otherwise the recorded result is marked stale and the
/// image built again.
fn still_there(
    cache: &Cache<ImageBuild>,
    job: &JobId,
    key: &BuildKey,
    image: Image,
) -> Term<Image> {
    let hosts = cache.builder().hosts.clone();
    let check = {
        let image = image.clone();
        Term::from_future(move || {
            let (hosts, image) = (hosts.clone(), image.clone());
            async move { image_exists(&hosts, &image).await }
        })
    };
    let (cache, job, key) = (cache.clone(), job.clone(), key.clone());
    check.and_then(move |exists| match exists {
        Ok(true) => Term::ok(image.clone()),
        Ok(false) => {
            let (cache, job, key) = (cache.clone(), job.clone(), key.clone());
            let branch = cache.builder().branch(&key);
            tracing::info!(%branch, image = %image, "the built image is gone; building it again");
            let mark = {
                let cache = cache.clone();
                Term::from_future(move || {
                    let (cache, branch) = (cache.clone(), branch.clone());
                    async move {
                        cache
                            .mark_for_rebuild(&branch)
                            .await
                            .map_err(|e| e.to_string())
                    }
                })
            };
            mark.and_then(move |marked| match marked {
                Ok(()) => cache.find(job.clone(), key.clone()),
                Err(e) => Term::fail(e),
            })
        }
        Err(e) => Term::fail(e),
    })
}

/// Whether the image's host has it (`Err` if the host cannot say).
async fn image_exists(hosts: &Hosts, image: &Image) -> Result<bool, String> {
    let Some(name) = image.host() else {
        return Ok(true);
    };
    let Some(host) = hosts.host(name) else {
        return Err(Error::UnknownHost {
            image: image.reference().to_owned(),
            host: name.to_owned(),
        }
        .to_string());
    };
    let (docker, _) = host.ready().await.map_err(|e| error_chain(&e))?;
    match docker.inspect_image(image.reference()).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(source) => Err(error_chain(&Error::Api {
            host: name.to_owned(),
            action: format!("inspect the image {}", image.reference()),
            source,
        })),
    }
}

/// The builder behind a [`Builder`].
struct ImageBuild {
    hosts: Hosts,
    label: String,
    /// Checked forms of the configuration's paths.
    context: String,
    dockerfile: String,
    config: BuildConfig,
}

impl ImageBuild {
    /// The key of the build of `commit` (from `from`): reads the context's tree id and the
    /// Dockerfile from the repository, and the base images' ids from the host.
    async fn key(&self, commit: Commit, from: Option<&Image>) -> Result<BuildKey, Error> {
        let host = match from.and_then(Image::host) {
            Some(name) => self.hosts.host(name).ok_or_else(|| Error::UnknownHost {
                image: from.map(|i| i.reference().to_owned()).unwrap_or_default(),
                host: name.to_owned(),
            })?,
            // Builds go to the first host that answers, the same for every build, so that
            // the base images' ids and the cache key are stable.
            None => self.hosts.first_answering().await?,
        };
        let (docker, _) = host.ready().await?;
        let dir = commit.repo().dir();
        let hash = commit.hash().as_str();
        let tree = archive::tree_id(dir, hash, &self.context)
            .await
            .map_err(|_| Error::InvalidPath {
                what: "context directory",
                path: self.config.context.clone(),
                reason: format!("not a directory in commit {hash}"),
            })?;
        let missing = |reason: &str| Error::InvalidPath {
            what: "Dockerfile path",
            path: self.config.dockerfile.clone(),
            reason: reason.to_owned(),
        };
        let in_context = if self.context.is_empty() {
            self.dockerfile.clone()
        } else {
            self.dockerfile
                .strip_prefix(&format!("{}/", self.context))
                .ok_or_else(|| missing("it is not inside the context directory"))?
                .to_owned()
        };
        let contents = archive::read_file(dir, hash, &self.dockerfile)
            .await?
            .ok_or_else(|| missing(&format!("no such file in commit {hash}")))?;
        let contents = String::from_utf8_lossy(&contents).into_owned();
        let (rewritten, bases) = match from {
            Some(image) => {
                let rewritten =
                    archive::rewrite_from(&self.config.dockerfile, &contents, image.reference())?;
                (Some(rewritten), vec![image.reference().to_owned()])
            }
            None => (None, archive::base_images(&contents)),
        };
        let mut digest = Sha256::new();
        let mut add = |part: &str| {
            digest.update(part.as_bytes());
            digest.update(b"\n");
        };
        add(&format!("context {} tree {tree}", self.context));
        add(&format!("dockerfile {in_context}"));
        add(rewritten.as_deref().unwrap_or(&contents));
        for (name, value) in &self.config.build_args {
            add(&format!("arg {name}={value}"));
        }
        for base in &bases {
            let id = match docker.inspect_image(base).await {
                Ok(inspected) => inspected.id.unwrap_or_default(),
                // Not here yet: the build pulls it (or fails saying so).
                Err(e) if is_not_found(&e) => "absent".to_owned(),
                Err(source) => {
                    return Err(Error::Api {
                        host: host.spec().name().to_owned(),
                        action: format!("inspect the base image {base}"),
                        source,
                    });
                }
            };
            add(&format!("base {base} {id}"));
        }
        add(&format!("host {}", host.spec().name()));
        let digest: String = digest.finalize()[..20]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(BuildKey {
            commit,
            host: host.spec().name().to_owned(),
            context: self.context.clone(),
            dockerfile: in_context,
            rewritten,
            digest,
        })
    }

    /// Builds `key` on its host, streaming the output into the log; the image id.
    async fn run_build(
        &self,
        build: &Build<'_>,
        docker: &Docker,
        host: &Host,
        key: &BuildKey,
        layers: &mut Intermediates,
    ) -> Result<String, Error> {
        let dir = key.commit.repo().dir();
        let treeish = if key.context.is_empty() {
            key.commit.hash().to_string()
        } else {
            format!("{}:{}", key.commit.hash(), key.context)
        };
        // Build contexts are held in memory (they are sent whole anyway).
        let mut tar = archive::git_output(dir, &["archive", "--format=tar", &treeish]).await?;
        if let Some(rewritten) = &key.rewritten {
            build.log.log(&format!(
                "Rewrite Dockerfile's first line to:\n{}",
                rewritten.lines().next().unwrap_or_default()
            ));
            let (path, contents) = (key.dockerfile.clone(), rewritten.clone());
            tar = tokio::task::spawn_blocking(move || {
                archive::replace_file(&tar, &path, contents.as_bytes())
            })
            .await
            .expect("rewriting an archive does not panic")
            .map_err(|e| Error::Rewrite {
                path: self.config.dockerfile.clone(),
                reason: e.to_string(),
            })?;
        }
        let image_labels = HashMap::from([
            (
                labels::INSTANCE.to_owned(),
                self.hosts.instance().to_string(),
            ),
            (labels::KEY.to_owned(), self.branch(key).to_string()),
        ]);
        let options = BuildImageOptions {
            dockerfile: key.dockerfile.clone(),
            rm: true,
            forcerm: true,
            buildargs: (!self.config.build_args.is_empty())
                .then(|| self.config.build_args.iter().cloned().collect()),
            labels: Some(image_labels),
            ..Default::default()
        };
        build.log.log(&format!(
            "Building {} on Docker host {}",
            self.config.dockerfile,
            host.spec().name()
        ));
        let api = |source| Error::Api {
            host: host.spec().name().to_owned(),
            action: "build the image".to_owned(),
            source,
        };
        let mut output = docker.build_image(options, None, Some(bollard::body_full(tar.into())));
        let mut image_id = None;
        let mut short_id = None;
        while let Some(info) = output.next().await {
            let info = match info {
                Ok(info) => info,
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(Error::BuildFailed { message: error });
                }
                Err(e) => return Err(api(e)),
            };
            if let Some(text) = &info.stream {
                build.log.write_str(text);
                layers.read(text);
                if let Some(id) = text.trim().strip_prefix("Successfully built ") {
                    short_id = Some(id.to_owned());
                }
            }
            if let Some(detail) = info.error_detail {
                return Err(Error::BuildFailed {
                    message: detail.message.unwrap_or_else(|| "no message".to_owned()),
                });
            }
            if let Some(id) = info.aux.and_then(|aux| aux.id) {
                image_id = Some(id);
            }
        }
        match (image_id, short_id) {
            (Some(id), _) => Ok(id),
            (None, Some(short)) => docker
                .inspect_image(&short)
                .await
                .map_err(api)?
                .id
                .ok_or_else(|| Error::BuildFailed {
                    message: format!("image {short} has no id"),
                }),
            (None, None) => Err(Error::BuildFailed {
                message: "the daemon did not say which image it built".to_owned(),
            }),
        }
    }
}

fn value_path(name: &str) -> StorePath {
    StorePath::new(format!("value/{name}")).expect("value file names are valid store paths")
}

impl CacheBuilder for ImageBuild {
    type Key = BuildKey;
    type Context = JobId;
    type Value = Image;

    fn name(&self) -> String {
        format!("docker build {}", self.label)
    }

    fn title(&self, key: &BuildKey) -> String {
        format!(
            "Docker build {} of commit {}",
            self.label,
            key.commit.hash().short(10)
        )
    }

    fn branch(&self, key: &BuildKey) -> BranchName {
        BranchName::new(format!("docker-build-{}-of-{}", self.label, key.digest))
            .expect("Builder::new checked the label; the digest is hexadecimal")
    }

    async fn generate(
        &self,
        build: Build<'_>,
        job: &JobId,
        key: &BuildKey,
    ) -> Result<Image, String> {
        let host = self
            .hosts
            .host(&key.host)
            .ok_or_else(|| format!("Docker host {:?} is not configured", key.host))?;
        let holder = Holder {
            job: job.to_string(),
            label: format!("Build {} in {}", self.label, key.commit.hash().short(10)),
            log_branch: None,
        };
        let span = tracing::info_span!("docker_build", label = %self.label, job = %job);
        let work = host.use_slot(holder, build.log, build.cancel, async {
            let (docker, _) = host.ready().await?;
            let mut layers = Intermediates::default();
            let building = self.run_build(&build, &docker, host, key, &mut layers);
            let timeout = async {
                match self.config.timeout {
                    Some(timeout) => tokio::time::sleep(timeout).await,
                    None => std::future::pending().await,
                }
            };
            // Dropping the build closes its connection, which stops it; `forcerm` removes its
            // intermediate containers.
            let built = tokio::select! {
                biased;
                () = build.cancel.cancelled() => Err(Error::Cancelled),
                () = timeout => Err(Error::Timeout {
                    timeout: self.config.timeout.expect("the timer only fires with a timeout"),
                }),
                built = building => built,
            };
            if built.is_err() {
                // The images of the steps that succeeded: unlabelled, and of no use to anyone.
                let removed = layers.remove(&docker, host.spec().name()).await;
                if removed > 0 {
                    build.log.log(&format!(
                        "Removed {removed} intermediate image(s) of the failed build"
                    ));
                }
            }
            built
        });
        let id = work.instrument(span).await.map_err(|e| error_chain(&e))?;
        for (name, value) in [("image", &id), ("host", &key.host)] {
            build
                .transaction
                .create_file(&value_path(name), value.as_bytes())
                .map_err(|e| format!("cannot record the image: {e}"))?;
        }
        build.log.log(&format!("Built image {id}"));
        Ok(Image::on_host(id, key.host.clone()))
    }

    fn load(&self, tree: &Snapshot, _key: &BuildKey) -> Result<Image, String> {
        let read = |name: &str| -> Result<String, String> {
            let bytes = tree
                .read_file(&value_path(name))
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no value/{name}"))?;
            Ok(String::from_utf8_lossy(&bytes).trim().to_owned())
        };
        Ok(Image::on_host(read("image")?, read("host")?))
    }
}
