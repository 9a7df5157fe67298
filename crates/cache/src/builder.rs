//! The contract between the cache and a kind of build (spec §5.1): how a key names its store
//! branch, how a value is produced and how it is read back.

use tokio_util::sync::CancellationToken;

use datakit_ci_log::LiveLog;
use datakit_ci_store::{BranchName, Snapshot, Transaction};

/// What a running build gets besides its key and context.
pub struct Build<'a> {
    /// The build's live log: write progress and output here.
    pub log: &'a LiveLog,
    /// Cancelled when a user cancels the build or the cache shuts down; stop promptly then.
    pub cancel: &'a CancellationToken,
    /// The transaction on the build's branch: write the value's data under `value/`, and files
    /// kept for people to download with [`write_artifacts`](crate::write_artifacts).
    pub transaction: &'a mut Transaction,
}

/// A kind of cached build.
///
/// A `Builder` turns a key into a value, slowly, with a log. The [`Cache`](crate::Cache) runs it
/// at most once per key (per [`Builder::branch`]), records the result and the log in the store,
/// and reuses that result across restarts until someone asks for a rebuild.
///
/// ```
/// use datakit_ci_cache::{Build, Builder};
/// use datakit_ci_store::{BranchName, Snapshot, StorePath};
///
/// /// Counts the words of a text.
/// struct WordCount;
///
/// impl Builder for WordCount {
///     type Key = String;
///     type Context = ();
///     type Value = usize;
///
///     fn name(&self) -> String { "word-count".into() }
///     fn title(&self, key: &String) -> String { format!("Count words of {key:?}") }
///     fn branch(&self, key: &String) -> BranchName {
///         BranchName::new(format!("word-count-{}", datakit_ci_store::escape(key)))
///             .expect("escaped names are valid branch names")
///     }
///     async fn generate(&self, build: Build<'_>, _: &(), key: &String) -> Result<usize, String> {
///         let count = key.split_whitespace().count();
///         build.log.log(&format!("{count} words"));
///         let path = StorePath::new("value/count").map_err(|e| e.to_string())?;
///         build.transaction.create_file(&path, count.to_string()).map_err(|e| e.to_string())?;
///         Ok(count)
///     }
///     fn load(&self, tree: &Snapshot, _: &String) -> Result<usize, String> {
///         let path = StorePath::new("value/count").map_err(|e| e.to_string())?;
///         let bytes = tree.read_file(&path).map_err(|e| e.to_string())?.ok_or("no count")?;
///         String::from_utf8_lossy(&bytes).parse().map_err(|e| format!("bad count: {e}"))
///     }
/// }
/// ```
pub trait Builder: Send + Sync + 'static {
    /// What identifies one build (e.g. a commit).
    type Key: Clone + Send + Sync + 'static;
    /// Extra data a build needs that does not change its result (e.g. the job asking).
    type Context: Clone + Send + Sync + 'static;
    /// The result of a successful build.
    type Value: Clone + Send + Sync + 'static;

    /// The builder's name: the `name` label of the cache metrics, e.g. `git:/data/repo`.
    fn name(&self) -> String;

    /// The build's title: the log heading and the first pending reason.
    fn title(&self, key: &Self::Key) -> String;

    /// The store branch holding the result. It must differ for different keys.
    fn branch(&self, key: &Self::Key) -> BranchName;

    /// Everything besides the key that decides the result (e.g. the command a shell step runs
    /// and the environment it gets), as text. The cache records it with the result (the file
    /// `recipe`) and treats a recorded result whose recipe differs as absent, so that changing
    /// the recipe builds again instead of showing the old result. Must not contain secrets
    /// (it is stored in plain text): give a digest of them instead. Empty by default.
    fn recipe(&self, key: &Self::Key) -> String {
        let _ = key;
        String::new()
    }

    /// Performs the build. An `Err` is a failed build: its message is recorded and shown, and
    /// it can be rebuilt. A panic is recorded as a failure too.
    fn generate(
        &self,
        build: Build<'_>,
        context: &Self::Context,
        key: &Self::Key,
    ) -> impl Future<Output = Result<Self::Value, String>> + Send;

    /// Reads back the value that [`Builder::generate`] returned, from the tree it committed.
    /// An `Err` makes the cache build again.
    fn load(&self, tree: &Snapshot, key: &Self::Key) -> Result<Self::Value, String>;
}
