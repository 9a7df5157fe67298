//! The metadata reader on any metadata tree a bridge (or a hostile forge) could write: files at
//! any valid store path with any contents. Reading never panics, and a malformed value is
//! reported as such (`MetadataError::Invalid`), never as a store failure, so that the engine
//! makes it an error on that target alone.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use datakit_ci_store::{BranchName, Store, StorePath};
use datakit_ci_term::RepoId;
use datakit_ci_term::metadata::{MetadataError, MetadataReader};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    files: Vec<(String, Vec<u8>)>,
    commit: String,
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    runtime: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(&dir.path().join("state.git")).expect("a new store");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        Fixture {
            _dir: dir,
            store,
            runtime,
        }
    })
}

fuzz_target!(|input: Input| {
    let fixture = fixture();
    fixture.runtime.block_on(check(&fixture.store, input));
});

async fn check(store: &Store, input: Input) {
    let branch = store.branch(&BranchName::new("fuzz").expect("a valid name"));
    let mut transaction = branch.transaction().await.expect("a transaction");
    // Each input is the whole tree: start from nothing.
    let entries = transaction
        .read_dir(&StorePath::root())
        .expect("the root can be listed")
        .unwrap_or_default();
    for entry in entries {
        let path = StorePath::new(entry).expect("a stored name is a valid path");
        transaction
            .remove(&path)
            .expect("an existing entry can be removed");
    }
    let mut repos = vec!["me/proj".parse::<RepoId>().expect("a valid id")];
    for (path, contents) in &input.files {
        let Ok(store_path) = StorePath::new(path.as_str()) else {
            continue;
        };
        if transaction
            .create_file(&store_path, contents.clone())
            .is_err()
        {
            continue;
        }
        let mut parts = path.split('/');
        if let (Some(user), Some(repo)) = (parts.next(), parts.next())
            && let Ok(repo) = RepoId::new(user, repo)
        {
            repos.push(repo);
        }
    }
    let Ok(head) = transaction.commit("fuzz").await else {
        return;
    };
    let tree = store.commit(head).await.expect("the new commit").tree();
    let reader = MetadataReader::new(&tree);
    for repo in &repos {
        let ids = reader.target_ids(repo);
        not_store(&ids);
        for id in ids.unwrap_or_default() {
            let target = reader.target(&id);
            not_store(&target);
            if let Ok(Some(target)) = target {
                assert_eq!(target.id(), id, "a target reads back under its own id");
            }
        }
        not_store(&reader.prs(repo));
        not_store(&reader.refs(repo));
        if let Ok(commit) = input.commit.parse() {
            not_store(&reader.status(repo, &commit, "ci/datakit/build"));
        }
    }
}

/// Asserts that `result` is not a store failure: the tree is readable, whatever it holds.
fn not_store<T>(result: &Result<T, MetadataError>) {
    if let Err(error @ MetadataError::Store { .. }) = result {
        panic!("a malformed tree reported as a store failure: {error:?}");
    }
}
