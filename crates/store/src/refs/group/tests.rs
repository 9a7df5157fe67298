//! Group commit with a real store in a temporary directory. Writes are held back with
//! [`CommitQueue::pause`](super::CommitQueue::pause) until every commit of a test has queued, so
//! each test knows which commits share a group.

use std::time::{Duration, Instant};

use crate::refs::head::update_head;
use crate::temp_store::TempStore;
use crate::{BranchName, CommitId, Error, StorePath, Transaction};
use datakit_ci_testkit::assert_fsck_clean;

fn branch(name: &str) -> BranchName {
    BranchName::new(name).expect("valid branch name")
}

fn path(path: &str) -> StorePath {
    StorePath::new(path).expect("valid path")
}

/// A temporary store and the commits of these tests.
struct Fixture(TempStore);

impl std::ops::Deref for Fixture {
    type Target = TempStore;
    fn deref(&self) -> &TempStore {
        &self.0
    }
}

impl Fixture {
    fn new() -> Fixture {
        Fixture(TempStore::new())
    }

    /// How many packs the store has.
    fn packs(&self) -> usize {
        self.pack_indexes().len()
    }

    /// Commits with one file `file` holding `contents`.
    async fn commit_file(&self, on: &str, file: &str, contents: &str) -> Result<CommitId, Error> {
        let mut transaction = self.store.branch(&branch(on)).transaction().await?;
        transaction.create_file(&path(file), contents)?;
        transaction.commit(&format!("{file} on {on}")).await
    }

    async fn read(&self, on: &str, file: &str) -> Result<Option<String>, Error> {
        let Some(head) = self.store.branch(&branch(on)).head().await? else {
            return Ok(None);
        };
        let contents = head.tree().read_file(&path(file))?;
        Ok(contents.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Commits `transactions` as one group: writes are held back until all have queued.
    async fn commit_as_one_group(
        &self,
        transactions: Vec<Transaction>,
    ) -> Vec<Result<CommitId, Error>> {
        self.commit_as_one_group_after(transactions, || Ok(()))
            .await
            .expect("nothing to do before the group is written")
    }

    /// Commits `transactions` as one group, running `queued` once all have queued and before
    /// the group is written.
    async fn commit_as_one_group_after(
        &self,
        transactions: Vec<Transaction>,
        queued: impl FnOnce() -> Result<(), Error>,
    ) -> Result<Vec<Result<CommitId, Error>>, Error> {
        let count = transactions.len();
        let pause = self.repo().commits().pause();
        let tasks: Vec<_> = transactions
            .into_iter()
            .map(|transaction| {
                tokio::spawn(async move {
                    let message = format!("commit to {}", transaction.branch());
                    transaction.commit(&message).await
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.repo().commits().waiting() < count {
            assert!(Instant::now() < deadline, "commits did not queue");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let before = queued();
        drop(pause);
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.expect("commit task"));
        }
        before.map(|()| results)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert_fsck_clean(&self.git_dir);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_on_many_branches_share_one_pack() -> Result<(), Error> {
    const BRANCHES: usize = 40;
    let fixture = Fixture::new();
    let mut transactions = Vec::new();
    for n in 0..BRANCHES {
        let mut transaction = fixture
            .store
            .branch(&branch(&format!("b{n}")))
            .transaction()
            .await?;
        transaction.create_file(&path("own"), format!("branch {n}"))?;
        // The same blob in every commit: the pack must hold it once (`git fsck` checks).
        transaction.create_file(&path("shared/same"), "same everywhere")?;
        transactions.push(transaction);
    }
    let watch = fixture.store.branch(&branch("b7")).watch();
    let results = fixture.commit_as_one_group(transactions).await;
    for (n, result) in results.into_iter().enumerate() {
        let id = result?;
        let head = fixture
            .store
            .branch(&branch(&format!("b{n}")))
            .head()
            .await?
            .expect("committed");
        assert_eq!(head.id(), id);
        assert!(head.parents().is_empty());
        assert_eq!(
            fixture.read(&format!("b{n}"), "own").await?,
            Some(format!("branch {n}"))
        );
        assert_eq!(
            fixture.read(&format!("b{n}"), "shared/same").await?,
            Some("same everywhere".to_owned())
        );
        if n == 7 {
            assert_eq!(*watch.borrow(), Some(id), "watchers see the new head");
        }
    }
    assert_eq!(fixture.packs(), 1, "{BRANCHES} commits, one pack");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_compare_and_swap_fails_only_its_own_commit() -> Result<(), Error> {
    let fixture = Fixture::new();
    let mut heads = Vec::new();
    for name in ["moved", "conflict", "quiet"] {
        heads.push(fixture.commit_file(name, "base", name).await?);
    }
    let mut transactions = Vec::new();
    for (name, file) in [("moved", "mine"), ("conflict", "dir"), ("quiet", "mine")] {
        let mut transaction = fixture.store.branch(&branch(name)).transaction().await?;
        transaction.create_file(&path(file), "from the group")?;
        transactions.push(transaction);
    }
    // Once the commits have queued (and read their branches' heads), something outside the
    // store's transactions moves two branches: `moved` to a commit that the edits replay on,
    // `conflict` to one with a directory where the edit writes a file.
    let elsewhere = fixture.commit_file("elsewhere", "other", "x").await?;
    let in_the_way = fixture.commit_file("in-the-way", "dir/file", "x").await?;
    let move_branches = || {
        let handle = fixture.repo().get();
        update_head(
            &handle,
            &branch("moved"),
            elsewhere.object_id(),
            Some(heads[0]),
        )?;
        update_head(
            &handle,
            &branch("conflict"),
            in_the_way.object_id(),
            Some(heads[1]),
        )
    };

    let mut results = fixture
        .commit_as_one_group_after(transactions, move_branches)
        .await?
        .into_iter();
    let moved = results.next().expect("three results")?;
    let conflict = results.next().expect("three results");
    let quiet = results.next().expect("three results")?;

    let head = fixture.store.commit(moved).await?;
    assert_eq!(head.parents(), &[elsewhere], "replayed on the new head");
    assert_eq!(fixture.read("moved", "other").await?, Some("x".to_owned()));
    assert_eq!(
        fixture.read("moved", "mine").await?,
        Some("from the group".to_owned())
    );
    assert!(
        matches!(&conflict, Err(Error::Conflict { path, .. }) if path.as_str() == "dir"),
        "{conflict:?}"
    );
    let head = fixture.store.branch(&branch("conflict")).head().await?;
    assert_eq!(
        head.map(|head| head.id()),
        Some(in_the_way),
        "left as it was"
    );
    let head = fixture.store.commit(quiet).await?;
    assert_eq!(head.parents(), &[heads[2]]);
    assert_eq!(
        fixture.read("quiet", "mine").await?,
        Some("from the group".to_owned())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_pack_write_fails_every_member_and_loses_nothing() -> Result<(), Error> {
    let fixture = Fixture::new();
    let before = fixture.commit_file("main", "kept", "stored before").await?;
    let mut transactions = Vec::new();
    for name in ["main", "new-1", "new-2"] {
        let mut transaction = fixture.store.branch(&branch(name)).transaction().await?;
        transaction.create_file(&path("lost"), "never stored")?;
        transactions.push(transaction);
    }
    // A file where the pack directory should be: no pack can be written, even by root (whom a
    // read-only directory would not stop).
    let pack_dir = fixture.git_dir.join("objects/pack");
    let aside = fixture.git_dir.join("objects/pack-aside");
    let io = |source| Error::Io {
        path: pack_dir.clone(),
        source,
    };
    std::fs::rename(&pack_dir, &aside).map_err(io)?;
    std::fs::write(&pack_dir, b"not a directory").map_err(io)?;

    let results = fixture.commit_as_one_group(transactions).await;
    for result in &results {
        assert!(
            matches!(result, Err(Error::WriteObjects { group: 3, .. })),
            "{result:?}"
        );
    }

    std::fs::remove_file(&pack_dir).map_err(io)?;
    std::fs::rename(&aside, &pack_dir).map_err(io)?;
    let head = fixture.store.branch(&branch("main")).head().await?;
    assert_eq!(
        head.map(|head| head.id()),
        Some(before),
        "the branch did not move"
    );
    assert_eq!(
        fixture.read("main", "kept").await?,
        Some("stored before".to_owned())
    );
    assert_eq!(fixture.read("main", "lost").await?, None);
    assert_eq!(fixture.read("new-1", "lost").await?, None, "no such branch");

    for name in ["main", "new-1", "new-2"] {
        fixture.commit_file(name, "again", "stored now").await?;
        assert_eq!(
            fixture.read(name, "again").await?,
            Some("stored now".to_owned())
        );
    }
    assert_eq!(
        fixture.read("main", "kept").await?,
        Some("stored before".to_owned())
    );
    Ok(())
}
