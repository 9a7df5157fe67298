//! `Instance`: the id by which a CI recognises the containers and images it made, kept in a file
//! of its state directory so that a restarted CI (even after `kill -9`) finds what it left.
//!
//! Knows nothing of Docker; it only makes, stores and reads the id.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::Error;

/// The id of a CI instance: the value of the label `datakit-ci.instance` on everything it makes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Instance(String);

impl Instance {
    /// An instance with this id (made of ASCII letters, digits, `-` and `_`; at most 64 bytes).
    /// Tests give each their own; a CI uses [`Instance::load_or_create`].
    pub fn new(id: impl Into<String>) -> Result<Instance, Error> {
        let id = id.into();
        let valid = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        if !valid {
            return Err(Error::InvalidLabel {
                label: id,
                reason: "an instance id is 1 to 64 ASCII letters, digits, '-' or '_'".to_owned(),
            });
        }
        Ok(Instance(id))
    }

    /// The id recorded in `file`, or a new one, recorded there (written to a temporary file
    /// first, then renamed, so a crash never leaves a half-written id).
    pub fn load_or_create(file: &Path) -> Result<Instance, Error> {
        let io = |source| Error::Io {
            path: file.to_owned(),
            source,
        };
        match std::fs::read_to_string(file) {
            Ok(text) => return Instance::new(text.trim()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let instance = Instance::unique(file);
        let temporary = file.with_extension("new");
        std::fs::write(&temporary, format!("{}\n", instance.0)).map_err(io)?;
        std::fs::rename(&temporary, file).map_err(io)?;
        Ok(instance)
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A new id, unique in practice: a digest of the file's path, this process and the time.
    fn unique(file: &Path) -> Instance {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut hasher = Sha256::new();
        hasher.update(file.as_os_str().as_encoded_bytes());
        hasher.update(std::process::id().to_le_bytes());
        hasher.update(nanos.to_le_bytes());
        let digest = hasher.finalize();
        let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        Instance(format!("ci-{hex}"))
    }
}

impl std::fmt::Display for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_id_is_kept_across_loads() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("docker-instance");
        let first = Instance::load_or_create(&file).expect("created");
        let second = Instance::load_or_create(&file).expect("loaded");
        assert_eq!(first, second);
        assert!(first.as_str().starts_with("ci-"), "{first}");
        let other = Instance::load_or_create(&dir.path().join("other")).expect("created");
        assert_ne!(first, other);
        assert!(Instance::new("a b").is_err());
    }
}
