//! `MonitoredPool`: a fixed number of slots handed out first come, first served, whose
//! holders, queue and timings are visible to the UI (through `Pools`) and to Prometheus.
//!
//! Knows nothing of terms, caches or HTML; holders are plain strings.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{Semaphore, TryAcquireError};

use datakit_ci_log::LiveLog;

use crate::Error;
use crate::metrics::{PoolLabels, PoolMetrics, gauge_value};

/// Who holds (or waits for) a slot of a pool, as shown on the main page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The job using the slot (e.g. `PR 4 / build`).
    pub job: String,
    /// What the job uses it for (e.g. `docker build`).
    pub label: String,
    /// The branch of the job's live log, for linking to it.
    pub log_branch: Option<String>,
}

/// The pools of an application, listed on the UI's main page.
///
/// The original keeps them in a global registry; here the application owns one `Pools` and
/// passes it to [`MonitoredPool::new`]. Cloning shares the same set.
#[derive(Clone, Default)]
pub struct Pools {
    pools: Arc<Mutex<BTreeMap<String, MonitoredPool>>>,
}

impl Pools {
    /// Creates an empty set of pools.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every pool created with this set, sorted by name.
    pub fn list(&self) -> Vec<MonitoredPool> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, MonitoredPool>> {
        self.pools
            .lock()
            .expect("no code panics while holding the pools lock")
    }
}

impl fmt::Debug for Pools {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.list()).finish()
    }
}

/// A pool of `capacity` interchangeable resources (e.g. Docker build slots), handed out in
/// FIFO order by [`MonitoredPool::use_`].
///
/// Cloning gives another handle on the same pool.
#[derive(Clone)]
pub struct MonitoredPool {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    capacity: usize,
    slots: Semaphore,
    state: Mutex<State>,
    labels: PoolLabels,
    metrics: PoolMetrics,
}

#[derive(Default)]
struct State {
    qlen: usize,
    /// Most recent first.
    holders: Vec<Holder>,
    /// The users waiting for a slot, by ticket: in arrival order, the semaphore's order.
    waiting: BTreeMap<u64, Holder>,
    next_ticket: u64,
}

impl MonitoredPool {
    /// Creates a pool of `capacity` slots named `name`, adds it to `pools` and sets its
    /// `DataKitCI_pool_capacity` gauge.
    ///
    /// Fails if `pools` already has a pool with that name or if `capacity` is 0.
    pub fn new(
        name: impl Into<String>,
        capacity: usize,
        metrics: &PoolMetrics,
        pools: &Pools,
    ) -> Result<Self, Error> {
        let name = name.into();
        if capacity == 0 {
            return Err(Error::ZeroCapacity { name });
        }
        let mut registered = pools.lock();
        if registered.contains_key(&name) {
            return Err(Error::DuplicateName { name });
        }
        let labels = PoolLabels { name: name.clone() };
        let pool = MonitoredPool {
            inner: Arc::new(Inner {
                name: name.clone(),
                capacity,
                slots: Semaphore::new(capacity),
                state: Mutex::new(State::default()),
                labels,
                metrics: metrics.clone(),
            }),
        };
        let inner = &pool.inner;
        metrics
            .capacity
            .get_or_create(&inner.labels)
            .set(gauge_value(capacity));
        // Create the other series now, so a pool nobody used yet still shows up.
        metrics.qlen.get_or_create(&inner.labels).set(0);
        metrics.resources_in_use.get_or_create(&inner.labels).set(0);
        registered.insert(name, pool.clone());
        Ok(pool)
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// How many slots the pool has.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// How many slots are in use.
    pub fn active(&self) -> usize {
        self.inner.lock().holders.len()
    }

    /// How many users are waiting for a slot.
    pub fn qlen(&self) -> usize {
        self.inner.lock().qlen
    }

    /// The users holding a slot, most recent first.
    pub fn holders(&self) -> Vec<Holder> {
        self.inner.lock().holders.clone()
    }

    /// The users waiting for a slot, first served first: a user's place in the queue is its
    /// index plus one. (Users that [`use_`](Self::use_) found a free slot for at once never
    /// appear here.)
    pub fn queue(&self) -> Vec<Holder> {
        self.inner.lock().waiting.values().cloned().collect()
    }

    /// Waits (FIFO) for a free slot, then runs `fut` holding it as `holder`.
    ///
    /// While queued, if `log` is given, the reason `Waiting for resource in "<name>"` is on its
    /// pending stack, and the holder is in [`MonitoredPool::queue`]. If `holder.log_branch` is
    /// `None` and `log` is given, the log's branch is recorded as the holder's.
    ///
    /// Cancellation-safe: dropping the returned future while it is queued leaves the queue
    /// (qlen is decremented exactly once); dropping it while `fut` runs releases the slot.
    pub async fn use_<F: Future>(
        &self,
        holder: Holder,
        log: Option<&LiveLog>,
        fut: F,
    ) -> F::Output {
        let mut holder = holder;
        if holder.log_branch.is_none() {
            holder.log_branch = log.map(|log| log.branch().to_owned());
        }
        let inner = &*self.inner;
        let queued = Queued::enter(inner);
        let permit = match inner.slots.try_acquire() {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits) => {
                // Not in the reason, which becomes the job's status: a place that changes at
                // every build's end would rewrite every queued job's status and history.
                let _waiter = Waiter::enter(inner, &holder);
                let _reason = log.map(|log| {
                    log.push_pending_reason(format!("Waiting for resource in {:?}", inner.name))
                });
                inner
                    .slots
                    .acquire()
                    .await
                    .expect("the pool's semaphore is never closed")
            }
            Err(TryAcquireError::Closed) => unreachable!("the pool's semaphore is never closed"),
        };
        let waited = queued.leave();
        inner
            .metrics
            .wait_time
            .get_or_create(&inner.labels)
            .observe(waited.elapsed().as_secs_f64());
        let in_use = InUse::enter(inner, holder);
        let output = fut.await;
        // Remove the holder before freeing the slot, so the next one never sees both.
        drop(in_use);
        drop(permit);
        output
    }
}

impl fmt::Debug for MonitoredPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitoredPool")
            .field("name", &self.name())
            .field("capacity", &self.capacity())
            .field("active", &self.active())
            .field("qlen", &self.qlen())
            .finish()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("no code panics while holding a pool's state lock")
    }
}

/// A user waiting for a slot, in [`MonitoredPool::queue`] until dropped.
struct Waiter<'a> {
    inner: &'a Inner,
    ticket: u64,
}

impl<'a> Waiter<'a> {
    fn enter(inner: &'a Inner, holder: &Holder) -> Self {
        let mut state = inner.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.insert(ticket, holder.clone());
        Waiter { inner, ticket }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.inner.lock().waiting.remove(&self.ticket);
    }
}

/// A user in the queue; leaving it (or being dropped) decrements `qlen` once.
struct Queued<'a> {
    inner: &'a Inner,
    since: Instant,
    left: bool,
}

impl<'a> Queued<'a> {
    fn enter(inner: &'a Inner) -> Self {
        let mut state = inner.lock();
        state.qlen += 1;
        inner
            .metrics
            .qlen
            .get_or_create(&inner.labels)
            .set(gauge_value(state.qlen));
        Queued {
            inner,
            since: Instant::now(),
            left: false,
        }
    }

    /// Leaves the queue, returning when it was entered.
    fn leave(mut self) -> Instant {
        self.dequeue();
        self.since
    }

    fn dequeue(&mut self) {
        if self.left {
            return;
        }
        self.left = true;
        let mut state = self.inner.lock();
        state.qlen -= 1;
        self.inner
            .metrics
            .qlen
            .get_or_create(&self.inner.labels)
            .set(gauge_value(state.qlen));
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.dequeue();
    }
}

/// A holder of a slot; dropping it records the use time and removes the holder.
struct InUse<'a> {
    inner: &'a Inner,
    holder: Holder,
    since: Instant,
}

impl<'a> InUse<'a> {
    fn enter(inner: &'a Inner, holder: Holder) -> Self {
        let mut state = inner.lock();
        state.holders.insert(0, holder.clone());
        inner
            .metrics
            .resources_in_use
            .get_or_create(&inner.labels)
            .set(gauge_value(state.holders.len()));
        InUse {
            inner,
            holder,
            since: Instant::now(),
        }
    }
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        let inner = self.inner;
        inner
            .metrics
            .use_time
            .get_or_create(&inner.labels)
            .observe(self.since.elapsed().as_secs_f64());
        let mut state = inner.lock();
        // Like the original: remove the first entry for the same job and label.
        if let Some(index) = state
            .holders
            .iter()
            .position(|h| h.job == self.holder.job && h.label == self.holder.label)
        {
            state.holders.remove(index);
        }
        inner
            .metrics
            .resources_in_use
            .get_or_create(&inner.labels)
            .set(gauge_value(state.holders.len()));
    }
}
