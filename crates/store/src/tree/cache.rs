//! A bounded cache of decoded trees, shared by every reader of one store.
//!
//! The metadata branch has trees of tens of thousands of entries, and every head change used to
//! decode each of them several times (a path lookup, a transaction's first edit, a diff). Trees are
//! immutable and named by their contents, so a decoded tree can be kept by id and never invalidated.
//! Trees this store writes are put in the cache as they are written (see [`super::DirNode::write`]),
//! so reading back a commit just made decodes nothing.
//!
//! The bound is on entries, not trees: two generations of at most [`TreeCache::generation_limit`]
//! entries each. Inserts go into the young generation; when it is full it becomes the old one (the
//! previous old one is dropped), and a hit in the old generation moves the tree back to the young
//! one. That keeps what is used recently for the cost of a hash map, without per-hit bookkeeping.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use gix::ObjectId;

use super::{BufferPool, DecodedTree};

/// Entries the cache holds per generation by default; at most twice that in all. An entry costs its
/// encoded bytes (about 40) plus a 16-byte index slot, so about 11 MB in all.
const DEFAULT_GENERATION_LIMIT: usize = 100_000;

/// Decoded trees by id, bounded by their total number of entries. Clones share the cache (so an
/// edited tree can keep a handle to put the trees it writes in).
#[derive(Clone)]
pub(crate) struct TreeCache {
    shared: Arc<Shared>,
}

struct Shared {
    generation_limit: usize,
    /// The buffers of big trees that were dropped, for the store's next big trees.
    buffers: BufferPool,
    generations: Mutex<Generations>,
    /// Trees decoded from the object database because they were not cached.
    decodes: AtomicU64,
}

#[derive(Default)]
struct Generations {
    young: HashMap<ObjectId, DecodedTree>,
    young_entries: usize,
    old: HashMap<ObjectId, DecodedTree>,
    old_entries: usize,
}

impl Default for TreeCache {
    fn default() -> Self {
        TreeCache::with_generation_limit(DEFAULT_GENERATION_LIMIT)
    }
}

impl TreeCache {
    /// A cache holding at most `limit` entries per generation (`2 * limit` in all).
    pub(crate) fn with_generation_limit(limit: usize) -> TreeCache {
        TreeCache {
            shared: Arc::new(Shared {
                generation_limit: limit,
                buffers: BufferPool::default(),
                generations: Mutex::new(Generations::default()),
                decodes: AtomicU64::new(0),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Generations> {
        // The maps are consistent after every statement that panics can interrupt (only allocation
        // can), so a poisoned lock is still usable.
        self.shared
            .generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where the store's big trees are built.
    pub(crate) fn buffers(&self) -> &BufferPool {
        &self.shared.buffers
    }

    /// The decoded tree `id`, if cached.
    pub(crate) fn get(&self, id: &ObjectId) -> Option<DecodedTree> {
        let mut generations = self.lock();
        if let Some(found) = generations.young.get(id) {
            return Some(found.clone());
        }
        let found = generations.old.remove(id)?;
        generations.old_entries -= found.len();
        let evicted = generations.insert_young(*id, found.clone(), self.shared.generation_limit);
        drop(generations);
        drop_in_background(evicted);
        Some(found)
    }

    /// Keeps the decoded tree `id` (unless it alone is bigger than a generation).
    pub(crate) fn insert(&self, id: ObjectId, tree: DecodedTree) {
        if tree.len() > self.shared.generation_limit {
            return;
        }
        let mut generations = self.lock();
        if generations.young.contains_key(&id) {
            return;
        }
        if let Some(old) = generations.old.remove(&id) {
            generations.old_entries -= old.len();
        }
        let evicted = generations.insert_young(id, tree, self.shared.generation_limit);
        drop(generations);
        drop_in_background(evicted);
    }

    /// Counts a tree decoded because it was not cached.
    pub(crate) fn count_decode(&self) {
        self.shared.decodes.fetch_add(1, Ordering::Relaxed);
    }

    /// How many trees were decoded because they were not cached.
    #[cfg(test)]
    pub(crate) fn decodes(&self) -> u64 {
        self.shared.decodes.load(Ordering::Relaxed)
    }

    /// Forgets every tree (for tests that need a cold cache).
    #[cfg(test)]
    pub(crate) fn clear(&self) {
        *self.lock() = Generations::default();
    }

    /// The number of entries held, over all trees.
    #[cfg(test)]
    pub(crate) fn entries(&self) -> usize {
        let generations = self.lock();
        generations.young_entries + generations.old_entries
    }
}

impl Generations {
    /// Inserts into the young generation; returns the old generation if this made it go.
    #[must_use]
    fn insert_young(
        &mut self,
        id: ObjectId,
        tree: DecodedTree,
        limit: usize,
    ) -> Option<HashMap<ObjectId, DecodedTree>> {
        let evicted = (self.young_entries + tree.len() > limit).then(|| {
            self.old_entries = std::mem::take(&mut self.young_entries);
            std::mem::replace(&mut self.old, std::mem::take(&mut self.young))
        });
        self.young_entries += tree.len();
        self.young.insert(id, tree);
        evicted
    }
}

/// Frees an evicted generation on a thread of its own. It holds about a generation's worth of
/// entries, at 10,000 targets a dozen trees of hundreds of KB: freeing them took milliseconds of the
/// head change whose commit happened to fill the young generation.
fn drop_in_background(evicted: Option<HashMap<ObjectId, DecodedTree>>) {
    let Some(evicted) = evicted.filter(|evicted| !evicted.is_empty()) else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("tree-cache-evict".to_owned())
        .spawn(move || drop(evicted));
    // Without a thread (resources exhausted), the generation was dropped with the error.
    if let Err(error) = spawned {
        tracing::debug!(%error, "cannot start a thread to free evicted trees");
    }
}

#[cfg(test)]
mod tests {
    use gix::objs::tree::{EntryKind, EntryMode};

    use super::*;
    use crate::tree::TreeBuilder;

    fn tree(entries: usize) -> DecodedTree {
        let mut builder = TreeBuilder::with_capacity(0, entries);
        for n in 0..entries {
            builder.push(
                format!("{n:06}").as_bytes(),
                EntryMode::from(EntryKind::Blob),
                &ObjectId::null(gix::hash::Kind::Sha1),
            );
        }
        builder.finish()
    }

    fn id(n: u8) -> ObjectId {
        ObjectId::from_bytes_or_panic(&[n; 20])
    }

    #[test]
    fn stays_bounded_and_keeps_what_is_used() {
        let cache = TreeCache::with_generation_limit(100);
        cache.insert(id(0), tree(40));
        for n in 1..50 {
            cache.insert(id(n), tree(30));
            // Used all along, so never dropped.
            assert!(cache.get(&id(0)).is_some(), "tree 0 dropped at {n}");
            assert!(cache.entries() <= 200, "{} entries", cache.entries());
        }
        assert!(
            cache.get(&id(1)).is_none(),
            "the oldest unused tree is dropped"
        );
        assert!(cache.get(&id(49)).is_some(), "the newest tree is kept");
    }

    #[test]
    fn a_tree_bigger_than_a_generation_is_not_kept() {
        let cache = TreeCache::with_generation_limit(10);
        cache.insert(id(1), tree(11));
        assert!(cache.get(&id(1)).is_none());
        assert_eq!(cache.entries(), 0);
    }
}
