//! Login rate limiting: a small token bucket per (user name, client address).
//!
//! Each attempt takes a token; a bucket holds [`BURST`] tokens and regains one every
//! [`REFILL`]. The table is bounded: when it grows past [`MAX_BUCKETS`], full buckets are forgotten
//! (they hold no information) and, if that is not enough, the oldest ones.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Attempts allowed in a burst.
pub const BURST: u32 = 5;
/// Time to regain one attempt.
pub const REFILL: Duration = Duration::from_secs(30);
/// Buckets kept at most.
const MAX_BUCKETS: usize = 10_000;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The login attempts of every (user, address) pair.
#[derive(Debug, Default)]
pub(crate) struct LoginLimiter {
    buckets: Mutex<HashMap<(String, Option<IpAddr>), Bucket>>,
}

impl LoginLimiter {
    /// Takes one attempt for `user` from `addr`; `false` if the bucket is empty.
    pub(crate) fn try_acquire(&self, user: &str, addr: Option<IpAddr>) -> bool {
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS {
            prune(&mut buckets, now);
        }
        let bucket = buckets.entry((user.to_owned(), addr)).or_insert(Bucket {
            tokens: f64::from(BURST),
            updated: now,
        });
        bucket.tokens = refilled(bucket, now);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn refilled(bucket: &Bucket, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.updated);
    (bucket.tokens + elapsed.as_secs_f64() / REFILL.as_secs_f64()).min(f64::from(BURST))
}

fn prune(buckets: &mut HashMap<(String, Option<IpAddr>), Bucket>, now: Instant) {
    buckets.retain(|_, bucket| refilled(bucket, now) < f64::from(BURST));
    if buckets.len() >= MAX_BUCKETS {
        let mut ages: Vec<Instant> = buckets.values().map(|b| b.updated).collect();
        ages.sort_unstable();
        let cutoff = ages[ages.len() / 2];
        buckets.retain(|_, bucket| bucket.updated > cutoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_refusal_per_user_and_address() {
        let limiter = LoginLimiter::default();
        let here = Some(IpAddr::from([127, 0, 0, 1]));
        let there = Some(IpAddr::from([127, 0, 0, 2]));
        for _ in 0..BURST {
            assert!(limiter.try_acquire("admin", here));
        }
        assert!(!limiter.try_acquire("admin", here));
        // Other users and other addresses have their own buckets.
        assert!(limiter.try_acquire("alice", here));
        assert!(limiter.try_acquire("admin", there));
    }

    #[test]
    fn the_table_stays_bounded() {
        let limiter = LoginLimiter::default();
        for i in 0..(MAX_BUCKETS + 10) {
            assert!(limiter.try_acquire(&format!("user{i}"), None));
        }
        let len = limiter.buckets.lock().expect("not poisoned").len();
        assert!(len <= MAX_BUCKETS, "{len}");
    }
}
