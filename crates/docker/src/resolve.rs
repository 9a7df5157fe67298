//! Published image names resolved to image ids: a [`Command`](crate::Command) records the id
//! its image name stood for, so that a re-tagged name (`docker tag`, a `docker pull` of a newer
//! image) runs the command again rather than showing the result of the old image. Resolutions
//! are kept for a short while ([`RESOLUTION_TTL`] by default), so that the many steps of an
//! evaluation (or of the evaluations of many targets at once) that use one name ask the
//! daemon once.
//!
//! Knows nothing of caches, containers or which host is asked (`Hosts::resolve_published`
//! chooses).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;

use crate::Error;
use crate::host::is_not_found;

/// How long a name's resolution is reused by default.
pub(crate) const RESOLUTION_TTL: Duration = Duration::from_secs(2);

/// The recent resolutions of names to ids.
#[derive(Debug)]
pub(crate) struct Resolutions {
    ttl: Duration,
    /// Held while a name is looked up, so that steps asking at once ask the daemon once.
    memo: tokio::sync::Mutex<HashMap<String, (String, Instant)>>,
}

impl Resolutions {
    /// No resolution yet; each is reused for `ttl`.
    pub(crate) fn new(ttl: Duration) -> Resolutions {
        Resolutions {
            ttl,
            memo: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The id `lookup` finds for `name`, or the one it found less than the TTL ago. Failures
    /// are not kept.
    pub(crate) async fn resolve<F>(
        &self,
        name: &str,
        lookup: impl FnOnce() -> F,
    ) -> Result<String, Error>
    where
        F: Future<Output = Result<String, Error>>,
    {
        let mut memo = self.memo.lock().await;
        if let Some(id) = fresh(&memo, name, self.ttl, Instant::now()) {
            return Ok(id.to_owned());
        }
        let id = lookup().await?;
        memo.insert(name.to_owned(), (id.clone(), Instant::now()));
        Ok(id)
    }
}

/// The id of the image called `name` on `docker` (the host `host`), or
/// [`Error::UnknownImage`] if it has none.
pub(crate) async fn image_id(docker: &Docker, host: &str, name: &str) -> Result<String, Error> {
    let unknown = || Error::UnknownImage {
        image: name.to_owned(),
        host: host.to_owned(),
    };
    match docker.inspect_image(name).await {
        Ok(image) => image.id.ok_or_else(unknown),
        Err(e) if is_not_found(&e) => Err(unknown()),
        Err(source) => Err(Error::Api {
            host: host.to_owned(),
            action: format!("inspect the image {name}"),
            source,
        }),
    }
}

/// The id `memo` holds for `name` if it was found less than `ttl` before `now`.
fn fresh<'a>(
    memo: &'a HashMap<String, (String, Instant)>,
    name: &str,
    ttl: Duration,
    now: Instant,
) -> Option<&'a str> {
    let (id, at) = memo.get(name)?;
    (now.saturating_duration_since(*at) < ttl).then_some(id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resolution_is_reused_until_it_is_too_old() {
        let found = Instant::now();
        let memo = HashMap::from([("app:1".to_owned(), ("sha256:aa".to_owned(), found))]);
        let ttl = Duration::from_secs(2);
        assert_eq!(fresh(&memo, "app:1", ttl, found), Some("sha256:aa"));
        let later = found + Duration::from_millis(1999);
        assert_eq!(fresh(&memo, "app:1", ttl, later), Some("sha256:aa"));
        assert_eq!(fresh(&memo, "app:1", ttl, found + ttl), None);
        assert_eq!(fresh(&memo, "app:2", ttl, found), None);
        assert_eq!(fresh(&memo, "app:1", Duration::ZERO, found), None);
    }
}
