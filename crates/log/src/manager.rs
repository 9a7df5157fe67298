//! The registry of active live logs, one per branch ([`LogManager`]) and its settings
//! ([`LogConfig`]). Knows how logs are registered and unregistered, not how they store bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::Error;
use crate::live_log::{LiveLog, LiveLogSpec};

/// Default number of bytes of each log kept in memory before the rest spills to a temporary file.
pub const DEFAULT_MEMORY_LIMIT: usize = 1024 * 1024;

/// Default number of the most recently spilled bytes of each log also kept in memory as shared
/// segments, so that followers close behind the writer read them without a copy of their own.
pub const DEFAULT_RECENT_WINDOW: usize = 2 * 1024 * 1024;

/// Default size of a saved log at most (`--max-log-size`): a longer one keeps its head and tail.
pub const DEFAULT_SAVED_LIMIT: u64 = 64 * 1024 * 1024;

/// Settings shared by every live log of a [`LogManager`].
///
/// ```
/// use datakit_ci_log::{LogConfig, LogManager};
///
/// let manager = LogManager::with_config(LogConfig::default().memory_limit(64 * 1024));
/// assert!(manager.active().is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct LogConfig {
    memory_limit: usize,
    spill_dir: Option<PathBuf>,
    recent_window: usize,
    saved_limit: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            memory_limit: DEFAULT_MEMORY_LIMIT,
            spill_dir: None,
            recent_window: DEFAULT_RECENT_WINDOW,
            saved_limit: DEFAULT_SAVED_LIMIT,
        }
    }
}

impl LogConfig {
    /// Bytes of each log kept in memory (default [`DEFAULT_MEMORY_LIMIT`]); the rest of the log is
    /// written to an unnamed temporary file. `0` spills everything.
    #[must_use]
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// How many of the most recently spilled bytes of each log are also kept in memory, shared
    /// by every reader (default [`DEFAULT_RECENT_WINDOW`]): a log's followers are usually close
    /// behind its writer, and there they read these instead of the spill file, without a copy
    /// each. A log holds at most `memory_limit` + `recent_window` bytes (plus 64 KiB of room
    /// for small writes) in memory. `0` turns it off.
    ///
    /// ```
    /// use datakit_ci_log::{LogConfig, LogManager};
    ///
    /// let config = LogConfig::default().recent_window(8 * 1024 * 1024);
    /// assert_eq!(config.recent_window_bytes(), 8 * 1024 * 1024);
    /// let manager = LogManager::with_config(config);
    /// # assert!(manager.active().is_empty());
    /// ```
    #[must_use]
    pub fn recent_window(mut self, bytes: usize) -> Self {
        self.recent_window = bytes;
        self
    }

    /// Directory for the unnamed spill files (default: the system temporary directory).
    #[must_use]
    pub fn spill_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spill_dir = Some(dir.into());
        self
    }

    /// The most bytes of a log that are saved (default [`DEFAULT_SAVED_LIMIT`]): the reader of
    /// [`LiveLog::saved_reader`] gives a longer log's first and last halves of that, with a line
    /// between them saying how much was cut. At least 4 KiB.
    ///
    /// ```
    /// use datakit_ci_log::LogConfig;
    ///
    /// let config = LogConfig::default().saved_limit(1024 * 1024);
    /// assert_eq!(config.saved_limit_bytes(), 1024 * 1024);
    /// ```
    #[must_use]
    pub fn saved_limit(mut self, bytes: u64) -> Self {
        self.saved_limit = bytes.max(4096);
        self
    }

    /// The configured saved-log bound, in bytes.
    pub fn saved_limit_bytes(&self) -> u64 {
        self.saved_limit
    }

    /// The configured in-memory bound, in bytes.
    pub fn memory_limit_bytes(&self) -> usize {
        self.memory_limit
    }

    /// The configured recent window, in bytes.
    pub fn recent_window_bytes(&self) -> usize {
        self.recent_window
    }

    /// The configured spill directory, if any.
    pub fn spill_dir_path(&self) -> Option<&Path> {
        self.spill_dir.as_deref()
    }
}

/// Registry of active live logs, one per branch.
///
/// Cheap to clone (an `Arc` inside); clones share the registry. There is no global instance: the
/// engine creates one and passes it to whoever creates or looks up logs.
#[derive(Clone, Default)]
pub struct LogManager {
    registry: Arc<Registry>,
}

#[derive(Default)]
pub(crate) struct Registry {
    logs: Mutex<BTreeMap<String, LiveLog>>,
    config: LogConfig,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, LiveLog>> {
        self.logs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Unregisters `log` if it is the one registered on its branch.
    pub(crate) fn remove(&self, log: &LiveLog) {
        let mut logs = self.lock();
        if logs
            .get(log.branch())
            .is_some_and(|active| active.same_as(log))
        {
            logs.remove(log.branch());
        }
    }
}

impl LogManager {
    /// A manager with the default [`LogConfig`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A manager whose logs use `config`.
    pub fn with_config(config: LogConfig) -> Self {
        Self {
            registry: Arc::new(Registry {
                logs: Mutex::new(BTreeMap::new()),
                config,
            }),
        }
    }

    /// The settings of this manager's logs.
    pub fn config(&self) -> &LogConfig {
        &self.registry.config
    }

    /// Creates and registers a live log on `spec.branch`.
    ///
    /// Fails with [`Error::AlreadyActive`] if a live log is already active on that branch; once that
    /// log is [finished](LiveLog::finish) the branch is free again.
    pub fn create(&self, spec: LiveLogSpec) -> Result<LiveLog, Error> {
        let mut logs = self.registry.lock();
        if logs.contains_key(&spec.branch) {
            return Err(Error::AlreadyActive {
                branch: spec.branch,
            });
        }
        let log = LiveLog::new(spec, &self.registry.config, Arc::downgrade(&self.registry));
        logs.insert(log.branch().to_owned(), log.clone());
        tracing::debug!(branch = log.branch(), "live log created");
        Ok(log)
    }

    /// The active live log on `branch`, if any.
    pub fn get(&self, branch: &str) -> Option<LiveLog> {
        self.registry.lock().get(branch).cloned()
    }

    /// All active live logs, sorted by branch.
    pub fn active(&self) -> Vec<LiveLog> {
        self.registry.lock().values().cloned().collect()
    }
}

impl fmt::Debug for LogManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let logs = self.registry.lock();
        f.debug_struct("LogManager")
            .field("active", &logs.keys().collect::<Vec<_>>())
            .field("config", &self.registry.config)
            .finish()
    }
}
