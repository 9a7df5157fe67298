//! Image pruning: the images a CI instance built that no cache entry refers to any more (a
//! rebuild of the same inputs replaced them, or a failed build left them), removed once they
//! are older than an age limit, or, oldest first, while they take more room than a size limit.
//!
//! Knows the cache branch layout only as far as a build records it (`value/image` on the branch
//! named by the image's `datakit-ci.key` label); knows nothing of hosts' pools or steps.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::ImageSummary;
use bollard::query_parameters::{ListImagesOptions, RemoveImageOptions};

use datakit_ci_store::{BranchName, Store, StorePath};

use crate::host::is_not_found;
use crate::{Error, labels};

/// When unreferenced images go: an age limit, a size limit, or both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Images made longer ago than this go.
    pub(crate) older_than: Option<Duration>,
    /// While the images left total more bytes than this, the oldest go.
    pub(crate) max_size: Option<u64>,
}

/// Removes, on `docker` (the host `host`), the images labelled with `instance` that the head of
/// the cache branch in their `datakit-ci.key` label does not record as its value (the
/// unreferenced ones): those made more than `limits.older_than` ago, then, while the
/// unreferenced ones left total more than `limits.max_size` bytes (each image's size as the
/// engine reports it, layers it shares counted in each), the oldest first. Returns how many
/// were removed. An image a container uses (running or stopped) is left for next time, and
/// does not count as removed.
pub(crate) async fn prune_images(
    docker: &Docker,
    host: &str,
    instance: &str,
    store: &Store,
    limits: Limits,
) -> Result<usize, Error> {
    let api = |action: String| {
        let host = host.to_owned();
        move |source| Error::Api {
            host,
            action,
            source,
        }
    };
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![format!("{}={instance}", labels::INSTANCE)],
    )]);
    let images = docker
        .list_images(Some(ListImagesOptions {
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(api("list images".to_owned()))?;
    let mut unreferenced = Vec::new();
    for image in images {
        // The engine fills this in only when asked (-1 otherwise); the removal refuses an image
        // in use anyway.
        if image.containers > 0 {
            continue;
        }
        if let Some(key) = image.labels.get(labels::KEY) {
            match recorded_image(store, key).await {
                Ok(Some(recorded)) if recorded == image.id => continue,
                Ok(_) => {}
                // Cannot tell: keep it.
                Err(e) => {
                    tracing::debug!(branch = %key, error = %e, "cannot read a cache entry");
                    continue;
                }
            }
        }
        unreferenced.push(image);
    }
    // Oldest first (ids break ties, so that the order does not depend on the listing's).
    unreferenced.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let cutoff = limits
        .older_than
        .map(|age| i64::try_from(now.saturating_sub(age.as_secs())).unwrap_or(i64::MAX));
    let size = |image: &ImageSummary| u64::try_from(image.size).unwrap_or(0);
    let mut total: u64 = unreferenced.iter().map(size).sum();
    let mut removed = 0;
    for image in &unreferenced {
        let too_old = cutoff.is_some_and(|cutoff| image.created <= cutoff);
        let too_big = limits.max_size.is_some_and(|max| total > max);
        if !too_old && !too_big {
            // Neither too old nor over the size: keep it.
            continue;
        }
        let options = RemoveImageOptions {
            force: false,
            ..Default::default()
        };
        match docker.remove_image(&image.id, Some(options), None).await {
            Ok(_) => {
                let reason = if too_old { "age" } else { "size" };
                tracing::info!(host, image = %image.id, reason, "removed an image no cache entry uses");
                total = total.saturating_sub(size(image));
                removed += 1;
            }
            Err(e) if is_not_found(&e) => total = total.saturating_sub(size(image)),
            // In use (409): kept until it is not.
            Err(e) => tracing::debug!(host, image = %image.id, error = %e, "image kept"),
        }
    }
    Ok(removed)
}

/// The image id recorded at the head of the cache branch `key`, if any (`None` also for a label
/// that names no valid branch: not one of ours).
async fn recorded_image(
    store: &Store,
    key: &str,
) -> Result<Option<String>, datakit_ci_store::Error> {
    let Ok(branch) = BranchName::new(key) else {
        return Ok(None);
    };
    let Some(head) = store.branch(&branch).head().await? else {
        return Ok(None);
    };
    let path = StorePath::new("value/image").expect("a valid store path");
    let bytes = head.tree().read_file(&path)?;
    Ok(bytes.map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned()))
}
