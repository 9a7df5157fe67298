//! GitHub-derived grants kept fresh (issue 15 item 5): a GitHub user's organisations and
//! repository permissions, read at login, feed the ACLs `github-org:ORG` and
//! `can-read-github:OWNER/REPO`. They are trusted for [`GithubGrantTimes::ttl`]; the first
//! request after that asks GitHub again with the user's OAuth token ([`recheck`]), in the
//! request's path and bounded by [`RECHECK_TIMEOUT`], so a membership GitHub revoked stops
//! granting access within the TTL (plus that timeout). A background refresh was not chosen: it
//! would need a task per session, and the request would still have to wait for it to be sure.
//!
//! - GitHub answers: the grants are replaced and trusted for another TTL.
//! - GitHub refuses the token (`401`): the GitHub login ends ([`Outcome::Ended`]); the viewer is
//!   anonymous again and a protected page sends them to the login page, whose "Log in with
//!   GitHub" comes back to it.
//! - GitHub cannot be reached: the previous grants are kept until `ttl + grace` after they were
//!   read, with a warning; then they are dropped (every organisation and repository denied) until
//!   GitHub answers again. Either way GitHub is not asked again before [`retry_delay`], so an
//!   outage does not make every request wait for the timeout.
//!
//! Knows nothing of how sessions store the token and times (`session.rs`) nor of GitHub's API
//! (the program's [`GithubLogin`]). Times are milliseconds since the Unix epoch.

use std::time::{Duration, SystemTime};

use crate::acl::UserAttrs;
use crate::config::GithubGrantTimes;
use crate::github_login::{GithubLogin, GithubToken, RecheckError};

/// The longest a request waits for GitHub's answer before taking it as unreachable.
pub(crate) const RECHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest GitHub is left alone after a failed re-check.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// When grants were read and when GitHub may next be asked, in milliseconds since the epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct GrantClock {
    /// When GitHub last answered with the grants.
    pub(crate) fetched_at: u64,
    /// Not before this time (after a failed re-check); 0 when none failed.
    pub(crate) retry_at: u64,
}

/// What a request does with a session's grants.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Still fresh, or GitHub was asked too recently: use the stored grants as they are.
    Unchanged,
    /// GitHub answered: these grants, read at `now`.
    Renewed(UserAttrs),
    /// GitHub refused the token: the GitHub login ends.
    Ended,
    /// GitHub could not be reached; the stored grants are still within their grace time. Ask
    /// again from `retry_at`.
    Kept { retry_at: u64 },
    /// GitHub could not be reached and the grace time is over: deny every GitHub-derived
    /// grant (these attributes) until it answers; ask again from `retry_at`.
    Dropped { attrs: UserAttrs, retry_at: u64 },
}

/// Milliseconds since the Unix epoch of `time`.
pub(crate) fn millis(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// How long GitHub is left alone after a failed re-check: the TTL, at most 30 s.
pub(crate) fn retry_delay(times: GithubGrantTimes) -> Duration {
    times.ttl.min(MAX_RETRY_DELAY)
}

/// Whether grants read as `clock` says must be asked for again at `now`.
pub(crate) fn is_due(times: GithubGrantTimes, clock: GrantClock, now: u64) -> bool {
    now >= clock.retry_at && now.saturating_sub(clock.fetched_at) >= as_millis(times.ttl)
}

/// Asks GitHub again, if due, for the grants of the user holding `token` (`repos`: those the
/// ACLs name), and says what to do with the session's `current` grants.
pub(crate) async fn recheck(
    login: &dyn GithubLogin,
    token: GithubToken,
    repos: Vec<String>,
    times: GithubGrantTimes,
    clock: GrantClock,
    current: &UserAttrs,
    now: u64,
) -> Outcome {
    if !is_due(times, clock, now) {
        return Outcome::Unchanged;
    }
    let asked = tokio::time::timeout(RECHECK_TIMEOUT, login.recheck(token, repos)).await;
    let retry_at = now.saturating_add(as_millis(retry_delay(times)));
    let problem = match asked {
        Ok(Ok(attrs)) => return Outcome::Renewed(attrs),
        Ok(Err(RecheckError::Rejected)) => return Outcome::Ended,
        Ok(Err(RecheckError::Unreachable(problem))) => problem,
        Err(_) => format!("no answer within {}", humane(RECHECK_TIMEOUT)),
    };
    let age = now.saturating_sub(clock.fetched_at);
    if age <= as_millis(times.ttl.saturating_add(times.grace)) {
        tracing::warn!(
            %problem,
            age_s = age / 1000,
            "could not re-check a GitHub user's organisations and permissions; keeping the previous ones for the grace time"
        );
        Outcome::Kept { retry_at }
    } else {
        tracing::warn!(
            %problem,
            age_s = age / 1000,
            "could not re-check a GitHub user's organisations and permissions past the grace time; denying them until GitHub answers"
        );
        Outcome::Dropped {
            attrs: denied(current),
            retry_at,
        }
    }
}

/// `attrs` with every GitHub-derived grant taken away: no organisation, no repository readable
/// (the repositories stay listed, so the ACL says "no" rather than "log in again").
pub(crate) fn denied(attrs: &UserAttrs) -> UserAttrs {
    UserAttrs {
        github_orgs: Vec::new(),
        can_read_github: attrs
            .can_read_github
            .iter()
            .map(|(repo, _)| (repo.clone(), false))
            .collect(),
    }
}

fn as_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn humane(duration: Duration) -> String {
    format!("{} s", duration.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    use futures::future::BoxFuture;

    use crate::github_login::{GithubIdentity, OAuthClient};

    const TIMES: GithubGrantTimes = GithubGrantTimes {
        ttl: Duration::from_secs(300),
        grace: Duration::from_secs(900),
    };

    /// A GitHub that answers every re-check the same way.
    struct Answer(fn() -> Result<UserAttrs, RecheckError>);

    impl GithubLogin for Answer {
        fn authorize_url(&self, _: &str, _: &str, _: &str) -> String {
            String::new()
        }

        fn complete(
            &self,
            _: OAuthClient,
            _: String,
            _: String,
            _: Vec<String>,
        ) -> BoxFuture<'static, Result<GithubIdentity, String>> {
            Box::pin(async { Err("not in these tests".to_owned()) })
        }

        fn recheck(
            &self,
            _: GithubToken,
            _: Vec<String>,
        ) -> BoxFuture<'static, Result<UserAttrs, RecheckError>> {
            let answer = (self.0)();
            Box::pin(async move { answer })
        }
    }

    fn granted() -> UserAttrs {
        UserAttrs {
            github_orgs: vec!["acme".to_owned()],
            can_read_github: vec![("me/proj".to_owned(), true)],
        }
    }

    async fn check(answer: Answer, clock: GrantClock, now: u64) -> Outcome {
        recheck(
            &answer,
            GithubToken::new("gho_x"),
            vec!["me/proj".to_owned()],
            TIMES,
            clock,
            &granted(),
            now,
        )
        .await
    }

    fn unreachable() -> Result<UserAttrs, RecheckError> {
        Err(RecheckError::Unreachable("connection refused".to_owned()))
    }

    #[tokio::test]
    async fn grants_are_asked_for_again_after_the_ttl_only() {
        let clock = GrantClock {
            fetched_at: 1_000_000,
            retry_at: 0,
        };
        let renewed = || Ok(UserAttrs::default());
        assert_eq!(
            check(Answer(renewed), clock, 1_000_000 + 299_999).await,
            Outcome::Unchanged
        );
        assert_eq!(
            check(Answer(renewed), clock, 1_000_000 + 300_000).await,
            Outcome::Renewed(UserAttrs::default())
        );
        assert_eq!(
            check(Answer(|| Err(RecheckError::Rejected)), clock, 2_000_000).await,
            Outcome::Ended
        );
    }

    #[tokio::test]
    async fn an_unreachable_github_keeps_grants_for_the_grace_time_then_denies_them() {
        let clock = GrantClock {
            fetched_at: 1_000_000,
            retry_at: 0,
        };
        let within = 1_000_000 + 1_200_000;
        assert_eq!(
            check(Answer(unreachable), clock, within).await,
            Outcome::Kept {
                retry_at: within + 30_000
            }
        );
        let past = within + 1;
        assert_eq!(
            check(Answer(unreachable), clock, past).await,
            Outcome::Dropped {
                attrs: UserAttrs {
                    github_orgs: vec![],
                    can_read_github: vec![("me/proj".to_owned(), false)],
                },
                retry_at: past + 30_000
            }
        );
        // After a failure, GitHub is left alone until the retry time.
        let failed = GrantClock {
            retry_at: past + 30_000,
            ..clock
        };
        assert_eq!(
            check(Answer(unreachable), failed, past + 29_999).await,
            Outcome::Unchanged
        );
        assert!(is_due(TIMES, failed, past + 30_000));
    }

    #[test]
    fn a_tiny_ttl_retries_as_often() {
        let times = GithubGrantTimes {
            ttl: Duration::from_millis(200),
            grace: Duration::ZERO,
        };
        assert_eq!(retry_delay(times), Duration::from_millis(200));
        assert_eq!(retry_delay(TIMES), MAX_RETRY_DELAY);
    }
}
