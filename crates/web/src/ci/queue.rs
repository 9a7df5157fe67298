//! Where queued builds wait: every build waiting for a slot of a monitored pool (e.g. `jobs`, the
//! binary's `--jobs` limit), by the branch of its live log, with its place in that pool's queue.
//!
//! Places are read from the pools when a page or API response is made, not from the jobs'
//! statuses: a place changes each time a build ends, and putting it in the pending reason would
//! rewrite every queued job's status and history each time.

use std::collections::HashMap;

use datakit_ci_pool::Pools;
use datakit_ci_term::{JobOutput, LogLeaf};

/// A build's place in a pool's queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct QueuePlace {
    /// The pool's name.
    pub(crate) pool: String,
    /// 1 for the next to get a slot.
    pub(crate) place: usize,
    /// How many wait in that queue.
    pub(crate) of: usize,
}

/// The place of every queued build, by the branch of its live log.
#[derive(Debug, Default)]
pub(crate) struct QueuePlaces(HashMap<String, QueuePlace>);

impl QueuePlaces {
    /// The queues of `pools` now.
    pub(crate) fn of_pools(pools: &Pools) -> Self {
        let mut places = HashMap::new();
        for pool in pools.list() {
            let queue = pool.queue();
            let of = queue.len();
            for (index, holder) in queue.into_iter().enumerate() {
                if let Some(branch) = holder.log_branch {
                    places.entry(branch).or_insert_with(|| QueuePlace {
                        pool: pool.name().to_owned(),
                        place: index + 1,
                        of,
                    });
                }
            }
        }
        QueuePlaces(places)
    }

    /// Where the build of a job with `output` waits, if one of its live logs is queued.
    pub(crate) fn of_output(&self, output: Option<&JobOutput>) -> Option<&QueuePlace> {
        if self.0.is_empty() {
            return None;
        }
        output?
            .logs
            .leaves()
            .into_iter()
            .find_map(|leaf| match leaf {
                LogLeaf::Live(log) => self.0.get(log.branch()),
                LogLeaf::Saved(_) => None,
            })
    }
}
