//! `Image`: what a container starts from — an image id on one host, as built by a
//! [`Builder`](crate::Builder), or a published name that every host is expected to have.

/// A Docker image.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Image {
    reference: String,
    host: Option<String>,
}

impl Image {
    /// An image already on the hosts, by name (`debian:bookworm`) or id (`sha256:…`). A
    /// [`Command`](crate::Command) on Docker hosts resolves the name to the id it stands for
    /// when it is evaluated (once for all the steps that use it within 2 s) and records that id
    /// with its result, so a name re-tagged to another image runs it again; on an executor
    /// that cannot resolve names (Swarm), results are kept per name.
    pub fn of_published(name: impl Into<String>) -> Image {
        Image {
            reference: name.into(),
            host: None,
        }
    }

    /// The image `id` on the host named `host` (what a [`Builder`](crate::Builder) makes).
    pub fn on_host(id: impl Into<String>, host: impl Into<String>) -> Image {
        Image {
            reference: id.into(),
            host: Some(host.into()),
        }
    }

    /// The name or id.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// The host that has this image, for a built one; `None` for a published one.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The first 10 characters of the id (after `sha256:`), or the name, for display.
    pub fn short(&self) -> &str {
        match self.reference.strip_prefix("sha256:") {
            Some(hex) => &hex[..hex.len().min(10)],
            None => &self.reference,
        }
    }
}

impl std::fmt::Display for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            Some(host) => write!(f, "{} on {host}", self.short()),
            None => f.write_str(&self.reference),
        }
    }
}
