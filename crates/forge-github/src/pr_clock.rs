//! Out-of-order `pull_request` deliveries: [`PrClock`] remembers, per pull request, the
//! `updated_at` of the newest state applied (from a webhook or a full sync), so that a delivery
//! GitHub sends late cannot move a PR back (its head to an older commit, a closed PR open
//! again). Knows nothing of the store or of HTTP.
//!
//! The rule: a `pull_request` event whose `pull_request.updated_at` is **older** than the last
//! applied one for that PR is ignored; an equal one is applied (GitHub's timestamps have a
//! one-second resolution, and two changes in one second arrive in order far more often than
//! not — a full sync repairs the rare exception). An event without a readable `updated_at` is
//! applied. A full sync is GitHub's current state: it is always applied, and raises the clock.
//! The clock lives in memory (one entry per PR seen): after a restart, the first full sync
//! sets it again.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use datakit_ci_term::RepoId;

/// The newest `updated_at` applied, per pull request.
#[derive(Debug, Default)]
pub(crate) struct PrClock {
    applied: HashMap<(RepoId, u64), DateTime<Utc>>,
}

impl PrClock {
    /// Whether a webhook's state of PR `number`, last updated at `updated_at`, may be applied;
    /// if so, it becomes the newest.
    pub(crate) fn admit(
        &mut self,
        repo: &RepoId,
        number: u64,
        updated_at: Option<DateTime<Utc>>,
    ) -> bool {
        let Some(updated_at) = updated_at else {
            return true;
        };
        let key = (repo.clone(), number);
        match self.applied.get(&key) {
            Some(newest) if updated_at < *newest => false,
            _ => {
                self.applied.insert(key, updated_at);
                true
            }
        }
    }

    /// Records a state of PR `number` a full sync applied.
    pub(crate) fn synced(&mut self, repo: &RepoId, number: u64, updated_at: DateTime<Utc>) {
        let newest = self
            .applied
            .entry((repo.clone(), number))
            .or_insert(updated_at);
        *newest = (*newest).max(updated_at);
    }
}

/// GitHub's `updated_at` (`2019-05-15T15:20:33Z`), or `None` if it is not a time.
pub(crate) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_states_are_refused_equal_and_newer_ones_admitted() {
        let repo: RepoId = "me/proj".parse().expect("valid");
        let other: RepoId = "me/other".parse().expect("valid");
        let at = |s: &str| parse_time(s);
        let mut clock = PrClock::default();
        assert!(clock.admit(&repo, 1, at("2019-05-15T15:21:18Z")));
        assert!(!clock.admit(&repo, 1, at("2019-05-15T15:20:33Z")), "older");
        assert!(clock.admit(&repo, 1, at("2019-05-15T15:21:18Z")), "equal");
        assert!(
            clock.admit(&repo, 2, at("2019-05-15T15:20:33Z")),
            "another PR"
        );
        assert!(
            clock.admit(&other, 1, at("2019-05-15T15:20:33Z")),
            "another repository"
        );
        assert!(clock.admit(&repo, 1, None), "no time: applied");
        assert!(
            !clock.admit(&repo, 1, at("2019-05-15T16:00:00+01:00")),
            "15:00Z is older"
        );
        // A sync raises the clock, never lowers it.
        clock.synced(&repo, 1, at("2020-01-01T00:00:00Z").expect("a time"));
        clock.synced(&repo, 1, at("2019-01-01T00:00:00Z").expect("a time"));
        assert!(!clock.admit(&repo, 1, at("2019-12-31T23:59:59Z")));
        assert!(clock.admit(&repo, 1, at("2020-01-01T00:00:00Z")));
        assert_eq!(parse_time("yesterday"), None);
    }
}
