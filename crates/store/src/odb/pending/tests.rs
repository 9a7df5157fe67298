//! The pack a commit's first big tree starts, with a real store: when the pack the commit
//! predicted is the pack written, that a pack is sound whether it was started early or not, and
//! that a started pack not used is deleted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gix::ObjectId;
use gix::objs::Kind;
use gix::objs::tree::{EntryKind, EntryMode};

use super::PendingObjects;
use crate::odb::object::Object;
use crate::odb::pack::StartedPack;
use crate::temp_store::TempStore;
use crate::tree::TreeBuilder;
use crate::{BranchName, StorePath};
use datakit_ci_testkit::git;

/// Entries of the big trees: about 280 KiB, over the 256 KiB from which a tree starts its pack.
const ENTRIES: usize = 8_000;

/// Writes `objects` as a pack of `store`, with `early` as the pack started for it, and returns the
/// ids `git verify-pack` finds in that pack (which it only lists if the pack is sound).
fn write(store: &TempStore, objects: &[Object], early: Option<StartedPack>) -> Vec<ObjectId> {
    let before = store.pack_indexes();
    store
        .repo()
        .odb()
        .write_objects(&store.repo().get(), objects, early)
        .expect("write the pack");
    let new: Vec<PathBuf> = store
        .pack_indexes()
        .into_iter()
        .filter(|pack| !before.contains(pack))
        .collect();
    assert_eq!(new.len(), 1, "one new pack");
    verified_ids(&store.git_dir, &new[0])
}

/// A pending set like a commit's in `store`: `blobs`, then `expect_pack` announcing `more`
/// objects, then `objects` (trees or blobs) added after.
fn pending(
    store: &TempStore,
    blobs: &[&str],
    more: usize,
    objects: Vec<(Kind, Vec<u8>)>,
) -> Pending {
    let repo = store.repo();
    let handle = repo.get();
    let mut pending = PendingObjects::default();
    for blob in blobs {
        pending
            .add(Kind::Blob, blob.as_bytes().to_vec())
            .expect("add a blob");
    }
    pending.expect_pack(
        &handle,
        repo.recent(),
        Some(Arc::clone(repo.pack_thread())),
        more,
    );
    for (kind, data) in objects {
        match kind {
            Kind::Tree => pending
                .add_tree(crate::tree::DecodedTree::decode(data).expect("a tree"))
                .expect("add a tree"),
            other => pending.add(other, data).expect("add an object"),
        };
    }
    let (objects, early) = pending.take_new(&handle, repo.recent());
    Pending { objects, early }
}

struct Pending {
    objects: Vec<Object>,
    early: Option<StartedPack>,
}

impl Pending {
    fn ids(&self) -> Vec<ObjectId> {
        let mut ids: Vec<ObjectId> = self.objects.iter().map(|(id, _, _)| *id).collect();
        ids.sort();
        ids
    }
}

/// The ids in the pack `idx`, as `git verify-pack -v` lists them after checking the pack.
fn verified_ids(git_dir: &Path, idx: &Path) -> Vec<ObjectId> {
    let listing = git(
        git_dir,
        &["verify-pack", "-v", idx.to_str().expect("UTF-8 path")],
    );
    let mut ids: Vec<ObjectId> = listing
        .lines()
        .filter(|line| line.len() > 41 && line.as_bytes()[40] == b' ')
        .map(|line| ObjectId::from_hex(&line.as_bytes()[..40]).expect("an object id"))
        .collect();
    ids.sort();
    ids
}

/// The data of a flat tree of [`ENTRIES`] files named after `prefix`, all `blob`.
fn big_tree(prefix: &str, blob: ObjectId) -> Vec<u8> {
    let mut builder = TreeBuilder::with_capacity(ENTRIES * 40, ENTRIES);
    for n in 0..ENTRIES {
        let name = format!("{prefix}-{n:05}");
        builder.push(name.as_bytes(), EntryMode::from(EntryKind::Blob), &blob);
    }
    builder.finish().data().to_vec()
}

fn blob_id(contents: &str) -> ObjectId {
    gix::objs::compute_hash(gix::hash::Kind::Sha1, Kind::Blob, contents.as_bytes())
        .expect("hash a blob")
}

#[tokio::test]
async fn a_commit_as_predicted_has_its_pack_started_with_its_first_big_tree() -> anyhow::Result<()>
{
    let fixture = TempStore::new();
    let branch = BranchName::new("main")?;
    let mut transaction = fixture.store.branch(&branch).transaction().await?;
    transaction.create_file(&StorePath::new("stored")?, "stored")?;
    transaction.commit("a stored blob").await?;

    // A stored blob, a new one, then two big trees and a commit-like object, as announced.
    let pending = pending(
        &fixture,
        &["stored", "new"],
        3,
        vec![
            (Kind::Tree, big_tree("a", blob_id("new"))),
            (Kind::Tree, big_tree("b", blob_id("new"))),
            (Kind::Blob, b"the commit".to_vec()),
        ],
    );
    assert!(pending.early.is_some(), "the pack was started early");
    assert!(
        !pending.ids().contains(&blob_id("stored")),
        "stored objects are dropped before the count is fixed"
    );
    assert_eq!(pending.objects.len(), 4);
    let expected = pending.ids();
    assert_eq!(write(&fixture, &pending.objects, pending.early), expected);
    Ok(())
}

#[tokio::test]
async fn a_commit_with_more_objects_than_announced_writes_its_pack_as_usual() -> anyhow::Result<()>
{
    let fixture = TempStore::new();
    let pending = pending(
        &fixture,
        &["new"],
        1,
        vec![
            (Kind::Tree, big_tree("a", blob_id("new"))),
            (Kind::Blob, b"one more than announced".to_vec()),
        ],
    );
    assert!(pending.early.is_none());
    let expected = pending.ids();
    assert_eq!(expected.len(), 3);
    assert_eq!(write(&fixture, &pending.objects, None), expected);
    Ok(())
}

#[tokio::test]
async fn a_pack_started_for_another_pack_is_not_used_and_deleted() -> anyhow::Result<()> {
    let fixture = TempStore::new();
    let first = |prefix: &str, extra: usize| {
        let mut objects = vec![(Kind::Tree, big_tree(prefix, blob_id("new")))];
        for n in 0..extra {
            objects.push((Kind::Blob, format!("extra {n}").into_bytes()));
        }
        pending(&fixture, &["new"], objects.len(), objects)
    };
    // The same count, another first tree.
    let started = first("a", 0);
    let other = first("b", 0);
    assert!(started.early.is_some() && other.early.is_some());
    let expected = other.ids();
    assert_eq!(write(&fixture, &other.objects, started.early), expected);
    // The same first tree, another count.
    let started = first("c", 0);
    let bigger = first("c", 1);
    let expected = bigger.ids();
    assert_eq!(write(&fixture, &bigger.objects, started.early), expected);
    // And packs started for nothing (their commits failed before writing).
    drop((other, bigger, first("d", 0)));
    // The started packs were deleted: at once if the thread had written them, else once it has.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let temporary = fixture.pack_dir_files(|name| name.starts_with("tmp_pack_"));
        if temporary.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "started packs left behind: {temporary:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok(())
}
