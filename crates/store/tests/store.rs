//! Integration tests of the store through its public API, cross-checked with the real `git` binary.

mod common;

use std::io::Read;

use common::{Fixture, branch, path};
use datakit_ci_store::{
    BranchName, CommitId, EntryKind, Error, Store, StorePath, escape, unescape,
};

#[tokio::test]
async fn missing_branch_has_no_head() -> anyhow::Result<()> {
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));
    assert!(main.head().await?.is_none());
    assert!(fixture.store.branches().await?.is_empty());
    let transaction = main.transaction().await?;
    assert_eq!(transaction.parent(), None);
    assert!(transaction.is_empty());
    transaction.abort();
    assert!(main.head().await?.is_none());
    Ok(())
}

#[tokio::test]
async fn create_read_replace_and_remove_files() -> anyhow::Result<()> {
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));

    let mut transaction = main.transaction().await?;
    transaction.create_file(&path("top"), "1")?;
    transaction.create_file(&path("a/b/c"), "deep")?;
    transaction.create_file(&path("a/b/d"), "other")?;
    transaction.create_file(&path("a/e"), "shallow")?;
    // Reads see the transaction's own writes.
    assert_eq!(
        transaction.read_file(&path("a/b/c"))?,
        Some(b"deep".to_vec())
    );
    assert_eq!(
        transaction.read_dir(&path("a"))?,
        Some(vec!["b".to_owned(), "e".to_owned()])
    );
    assert!(transaction.exists(&path("a/b"))?);
    assert_eq!(transaction.kind(&path("a/b"))?, Some(EntryKind::Dir));
    assert_eq!(transaction.read_file(&path("a/b"))?, None);
    assert!(!transaction.is_empty());
    let first = transaction.commit("first").await?;

    // Git agrees on the contents.
    assert_eq!(fixture.git(&["cat-file", "-p", "main:a/b/c"]), "deep");
    assert_eq!(
        fixture.git(&["ls-tree", "-r", "--name-only", "main"]),
        "a/b/c\na/b/d\na/e\ntop\n"
    );

    let mut transaction = main.transaction().await?;
    assert_eq!(transaction.parent(), Some(first));
    // Reads see the parent's tree.
    assert_eq!(
        transaction.read_file(&path("a/e"))?,
        Some(b"shallow".to_vec())
    );
    transaction.create_file(&path("top"), "2")?;
    transaction.remove(&path("a/b"))?;
    assert!(!transaction.exists(&path("a/b/c"))?);
    assert_eq!(
        transaction.read_dir(&path("a"))?,
        Some(vec!["e".to_owned()])
    );
    transaction.commit("second").await?;

    let head = main.head().await?.expect("committed");
    let tree = head.tree();
    assert_eq!(tree.read_file(&path("top"))?, Some(b"2".to_vec()));
    assert_eq!(tree.read_file(&path("a/b/c"))?, None);
    assert!(!tree.exists(&path("a/b"))?);
    assert_eq!(tree.kind(&path("a/e"))?, Some(EntryKind::File));
    assert_eq!(
        tree.read_dir(&StorePath::root())?,
        Some(vec!["a".to_owned(), "top".to_owned()])
    );
    assert_eq!(tree.read_dir(&path("top"))?, None);
    assert_eq!(tree.read_dir(&path("nowhere"))?, None);
    assert_eq!(
        fixture.git(&["ls-tree", "-r", "--name-only", "main"]),
        "a/e\ntop\n"
    );
    assert_eq!(fixture.git(&["cat-file", "-p", "main:top"]), "2");
    Ok(())
}

#[tokio::test]
async fn commits_record_parents_and_messages() -> anyhow::Result<()> {
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("status-me-repo-pr-1"));
    let mut ids = Vec::new();
    for n in 0..3 {
        let mut transaction = main.transaction().await?;
        transaction.create_file(&path("counter"), n.to_string())?;
        ids.push(transaction.commit(&format!("Step {n}")).await?);
    }
    let head = main.head().await?.expect("committed");
    assert_eq!(head.id(), ids[2]);
    assert_eq!(head.parents(), &[ids[1]]);
    assert_eq!(head.message(), "Step 2");
    let first = fixture.store.commit(ids[0]).await?;
    assert!(first.parents().is_empty());
    assert_eq!(
        first.tree().read_file(&path("counter"))?,
        Some(b"0".to_vec())
    );

    let log = fixture.git(&["log", "--format=%H %P|%s|%an <%ae>", "status-me-repo-pr-1"]);
    let expected = format!(
        "{} {}|Step 2|datakit-ci <datakit-ci@localhost>\n{} {}|Step 1|datakit-ci <datakit-ci@localhost>\n{} |Step 0|datakit-ci <datakit-ci@localhost>\n",
        ids[2], ids[1], ids[1], ids[0], ids[0]
    );
    assert_eq!(log, expected);
    assert_eq!(
        fixture
            .git(&["rev-parse", "refs/heads/status-me-repo-pr-1"])
            .trim(),
        ids[2].to_string()
    );
    assert_eq!(
        fixture.store.branches().await?,
        vec![branch("status-me-repo-pr-1")]
    );

    // Commit ids round-trip through text, and unknown ids are reported.
    let parsed: CommitId = ids[1].to_string().parse()?;
    assert_eq!(parsed, ids[1]);
    let unknown: CommitId = "0123456789abcdef0123456789abcdef01234567".parse()?;
    assert!(matches!(
        fixture.store.commit(unknown).await,
        Err(Error::MissingCommit { id }) if id == unknown
    ));
    Ok(())
}

#[tokio::test]
async fn files_and_directories_do_not_replace_each_other() -> anyhow::Result<()> {
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));
    let mut transaction = main.transaction().await?;
    transaction.create_file(&path("dir/file"), "x")?;
    transaction.commit("setup").await?;

    let mut transaction = main.transaction().await?;
    assert!(matches!(
        transaction.create_file(&path("dir"), "y"),
        Err(Error::IsDir { path: p }) if p == path("dir")
    ));
    assert!(matches!(
        transaction.create_file(&path("dir/file/below"), "y"),
        Err(Error::NotDir { path: p }) if p == path("dir/file")
    ));
    assert!(matches!(
        transaction.make_dirs(&path("dir/file/sub")),
        Err(Error::NotDir { path: p }) if p == path("dir/file")
    ));
    // Failed edits leave the transaction unchanged.
    assert!(transaction.is_empty());
    assert_eq!(
        transaction.read_file(&path("dir/file"))?,
        Some(b"x".to_vec())
    );

    // An empty directory may be replaced by a file (the Docker builder does this with `value`).
    transaction.make_dirs(&path("value/sub"))?;
    assert_eq!(transaction.kind(&path("value/sub"))?, Some(EntryKind::Dir));
    assert_eq!(
        transaction.read_dir(&path("value"))?,
        Some(vec!["sub".to_owned()])
    );
    assert!(
        transaction.is_empty(),
        "empty directories are not persisted"
    );
    transaction.create_file(&path("value"), "now a file")?;
    transaction.make_dirs(&path("empty"))?;
    transaction.commit("value").await?;

    let tree = main.head().await?.expect("committed").tree();
    assert_eq!(
        tree.read_file(&path("value"))?,
        Some(b"now a file".to_vec())
    );
    assert!(
        !tree.exists(&path("empty"))?,
        "empty directories are not persisted"
    );
    assert_eq!(
        fixture.git(&["ls-tree", "-r", "--name-only", "main"]),
        "dir/file\nvalue\n"
    );
    Ok(())
}

#[tokio::test]
async fn removing_a_missing_path_is_not_found() -> anyhow::Result<()> {
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));
    let mut transaction = main.transaction().await?;
    transaction.create_file(&path("file"), "x")?;
    assert!(matches!(
        transaction.remove(&path("missing")),
        Err(Error::NotFound { path: p }) if p == path("missing")
    ));
    assert!(matches!(
        transaction.remove(&path("file/below")),
        Err(Error::NotFound { path: p }) if p == path("file/below")
    ));
    assert!(matches!(
        transaction.remove(&path("missing/deeper")),
        Err(Error::NotFound { path: p }) if p == path("missing/deeper")
    ));
    transaction.remove(&path("file"))?;
    assert!(matches!(
        transaction.remove(&path("file")),
        Err(Error::NotFound { .. })
    ));
    assert!(transaction.is_empty());
    Ok(())
}

#[tokio::test]
async fn concurrent_transactions_are_replayed() -> anyhow::Result<()> {
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));
    let mut setup = main.transaction().await?;
    setup.create_file(&path("shared/base"), "base")?;
    setup.create_file(&path("shared/to-remove"), "gone soon")?;
    let base = setup.commit("base").await?;

    let mut first = main.transaction().await?;
    let mut second = main.transaction().await?;
    first.create_file(&path("shared/first"), "1")?;
    first.remove(&path("shared/to-remove"))?;
    second.create_file(&path("shared/second"), "2")?;
    // Removing what the first transaction also removes is not a conflict on replay.
    second.remove(&path("shared/to-remove"))?;
    assert_eq!(second.parent(), Some(base));

    let first_id = first.commit("first").await?;
    let second_id = second.commit("second").await?;

    let head = main.head().await?.expect("committed");
    assert_eq!(head.id(), second_id);
    assert_eq!(
        head.parents(),
        &[first_id],
        "the replayed commit sits on the new head"
    );
    let tree = head.tree();
    assert_eq!(
        tree.read_dir(&path("shared"))?,
        Some(vec!["base".into(), "first".into(), "second".into()])
    );
    assert_eq!(
        fixture.git(&["log", "--format=%s", "main"]),
        "second\nfirst\nbase\n"
    );
    Ok(())
}

#[tokio::test]
async fn concurrent_commits_from_many_tasks_all_land() -> anyhow::Result<()> {
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..8 {
        let main = main.clone();
        tasks.spawn(async move {
            let mut transaction = main.transaction().await?;
            transaction.create_file(&path(&format!("jobs/{n}")), n.to_string())?;
            transaction.commit(&format!("job {n}")).await
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    let tree = main.head().await?.expect("committed").tree();
    let names: Vec<String> = (0..8).map(|n| n.to_string()).collect();
    assert_eq!(tree.read_dir(&path("jobs"))?, Some(names));
    assert_eq!(fixture.git(&["rev-list", "--count", "main"]).trim(), "8");
    Ok(())
}

#[tokio::test]
async fn conflicting_replay_leaves_the_branch_unchanged() -> anyhow::Result<()> {
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));
    let mut setup = main.transaction().await?;
    setup.create_file(&path("keep"), "k")?;
    setup.commit("base").await?;

    let mut first = main.transaction().await?;
    let mut second = main.transaction().await?;
    first.create_file(&path("value"), "a file")?;
    second.create_file(&path("value/inner"), "needs a directory")?;
    let first_id = first.commit("first").await?;
    let result = second.commit("second").await;
    assert!(
        matches!(&result, Err(Error::Conflict { branch: b, path: p }) if *b == branch("main") && *p == path("value/inner")),
        "{result:?}"
    );
    assert_eq!(main.head().await?.expect("committed").id(), first_id);
    assert_eq!(
        fixture.git(&["rev-parse", "main"]).trim(),
        first_id.to_string()
    );
    Ok(())
}

#[tokio::test]
async fn watch_sees_new_heads() -> anyhow::Result<()> {
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));
    let mut watch = main.watch();
    assert_eq!(*watch.borrow_and_update(), None);

    let mut transaction = main.transaction().await?;
    transaction.create_file(&path("a"), "1")?;
    let first = transaction.commit("first").await?;
    watch.changed().await?;
    assert_eq!(*watch.borrow_and_update(), Some(first));

    // A watch made later starts from the current head, also through another handle.
    let late = fixture.store.branch(&branch("main")).watch();
    assert_eq!(*late.borrow(), Some(first));

    let mut transaction = main.transaction().await?;
    transaction.create_file(&path("a"), "2")?;
    let second = transaction.commit("second").await?;
    watch.changed().await?;
    assert_eq!(*watch.borrow_and_update(), Some(second));

    // Other branches are not affected.
    let other = fixture.store.branch(&branch("other")).watch();
    assert_eq!(*other.borrow(), None);
    Ok(())
}

#[tokio::test]
async fn watch_starts_from_the_head_left_by_a_previous_owner() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store_path = dir.path().join("state.git");
    let id = {
        let store = Store::open(&store_path)?;
        let mut transaction = store.branch(&branch("main")).transaction().await?;
        transaction.create_file(&path("a"), "1")?;
        transaction.commit("first").await?
    };
    let store = Store::open(&store_path)?;
    let main = store.branch(&branch("main"));
    assert_eq!(*main.watch().borrow(), Some(id));
    assert_eq!(main.head().await?.expect("persisted").id(), id);
    Ok(())
}

#[tokio::test]
async fn second_open_in_the_same_process_is_locked() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store_path = dir.path().join("state.git");
    let store = Store::open(&store_path)?;
    match Store::open(&store_path) {
        Err(Error::Locked { path, pid }) => {
            assert_eq!(path, store_path);
            assert_eq!(pid, Some(std::process::id()));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    // The lock lasts as long as any clone of the store.
    let clone = store.clone();
    drop(store);
    assert!(matches!(
        Store::open(&store_path),
        Err(Error::Locked { .. })
    ));
    drop(clone);
    let reopened = Store::open(&store_path)?;
    assert_eq!(reopened.path(), store_path);
    drop(reopened);
    common::assert_fsck_clean(&store_path);
    Ok(())
}

/// Set in the child process of `lock_held_by_another_process_is_reported`: the store to hold.
const LOCK_CHILD_ENV: &str = "DATAKIT_CI_STORE_TEST_LOCK_CHILD";
/// Printed by the child once it holds the lock.
const LOCKED_MARKER: &str = "datakit-ci-store-child-holds-the-lock";

/// Kills the child process if the test fails before waiting for it.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn lock_held_by_another_process_is_reported() -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    use std::process::{Command, Stdio};

    if let Some(store_path) = std::env::var_os(LOCK_CHILD_ENV) {
        // Child: hold the store until the parent closes our stdin.
        let _store = Store::open(std::path::Path::new(&store_path))?;
        // libtest prints the test name on the same line, so the parent looks for a line ending.
        println!("{LOCKED_MARKER}");
        std::io::stdout().flush()?;
        let mut rest = Vec::new();
        std::io::stdin().read_to_end(&mut rest)?;
        return Ok(());
    }

    let dir = tempfile::tempdir()?;
    let store_path = dir.path().join("state.git");
    let mut child = ChildGuard(
        Command::new(std::env::current_exe()?)
            .args([
                "--exact",
                "lock_held_by_another_process_is_reported",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(LOCK_CHILD_ENV, &store_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let child_pid = child.0.id();
    let mut stdout = std::io::BufReader::new(child.0.stdout.take().expect("piped"));
    let mut line = String::new();
    loop {
        line.clear();
        anyhow::ensure!(
            stdout.read_line(&mut line)? > 0,
            "child exited before locking the store"
        );
        if line.trim_end().ends_with(LOCKED_MARKER) {
            break;
        }
    }
    match Store::open(&store_path) {
        Err(Error::Locked { path, pid }) => {
            assert_eq!(path, store_path);
            assert_eq!(pid, Some(child_pid));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(child.0.stdin.take());
    let status = child.0.wait()?;
    assert!(status.success(), "child failed: {status}");
    // The child's exit released the lock.
    drop(Store::open(&store_path)?);
    common::assert_fsck_clean(&store_path);
    Ok(())
}

#[test]
fn invalid_names_and_paths_are_rejected() {
    for bad in [
        "", "a..b", "-x", ".hidden", "a/", "a b", "x.lock", "a:b", "a//b",
    ] {
        assert!(
            matches!(BranchName::new(bad), Err(Error::InvalidBranch { ref name, .. }) if name == bad),
            "{bad:?}"
        );
    }
    for bad in [
        "a//b",
        "../x",
        "a/./b",
        "/abs",
        "trailing/",
        "nul\0",
        ".git/config",
    ] {
        assert!(
            matches!(StorePath::new(bad), Err(Error::InvalidPath { ref path, .. }) if path == bad),
            "{bad:?}"
        );
    }
    assert!(path("a").join("../b").is_err());
    assert_eq!(path("a").join("b/c").expect("valid").to_string(), "a/b/c");
    let message = BranchName::new("a..b").expect_err("invalid").to_string();
    assert_eq!(message, "invalid branch name \"a..b\": contains '..'");
}

#[test]
fn escaping_matches_the_original() -> anyhow::Result<()> {
    let name = format!(
        "status-{}-{}-ref-{}-{}",
        escape("me"),
        escape("my-project"),
        escape("heads"),
        escape("feature/x_y")
    );
    assert_eq!(name, "status-me-my_2dproject-ref-heads-feature_2fx_5fy");
    assert!(BranchName::new(&name).is_ok());
    assert_eq!(escape("tags/v1.0"), "tags_2fv1.0");
    assert_eq!(unescape("my_2dproject")?, "my-project");
    assert_eq!(unescape("feature_2fx_5fy")?, "feature/x_y");
    for text in ["", "plain", "with space & ünïcode/_-"] {
        assert_eq!(unescape(&escape(text))?, text);
    }
    assert!(matches!(
        unescape("bad_4"),
        Err(Error::InvalidEscape { .. })
    ));
    assert!(matches!(
        unescape("bad_xy"),
        Err(Error::InvalidEscape { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn changed_files_lists_differences() -> anyhow::Result<()> {
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));
    let mut transaction = main.transaction().await?;
    transaction.create_file(&path("same/one"), "1")?;
    transaction.create_file(&path("same/two"), "2")?;
    transaction.create_file(&path("edit/file"), "old")?;
    transaction.create_file(&path("gone/deep/file"), "x")?;
    transaction.create_file(&path("becomes-dir"), "file")?;
    transaction.commit("old").await?;
    let old = main.head().await?.expect("committed").tree();

    let mut transaction = main.transaction().await?;
    transaction.create_file(&path("edit/file"), "new")?;
    transaction.remove(&path("gone"))?;
    transaction.remove(&path("becomes-dir"))?;
    transaction.create_file(&path("becomes-dir/inside"), "now")?;
    transaction.create_file(&path("added"), "+")?;
    transaction.commit("new").await?;
    let new = main.head().await?.expect("committed").tree();

    let changed: Vec<String> = old
        .changed_files(&new)?
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        changed,
        [
            "added",
            "becomes-dir",
            "becomes-dir/inside",
            "edit/file",
            "gone/deep/file"
        ]
    );
    assert!(old.changed_files(&old)?.is_empty());
    // Unchanged subtrees keep their id, changed ones do not.
    assert_eq!(old.tree_id(&path("same"))?, new.tree_id(&path("same"))?);
    assert!(old.tree_id(&path("same"))?.is_some());
    assert_ne!(old.tree_id(&path("edit"))?, new.tree_id(&path("edit"))?);
    assert_eq!(new.tree_id(&path("added"))?, None);
    Ok(())
}

#[tokio::test]
async fn big_files_stream_from_a_reader() -> anyhow::Result<()> {
    const SIZE: u64 = 50 * 1024 * 1024;
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));
    let mut transaction = main.transaction().await?;
    // Not all one byte, so a truncated or shifted write would show.
    let pattern: Vec<u8> = (0..=255u8).collect();
    let reader = Cycle::new(&pattern).take(SIZE);
    transaction.create_file_from_reader(&path("log"), reader)?;
    transaction.commit("big log").await?;

    assert_eq!(
        fixture.git(&["cat-file", "-s", "main:log"]).trim(),
        SIZE.to_string()
    );
    let contents = main
        .head()
        .await?
        .expect("committed")
        .tree()
        .read_file(&path("log"))?
        .expect("present");
    assert_eq!(contents.len() as u64, SIZE);
    assert!(
        contents
            .chunks(256)
            .all(|chunk| chunk == &pattern[..chunk.len()])
    );
    drop(contents);

    // Streamed back in pieces: every byte, in order, without holding the file.
    let tree = main.head().await?.expect("committed").tree();
    let mut reader = tree.open_file(&path("log"))?.expect("present");
    let (mut total, mut buffer) = (0u64, vec![0u8; 100_000]);
    loop {
        let n = std::io::Read::read(&mut reader, &mut buffer)?;
        if n == 0 {
            break;
        }
        for (i, byte) in buffer[..n].iter().enumerate() {
            assert_eq!(
                *byte,
                ((total + i as u64) % 256) as u8,
                "byte {}",
                total + i as u64
            );
        }
        total += n as u64;
    }
    assert_eq!(total, SIZE);
    Ok(())
}

#[tokio::test]
async fn open_file_reads_small_files_and_refuses_directories() -> anyhow::Result<()> {
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));
    let mut transaction = main.transaction().await?;
    transaction.create_file(&path("dir/small"), "hello")?;
    transaction.create_file(&path("empty"), "")?;
    transaction.commit("small").await?;
    let tree = main.head().await?.expect("committed").tree();
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut tree.open_file(&path("dir/small"))?.expect("file"),
        &mut text,
    )?;
    assert_eq!(text, "hello");
    let mut empty = Vec::new();
    std::io::Read::read_to_end(
        &mut tree.open_file(&path("empty"))?.expect("file"),
        &mut empty,
    )?;
    assert!(empty.is_empty());
    assert!(
        tree.open_file(&path("dir"))?.is_none(),
        "a directory is not a file"
    );
    assert!(tree.open_file(&path("missing"))?.is_none());
    // Packed objects (after an outside `git gc`) are read too.
    fixture.git(&["gc", "--quiet"]);
    let mut packed = String::new();
    std::io::Read::read_to_string(
        &mut tree.open_file(&path("dir/small"))?.expect("file"),
        &mut packed,
    )?;
    assert_eq!(packed, "hello");
    Ok(())
}

/// An endless reader repeating a pattern.
struct Cycle<'a> {
    pattern: &'a [u8],
    offset: usize,
}

impl<'a> Cycle<'a> {
    fn new(pattern: &'a [u8]) -> Self {
        Cycle { pattern, offset: 0 }
    }
}

impl Read for Cycle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        for byte in buf.iter_mut() {
            *byte = self.pattern[self.offset];
            self.offset = (self.offset + 1) % self.pattern.len();
        }
        Ok(buf.len())
    }
}

#[tokio::test]
async fn removing_everything_commits_an_empty_tree() -> anyhow::Result<()> {
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));
    let mut transaction = main.transaction().await?;
    transaction.create_file(&path("a/b"), "x")?;
    transaction.commit("add").await?;
    let mut transaction = main.transaction().await?;
    transaction.remove(&path("a"))?;
    assert!(!transaction.is_empty());
    transaction.commit("remove").await?;
    let tree = main.head().await?.expect("committed").tree();
    assert_eq!(tree.read_dir(&StorePath::root())?, Some(vec![]));
    assert_eq!(fixture.git(&["ls-tree", "-r", "main"]), "");
    Ok(())
}

#[test]
fn store_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Store>();
    check::<datakit_ci_store::Branch>();
    check::<datakit_ci_store::Commit>();
    check::<datakit_ci_store::Snapshot>();
    check::<datakit_ci_store::Transaction>();
    check::<Error>();
}

#[tokio::test]
async fn big_transactions_see_what_earlier_ones_wrote() -> anyhow::Result<()> {
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));
    let mut setup = main.transaction().await?;
    setup.create_file(&path("setup"), "a first commit")?;
    setup.commit("setup").await?;
    for round in 0..3 {
        let mut transaction = main.transaction().await?;
        for n in 0..100 {
            let file = path(&format!("jobs/job{n}/output"));
            // Each round reads what the previous one wrote.
            if round > 0 {
                let previous = transaction.read_file(&file)?.expect("written last round");
                assert_eq!(
                    previous,
                    format!("round {} job {n}", round - 1).into_bytes()
                );
            }
            transaction.create_file(&file, format!("round {round} job {n}"))?;
        }
        transaction.commit(&format!("round {round}")).await?;
    }
    assert_eq!(
        fixture.git(&["cat-file", "-p", "main:jobs/job42/output"]),
        "round 2 job 42"
    );
    assert_eq!(
        fixture
            .git(&["ls-tree", "-r", "--name-only", "main"])
            .lines()
            .count(),
        101
    );
    let tree = main.head().await?.expect("committed").tree();
    assert_eq!(
        tree.read_file(&path("jobs/job7/output"))?,
        Some(b"round 2 job 7".to_vec())
    );
    Ok(())
}

#[tokio::test]
async fn every_commit_stays_readable() -> anyhow::Result<()> {
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));
    let mut ids = Vec::new();
    for n in 0..40 {
        let mut transaction = main.transaction().await?;
        transaction.create_file(&path(&format!("n/{n}")), n.to_string())?;
        ids.push(transaction.commit(&format!("commit {n}")).await?);
    }
    // Every commit, old or new, is still readable by the store and by git.
    for (n, id) in ids.iter().enumerate() {
        let tree = fixture.store.commit(*id).await?.tree();
        assert_eq!(
            tree.read_file(&path(&format!("n/{n}")))?,
            Some(n.to_string().into_bytes())
        );
        assert_eq!(
            fixture.git(&["cat-file", "-p", &format!("{id}:n/{n}")]),
            n.to_string()
        );
    }
    assert_eq!(fixture.git(&["rev-list", "--count", "main"]).trim(), "40");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_every_new_head_while_commits_go_on() -> anyhow::Result<()> {
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));
    let mut transaction = main.transaction().await?;
    transaction.create_file(&path("old/file"), "still here")?;
    transaction.commit("old").await?;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Regression (found by the engine benchmark when commits were written as merged packs): a
    // reader following the branch must be able to load every head it is told about, at once.
    let reader = {
        let stop = std::sync::Arc::clone(&stop);
        let main = main.clone();
        let store = fixture.store.clone();
        tokio::spawn(async move {
            let mut reads = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let head = main.head().await?.expect("committed");
                let tree = store.commit(head.id()).await?.tree();
                anyhow::ensure!(tree.read_file(&path("old/file"))? == Some(b"still here".to_vec()));
                for name in tree.read_dir(&path("new"))?.unwrap_or_default() {
                    let contents = tree.read_file(&path(&format!("new/{name}")))?;
                    anyhow::ensure!(contents == Some(name.clone().into_bytes()), "new/{name}");
                }
                reads += 1;
                tokio::task::yield_now().await;
            }
            anyhow::Ok(reads)
        })
    };
    for n in 0..40 {
        let mut transaction = main.transaction().await?;
        transaction.create_file(&path(&format!("new/{n}")), n.to_string())?;
        transaction.commit(&format!("new {n}")).await?;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.await??;
    assert!(reads > 0);
    let tree = main.head().await?.expect("committed").tree();
    assert_eq!(
        tree.read_dir(&path("new"))?.map(|names| names.len()),
        Some(40)
    );
    Ok(())
}

/// A commit read right after it was written (from the store's memory of its latest commits) is
/// the same as the one read back from disk by another process's store, and as `git` sees it.
#[tokio::test]
async fn a_commit_just_written_reads_the_same_as_from_disk() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store_path = dir.path().join("state.git");
    let message = "Ünïcode subject\n\nbody line\n  indented\n";
    let (written, parent) = {
        let store = Store::open(&store_path)?;
        let main = store.branch(&branch("main"));
        let mut transaction = main.transaction().await?;
        transaction.create_file(&path("a"), "1")?;
        let parent = transaction.commit("first").await?;
        let mut transaction = main.transaction().await?;
        transaction.create_file(&path("dir/b"), "2")?;
        let id = transaction.commit(message).await?;
        let commit = store.commit(id).await?;
        let head = main.head().await?.expect("a head");
        assert_eq!(head.id(), id);
        (
            (
                commit.id(),
                commit.parents().to_vec(),
                commit.message().to_owned(),
                commit.tree().read_file(&path("dir/b"))?,
            ),
            parent,
        )
    };
    let store = Store::open(&store_path)?;
    let from_disk = store.commit(written.0).await?;
    assert_eq!(written.1, vec![parent]);
    assert_eq!(from_disk.parents(), written.1.as_slice());
    assert_eq!(from_disk.message(), written.2);
    assert_eq!(from_disk.tree().read_file(&path("dir/b"))?, written.3);
    let git_message = common::git_in(&store_path, &["log", "-1", "--format=%B", "main"]);
    assert_eq!(git_message.trim_end(), message.trim_end());
    Ok(())
}

/// Issue 20: `replace_history` makes the branch's only commit; `Store::compact` (only while no
/// store has the repository open) then frees what only the old commits held, and keeps the rest.
#[tokio::test]
async fn replaced_history_is_compacted_away() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state.git");
    // Incompressible: xorshift64.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let big: Vec<u8> = (0..2_000_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    let (old, new) = {
        let store = Store::open(&state)?;
        let logs = store.branch(&branch("logs"));
        let mut transaction = logs.transaction().await?;
        transaction.create_file(&path("log"), big.clone())?;
        transaction.create_file(&path("value/result"), "kept")?;
        let old = transaction.commit("built").await?;
        let before = std::time::SystemTime::now();
        let head = logs.head().await?.expect("a head");
        assert!(head.time() <= before + std::time::Duration::from_secs(1));
        assert!(head.time() + std::time::Duration::from_secs(60) > before);

        let mut transaction = logs.transaction().await?;
        transaction.replace_history();
        transaction.create_file(&path("log"), "removed")?;
        let new = transaction.commit("log removed").await?;
        let head = logs.head().await?.expect("a head");
        assert_eq!(head.id(), new);
        assert!(head.parents().is_empty());
        assert_eq!(
            head.tree().read_file(&path("value/result"))?,
            Some(b"kept".to_vec())
        );

        // Not while the store is open.
        assert!(matches!(Store::compact(&state), Err(Error::Locked { .. })));
        store.wait_for_maintenance().await;
        (old, new)
    };
    let compaction = Store::compact(&state)?;
    assert!(compaction.before > 1_000_000, "{compaction:?}");
    assert!(compaction.after < 100_000, "{compaction:?}");
    common::assert_fsck_clean(&state);
    let store = Store::open(&state)?;
    assert!(store.commit(old).await.is_err(), "the old commit is gone");
    let head = store.branch(&branch("logs")).head().await?.expect("a head");
    assert_eq!(head.id(), new);
    assert_eq!(
        head.tree().read_file(&path("log"))?,
        Some(b"removed".to_vec())
    );
    // The store writes on as before.
    let mut transaction = store.branch(&branch("logs")).transaction().await?;
    transaction.create_file(&path("log"), "again")?;
    transaction.commit("again").await?;
    drop(store);
    common::assert_fsck_clean(&state);
    Ok(())
}
