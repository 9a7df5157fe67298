//! Merging packs that git made, with big trees as deltas of any depth (and of either kind): the
//! merged pack holds them as deltas of depth 1, which git and gix read back.

use std::path::Path;

use gix::ObjectId;

use super::merge;
use crate::odb::pack::{self, Tiers};
use datakit_ci_testkit::{assert_fsck_clean, git, git_with_input};

/// Files in the big tree of the tests: about 100 KiB.
const FILES: usize = 2_500;

/// Writes a version of a flat tree of [`FILES`] entries, each pointing at the last blob `changed`
/// gives for it or else at the `empty` blob, and returns its id.
fn write_tree(git_dir: &Path, changed: &[(usize, ObjectId)], empty: &str) -> String {
    let mut listing = String::new();
    for n in 0..FILES {
        let blob = changed
            .iter()
            .rev()
            .find(|(at, _)| *at == n)
            .map_or_else(|| empty.to_owned(), |(_, id)| id.to_string());
        listing.push_str(&format!("100644 blob {blob}\tfile-{n:05}\n"));
    }
    git_with_input(git_dir, &["mktree"], &listing)
        .trim()
        .to_owned()
}

/// `verify-pack -v` of every pack in `git_dir`.
fn verify_packs(git_dir: &Path) -> String {
    let mut listing = String::new();
    let pack_dir = git_dir.join("objects/pack");
    for entry in std::fs::read_dir(&pack_dir).expect("a pack directory") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|ext| ext == "idx") {
            let path = path.to_str().expect("a UTF-8 path");
            listing.push_str(&git(git_dir, &["verify-pack", "-v", path]));
        }
    }
    listing
}

#[test]
fn deltas_of_any_depth_made_by_git_become_deltas_of_depth_one() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let git_dir = dir.path().join("repo.git");
    std::fs::create_dir(&git_dir)?;
    git(&git_dir, &["init", "--bare", "--quiet"]);
    let empty = git_with_input(&git_dir, &["hash-object", "-w", "--stdin"], "")
        .trim()
        .to_owned();
    // Versions of the tree, each with one more entry changed; two packs of them made by git.
    let mut changed = Vec::new();
    let mut trees = Vec::new();
    let mut batch = format!("{empty}\n");
    for version in 0..12 {
        let blob = git_with_input(
            &git_dir,
            &["hash-object", "-w", "--stdin"],
            &format!("version {version}"),
        );
        changed.push((
            version * 211 % FILES,
            ObjectId::from_hex(blob.trim().as_bytes())?,
        ));
        trees.push(write_tree(&git_dir, &changed, &empty));
        batch.push_str(&format!("{}{}\n", blob, trees[version]));
        if version == 5 || version == 11 {
            let args = [
                "pack-objects",
                "-q",
                "--window=10",
                "--depth=50",
                "objects/pack/pack",
            ];
            git_with_input(&git_dir, &args, &std::mem::take(&mut batch));
        }
    }
    git(&git_dir, &["prune-packed"]);
    let before = verify_packs(&git_dir);
    assert!(
        before.contains("chain length = 2"),
        "git made deltas of deltas:\n{before}"
    );
    let listings: Vec<String> = trees
        .iter()
        .map(|tree| git(&git_dir, &["ls-tree", tree]))
        .collect();

    let pack_dir = git_dir.join("objects/pack");
    let tiers = Tiers::scan(&pack_dir)?;
    let packs = tiers.packs.clone();
    assert_eq!(packs.len(), 2, "two packs made by git");
    let repo = gix::open(&git_dir)?;
    let merged = merge(&pack_dir, &packs, |id| {
        let object = repo.find_object(*id).map_err(std::io::Error::other)?;
        Ok((object.kind, object.data.clone()))
    })?;
    for old in &packs {
        pack::delete(old)?;
    }

    let after = verify_packs(&git_dir);
    assert!(!after.contains("chain length = 2"), "{after}");
    let deltas: Vec<&str> = after
        .lines()
        .filter(|line| line.split_whitespace().count() == 7)
        .collect();
    assert_eq!(deltas.len(), trees.len() - 1, "one whole tree:\n{after}");
    assert!(deltas.iter().all(|line| line.contains(" tree ")), "{after}");
    assert_eq!(
        merged.count,
        1 + 12 + 12,
        "the empty blob, the others and the trees"
    );
    for (tree, listing) in trees.iter().zip(&listings) {
        assert_eq!(&git(&git_dir, &["ls-tree", tree]), listing);
    }
    // gix reads them too, from a fresh object database.
    let repo = gix::open(&git_dir)?;
    for tree in &trees {
        let id = ObjectId::from_hex(tree.as_bytes())?;
        let object = repo.find_object(id)?;
        let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
        hasher.update(format!("tree {}\0", object.data.len()).as_bytes());
        hasher.update(&object.data);
        assert_eq!(hasher.try_finalize()?, id, "the tree read back");
    }
    assert_fsck_clean(&git_dir);
    git(&git_dir, &["fsck", "--full", "--strict", "--no-progress"]);
    Ok(())
}
