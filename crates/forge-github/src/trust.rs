//! Whether a pull request's code may run without a Builder's approval (issue 17), from what
//! GitHub says of it: a head in another repository than the base (a fork; a deleted fork has no
//! head repository) or an author who is not the owner, a member or a collaborator
//! (`author_association`) makes it untrusted. The verdict is the file `pr/<n>/trust`
//! (`datakit_ci_term::PrTrust`): `trusted: <reason>`, `fork: <reason>` or `outsider: <reason>`.
//!
//! GitHub reports a member whose organisation membership is private as `CONTRIBUTOR` to
//! webhooks and to listings made with an App's token: such a member's pull requests wait for
//! approval until the membership is made public.

use datakit_ci_term::metadata::TRUSTED_WORD;

/// What GitHub says of a pull request that decides whether it is trusted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TrustFacts<'a> {
    /// `owner/repo` of the base repository (the one the bridge monitors).
    pub(crate) base_repo: &'a str,
    /// `owner/repo` of the head's repository; `None` when GitHub says `null` (a deleted fork)
    /// or says nothing.
    pub(crate) head_repo: Option<&'a str>,
    /// `author_association` (`OWNER`, `MEMBER`, `COLLABORATOR`, `CONTRIBUTOR`, …), if given.
    pub(crate) association: Option<&'a str>,
    /// The author's login (empty if GitHub does not say).
    pub(crate) author: &'a str,
}

/// The associations whose pull requests are trusted: people with write access.
const TRUSTED_ASSOCIATIONS: [&str; 3] = ["OWNER", "MEMBER", "COLLABORATOR"];

/// The `trust` file's line for a pull request with `facts`.
pub(crate) fn classify(facts: &TrustFacts<'_>) -> String {
    let author = if facts.author.is_empty() {
        "an unknown author"
    } else {
        facts.author
    };
    match facts.head_repo {
        None => return "fork: pull request from a fork that was deleted".to_owned(),
        // GitHub's names are case-insensitive.
        Some(head) if !head.eq_ignore_ascii_case(facts.base_repo) => {
            return format!("fork: pull request from a fork ({head})");
        }
        Some(_) => {}
    }
    match facts.association {
        Some(association) if TRUSTED_ASSOCIATIONS.contains(&association) => {
            let role = match association {
                "OWNER" => "the owner",
                "MEMBER" => "a member",
                _ => "a collaborator",
            };
            format!("{TRUSTED_WORD}: pull request by {author}, {role} ({association})")
        }
        Some(association) => {
            format!("outsider: pull request by {author}, who is not a collaborator ({association})")
        }
        None => format!(
            "outsider: pull request by {author}; GitHub did not say whether they are a collaborator"
        ),
    }
}

#[cfg(test)]
mod tests {
    use datakit_ci_term::PrTrust;

    use super::*;

    fn verdict(head_repo: Option<&str>, association: Option<&str>) -> String {
        classify(&TrustFacts {
            base_repo: "me/proj",
            head_repo,
            association,
            author: "alice",
        })
    }

    #[test]
    fn owners_members_and_collaborators_in_the_repository_are_trusted() {
        for (association, role) in [
            ("OWNER", "the owner"),
            ("MEMBER", "a member"),
            ("COLLABORATOR", "a collaborator"),
        ] {
            let line = verdict(Some("me/proj"), Some(association));
            assert_eq!(
                line,
                format!("trusted: pull request by alice, {role} ({association})")
            );
            assert!(matches!(PrTrust::parse(&line), PrTrust::Trusted(_)));
        }
        // The case of a repository's name does not matter to GitHub.
        assert!(verdict(Some("Me/Proj"), Some("MEMBER")).starts_with("trusted: "));
    }

    #[test]
    fn forks_are_untrusted_whoever_opened_them() {
        for association in ["OWNER", "MEMBER", "COLLABORATOR", "NONE"] {
            let line = verdict(Some("alice/proj"), Some(association));
            assert_eq!(line, "fork: pull request from a fork (alice/proj)");
            assert_eq!(
                PrTrust::parse(&line),
                PrTrust::Untrusted("pull request from a fork (alice/proj)".to_owned())
            );
        }
        assert_eq!(
            verdict(None, Some("MEMBER")),
            "fork: pull request from a fork that was deleted"
        );
    }

    #[test]
    fn authors_without_write_access_are_untrusted() {
        for association in [
            "CONTRIBUTOR",
            "FIRST_TIME_CONTRIBUTOR",
            "FIRST_TIMER",
            "NONE",
            "MANNEQUIN",
            "SOMETHING_NEW",
        ] {
            let line = verdict(Some("me/proj"), Some(association));
            assert_eq!(
                line,
                format!(
                    "outsider: pull request by alice, who is not a collaborator ({association})"
                )
            );
            assert!(PrTrust::parse(&line).is_untrusted());
        }
        let line = verdict(Some("me/proj"), None);
        assert!(line.starts_with("outsider: "), "{line}");
        assert!(PrTrust::parse(&line).is_untrusted());
    }
}
