//! Tests of the editable tree against the real `git`: every committed tree must be the one
//! `git write-tree` makes of the same files, whatever mix of edits produced it, and the trees a
//! commit writes must be readable afterwards without decoding them.

use std::collections::BTreeMap;

use crate::{BranchName, CommitId, Store, StorePath};
use datakit_ci_testkit::{assert_fsck_clean, git, git_with_input};

/// The files of a tree: path to contents.
type Files = BTreeMap<String, String>;

/// One edit, applied both to a transaction and to the expected files.
enum Op<'a> {
    Write(&'a str, &'a str),
    Remove(&'a str),
    MakeDirs(&'a str),
}

/// The tree `git write-tree` makes of `files`, staged straight into the index of a fresh
/// repository (`update-index --index-info`) rather than written out as thousands of files. Only the
/// blob ids are computed here; git builds and hashes every tree itself.
fn git_write_tree(files: &Files) -> String {
    let dir = tempfile::tempdir().expect("make a temporary directory");
    git(dir.path(), &["init", "-q", "."]);
    let mut index_info = String::new();
    for (path, contents) in files {
        let blob = gix::objs::compute_hash(
            gix::hash::Kind::Sha1,
            gix::objs::Kind::Blob,
            contents.as_bytes(),
        )
        .expect("hash a blob");
        index_info.push_str(&format!("100644 {blob}\t{path}\n"));
    }
    git_with_input(dir.path(), &["update-index", "--index-info"], &index_info);
    // The blobs themselves are not in this repository; the trees are what is compared.
    git(dir.path(), &["write-tree", "--missing-ok"])
        .trim()
        .to_owned()
}

/// The names in directory `dir` of `files`, sorted as `read_dir` returns them.
fn listing(files: &Files, dir: &str) -> Vec<String> {
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let mut names: Vec<String> = files
        .keys()
        .filter_map(|path| path.strip_prefix(&prefix))
        .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
        .collect();
    names.dedup();
    names.sort();
    names
}

/// Asserts that a directory listing is `expected`, naming only the differences (listings are long).
fn assert_same_names(listed: Option<Vec<String>>, expected: Vec<String>, dir: &str, seen_by: &str) {
    let Some(listed) = listed else {
        panic!("{dir} is not a directory in the {seen_by}");
    };
    let missing: Vec<_> = expected
        .iter()
        .filter(|name| !listed.contains(name))
        .collect();
    let extra: Vec<_> = listed
        .iter()
        .filter(|name| !expected.contains(name))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{dir} in the {seen_by}: missing {missing:?}, extra {extra:?}"
    );
    assert!(listed == expected, "{dir} in the {seen_by}: not sorted");
}

struct Checker {
    store: Store,
    git_dir: std::path::PathBuf,
    files: Files,
    _dir: tempfile::TempDir,
}

impl Checker {
    fn new() -> Result<Checker, crate::Error> {
        let dir = tempfile::tempdir().expect("make a temporary directory");
        let git_dir = dir.path().join("state.git");
        Ok(Checker {
            store: Store::open(&git_dir)?,
            git_dir,
            files: Files::new(),
            _dir: dir,
        })
    }

    /// Applies `ops` in one transaction and commits; checks the transaction's view of `dirs` before
    /// committing and the committed tree against Git's.
    async fn commit(&mut self, ops: &[Op<'_>], dirs: &[&str]) -> Result<CommitId, crate::Error> {
        let main = self.store.branch(&BranchName::new("main")?);
        let mut transaction = main.transaction().await?;
        // Directories made in this transaction: listed by it, not persisted.
        let mut made = Files::new();
        for op in ops {
            match op {
                Op::Write(path, contents) => {
                    transaction.create_file(&StorePath::new(*path)?, contents)?;
                    self.files
                        .insert((*path).to_owned(), (*contents).to_owned());
                }
                Op::Remove(path) => {
                    transaction.remove(&StorePath::new(*path)?)?;
                    let inside = format!("{path}/");
                    self.files
                        .retain(|file, _| file != path && !file.starts_with(&inside));
                }
                Op::MakeDirs(path) => {
                    transaction.make_dirs(&StorePath::new(*path)?)?;
                    made.insert((*path).to_owned(), String::new());
                }
            }
        }
        for dir in dirs {
            let listed = transaction.read_dir(&StorePath::new(*dir)?)?;
            let mut with_made = self.files.clone();
            with_made.extend(made.clone());
            assert_same_names(listed, listing(&with_made, dir), dir, "transaction");
        }
        let id = transaction.commit("test").await?;
        assert_eq!(
            self.tree_of(id),
            git_write_tree(&self.files),
            "tree of {id}"
        );
        let snapshot = self.store.commit(id).await?.tree();
        for dir in dirs {
            let listed = snapshot.read_dir(&StorePath::new(*dir)?)?;
            assert_same_names(listed, listing(&self.files, dir), dir, "snapshot");
        }
        Ok(id)
    }

    /// The tree of `commit`, as git reads it.
    fn tree_of(&self, commit: CommitId) -> String {
        // Run inside the bare repository, which git finds as its own directory.
        git(&self.git_dir, &["rev-parse", &format!("{commit}^{{tree}}")])
            .trim()
            .to_owned()
    }

    fn fsck(&self) {
        assert_fsck_clean(&self.git_dir);
    }
}

fn big_tree() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for n in 0..3000 {
        files.push((format!("big/f{n:05}"), format!("file {n}")));
        if n % 100 == 0 {
            files.push((format!("big/d{n:05}/x"), format!("in dir {n}")));
        }
    }
    for name in ["a-", "a.b", "a0", "ab", "a/x"] {
        files.push((format!("big/{name}"), name.to_owned()));
    }
    files
}

#[tokio::test]
async fn large_tree_edits_give_the_trees_git_makes() -> Result<(), crate::Error> {
    let mut checker = Checker::new()?;
    let initial = big_tree();
    let ops: Vec<Op<'_>> = initial
        .iter()
        .map(|(path, contents)| Op::Write(path, contents))
        .collect();
    checker.commit(&ops, &["big"]).await?;

    // Several edits at the start, in the middle and at the end, in one transaction.
    checker
        .commit(
            &[
                Op::Write("big/!start", "inserted first"),
                Op::Write("big/f01500x", "inserted in the middle"),
                Op::Write("big/~end", "inserted last"),
                Op::Write("big/a-", "replaced near the start"),
                Op::Write("big/f01500", "replaced in the middle"),
                Op::Write("big/f02999", "replaced near the end"),
                Op::Remove("big/a.b"),
                Op::Remove("big/f01000"),
                Op::Remove("big/d01000"),
                Op::Remove("big/f02998"),
            ],
            &["big"],
        )
        .await?;
    // One edit per transaction, at each end and in the middle.
    for op in [
        Op::Write("big/!start", "replaced first"),
        Op::Remove("big/!start"),
        Op::Write("big/f00000", "replaced first file"),
        Op::Remove("big/~end"),
        Op::Write("big/~~", "appended"),
        Op::Remove("big/f01700"),
        Op::Write("big/d02000/x", "replaced in a subdirectory"),
        Op::Write("big/d02000/y", "added in a subdirectory"),
    ] {
        checker.commit(&[op], &["big"]).await?;
    }
    // Files become directories and directories files, in the middle of the tree.
    checker
        .commit(
            &[
                Op::Remove("big/f00500"),
                Op::Write("big/f00500/inner", "a file became a directory"),
                Op::Remove("big/d00100"),
                Op::Write("big/d00100", "a directory became a file"),
            ],
            &["big", "big/f00500"],
        )
        .await?;
    // Empty directories are not persisted; an edit undone leaves the tree as it was.
    checker
        .commit(
            &[
                Op::MakeDirs("big/empty/dir"),
                Op::Write("big/f00001", "changed"),
                Op::Write("big/f00002", "changed"),
                Op::Remove("big/f00002"),
                Op::Write("big/f00002", "file 2"),
            ],
            &["big"],
        )
        .await?;
    // A directory replaced as a whole.
    checker
        .commit(
            &[Op::Remove("big"), Op::Write("big/only", "alone")],
            &["big"],
        )
        .await?;
    checker.fsck();
    Ok(())
}

#[tokio::test]
async fn names_that_prefix_others_sort_as_git_does() -> Result<(), crate::Error> {
    let mut checker = Checker::new()?;
    checker
        .commit(
            &[
                Op::Write("a/x", "a directory"),
                Op::Write("a.b", "dot"),
                Op::Write("a-", "dash"),
                Op::Write("a0", "zero"),
                Op::Write("ab", "letter"),
                Op::Write("d/a-", "dash"),
            ],
            &["", "a", "d"],
        )
        .await?;
    checker
        .commit(&[Op::Remove("a"), Op::Write("a", "now a file")], &[""])
        .await?;
    checker
        .commit(
            &[
                Op::Remove("a.b"),
                Op::Write("a.b/y", "now a directory"),
                Op::Remove("a-"),
                Op::Write("a-/z", "now a directory too"),
                Op::Write("d/a/x", "a directory after its prefix"),
                Op::Remove("d/a"),
                Op::Write("d/a", "a file after all"),
            ],
            &["", "a.b", "d"],
        )
        .await?;
    checker
        .commit(
            &[Op::Remove("a"), Op::Write("a/x", "a directory again")],
            &["", "a"],
        )
        .await?;
    checker.fsck();
    Ok(())
}

#[tokio::test]
async fn trees_written_by_a_commit_are_read_without_decoding() -> Result<(), crate::Error> {
    let mut checker = Checker::new()?;
    let initial = big_tree();
    let ops: Vec<Op<'_>> = initial
        .iter()
        .map(|(path, contents)| Op::Write(path, contents))
        .collect();
    let first = checker.commit(&ops, &[]).await?;
    let cache = checker.store.repo().tree_cache().clone();
    let decodes = cache.decodes();

    // The next transaction edits the trees the first one wrote; the diff and reads that follow
    // read the trees it wrote in turn.
    let second = checker
        .commit(
            &[
                Op::Write("big/f00010", "changed"),
                Op::Write("big/d00100/y", "added"),
                Op::Remove("big/f02000"),
            ],
            &["big", "big/d00100"],
        )
        .await?;
    let old = checker.store.commit(first).await?.tree();
    let new = checker.store.commit(second).await?.tree();
    let changed: Vec<String> = old
        .changed_files(&new)?
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(changed, ["big/d00100/y", "big/f00010", "big/f02000"]);
    assert_eq!(
        new.read_file(&StorePath::new("big/f00010")?)?,
        Some(b"changed".to_vec())
    );
    let main = checker.store.branch(&BranchName::new("main")?);
    let mut transaction = main.transaction().await?;
    transaction.create_file(&StorePath::new("big/f00010")?, "changed")?;
    assert!(
        transaction.is_empty(),
        "rewriting a file as it is changes nothing"
    );
    assert_eq!(cache.decodes(), decodes, "no tree was decoded");

    // The counter does count: a cold cache decodes.
    cache.clear();
    assert!(new.read_dir(&StorePath::new("big")?)?.is_some());
    assert!(cache.decodes() > decodes, "a cold read decodes");
    Ok(())
}

/// `is_empty` decides from the changes where it can; it must agree with the tree the commit makes.
#[tokio::test]
async fn is_empty_agrees_with_the_committed_tree() -> Result<(), crate::Error> {
    let checker = Checker::new()?;
    let main = checker.store.branch(&BranchName::new("main")?);
    let mut transaction = main.transaction().await?;
    for (path, contents) in big_tree() {
        transaction.create_file(&StorePath::new(path)?, contents)?;
    }
    transaction.commit("initial").await?;
    let path = |path: &str| StorePath::new(path);
    let initial = big_tree();
    let cases: Vec<(&str, Vec<Op<'_>>, bool)> = vec![
        (
            "rewrite as is",
            vec![Op::Write("big/f00007", "file 7")],
            true,
        ),
        ("rewrite", vec![Op::Write("big/f00007", "other")], false),
        (
            "remove and write back",
            vec![Op::Remove("big/f00007"), Op::Write("big/f00007", "file 7")],
            true,
        ),
        (
            "directory remade alike",
            vec![
                Op::Remove("big/d00100"),
                Op::Write("big/d00100/x", "in dir 100"),
            ],
            true,
        ),
        (
            "directory remade otherwise",
            vec![Op::Remove("big/d00100"), Op::Write("big/d00100/x", "other")],
            false,
        ),
        (
            "empty directories only",
            vec![Op::MakeDirs("big/new/dir")],
            true,
        ),
        ("file added", vec![Op::Write("big/new", "new")], false),
        ("file removed", vec![Op::Remove("big/f00007")], false),
        (
            "file becomes a directory",
            vec![Op::Remove("big/a-"), Op::MakeDirs("big/a-")],
            false,
        ),
        (
            "whole tree removed and rebuilt",
            {
                let mut ops = vec![Op::Remove("big")];
                ops.extend(
                    initial
                        .iter()
                        .map(|(file, contents)| Op::Write(file, contents)),
                );
                ops
            },
            true,
        ),
    ];
    for (name, ops, expected) in cases {
        let mut transaction = main.transaction().await?;
        let parent = transaction.parent();
        for op in &ops {
            match op {
                Op::Write(file, contents) => transaction.create_file(&path(file)?, contents)?,
                Op::Remove(file) => transaction.remove(&path(file)?)?,
                Op::MakeDirs(dir) => transaction.make_dirs(&path(dir)?)?,
            }
        }
        assert_eq!(transaction.is_empty(), expected, "{name}");
        // Asked twice, from the memoised hash where there is one.
        assert_eq!(transaction.is_empty(), expected, "{name}, again");
        let id = transaction.commit(name).await?;
        let parent = parent.expect("the branch has a head");
        assert_eq!(
            checker.tree_of(id) == checker.tree_of(parent),
            expected,
            "{name}: committed tree"
        );
        // Back to the initial tree for the next case.
        if !expected {
            let mut transaction = main.transaction().await?;
            transaction.remove(&path("big")?)?;
            for (file, contents) in big_tree() {
                transaction.create_file(&path(&file)?, contents)?;
            }
            transaction.commit("restore").await?;
        }
    }
    checker.fsck();
    Ok(())
}
