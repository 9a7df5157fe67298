//! The password file: local users and their argon2id hashes, one `name:$argon2id$…` line each
//! (PHC strings). The original's PBKDF2-SHA1 s-expression format is not read.
//!
//! Blocking (file I/O and deliberately slow hashing): call through `spawn_blocking`.

use std::collections::BTreeMap;
use std::path::Path;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::Error;
use crate::secrets;

/// The password file's name in the secrets directory.
pub const PASSWORD_FILE: &str = "passwords";

/// Local users and their password hashes.
#[derive(Clone, Debug, Default)]
pub(crate) struct Users {
    hashes: BTreeMap<String, String>,
}

impl Users {
    /// Reads the password file; `None` if it does not exist.
    pub(crate) fn load(path: &Path) -> Result<Option<Users>, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::Secrets {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let mut hashes = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |reason: &str| Error::PasswordFile {
                path: path.to_owned(),
                line: index + 1,
                reason: reason.to_owned(),
            };
            let (name, hash) = line
                .split_once(':')
                .ok_or_else(|| bad("expected name:hash"))?;
            PasswordHash::new(hash).map_err(|e| bad(&format!("bad hash: {e}")))?;
            if !valid_user_name(name) {
                return Err(bad("bad user name"));
            }
            hashes.insert(name.to_owned(), hash.to_owned());
        }
        Ok(Some(Users { hashes }))
    }

    /// Writes the password file (mode 0600, atomically).
    pub(crate) fn save(&self, path: &Path) -> Result<(), Error> {
        let mut text = String::new();
        for (name, hash) in &self.hashes {
            text.push_str(name);
            text.push(':');
            text.push_str(hash);
            text.push('\n');
        }
        secrets::write_private_file(path, text.as_bytes())
    }

    /// Sets `name`'s password.
    pub(crate) fn set_password(&mut self, name: &str, password: &str) -> Result<(), Error> {
        let hash = hash_password(password)?;
        self.hashes.insert(name.to_owned(), hash);
        Ok(())
    }

    /// Whether `password` is `name`'s. Unknown users cost as much time as known ones.
    pub(crate) fn verify(&self, name: &str, password: &str) -> bool {
        match self.hashes.get(name) {
            Some(hash) => verify_password(hash, password),
            None => {
                // Spend the same effort, so timing does not tell which users exist.
                let _ = hash_password(password);
                false
            }
        }
    }

    /// Whether there is a user named `name`.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.hashes.contains_key(name)
    }

    /// Removes `name`; whether they existed.
    pub(crate) fn remove(&mut self, name: &str) -> bool {
        self.hashes.remove(name).is_some()
    }

    /// The users' names, sorted.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.hashes.keys().map(String::as_str)
    }

    /// A digest of `name`'s current password hash (which changes with every new password, as its
    /// salt does): a session records it at login and is void once it differs.
    pub(crate) fn stamp(&self, name: &str) -> Option<String> {
        use sha2::Digest as _;
        let hash = self.hashes.get(name)?;
        let digest = sha2::Sha256::digest(hash.as_bytes());
        Some(
            digest[..12]
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect(),
        )
    }
}

/// Whether `name` can be a local user's name. Names read from an existing file are accepted more
/// loosely ([`valid_user_name`]) than new ones.
pub(crate) fn valid_new_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn valid_user_name(name: &str) -> bool {
    !name.is_empty() && !name.contains([':', '\n', '\r']) && !name.starts_with("github:")
}

fn hash_password(password: &str) -> Result<String, Error> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::PasswordHash {
            message: e.to_string(),
        })
}

fn verify_password(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(error) => {
            tracing::warn!(%error, "unreadable password hash");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_the_file() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(PASSWORD_FILE);
        assert!(Users::load(&path)?.is_none());
        let mut users = Users::default();
        users.set_password("admin", "correct horse")?;
        users.save(&path)?;
        let text = std::fs::read_to_string(&path)?;
        assert!(text.starts_with("admin:$argon2id$"), "{text}");
        assert!(!text.contains("correct horse"));
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o600
        );

        let loaded = Users::load(&path)?.expect("saved");
        assert!(loaded.contains("admin"));
        assert!(loaded.verify("admin", "correct horse"));
        assert!(!loaded.verify("admin", "wrong"));
        assert!(!loaded.verify("nobody", "correct horse"));
        Ok(())
    }

    #[test]
    fn malformed_files_name_the_line() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(PASSWORD_FILE);
        std::fs::write(&path, "\nadmin:not-a-hash\n")?;
        match Users::load(&path) {
            Err(Error::PasswordFile { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected a password file error, got {other:?}"),
        }
        Ok(())
    }
}
