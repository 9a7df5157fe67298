//! Pack files written by hand: each commit's new objects go into the object database as one pack
//! (format v2, whole objects) plus its index (v2), instead of one loose file per object. Creating
//! a file is the dominant cost of a commit on some file systems (hundreds of microseconds for an
//! inode on ext4 without a journal), so a commit creates two files whatever its size.
//!
//! [`Tiers`] keeps the number of packs bounded, like a log-structured merge tree: packs are grouped
//! by object count (`[16^n, 16^(n+1))`), and [`TIER_WIDTH`] packs of one tier are merged into one
//! ([`merge`]). Merging only *adds* a pack; deleting the merged ones is the job of
//! [`Repo`](super::Repo), which knows when no reader can still be looking at them.
//!
//! A merged pack stores big trees (from [`STORE_UNCOMPRESSED_FROM`] bytes: the flat directories of
//! the metadata, rewritten by every commit with one entry changed) as deltas (`OFS_DELTA`) against
//! another version written whole earlier in the same pack ([`delta`]), so it holds about one whole
//! copy per directory instead of one per commit. Deltas have depth 1 (a base is always whole), so
//! reading one costs one inflate of the base and one of the delta; every merge recomputes them
//! against its own bases. Every other object is written whole.
//!
//! A commit's pack starts with its big trees: at 10,000 targets a head change writes flat trees of
//! hundreds of KB, and hashing them cost as much as writing them. The store's pack thread
//! ([`PackThread`]) writes the start of the pack (its first big tree) while the commit is still
//! computing that tree's id, or else computes the pack's checksum while the commit writes them.
//!
//! This module knows the file formats and nothing of readers, gix handles or transactions (the
//! objects it writes are the pending objects of commits, big trees sharing their bytes with the
//! layer above through [`ObjectBytes`](super::ObjectBytes)).

mod delta;
mod merge;
mod thread;
mod writer;

pub(crate) use merge::merge;
pub(crate) use thread::{PackThread, StartedPack};
pub(crate) use writer::PackInfo;
pub use writer::{EncodedEntry, write_encoded};

use std::io;
use std::path::Path;

use gix::objs::Kind;

use super::object::{Object, ObjectData, SharedBytes};
use writer::{PackWriter, TEMP_PREFIX, is_big_tree, pack_header, read_count};

/// How many packs of one size tier trigger their merge into one pack of a higher tier.
pub(crate) const TIER_WIDTH: usize = 16;

/// The packs of the store grouped by size tier.
#[derive(Default)]
pub(crate) struct Tiers {
    packs: Vec<PackInfo>,
}

impl Tiers {
    /// The packs (with a version 2 index) in `pack_dir`, except those git was told to keep.
    pub(crate) fn scan(pack_dir: &Path) -> io::Result<Tiers> {
        let mut packs = Vec::new();
        let entries = match std::fs::read_dir(pack_dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Tiers::default()),
            Err(error) => return Err(error),
        };
        for entry in entries {
            let index = entry?.path();
            if index.extension().is_none_or(|ext| ext != "idx")
                || !index.with_extension("pack").is_file()
                || index.with_extension("keep").exists()
                || index.with_extension("promisor").exists()
            {
                continue;
            }
            match read_count(&index) {
                Ok(Some(count)) => packs.push(PackInfo { index, count }),
                // Not a version 2 index: leave it to git.
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(index = %index.display(), %error, "cannot read pack index; not merging it");
                }
            }
        }
        Ok(Tiers { packs })
    }

    /// How many packs there are.
    pub(crate) fn len(&self) -> usize {
        self.packs.len()
    }

    /// Records a new pack.
    pub(crate) fn add(&mut self, pack: PackInfo) {
        self.packs.push(pack);
    }

    /// Forgets packs (merged into another).
    pub(crate) fn remove(&mut self, gone: &[PackInfo]) {
        self.packs
            .retain(|pack| !gone.iter().any(|other| other.index == pack.index));
    }

    /// The first [`TIER_WIDTH`] packs (in the order they were added, so oldest first among those
    /// written since the store was opened) of the lowest tier that holds that many, if any. Never
    /// more: a merge started late (after more commits) merges the same groups as one started at
    /// once, so which packs end up together does not depend on timing. (Merging the whole tier
    /// made `big_trees_of_another_directory_are_not_delta_bases` fail now and then.)
    pub(crate) fn full_tier(&self) -> Option<Vec<PackInfo>> {
        let mut tiers: Vec<Vec<PackInfo>> = Vec::new();
        for pack in &self.packs {
            let tier = tier(pack.count);
            if tiers.len() <= tier {
                tiers.resize_with(tier + 1, Vec::new);
            }
            tiers[tier].push(pack.clone());
        }
        let mut group = tiers.into_iter().find(|group| group.len() >= TIER_WIDTH)?;
        group.truncate(TIER_WIDTH);
        Some(group)
    }
}

fn tier(count: usize) -> usize {
    count.max(1).ilog(TIER_WIDTH) as usize
}

/// Writes `objects` (encoded data without header) as one pack and its index in `pack_dir`.
///
/// Big trees go first. If the commit had `thread` start the pack with its first big tree
/// (`started`) and the pack is the one predicted, the rest is appended to it. Otherwise big trees
/// are written while `thread` computes the pack's checksum over them (see
/// [`PackWriter::add_trees_checksummed_aside`]). The other objects follow in their order.
pub(crate) fn write_objects(
    pack_dir: &Path,
    objects: &[Object],
    thread: &PackThread,
    started: Option<StartedPack>,
) -> io::Result<PackInfo> {
    let mut big_trees = Vec::new();
    let mut rest = Vec::with_capacity(objects.len());
    for (id, kind, data) in objects {
        match data {
            ObjectData::Shared(tree) if is_big_tree(*kind, tree.bytes()) => {
                big_trees.push((*id, tree))
            }
            _ => rest.push((*id, *kind, data.as_ref())),
        }
    }
    let started = started.and_then(|started| {
        let (first, _) = big_trees.first()?;
        started.into_writer(objects.len(), *first)
    });
    let mut writer = match started {
        Some(mut writer) => {
            for (id, tree) in &big_trees[1..] {
                writer.add_stored(*id, Kind::Tree, tree.bytes())?;
            }
            writer
        }
        None => {
            let checksumming = if big_trees.is_empty() {
                None
            } else {
                let trees = big_trees.iter().map(|(_, tree)| SharedBytes::clone(tree));
                thread.checksum(pack_header(objects.len())?, trees.collect())
            };
            // Creating the file overlaps the thread's start.
            let mut writer = PackWriter::new(pack_dir, objects.len())?;
            match checksumming {
                Some(checksumming) => {
                    let header = checksumming.header();
                    writer.add_trees_checksummed_aside(&big_trees, header, || {
                        checksumming.wait(big_trees.iter().map(|(_, tree)| tree.bytes()))
                    })?
                }
                None => {
                    for (id, tree) in &big_trees {
                        writer.add_stored(*id, Kind::Tree, tree.bytes())?;
                    }
                }
            }
            writer
        }
    };
    for (id, kind, data) in rest {
        writer.add_object(id, kind, data)?;
    }
    writer.finish()
}

/// Trees this big have the pack thread start their commit's pack (see [`PackThread`]): the 330 and
/// 672 KB flat trees of a head change with 10,000 targets. A smaller tree hashes in less time than
/// starting a pack beside it takes, and under load (hundreds of builds committing, flat trees of
/// about 100 KB) the packs started for commits then written in groups only took a core from the
/// builds.
const START_EARLY_FROM: usize = 256 * 1024;

/// Whether a new object is a tree big enough to start its pack early ([`START_EARLY_FROM`]).
pub(crate) fn starts_pack_early(kind: Kind, data: &[u8]) -> bool {
    kind == Kind::Tree && data.len() >= START_EARLY_FROM
}

/// Deletes the temporary files of packs a crashed process was writing. Call only while no one else
/// writes packs (the store's lock is held).
pub(crate) fn remove_temporary_files(pack_dir: &Path) -> io::Result<()> {
    let entries = match std::fs::read_dir(pack_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            tracing::debug!(path = %entry.path().display(), "removing a temporary pack file");
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Deletes a pack: its index first, so no one finds a pack without its data.
pub(crate) fn delete(pack: &PackInfo) -> io::Result<()> {
    for path in [pack.index.clone(), pack.data_path()] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
