//! Access-control lists and roles (spec §2.9): who may read, who may build.
//!
//! Knows nothing of HTTP or sessions: it decides from a user name and the attributes recorded at
//! login ([`UserAttrs`]).

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// An access-control list: a rule deciding whether a user is allowed.
///
/// Build one with [`Acl::everyone`], [`Acl::username`], [`Acl::github_org`],
/// [`Acl::can_read_github`] and [`Acl::any`], or parse the command-line syntax:
///
/// ```
/// use datakit_ci_web::Acl;
///
/// let acl: Acl = "user:alice,github-org:acme".parse()?;
/// assert_eq!(acl, Acl::any([Acl::username("alice"), Acl::github_org("acme")]));
/// assert_eq!(acl.to_string(), "user:alice,github-org:acme");
/// assert!("user:".parse::<Acl>().is_err());
/// # Ok::<(), datakit_ci_web::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl(Rule);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    Everyone,
    Username(String),
    GithubOrg(String),
    CanReadGithub(String),
    Any(Vec<Acl>),
}

/// What a user has been granted at login, beyond their name: their public GitHub organisations and,
/// for each repository named by a `can-read-github` rule, whether they can read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserAttrs {
    /// The user's public GitHub organisations.
    pub github_orgs: Vec<String>,
    /// For each `owner/repo` checked at login, whether the user can read it.
    pub can_read_github: Vec<(String, bool)>,
}

/// The outcome of checking an [`Acl`] or a [`Role`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Yes,
    /// Not allowed.
    No,
    /// Cannot decide: the policy changed since the user logged in (a GitHub user and a repository
    /// not checked at login); the user must log out and in again.
    LogoutNeeded,
}

impl Acl {
    /// Everybody, logged in or not.
    #[must_use]
    pub fn everyone() -> Acl {
        Acl(Rule::Everyone)
    }

    /// The user named `name` (local users by their plain name, GitHub users as `github:<login>`).
    #[must_use]
    pub fn username(name: impl Into<String>) -> Acl {
        Acl(Rule::Username(name.into()))
    }

    /// Members of the GitHub organisation `org` (public memberships, captured at login).
    #[must_use]
    pub fn github_org(org: impl Into<String>) -> Acl {
        Acl(Rule::GithubOrg(org.into()))
    }

    /// GitHub users who can read the repository `owner/repo`; fails if `repo` is not `owner/repo`.
    pub fn can_read_github(repo: impl Into<String>) -> Result<Acl, Error> {
        let repo = repo.into();
        match repo.split_once('/') {
            Some((owner, name))
                if is_github_name(owner) && is_github_name(name) && !name.contains('/') =>
            {
                Ok(Acl(Rule::CanReadGithub(repo)))
            }
            _ => Err(Error::InvalidAcl {
                part: format!("can-read-github:{repo}"),
                reason: "expected a repository as owner/repo",
            }),
        }
    }

    /// Allowed if any of `acls` allows (checked left to right; the first "yes" or "logout needed"
    /// wins). `Acl::any([])` allows nobody.
    #[must_use]
    pub fn any(acls: impl IntoIterator<Item = Acl>) -> Acl {
        Acl(Rule::Any(acls.into_iter().collect()))
    }

    /// Checks the user `user` (`None`: anonymous) with the attributes recorded at login.
    pub fn check(&self, user: Option<&str>, attrs: &UserAttrs) -> Decision {
        match &self.0 {
            Rule::Everyone => Decision::Yes,
            Rule::Username(name) => yes_if(user == Some(name.as_str())),
            Rule::GithubOrg(org) => yes_if(attrs.github_orgs.iter().any(|o| o == org)),
            Rule::CanReadGithub(repo) => {
                match attrs.can_read_github.iter().find(|(r, _)| r == repo) {
                    Some((_, allowed)) => yes_if(*allowed),
                    None if user.is_some_and(|u| u.starts_with("github:")) => {
                        Decision::LogoutNeeded
                    }
                    None => Decision::No,
                }
            }
            Rule::Any(acls) => acls
                .iter()
                .map(|acl| acl.check(user, attrs))
                .find(|decision| *decision != Decision::No)
                .unwrap_or(Decision::No),
        }
    }

    /// Whether a rule of this ACL depends on what GitHub says of a user (`github-org` or
    /// `can-read-github`).
    pub fn uses_github(&self) -> bool {
        match &self.0 {
            Rule::GithubOrg(_) | Rule::CanReadGithub(_) => true,
            Rule::Any(acls) => acls.iter().any(Acl::uses_github),
            Rule::Everyone | Rule::Username(_) => false,
        }
    }

    /// Every repository named by a `can-read-github` rule, for checking at GitHub login.
    pub fn github_repos(&self) -> Vec<&str> {
        match &self.0 {
            Rule::CanReadGithub(repo) => vec![repo.as_str()],
            Rule::Any(acls) => acls.iter().flat_map(Acl::github_repos).collect(),
            _ => Vec::new(),
        }
    }
}

fn yes_if(allowed: bool) -> Decision {
    if allowed { Decision::Yes } else { Decision::No }
}

fn is_github_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Parses the command-line syntax: `everyone`, `user:NAME`, `github-org:ORG`,
/// `can-read-github:OWNER/REPO`, or several of these separated by commas (any of them).
impl FromStr for Acl {
    type Err = Error;

    fn from_str(s: &str) -> Result<Acl, Error> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let mut acls = parts
            .iter()
            .map(|part| parse_part(part))
            .collect::<Result<Vec<_>, _>>()?;
        if acls.len() == 1 {
            Ok(acls.remove(0))
        } else {
            Ok(Acl::any(acls))
        }
    }
}

fn parse_part(part: &str) -> Result<Acl, Error> {
    let invalid = |reason| Error::InvalidAcl {
        part: part.to_owned(),
        reason,
    };
    if part == "everyone" {
        return Ok(Acl::everyone());
    }
    let (kind, value) = part.split_once(':').ok_or_else(|| {
        invalid("expected everyone, user:NAME, github-org:ORG or can-read-github:OWNER/REPO")
    })?;
    if value.is_empty() {
        return Err(invalid("empty value"));
    }
    match kind {
        "user" => Ok(Acl::username(value)),
        "github-org" if is_github_name(value) => Ok(Acl::github_org(value)),
        "github-org" => Err(invalid("not a GitHub organisation name")),
        "can-read-github" => {
            Acl::can_read_github(value).map_err(|_| invalid("expected OWNER/REPO"))
        }
        _ => Err(invalid(
            "unknown kind; expected user, github-org or can-read-github",
        )),
    }
}

/// The command-line syntax, which [`FromStr`] parses back.
impl fmt::Display for Acl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Rule::Everyone => f.write_str("everyone"),
            Rule::Username(name) => write!(f, "user:{name}"),
            Rule::GithubOrg(org) => write!(f, "github-org:{org}"),
            Rule::CanReadGithub(repo) => write!(f, "can-read-github:{repo}"),
            Rule::Any(acls) => {
                for (i, acl) in acls.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{acl}")?;
                }
                Ok(())
            }
        }
    }
}

/// What a page requires of its viewer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Allowed by the `can_read` ACL.
    Reader,
    /// Allowed by the `can_build` ACL (rebuild, cancel).
    Builder,
    /// Any logged-in user.
    LoggedIn,
    /// The local `admin` user (never a GitHub user).
    Admin,
}

/// The two ACLs of a web UI, against which [`Role`]s are checked.
#[derive(Clone, Debug)]
pub struct AccessPolicy {
    /// Who may read (role [`Role::Reader`]).
    pub can_read: Acl,
    /// Who may build (role [`Role::Builder`]).
    pub can_build: Acl,
}

impl AccessPolicy {
    /// Checks `role` for `user` (`None`: anonymous, whose attributes are always empty).
    pub fn check(&self, role: Role, user: Option<&str>, attrs: &UserAttrs) -> Decision {
        let empty = UserAttrs::default();
        let attrs = if user.is_some() { attrs } else { &empty };
        match role {
            Role::Reader => self.can_read.check(user, attrs),
            Role::Builder => self.can_build.check(user, attrs),
            Role::LoggedIn => yes_if(user.is_some()),
            Role::Admin => yes_if(user == Some("admin")),
        }
    }

    /// Whether either ACL depends on what GitHub says of a user.
    pub fn uses_github(&self) -> bool {
        self.can_read.uses_github() || self.can_build.uses_github()
    }

    /// The repositories either ACL's `can-read-github` rules name, sorted, each once: what is
    /// asked of GitHub at login and at each re-check.
    pub fn github_repos(&self) -> Vec<String> {
        let mut repos: Vec<String> = self
            .can_read
            .github_repos()
            .into_iter()
            .chain(self.can_build.github_repos())
            .map(str::to_owned)
            .collect();
        repos.sort();
        repos.dedup();
        repos
    }

    /// Checks every role of `roles`; the first one that is not [`Decision::Yes`] decides.
    pub fn check_all(&self, roles: &[Role], user: Option<&str>, attrs: &UserAttrs) -> Decision {
        roles
            .iter()
            .map(|role| self.check(*role, user, attrs))
            .find(|decision| *decision != Decision::Yes)
            .unwrap_or(Decision::Yes)
    }
}

#[cfg(test)]
mod tests;
