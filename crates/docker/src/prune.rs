//! Image pruning: the images a CI instance built that no cache entry refers to any more (a
//! rebuild of the same inputs replaced them), removed once they are older than an age limit.
//!
//! Knows the cache branch layout only as far as a build records it (`value/image` on the branch
//! named by the image's `datakit-ci.key` label); knows nothing of hosts' pools or steps.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::query_parameters::{ListImagesOptions, RemoveImageOptions};

use datakit_ci_store::{BranchName, Store, StorePath};

use crate::host::is_not_found;
use crate::{Error, labels};

/// Removes, on `docker` (the host `host`), the images labelled with `instance` that were made
/// more than `older_than` ago and that the head of the cache branch in their `datakit-ci.key`
/// label does not record as its value. Returns how many were removed. An image a container
/// still uses is left for next time.
pub(crate) async fn prune_images(
    docker: &Docker,
    host: &str,
    instance: &str,
    store: &Store,
    older_than: Duration,
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
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let cutoff = i64::try_from(now.saturating_sub(older_than.as_secs())).unwrap_or(i64::MAX);
    let mut removed = 0;
    for image in images {
        if image.created > cutoff || image.containers > 0 {
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
        let options = RemoveImageOptions {
            force: false,
            ..Default::default()
        };
        match docker.remove_image(&image.id, Some(options), None).await {
            Ok(_) => {
                tracing::info!(host, image = %image.id, "removed an image no cache entry uses");
                removed += 1;
            }
            Err(e) if is_not_found(&e) => {}
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
