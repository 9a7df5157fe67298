//! How the store lays out objects: one pack per commit (or group of concurrent commits), packs
//! merged in tiers so their number stays bounded, small files packed and big ones loose, and readers that never miss an object while merged packs are
//! deleted. Cross-checked with the real `git` binary (`git fsck --strict` runs after every test).

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{Fixture, branch, git_in, path};
use datakit_ci_store::{CommitId, Snapshot, Store};

/// The packs (their `.idx` files) of the store at `git_dir`.
fn packs(git_dir: &Path) -> Vec<PathBuf> {
    let mut packs: Vec<PathBuf> = std::fs::read_dir(git_dir.join("objects/pack"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "idx"))
                .collect()
        })
        .unwrap_or_default();
    packs.sort();
    packs
}

/// The loose objects of the store at `git_dir`.
fn loose_objects(git_dir: &Path) -> usize {
    std::fs::read_dir(git_dir.join("objects"))
        .expect("read objects/")
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().len() == 2)
        .map(|entry| std::fs::read_dir(entry.path()).map_or(0, Iterator::count))
        .sum()
}

#[tokio::test]
async fn a_commit_writes_one_pack_whatever_its_size() -> anyhow::Result<()> {
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));
    let mut transaction = main.transaction().await?;
    for n in 0..50 {
        transaction.create_file(&path(&format!("deep/a/b/c/{n}/state")), n.to_string())?;
    }
    transaction.commit("fifty files").await?;
    assert_eq!(loose_objects(&fixture.path), 0);
    assert_eq!(packs(&fixture.path).len(), 1);

    let mut transaction = main.transaction().await?;
    transaction.create_file(&path("deep/a/b/c/7/state"), "changed")?;
    transaction.commit("one file").await?;
    let packs = packs(&fixture.path);
    assert_eq!(packs.len(), 2);
    assert_eq!(loose_objects(&fixture.path), 0);
    for idx in &packs {
        fixture.git(&["verify-pack", idx.to_str().expect("UTF-8 path")]);
    }
    assert_eq!(
        fixture.git(&["cat-file", "-p", "main:deep/a/b/c/7/state"]),
        "changed"
    );
    assert_eq!(
        fixture.git(&["cat-file", "-p", "main~1:deep/a/b/c/49/state"]),
        "49"
    );
    Ok(())
}

#[tokio::test]
async fn objects_already_stored_are_not_written_again() -> anyhow::Result<()> {
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));
    let mut transaction = main.transaction().await?;
    transaction.create_file(&path("a"), "same")?;
    transaction.commit("first").await?;
    let packs_before = packs(&fixture.path);

    // Only the new commit is new: the tree and the blob are the same as before.
    let mut transaction = main.transaction().await?;
    transaction.create_file(&path("a"), "same")?;
    transaction.commit("again").await?;
    let new: Vec<_> = packs(&fixture.path)
        .into_iter()
        .filter(|pack| !packs_before.contains(pack))
        .collect();
    assert_eq!(new.len(), 1);
    let listing = fixture.git(&["verify-pack", "-v", new[0].to_str().expect("UTF-8 path")]);
    let objects: Vec<&str> = listing
        .lines()
        .filter(|line| line.len() > 41 && line.as_bytes()[40] == b' ')
        .collect();
    assert_eq!(objects.len(), 1, "{listing}");
    assert!(objects[0].contains(" commit "), "{listing}");
    Ok(())
}

#[tokio::test]
async fn big_streamed_files_stay_loose() -> anyhow::Result<()> {
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));
    let mut transaction = main.transaction().await?;
    let log = vec![b'x'; 1024 * 1024];
    transaction.create_file_from_reader(&path("log"), log.as_slice())?;
    transaction.commit("log").await?;
    assert_eq!(loose_objects(&fixture.path), 1, "the log is loose");
    assert_eq!(
        packs(&fixture.path).len(),
        1,
        "the tree and commit are packed"
    );
    Ok(())
}

/// Streamed files up to 256 KiB (most build logs) go into the commit's pack rather than a file
/// each; one byte more and they are loose.
#[tokio::test]
async fn small_streamed_files_are_packed() -> anyhow::Result<()> {
    const LIMIT: usize = 256 * 1024;
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));
    let small: Vec<u8> = (0..10_000u32).map(|n| (n % 251) as u8).collect();
    let at_limit: Vec<u8> = (0..LIMIT).map(|n| (n % 253) as u8).collect();
    let mut transaction = main.transaction().await?;
    transaction.create_file_from_reader(&path("logs/small"), small.as_slice())?;
    transaction.create_file_from_reader(&path("logs/at-limit"), at_limit.as_slice())?;
    transaction.create_file_from_reader(&path("logs/empty"), std::io::empty())?;
    assert_eq!(
        transaction.read_file(&path("logs/small"))?,
        Some(small.clone()),
        "the transaction reads its own streamed write"
    );
    transaction.commit("logs").await?;
    assert_eq!(loose_objects(&fixture.path), 0, "nothing loose");
    assert_eq!(packs(&fixture.path).len(), 1);
    let tree = main.head().await?.expect("committed").tree();
    assert_eq!(tree.read_file(&path("logs/small"))?, Some(small));
    assert_eq!(
        tree.read_file(&path("logs/at-limit"))?,
        Some(at_limit.clone())
    );
    assert_eq!(tree.read_file(&path("logs/empty"))?, Some(Vec::new()));

    let mut over = at_limit;
    over.push(b'!');
    let mut transaction = main.transaction().await?;
    transaction.create_file_from_reader(&path("logs/over"), over.as_slice())?;
    transaction.commit("one byte over").await?;
    assert_eq!(
        loose_objects(&fixture.path),
        1,
        "a byte over the limit is loose"
    );
    let tree = main.head().await?.expect("committed").tree();
    assert_eq!(tree.read_file(&path("logs/over"))?, Some(over));
    Ok(())
}

/// Commits to many branches at once (written in groups, one pack per group) and several to each
/// branch (serialised): every one lands, on the right branch, with the right parent and files.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_on_many_branches_all_land() -> anyhow::Result<()> {
    const BRANCHES: usize = 24;
    const COMMITS: usize = 5;
    let fixture = Fixture::new();
    let mut tasks = tokio::task::JoinSet::new();
    for b in 0..BRANCHES {
        for c in 0..COMMITS {
            let branch = fixture.store.branch(&branch(&format!("b{b}")));
            tasks.spawn(async move {
                let mut transaction = branch.transaction().await?;
                transaction.create_file(&path(&format!("c/{c}")), format!("{b}/{c}"))?;
                transaction.commit(&format!("{b}/{c}")).await
            });
        }
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    for b in 0..BRANCHES {
        let name = format!("b{b}");
        let tree = fixture
            .store
            .branch(&branch(&name))
            .head()
            .await?
            .expect("committed")
            .tree();
        for c in 0..COMMITS {
            assert_eq!(
                tree.read_file(&path(&format!("c/{c}")))?,
                Some(format!("{b}/{c}").into_bytes())
            );
        }
        assert_eq!(
            fixture.git(&["rev-list", "--count", &name]).trim(),
            COMMITS.to_string()
        );
    }
    Ok(())
}

#[tokio::test]
async fn many_commits_keep_the_number_of_packs_bounded() -> anyhow::Result<()> {
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));
    let mut most = 0;
    for n in 0..600 {
        let mut transaction = main.transaction().await?;
        transaction.create_file(&path(&format!("n/{}", n % 50)), n.to_string())?;
        transaction.commit(&format!("commit {n}")).await?;
        // Merges run in the background; count what they leave.
        fixture.store.wait_for_maintenance().await;
        most = most.max(packs(&fixture.path).len());
    }
    // 600 commits of 3 objects: at most 15 packs in each of the tiers below 16, 256 and 4096
    // objects, and the pack just written before merging.
    assert!(most <= 3 * 15 + 1, "{most} packs at most");
    assert_eq!(
        fixture.git(&["cat-file", "-p", "main:n/49"]),
        "599",
        "the newest file"
    );
    assert_eq!(fixture.git(&["rev-list", "--count", "main"]).trim(), "600");
    let head = main.head().await?.expect("committed");
    assert_eq!(head.tree().read_file(&path("n/0"))?, Some(b"550".to_vec()));
    Ok(())
}

/// The commit that fills a tier does not wait for the merge; `wait_for_maintenance` does, and then
/// the tier's packs are one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packs_are_merged_in_the_background_after_the_commit_that_fills_a_tier()
-> anyhow::Result<()> {
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));
    // `pack::TIER_WIDTH`, which is private: 16 packs of one tier are merged into one.
    for n in 0..16 {
        let mut transaction = main.transaction().await?;
        transaction.create_file(&path("n"), n.to_string())?;
        transaction.commit(&format!("commit {n}")).await?;
    }
    fixture.store.wait_for_maintenance().await;
    assert_eq!(packs(&fixture.path).len(), 1, "{:?}", packs(&fixture.path));
    assert_eq!(fixture.git(&["cat-file", "-p", "main:n"]), "15");
    assert_eq!(fixture.git(&["rev-list", "--count", "main"]).trim(), "16");
    Ok(())
}

#[tokio::test]
async fn temporary_pack_files_of_a_crashed_run_are_removed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let git_dir = dir.path().join("state.git");
    {
        let store = Store::open(&git_dir)?;
        let mut transaction = store.branch(&branch("main")).transaction().await?;
        transaction.create_file(&path("a"), "a")?;
        transaction.commit("a").await?;
    }
    let leftover = git_dir.join("objects/pack/tmp_pack_crashed");
    std::fs::write(&leftover, b"PACK half written")?;
    let store = Store::open(&git_dir)?;
    assert!(!leftover.exists());
    let head = store
        .branch(&branch("main"))
        .head()
        .await?
        .expect("committed");
    assert_eq!(head.tree().read_file(&path("a"))?, Some(b"a".to_vec()));
    drop(store);
    common::assert_fsck_clean(&git_dir);
    Ok(())
}

/// What a reader checks in a snapshot of commit `n` (message `commit <n>`): `last` holds `n`, and
/// `n/<k>` holds the last commit number that wrote it.
fn check_snapshot(n: usize, tree: &Snapshot) -> anyhow::Result<()> {
    let last = tree.read_file(&path("last"))?;
    anyhow::ensure!(
        last == Some(n.to_string().into_bytes()),
        "last of commit {n}"
    );
    let slot = n % SLOTS;
    let file = tree.read_file(&path(&format!("n/{slot}")))?;
    anyhow::ensure!(
        file == Some(n.to_string().into_bytes()),
        "n/{slot} of commit {n}"
    );
    let names = tree.read_dir(&path("n"))?.unwrap_or_default();
    anyhow::ensure!(names.len() == (n + 1).min(SLOTS), "n/ of commit {n}");
    Ok(())
}

/// Readers in the stress test: more than the machine's cores, so that some are preempted in the
/// middle of listing the pack directory (which is how the old bug struck).
const READERS: usize = 8;

/// Empty files added to the pack directory in the stress test.
const PADDING: usize = 400;

/// Files the stress test rewrites in turn.
const SLOTS: usize = 64;

/// Regression: readers reported "no commit <id> in the store" for heads the store had just
/// reported, because merged packs were deleted while gix listed the pack directory. Readers of new
/// heads, of old commits and of long-lived snapshots run while thousands of commits are written and
/// their packs merged and deleted; every read must succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_never_miss_objects_while_packs_are_merged_and_deleted() -> anyhow::Result<()> {
    const COMMITS: usize = 2000;
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));
    // A pack directory of many blocks: listing it takes several system calls, between which
    // files can be created and deleted (a directory of one block is listed in one go).
    let padding = fixture.path.join("objects/pack/padding");
    for n in 0..PADDING {
        std::fs::write(
            padding.with_file_name(format!("padding-{n:04}-of-the-pack-directory")),
            b"",
        )?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    // Every commit so far, and snapshots taken long ago and read again and again.
    let commits: Arc<Mutex<Vec<CommitId>>> = Arc::default();
    let kept: Arc<Mutex<Vec<(usize, Snapshot)>>> = Arc::default();

    // Readers are threads of their own, each waiting a different while before each read, so that
    // their listings of the pack directory fall at every moment of the merges.
    let runtime = tokio::runtime::Handle::current();
    let mut readers = Vec::new();
    for reader in 0..READERS {
        let (stop, reads) = (Arc::clone(&stop), Arc::clone(&reads));
        let (commits, kept) = (Arc::clone(&commits), Arc::clone(&kept));
        let (store, heads, runtime) = (fixture.store.clone(), main.watch(), runtime.clone());
        readers.push(std::thread::spawn(move || {
            let mut turn = 0usize;
            while !stop.load(Ordering::Relaxed) {
                turn += 1;
                let jitter = (turn * 7919 + reader * 104_729) % 1500;
                std::thread::sleep(std::time::Duration::from_micros(jitter as u64));
                let head = *heads.borrow();
                let Some(id) = head else { continue };
                // The newest head.
                let commit = runtime.block_on(store.commit(id))?;
                let n: usize = commit
                    .message()
                    .strip_prefix("commit ")
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("unexpected message {:?}", commit.message()))?;
                check_snapshot(n, &commit.tree())?;
                reads.fetch_add(1, Ordering::Relaxed);
                if !turn.is_multiple_of(8) {
                    // Mostly the newest heads, whose packs are the ones merged and deleted.
                    continue;
                }
                // An older commit, whose objects may have moved between packs since.
                let older = {
                    let commits = commits.lock().expect("commits lock");
                    let index = (turn * 7919 + reader) % commits.len().max(1);
                    commits.get(index).map(|id| (index, *id))
                };
                if let Some((index, id)) = older {
                    check_snapshot(index, &runtime.block_on(store.commit(id))?.tree())?;
                }
                // A snapshot kept since long ago.
                let snapshot = {
                    let kept = kept.lock().expect("kept lock");
                    kept.get(turn % kept.len().max(1)).cloned()
                };
                if let Some((index, snapshot)) = snapshot {
                    check_snapshot(index, &snapshot)?;
                }
            }
            anyhow::Ok(())
        }));
    }

    let result = async {
        for n in 0..COMMITS {
            let mut transaction = main.transaction().await?;
            transaction.create_file(&path(&format!("n/{}", n % SLOTS)), n.to_string())?;
            transaction.create_file(&path("last"), n.to_string())?;
            let id = transaction.commit(&format!("commit {n}")).await?;
            commits.lock().expect("commits lock").push(id);
            if n.is_multiple_of(100) {
                let tree = fixture.store.commit(id).await?.tree();
                kept.lock().expect("kept lock").push((n, tree));
            }
            if readers.iter().any(std::thread::JoinHandle::is_finished) {
                break;
            }
        }
        anyhow::Ok(())
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader
            .join()
            .map_err(|_| anyhow::anyhow!("a reader panicked"))??;
    }
    for n in 0..PADDING {
        std::fs::remove_file(
            padding.with_file_name(format!("padding-{n:04}-of-the-pack-directory")),
        )?;
    }
    result?;
    assert!(reads.load(Ordering::Relaxed) > 100, "readers kept up");
    fixture.store.wait_for_maintenance().await;
    assert!(packs(&fixture.path).len() <= 3 * 15 + 1);
    assert_eq!(fixture.git(&["rev-list", "--count", "main"]).trim(), "2000");
    Ok(())
}

/// A commit that makes fewer trees than it predicted (here thousands of directories holding the
/// same file, so the same tree) writes its pack itself, its big trees checksummed on the pack
/// thread while it writes them; the pack its first big tree (over 256 KiB) started is not used.
#[tokio::test]
async fn big_trees_of_a_commit_unlike_its_prediction_are_packed_soundly() -> anyhow::Result<()> {
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));
    let mut transaction = main.transaction().await?;
    for n in 0..8_000 {
        transaction.create_file(&path(&format!("heads/b{n:05}/head")), "same")?;
    }
    for n in 0..2_500 {
        transaction.create_file(&path(&format!("tags/t{n:05}/head")), "same")?;
    }
    transaction.commit("two big trees").await?;

    let packs = packs(&fixture.path);
    assert_eq!(packs.len(), 1);
    let listing = fixture.git(&["verify-pack", "-v", packs[0].to_str().expect("UTF-8 path")]);
    for dir in [
        "main:heads",
        "main:tags",
        "main:heads/b00000",
        "main:heads/b07999",
    ] {
        let id = fixture.git(&["rev-parse", dir]).trim().to_owned();
        assert!(
            listing.contains(&id),
            "{dir} ({id}) not in the pack:\n{listing}"
        );
    }
    assert_eq!(
        fixture.git(&["cat-file", "-p", "main:tags/t02499/head"]),
        "same"
    );
    Ok(())
}

#[tokio::test]
async fn big_trees_are_packed_without_compression_and_blobs_compressed() -> anyhow::Result<()> {
    let fixture = Fixture::new();
    let main = fixture.store.branch(&branch("main"));
    let mut transaction = main.transaction().await?;
    // Compressible contents, so that a compressed entry would be much smaller than the object.
    let big = "a".repeat(100 * 1024);
    transaction.create_file(&path("big"), big.clone())?;
    transaction.create_file(&path("small"), "b".repeat(1024))?;
    // Flat directories whose trees are over 64 KiB, like `ref/heads/` with many branches; two, so
    // that the pack starts with two big trees: the store's pack thread writes the first (over 256
    // KiB) while the commit hashes it, and the commit appends the second. (Every `head` differs,
    // so that no two new trees are the same and the commit makes as many trees as it predicted.)
    for n in 0..8_000 {
        transaction.create_file(&path(&format!("heads/b{n:05}/head")), format!("{n:040}"))?;
    }
    for n in 0..2_500 {
        transaction.create_file(&path(&format!("tags/t{n:05}/head")), format!("{n:039}t"))?;
    }
    transaction.commit("big and small").await?;

    let packs = packs(&fixture.path);
    assert_eq!(packs.len(), 1);
    let listing = fixture.git(&["verify-pack", "-v", packs[0].to_str().expect("UTF-8 path")]);
    // `<id> <type> <size> <size in pack> <offset>` per object.
    let entry = |id: &str| -> (u64, u64) {
        let line = listing
            .lines()
            .find(|line| line.starts_with(id))
            .unwrap_or_else(|| panic!("{id} not in the pack:\n{listing}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        (
            fields[2].parse().expect("size"),
            fields[3].parse().expect("size in pack"),
        )
    };
    for dir in ["main:heads", "main:tags"] {
        let tree = fixture.git(&["rev-parse", dir]).trim().to_owned();
        let (size, in_pack) = entry(&tree);
        assert!(size > 64 * 1024, "{dir} is {size} bytes");
        assert!(
            in_pack > size,
            "{dir}: {in_pack} bytes in the pack for {size}, so it was compressed"
        );
    }
    // Blobs, big or small, are compressed (logs compress well).
    for object in ["main:big", "main:small"] {
        let id = fixture.git(&["rev-parse", object]).trim().to_owned();
        let (size, in_pack) = entry(&id);
        assert!(
            in_pack < size / 4,
            "{object}: {in_pack} bytes in the pack for {size}"
        );
    }

    assert_eq!(fixture.git(&["cat-file", "-p", "main:big"]), big);
    assert_eq!(
        fixture.git(&["cat-file", "-p", "main:heads/b07999/head"]),
        format!("{:040}", 7999)
    );
    assert_eq!(
        fixture.git(&["cat-file", "-p", "main:tags/t02499/head"]),
        format!("{:039}t", 2499)
    );
    let snapshot = main.head().await?.expect("a head").tree();
    assert_eq!(
        snapshot.read_file(&path("big"))?.as_deref(),
        Some(big.as_bytes())
    );
    Ok(())
}

/// Files in the flat directory of [`merged_packs_store_big_trees_as_deltas`]: its tree is about
/// 100 KiB, over the size from which trees are stored uncompressed.
const FLAT_FILES: usize = 3_000;

/// Commits in [`merged_packs_store_big_trees_as_deltas`]: enough for a merge of merged packs (the
/// 256th commit merges 16 packs of 16 commits each), whose deltas are recomputed.
const FLAT_COMMITS: usize = 300;

/// The file commit `n` of [`merged_packs_store_big_trees_as_deltas`] rewrites: scattered, so that
/// versions drift apart the way `ref/heads/` does.
fn flat_file(n: usize) -> usize {
    (n * 7919) % FLAT_FILES
}

/// A flat directory whose ~100 KiB tree is rewritten by every commit, one entry at a time (like
/// the metadata's `ref/heads/`): merged packs hold a few whole copies of it and small deltas of
/// depth 1, which git and the store read back.
#[tokio::test]
async fn merged_packs_store_big_trees_as_deltas() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let git_dir = dir.path().join("state.git");
    let store = Store::open(&git_dir)?;
    let main = store.branch(&branch("main"));
    let mut transaction = main.transaction().await?;
    for n in 0..FLAT_FILES {
        transaction.create_file(&path(&format!("flat/f{n:05}")), "initial")?;
    }
    let mut commits = vec![transaction.commit("initial").await?];
    let mut merge_times = Vec::new();
    for n in 1..FLAT_COMMITS {
        let mut transaction = main.transaction().await?;
        transaction.create_file(
            &path(&format!("flat/f{:05}", flat_file(n))),
            format!("commit {n}"),
        )?;
        let packs_before = packs(&git_dir).len();
        let started = std::time::Instant::now();
        commits.push(transaction.commit(&format!("commit {n}")).await?);
        // The merge runs in the background after the commit.
        store.wait_for_maintenance().await;
        if packs(&git_dir).len() < packs_before {
            merge_times.push((n, started.elapsed()));
        }
    }
    // Not an assertion (timing is the bench's job): the figures for the record.
    eprintln!("commits that merged packs, with their duration: {merge_times:?}");
    drop((main, store));

    let pack_dir = git_dir.join("objects/pack");
    let pack_bytes: u64 = std::fs::read_dir(&pack_dir)?
        .map(|entry| Ok(entry?.metadata()?.len()))
        .sum::<std::io::Result<u64>>()?;
    let tree_bytes: u64 = commits
        .iter()
        .map(|id| {
            git_in(&git_dir, &["cat-file", "-s", &format!("{id}:flat")])
                .trim()
                .parse::<u64>()
                .expect("a size")
        })
        .sum();
    eprintln!("objects/pack: {pack_bytes} bytes; whole versions of the tree: {tree_bytes} bytes");
    assert!(
        pack_bytes < tree_bytes / 8,
        "objects/pack holds {pack_bytes} bytes for {tree_bytes} bytes of trees"
    );

    // The merged packs hold the big trees as deltas of depth 1.
    let mut deltas = 0;
    for idx in packs(&git_dir) {
        let listing = git_in(
            &git_dir,
            &["verify-pack", "-v", idx.to_str().expect("UTF-8 path")],
        );
        assert!(
            !listing.contains("chain length = 2"),
            "deltas of deltas in {}:\n{listing}",
            idx.display()
        );
        deltas += listing
            .lines()
            .find_map(|line| line.strip_prefix("chain length = 1: "))
            .and_then(|rest| rest.split_whitespace().next())
            .map_or(0, |count| count.parse::<usize>().expect("a count"));
    }
    assert!(
        deltas > FLAT_COMMITS / 2,
        "only {deltas} deltas for {FLAT_COMMITS} versions of the tree"
    );
    git_in(&git_dir, &["fsck", "--full", "--strict", "--no-progress"]);
    common::assert_fsck_clean(&git_dir);

    // Read back through a fresh store (nothing cached): every version of the tree as git sees it.
    let store = Store::open(&git_dir)?;
    for (n, id) in commits.iter().enumerate() {
        let tree = store.commit(*id).await?.tree();
        let names = tree.read_dir(&path("flat"))?.expect("a directory");
        let listed = git_in(&git_dir, &["ls-tree", "--name-only", &format!("{id}:flat")]);
        assert!(
            names.iter().map(String::as_str).eq(listed.lines()),
            "the names of flat/ in commit {n}"
        );
        let tree_id = tree.tree_id(&path("flat"))?.expect("a directory");
        assert_eq!(
            tree_id.to_string(),
            git_in(&git_dir, &["rev-parse", &format!("{id}:flat")]).trim(),
            "commit {n}"
        );
        if n > 0 {
            assert_eq!(
                tree.read_file(&path(&format!("flat/f{:05}", flat_file(n))))?,
                Some(format!("commit {n}").into_bytes()),
                "the file commit {n} wrote"
            );
        }
    }
    let last = store
        .commit(*commits.last().expect("commits"))
        .await?
        .tree();
    for n in 0..FLAT_FILES {
        let expected = (1..FLAT_COMMITS)
            .rev()
            .find(|&c| flat_file(c) == n)
            .map_or_else(|| "initial".to_owned(), |c| format!("commit {c}"));
        assert_eq!(
            last.read_file(&path(&format!("flat/f{n:05}")))?,
            Some(expected.into_bytes()),
            "flat/f{n:05} in the last commit"
        );
    }
    Ok(())
}

/// Two flat directories, each a big tree of its own, rewritten in turn: each merged pack holds
/// versions of both interleaved, so the last whole tree written is often of the other directory.
/// Deltas are only ever made against a version of the same directory (a delta against the other
/// one would be bigger than the tree, so that base is passed over), and every version reads back.
#[tokio::test]
async fn big_trees_of_another_directory_are_not_delta_bases() -> anyhow::Result<()> {
    const FILES: usize = 2_500;
    const COMMITS: usize = 48;
    let dir = tempfile::tempdir()?;
    let git_dir = dir.path().join("state.git");
    let store = Store::open(&git_dir)?;
    let main = store.branch(&branch("main"));
    let mut transaction = main.transaction().await?;
    for n in 0..FILES {
        transaction.create_file(&path(&format!("left/l{n:05}")), "initial")?;
        transaction.create_file(&path(&format!("right/r{n:05}")), "initial")?;
    }
    let mut commits = vec![transaction.commit("initial").await?];
    for n in 1..COMMITS {
        let file = if n % 2 == 0 {
            format!("left/l{:05}", n * 37 % FILES)
        } else {
            format!("right/r{:05}", n * 37 % FILES)
        };
        let mut transaction = main.transaction().await?;
        transaction.create_file(&path(&file), format!("commit {n}"))?;
        commits.push(transaction.commit(&format!("commit {n}")).await?);
    }
    store.wait_for_maintenance().await;
    drop((main, store));

    // Every version of each directory, by id.
    let versions = |dir: &str| -> std::collections::HashSet<String> {
        commits
            .iter()
            .map(|id| {
                git_in(&git_dir, &["rev-parse", &format!("{id}:{dir}")])
                    .trim()
                    .to_owned()
            })
            .collect()
    };
    let (left, right) = (versions("left"), versions("right"));
    let mut deltas = 0;
    for idx in packs(&git_dir) {
        let listing = git_in(
            &git_dir,
            &["verify-pack", "-v", idx.to_str().expect("UTF-8 path")],
        );
        // `<id> <type> <size> <size in pack> <offset> <depth> <base id>` for a delta.
        for line in listing.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let [id, "tree", _, _, _, depth, base] = fields[..] {
                assert_eq!(depth, "1", "{line}");
                let same_family = (left.contains(id) && left.contains(base))
                    || (right.contains(id) && right.contains(base));
                assert!(same_family, "a delta of another directory: {line}");
                deltas += 1;
            }
        }
    }
    // One whole version of each directory per merged pack (of 16 commits), deltas of it for the
    // other versions (the first commit wrote both directories).
    assert_eq!(
        deltas,
        COMMITS + 1 - 2 * (COMMITS / 16),
        "big trees stored as deltas"
    );

    let store = Store::open(&git_dir)?;
    for (n, id) in commits.iter().enumerate() {
        let tree = store.commit(*id).await?.tree();
        for dir in ["left", "right"] {
            let tree_id = tree.tree_id(&path(dir))?.expect("a directory");
            assert_eq!(
                tree_id.to_string(),
                git_in(&git_dir, &["rev-parse", &format!("{id}:{dir}")]).trim(),
                "{dir} in commit {n}"
            );
            let names = tree.read_dir(&path(dir))?.expect("a directory");
            let listed = git_in(
                &git_dir,
                &["ls-tree", "--name-only", &format!("{id}:{dir}")],
            );
            assert!(
                names.iter().map(String::as_str).eq(listed.lines()),
                "the names of {dir}/ in commit {n}"
            );
        }
    }
    drop(store);
    git_in(&git_dir, &["fsck", "--full", "--strict", "--no-progress"]);
    common::assert_fsck_clean(&git_dir);
    Ok(())
}
