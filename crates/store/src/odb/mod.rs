//! The object database: the bare repository opened through gix, a pool of handles to read objects
//! with, and the writing of new objects — one pack (and its index) per group of commits, packs
//! merged in tiers with big trees stored as deltas, the pack thread that writes beside a commit,
//! and the memory of the objects written last. Like `gix-odb` and `gix-pack` below `gix`.
//!
//! It owns object ids and encoded objects ([`Object`]), and decides nothing about what they mean.
//! It must never know branches, commits as history, trees as directories, transactions or the
//! store's public types: a layer above that shares data with it (a decoded tree's bytes) does so
//! through [`ObjectBytes`], which this layer owns. Everything here is usable, and tested, without
//! the layers above.
//!
//! - [`repo`] (the [`Repo`] and its [`PooledRepo`] handles): why readers never miss an object while
//!   merged packs are deleted.
//! - [`pack`]: the pack and index formats, tiers, merging, deltas and the pack thread.
//! - [`pending`]: objects a transaction made, hashed, waiting for their commit.
//! - [`recent`]: the objects written last, so a commit skips them and small blobs read from memory.
//! - [`file_reader`]: a stored file read as a stream.
//!
//! # Mechanisms, and where each is argued
//!
//! - Creating a file is most of what a commit costs on our file systems (200–500 µs per inode on
//!   ext4 without a journal), so each commit group's new objects go into one pack plus its index,
//!   hand-written, whole objects ([`pack`]); files over 256 KiB (given whole or streamed) are
//!   written loose by gix instead.
//! - Trees of 64 KiB or more (the metadata's flat trees) are packed uncompressed, as zlib stored
//!   blocks written straight from the tree's bytes, first in the pack; so are objects under 512
//!   bytes (most of a commit's: starting a deflate stream clears a 128 KiB table) (`pack/writer.rs`).
//! - The store's pack thread ([`PackThread`], `pack/thread.rs`) works beside the commit: when a
//!   commit builds a tree of 256 KiB or more (the 10,000-target case's `ref/heads/` and `commit/`)
//!   and fewer than 8 other transactions are open, it creates the pack's temporary file and writes
//!   the header and that tree's entry while the commit computes the tree's id (SHA-1 with collision
//!   detection, 0.55–0.7 ms for 672 KB here) and the trees above it. That needs the pack's object
//!   count in advance: before building trees, [`PendingObjects::expect_pack`] drops the blobs already
//!   stored and is told how many objects are coming (the transaction predicts one tree per changed
//!   directory plus the commit); a pack that turns out different (a group of several commits,
//!   changes that undo each other) is written as before, with the thread only computing the
//!   checksum over the big trees while the commit writes them, and the started file is deleted.
//! - Packs are merged in size tiers of 16 (`pack/merge.rs`), in the background after the commit that
//!   fills a tier (`Store::wait_for_maintenance` waits for it; a commit that fills a tier while
//!   maintenance runs asks it to look again), and a merged pack stores the big trees as deltas of
//!   depth 1 against another version in the same pack (`pack/delta.rs`: an entry-level diff of two
//!   sorted trees in Git's delta format), so the store grows by about one whole copy per 16 versions
//!   rather than one per commit.
//! - Merged packs are deleted only while no pooled gix handle is on loan ([`repo`] gives the
//!   argument: once deletions have failed for half an epoch, a deletion stops lending handles while
//!   it waits for the ones on loan, at most 50 ms, as a busy store may never have an instant without
//!   a reader); every object read goes through [`find_object`], which retries a miss in a freshly
//!   opened object database.
//! - [`recent`] remembers what this process wrote last (8,192 object ids, the contents of small
//!   blobs; the last 64 commits, decoded, are remembered in `refs`): reading a head just committed,
//!   or the ref file that moved, costs no gix lookup (which misses in a pack no handle has seen yet,
//!   lists the pack directory and loads the new index), and a commit still skips objects an earlier
//!   commit stored.

mod file_reader;
mod object;
mod pack;
mod pending;
mod recent;
mod repo;

pub use file_reader::FileReader;
pub(crate) use object::{Object, ObjectBytes, SharedBytes, encode};
pub use pack::{EncodedEntry, write_encoded};
pub(crate) use pack::{PackThread, StartedPack};
pub(crate) use pending::PendingObjects;
pub(crate) use recent::RecentWrites;
pub(crate) use repo::{PooledRepo, Repo, find_object};
