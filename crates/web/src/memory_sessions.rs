//! The `memory://` sessions backend: sessions in this process's memory, bounded.
//!
//! `tower-sessions`' own memory store never forgets a record: an expired session stays until the
//! process ends, and every visitor who is handed a CSRF token (anyone who opens the login page,
//! crawlers included) adds one. Here expired records are dropped as new ones are saved, and at most
//! a fixed number are kept: past it, the sessions unused for longest (the soonest to expire, as a
//! session expires a fixed time after its last use) make room.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tower_sessions::SessionStore;
use tower_sessions::cookie::time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;

/// Sessions kept at most by default: a few hundred bytes each, so tens of MB at worst.
pub(crate) const DEFAULT_CAPACITY: usize = 100_000;

/// A bounded in-memory session store. Cheap to clone: clones share the sessions.
#[derive(Clone, Debug)]
pub(crate) struct MemorySessions {
    inner: Arc<Mutex<Sessions>>,
}

#[derive(Debug)]
struct Sessions {
    capacity: usize,
    records: HashMap<Id, Record>,
    /// Every record's (expiry, id), soonest first.
    by_expiry: BTreeSet<(OffsetDateTime, i128)>,
}

impl MemorySessions {
    /// A store keeping at most `capacity` sessions (at least one).
    pub(crate) fn with_capacity(capacity: usize) -> MemorySessions {
        MemorySessions {
            inner: Arc::new(Mutex::new(Sessions {
                capacity: capacity.max(1),
                records: HashMap::new(),
                by_expiry: BTreeSet::new(),
            })),
        }
    }

    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        // A panic while holding the lock leaves the maps consistent (each change is one insert or
        // remove on each), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many sessions are kept (expired ones not dropped yet included).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sessions().records.len()
    }
}

impl Default for MemorySessions {
    fn default() -> Self {
        MemorySessions::with_capacity(DEFAULT_CAPACITY)
    }
}

impl Sessions {
    fn remove(&mut self, id: &Id) -> Option<Record> {
        let record = self.records.remove(id)?;
        self.by_expiry.remove(&(record.expiry_date, id.0));
        Some(record)
    }

    /// Stores `record` (replacing any record with its id), after dropping the expired records and,
    /// if still full, the ones that expire soonest.
    fn insert(&mut self, record: Record) {
        self.remove(&record.id);
        let now = OffsetDateTime::now_utc();
        while let Some(&(expiry, id)) = self.by_expiry.first() {
            if expiry > now && self.records.len() < self.capacity {
                break;
            }
            if expiry > now {
                tracing::debug!(
                    capacity = self.capacity,
                    "session store full: dropping the session unused for longest"
                );
            }
            self.remove(&Id(id));
        }
        self.by_expiry.insert((record.expiry_date, record.id.0));
        self.records.insert(record.id, record);
    }
}

#[async_trait]
impl SessionStore for MemorySessions {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let mut sessions = self.sessions();
        while sessions.records.contains_key(&record.id) {
            record.id = Id::default();
        }
        sessions.insert(record.clone());
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.sessions().insert(record.clone());
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let mut sessions = self.sessions();
        let Some(record) = sessions.records.get(id) else {
            return Ok(None);
        };
        if record.expiry_date > OffsetDateTime::now_utc() {
            return Ok(Some(record.clone()));
        }
        sessions.remove(id);
        Ok(None)
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.sessions().remove(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tower_sessions::cookie::time::Duration;

    use super::*;

    fn record(expires_in: Duration) -> Record {
        Record {
            id: Id::default(),
            data: HashMap::new(),
            expiry_date: OffsetDateTime::now_utc() + expires_in,
        }
    }

    #[tokio::test]
    async fn saved_sessions_load_until_deleted() -> anyhow::Result<()> {
        let store = MemorySessions::with_capacity(10);
        let mut session = record(Duration::hours(1));
        store.create(&mut session).await?;
        assert_eq!(store.load(&session.id).await?, Some(session.clone()));
        session.data.insert("user".to_owned(), "alice".into());
        store.save(&session).await?;
        assert_eq!(store.load(&session.id).await?, Some(session.clone()));
        assert_eq!(store.len(), 1, "saving again replaces the record");
        store.delete(&session.id).await?;
        assert_eq!(store.load(&session.id).await?, None);
        assert_eq!(store.len(), 0);
        Ok(())
    }

    #[tokio::test]
    async fn expired_sessions_are_not_loaded_and_are_dropped() -> anyhow::Result<()> {
        let store = MemorySessions::with_capacity(10);
        let mut expired = record(Duration::seconds(-1));
        let mut other_expired = record(Duration::seconds(-1));
        store.create(&mut expired).await?;
        store.create(&mut other_expired).await?;
        assert_eq!(store.load(&expired.id).await?, None);
        assert_eq!(store.len(), 1, "a load drops the expired record it finds");
        let mut live = record(Duration::hours(1));
        store.create(&mut live).await?;
        assert_eq!(store.len(), 1, "a save drops every expired record");
        assert_eq!(store.load(&live.id).await?, Some(live));
        Ok(())
    }

    #[tokio::test]
    async fn a_full_store_drops_the_sessions_unused_for_longest() -> anyhow::Result<()> {
        let store = MemorySessions::with_capacity(3);
        let mut sessions = Vec::new();
        for minutes in [30, 10, 20, 40, 50] {
            let mut session = record(Duration::minutes(minutes));
            store.create(&mut session).await?;
            sessions.push(session);
        }
        assert_eq!(store.len(), 3);
        let loaded: Vec<bool> =
            futures::future::try_join_all(sessions.iter().map(|session| store.load(&session.id)))
                .await?
                .iter()
                .map(Option::is_some)
                .collect();
        // The sessions expiring in 10 and 20 minutes made room for the last two.
        assert_eq!(loaded, [true, false, false, true, true]);
        Ok(())
    }

    #[tokio::test]
    async fn a_used_session_is_kept_over_older_ones() -> anyhow::Result<()> {
        let store = MemorySessions::with_capacity(2);
        let mut first = record(Duration::minutes(10));
        let mut second = record(Duration::minutes(20));
        store.create(&mut first).await?;
        store.create(&mut second).await?;
        // Using the first session pushes its expiry back, past the second's.
        first.expiry_date = OffsetDateTime::now_utc() + Duration::minutes(30);
        store.save(&first).await?;
        let mut third = record(Duration::minutes(40));
        store.create(&mut third).await?;
        assert!(store.load(&first.id).await?.is_some());
        assert_eq!(store.load(&second.id).await?, None);
        assert!(store.load(&third.id).await?.is_some());
        Ok(())
    }
}
