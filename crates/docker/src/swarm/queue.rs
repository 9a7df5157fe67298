//! The queue in front of the cluster: at most `capacity` jobs run at once, and a free place goes
//! to the waiting job of the highest [`Priority`], taking turns between repositories within a
//! priority, so that a mass rebuild of one repository never starves another's pull requests.
//!
//! Knows nothing of Docker: it hands out places.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::request::Priority;

/// The places of the cluster. Cheap to clone.
#[derive(Clone)]
pub(crate) struct FairQueue {
    inner: Arc<Mutex<QueueState>>,
}

struct QueueState {
    capacity: usize,
    running: usize,
    next_ticket: u64,
    /// Per priority, the repositories with waiting jobs, in turn order; each with its jobs in
    /// arrival order.
    waiting: BTreeMap<Priority, VecDeque<(String, VecDeque<Waiter>)>>,
}

struct Waiter {
    ticket: u64,
    admit: oneshot::Sender<()>,
}

/// A place in the cluster, given back when dropped.
pub(crate) struct Place {
    queue: FairQueue,
}

/// A job's place in the queue until it is admitted; dropping it leaves the queue.
pub(crate) struct Ticket {
    queue: FairQueue,
    ticket: u64,
    admitted: Option<oneshot::Receiver<()>>,
}

impl FairQueue {
    /// A queue letting `capacity` jobs (at least one) run at once.
    pub(crate) fn new(capacity: usize) -> FairQueue {
        FairQueue {
            inner: Arc::new(Mutex::new(QueueState {
                capacity: capacity.max(1),
                running: 0,
                next_ticket: 0,
                waiting: BTreeMap::new(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.inner
            .lock()
            .expect("no code panics while holding the queue")
    }

    /// Joins the queue as a job of `repository` with `priority`.
    pub(crate) fn join(&self, priority: Priority, repository: &str) -> Ticket {
        let (admit, admitted) = oneshot::channel();
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        let turns = state.waiting.entry(priority).or_default();
        let waiter = Waiter { ticket, admit };
        match turns.iter_mut().find(|(repo, _)| repo == repository) {
            Some((_, jobs)) => jobs.push_back(waiter),
            None => turns.push_back((repository.to_owned(), VecDeque::from([waiter]))),
        }
        state.admit_while_room();
        Ticket {
            queue: self.clone(),
            ticket,
            admitted: Some(admitted),
        }
    }

    /// How many jobs run now, and how many wait.
    pub(crate) fn load(&self) -> (usize, usize) {
        let state = self.lock();
        let waiting = state
            .waiting
            .values()
            .flat_map(|turns| turns.iter().map(|(_, jobs)| jobs.len()))
            .sum();
        (state.running, waiting)
    }

    /// How many waiting jobs go before the job of `ticket` (0: it is next), or `None` if it is
    /// not waiting (admitted, or gone).
    pub(crate) fn ahead(&self, ticket: u64) -> Option<usize> {
        self.lock().ahead_of(ticket)
    }

    /// The number of places.
    pub(crate) fn capacity(&self) -> usize {
        self.lock().capacity
    }
}

impl QueueState {
    /// Admits waiting jobs, in order, while there is room.
    fn admit_while_room(&mut self) {
        while self.running < self.capacity {
            let Some(waiter) = self.pop_next() else {
                return;
            };
            // A receiver that is gone left the queue between its last look and now; its place
            // goes to the next one.
            if waiter.admit.send(()).is_ok() {
                self.running += 1;
            }
        }
    }

    /// The next job to admit: the first repository's first job at the highest priority with
    /// waiting jobs; that repository then goes to the back of its priority's turns.
    fn pop_next(&mut self) -> Option<Waiter> {
        let (&priority, turns) = self.waiting.iter_mut().next()?;
        let (repository, mut jobs) = turns.pop_front().expect("empty priorities are removed");
        let waiter = jobs.pop_front().expect("empty repositories are removed");
        if !jobs.is_empty() {
            turns.push_back((repository, jobs));
        }
        if turns.is_empty() {
            self.waiting.remove(&priority);
        }
        Some(waiter)
    }

    /// How many jobs would be admitted before `ticket`, or `None` if it is not waiting.
    fn ahead_of(&self, ticket: u64) -> Option<usize> {
        // Simulates the admissions without changing the queue.
        let mut ahead = 0;
        for turns in self.waiting.values() {
            let mut queues: Vec<VecDeque<u64>> = turns
                .iter()
                .map(|(_, jobs)| jobs.iter().map(|w| w.ticket).collect())
                .collect();
            loop {
                let mut any = false;
                for jobs in &mut queues {
                    if let Some(next) = jobs.pop_front() {
                        if next == ticket {
                            return Some(ahead);
                        }
                        ahead += 1;
                        any = true;
                    }
                }
                if !any {
                    break;
                }
            }
        }
        None
    }

    fn remove(&mut self, ticket: u64) {
        for turns in self.waiting.values_mut() {
            for (_, jobs) in turns.iter_mut() {
                jobs.retain(|w| w.ticket != ticket);
            }
            turns.retain(|(_, jobs)| !jobs.is_empty());
        }
        self.waiting.retain(|_, turns| !turns.is_empty());
    }
}

impl Ticket {
    /// How many waiting jobs go before this one (0: it is next), or `None` once admitted.
    pub(crate) fn ahead(&self) -> Option<usize> {
        self.queue.ahead(self.ticket)
    }

    /// The ticket's number, by which [`FairQueue::ahead`] knows it.
    pub(crate) fn number(&self) -> u64 {
        self.ticket
    }

    /// Waits for a place.
    pub(crate) async fn admitted(mut self) -> Place {
        // The receiver stays in the ticket while it waits, so that a wait given up (the job
        // cancelled) leaves the queue through the ticket's drop. The sender is only dropped
        // after sending: the queue keeps a waiter until it admits it.
        if let Some(receiver) = self.admitted.as_mut() {
            let _sent = receiver.await;
        }
        self.admitted = None;
        Place {
            queue: self.queue.clone(),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let Some(mut admitted) = self.admitted.take() else {
            return;
        };
        let mut state = self.queue.lock();
        state.remove(self.ticket);
        // Admitted between the last poll and the drop: the place is given back.
        if admitted.try_recv().is_ok() {
            state.running -= 1;
            state.admit_while_room();
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        state.running -= 1;
        state.admit_while_room();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Joins and returns the ticket with its admission polled once.
    fn try_admit(ticket: &mut Ticket) -> bool {
        ticket
            .admitted
            .as_mut()
            .is_some_and(|receiver| receiver.try_recv().is_ok())
    }

    #[test]
    fn a_pull_request_goes_before_bulk_work_already_queued() {
        let queue = FairQueue::new(1);
        let mut running = queue.join(Priority::Bulk, "a");
        assert!(try_admit(&mut running));
        let mut bulk: Vec<Ticket> = (0..50).map(|_| queue.join(Priority::Bulk, "a")).collect();
        let mut pr = queue.join(Priority::PullRequest, "b");
        assert_eq!(pr.ahead(), Some(0));
        assert_eq!(bulk[0].ahead(), Some(1));
        assert_eq!(queue.load(), (1, 51));
        // The running job ends: its place goes to the pull request.
        drop(Place {
            queue: queue.clone(),
        });
        assert!(try_admit(&mut pr));
        assert!(!try_admit(&mut bulk[0]));
    }

    #[test]
    fn repositories_take_turns_within_a_priority() {
        let queue = FairQueue::new(1);
        let mut first = queue.join(Priority::Ref, "x");
        assert!(try_admit(&mut first));
        let mut x: Vec<Ticket> = (0..3).map(|_| queue.join(Priority::Ref, "x")).collect();
        let mut y = queue.join(Priority::Ref, "y");
        // Order: x0, y0, x1, x2.
        assert_eq!(x[0].ahead(), Some(0));
        assert_eq!(y.ahead(), Some(1));
        assert_eq!(x[1].ahead(), Some(2));
        assert_eq!(x[2].ahead(), Some(3));
        let mut order = Vec::new();
        for _ in 0..4 {
            drop(Place {
                queue: queue.clone(),
            });
            if try_admit(&mut y) {
                order.push("y");
            }
            for (i, ticket) in x.iter_mut().enumerate() {
                if try_admit(ticket) {
                    order.push(["x0", "x1", "x2"][i]);
                }
            }
        }
        assert_eq!(order, ["x0", "y", "x1", "x2"]);
    }

    #[test]
    fn a_job_that_leaves_the_queue_gives_its_turn_to_the_next() {
        let queue = FairQueue::new(1);
        let mut running = queue.join(Priority::Ref, "a");
        assert!(try_admit(&mut running));
        let leaving = queue.join(Priority::PullRequest, "a");
        let mut next = queue.join(Priority::Ref, "a");
        assert_eq!(next.ahead(), Some(1));
        drop(leaving);
        assert_eq!(next.ahead(), Some(0));
        assert_eq!(queue.load(), (1, 1));
        drop(Place {
            queue: queue.clone(),
        });
        assert!(try_admit(&mut next));
        assert_eq!(queue.load(), (1, 0));
    }

    #[tokio::test]
    async fn places_are_given_back_when_dropped() {
        let queue = FairQueue::new(2);
        let a = queue.join(Priority::Ref, "r").admitted().await;
        let b = queue.join(Priority::Ref, "r").admitted().await;
        let waiting = queue.join(Priority::Ref, "r");
        assert_eq!(queue.load(), (2, 1));
        drop(a);
        let c = waiting.admitted().await;
        assert_eq!(queue.load(), (2, 0));
        drop((b, c));
        assert_eq!(queue.load(), (0, 0));
        assert_eq!(queue.capacity(), 2);
    }
}
