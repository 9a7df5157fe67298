//! Visible trouble (issue 20): a problem that keeps one part of the CI from doing its work — a
//! source repository that disappeared, a forge that cannot be reached, store writes that fail and
//! are retried (a full disk) — is reported here by that part, under a key of its own, and cleared
//! by it once resolved. The dashboard lists what is reported, so an operator sees it without
//! reading stderr.
//!
//! ```
//! use datakit_ci_health::Health;
//!
//! let health = Health::default();
//! health.report("statuses", "cannot write statuses: No space left on device; retrying");
//! assert_eq!(health.troubles().len(), 1);
//! health.resolve("statuses");
//! assert!(health.troubles().is_empty());
//! ```
//!
//! Depends on none of our crates, so every layer can report.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// One reported problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trouble {
    /// What has the problem, e.g. `statuses` or `repository local/sample`.
    pub key: String,
    /// What is wrong, as the part that reported it says it.
    pub message: String,
    /// When it was first reported (a new message does not reset it).
    pub since: SystemTime,
    /// How many times it was reported since then (retries that failed again).
    pub count: u64,
}

/// The problems reported by the parts of one CI. Cheap to clone: clones share them.
#[derive(Clone, Debug, Default)]
pub struct Health {
    troubles: Arc<Mutex<BTreeMap<String, Trouble>>>,
}

impl Health {
    /// Reports (again) that `key` has a problem, described by `message`.
    pub fn report(&self, key: &str, message: impl Into<String>) {
        let message = message.into();
        let mut troubles = self.lock();
        match troubles.get_mut(key) {
            Some(trouble) => {
                trouble.message = message;
                trouble.count += 1;
            }
            None => {
                troubles.insert(
                    key.to_owned(),
                    Trouble {
                        key: key.to_owned(),
                        message,
                        since: SystemTime::now(),
                        count: 1,
                    },
                );
            }
        }
    }

    /// Clears `key`'s problem, if it had one.
    pub fn resolve(&self, key: &str) {
        // Most calls find nothing to clear: no allocation, one uncontended lock.
        let mut troubles = self.lock();
        if !troubles.is_empty() {
            troubles.remove(key);
        }
    }

    /// The problems reported and not resolved, by key.
    pub fn troubles(&self) -> Vec<Trouble> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Trouble>> {
        // Each change is one insert, update or remove: a poisoned map is still consistent.
        self.troubles.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_report_keeps_its_start_and_counts() {
        let health = Health::default();
        health.report("history", "first");
        let since = health.troubles()[0].since;
        health.report("history", "second");
        health.report("repository me/proj", "gone");
        let troubles = health.troubles();
        assert_eq!(troubles.len(), 2);
        assert_eq!(troubles[0].key, "history");
        assert_eq!(troubles[0].message, "second");
        assert_eq!(troubles[0].count, 2);
        assert_eq!(troubles[0].since, since);
        health.resolve("history");
        health.resolve("never reported");
        assert_eq!(health.troubles().len(), 1);
    }
}
