//! What this process wrote last: the ids of the objects and the contents of the small blobs (the
//! commits, decoded, are remembered by the layer above, `refs`). Reading a head just committed and
//! its small files (the engine following `github-metadata` and reading the ref that moved, the next
//! transaction on a branch) then costs no object lookup, and a commit still skips the objects an
//! earlier commit stored.
//!
//! A lookup is not free: a commit just written sits in a pack that no handle has seen yet, so gix
//! first misses it, lists the pack directory again and loads the new index; at 10,000 targets that
//! was 0.5–1 ms of every head change, before the engine could even diff the metadata. Handles see
//! new packs later, when a read misses; until then, [`RecentWrites::has_object`] answers for them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use gix::ObjectId;

use gix::objs::Kind;

use super::object::Object;

/// How many object ids are remembered: those of the last few hundred commits.
const OBJECTS: usize = 8192;

/// Blobs up to this size are remembered with their contents (at most [`OBJECTS`] × this in all):
/// a ref's `head`, a status's `state`.
const SMALL_BLOB: usize = 256;

/// The objects written last.
#[derive(Default)]
pub(crate) struct RecentWrites {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// With the contents of small blobs.
    objects: HashMap<ObjectId, Option<Arc<[u8]>>>,
    /// The ids of `objects`, oldest first.
    object_order: VecDeque<ObjectId>,
}

impl RecentWrites {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers objects that are now stored.
    pub(crate) fn remember_objects(&self, objects: &[Object]) {
        let mut inner = self.lock();
        for (id, kind, data) in objects {
            let data = data.as_ref();
            let small_blob =
                (*kind == Kind::Blob && data.len() <= SMALL_BLOB).then(|| Arc::<[u8]>::from(data));
            if inner.objects.insert(*id, small_blob).is_some() {
                continue;
            }
            let id = *id;
            inner.object_order.push_back(id);
            if inner.object_order.len() > OBJECTS
                && let Some(oldest) = inner.object_order.pop_front()
            {
                inner.objects.remove(&oldest);
            }
        }
    }

    /// Whether object `id` is one of those stored last.
    pub(crate) fn has_object(&self, id: &ObjectId) -> bool {
        self.lock().objects.contains_key(id)
    }

    /// The contents of blob `id`, if it is a small one of those stored last.
    pub(crate) fn small_blob(&self, id: &ObjectId) -> Option<Arc<[u8]>> {
        self.lock().objects.get(id).cloned().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::odb::object::ObjectData;

    fn object(n: u16) -> ObjectId {
        let mut bytes = [0; 20];
        bytes[..2].copy_from_slice(&n.to_be_bytes());
        ObjectId::from_bytes_or_panic(&bytes)
    }

    fn bytes(text: impl Into<String>) -> ObjectData {
        ObjectData::Bytes(text.into().into_bytes())
    }

    #[test]
    fn remembers_the_last_objects_only() {
        let recent = RecentWrites::default();
        let blob = |n: u16| (object(n), Kind::Blob, bytes(n.to_string()));
        let objects: Vec<Object> = (0..=OBJECTS as u16).map(blob).collect();
        recent.remember_objects(&objects);
        // Remembering one again does not make it count twice.
        recent.remember_objects(&[blob(5)]);
        assert!(!recent.has_object(&object(0)), "the oldest is forgotten");
        assert!(recent.small_blob(&object(0)).is_none());
        assert!((1..=OBJECTS as u16).all(|n| recent.has_object(&object(n))));
        assert_eq!(recent.small_blob(&object(7)).as_deref(), Some(&b"7"[..]));
        assert!(!recent.has_object(&object(OBJECTS as u16 + 1)));
    }

    #[test]
    fn keeps_the_contents_of_small_blobs_only() {
        let recent = RecentWrites::default();
        let big = vec![b'x'; SMALL_BLOB + 1];
        recent.remember_objects(&[
            (object(1), Kind::Blob, bytes("small")),
            (object(2), Kind::Blob, ObjectData::Bytes(big)),
            (object(3), Kind::Tree, bytes("")),
        ]);
        assert_eq!(
            recent.small_blob(&object(1)).as_deref(),
            Some(&b"small"[..])
        );
        assert!(recent.small_blob(&object(2)).is_none(), "too big");
        assert!(recent.small_blob(&object(3)).is_none(), "not a blob");
        assert!(recent.has_object(&object(2)) && recent.has_object(&object(3)));
    }
}
