//! Validated identifiers of the forge's domain: repositories, refs, targets, jobs and commit hashes.
//!
//! Every name is checked once, here, at the boundary; the rest of the code relies on these types.
//! User and repository names are trimmed and may only contain `[A-Za-z0-9._-]` (spec §0.1). Ref
//! names accept exactly what `git check-ref-format` accepts for a ref below `refs/` (any UTF-8
//! text but control characters, space, `~^:?*[\`, `..` and `@{`; no component starting with `.`
//! or ending with `.lock`; not ending with `.`), untrimmed: escaping them for store branch names
//! and URLs is the job of the layers that use them.

use std::fmt;
use std::str::FromStr;

/// Why a name could not be turned into an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A user, repository or ref component contains a character outside `[A-Za-z0-9._-]`.
    #[error("invalid character {character:?} in {what} {name:?}")]
    InvalidCharacter {
        /// What was being parsed ("user", "repo", "ref component").
        what: &'static str,
        /// The offending name.
        name: String,
        /// The first character that is not allowed.
        character: char,
    },
    /// A ref name breaks one of `git check-ref-format`'s rules.
    #[error("invalid ref name {name:?}: {reason}")]
    InvalidRefName {
        /// The offending name (the components joined by `/`).
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A user, repository or ref component is empty.
    #[error("empty {what} in {input:?}")]
    Empty {
        /// What was being parsed.
        what: &'static str,
        /// The whole input.
        input: String,
    },
    /// A component is `.` or `..`, which would escape the store layout.
    #[error("invalid {what} {name:?}: '.' and '..' are not allowed")]
    DotComponent {
        /// What was being parsed.
        what: &'static str,
        /// The offending name.
        name: String,
    },
    /// A repository id is not of the form `user/repo`.
    #[error("invalid repo ID {0:?}")]
    InvalidRepoId(String),
    /// A commit hash is not 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
    #[error("invalid commit hash {0:?}")]
    InvalidCommitHash(String),
}

fn validate_component(what: &'static str, name: &str, input: &str) -> Result<String, Error> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::Empty {
            what,
            input: input.to_owned(),
        });
    }
    if name == "." || name == ".." {
        return Err(Error::DotComponent {
            what,
            name: name.to_owned(),
        });
    }
    if let Some(character) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(Error::InvalidCharacter {
            what,
            name: name.to_owned(),
            character,
        });
    }
    Ok(name.to_owned())
}

/// A repository on the forge: `user/repo`.
///
/// ```
/// use datakit_ci_term::RepoId;
/// let repo: RepoId = "moby/datakit".parse()?;
/// assert_eq!(repo.user(), "moby");
/// assert_eq!(repo.to_string(), "moby/datakit");
/// assert!("moby/data kit".parse::<RepoId>().is_err());
/// # Ok::<(), datakit_ci_term::IdError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoId {
    user: String,
    repo: String,
}

impl RepoId {
    /// Builds a repository id from its two validated parts.
    pub fn new(user: &str, repo: &str) -> Result<Self, Error> {
        let input = format!("{user}/{repo}");
        Ok(RepoId {
            user: validate_component("user", user, &input)?,
            repo: validate_component("repo", repo, &input)?,
        })
    }

    /// The user or organisation.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The repository name within its user.
    pub fn repo(&self) -> &str {
        &self.repo
    }
}

impl FromStr for RepoId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.split('/').collect::<Vec<_>>().as_slice() {
            [user, repo] => RepoId::new(user, repo).map_err(|_| Error::InvalidRepoId(s.to_owned())),
            _ => Err(Error::InvalidRepoId(s.to_owned())),
        }
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.user, self.repo)
    }
}

/// The name of a Git ref below `refs/`, as a list of components: `heads/main`, `tags/v1.0`,
/// `heads/feature/ü`. Any name `git check-ref-format refs/<name>` accepts is valid, provided it is
/// UTF-8.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefName(Vec<String>);

impl RefName {
    /// Builds a ref name from its components, validating each with `git check-ref-format`'s rules.
    ///
    /// ```
    /// use datakit_ci_term::RefName;
    /// assert!(RefName::new(["heads", "feature", "ü"]).is_ok());
    /// assert!(RefName::new(["heads", "quo\"te<&>#%2F"]).is_ok());
    /// assert!(RefName::new(["heads", "a b"]).is_err());
    /// assert!(RefName::new(["heads", ".hidden"]).is_err());
    /// ```
    pub fn new<I, S>(components: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let components: Vec<String> = components
            .into_iter()
            .map(|c| c.as_ref().to_owned())
            .collect();
        let input = components.join("/");
        if components.is_empty() {
            return Err(Error::Empty {
                what: "ref name",
                input,
            });
        }
        for component in &components {
            check_ref_component(component, &input)?;
        }
        let invalid = |reason| Error::InvalidRefName {
            name: input.clone(),
            reason,
        };
        if input == "@" {
            return Err(invalid("is the single character '@'"));
        }
        if input.ends_with('.') {
            return Err(invalid("ends with '.'"));
        }
        Ok(RefName(components))
    }

    /// Checks one component of a ref name (the text between two `/`) against the rules of
    /// `git check-ref-format` that apply to components: not empty, not starting with `.`, not
    /// ending with `.lock`, and without control characters, space, `~^:?*[\`, `..` or `@{`.
    ///
    /// ```
    /// use datakit_ci_term::RefName;
    /// assert!(RefName::check_component("emoji-🚀").is_ok());
    /// assert!(RefName::check_component("x.lock").is_err());
    /// ```
    pub fn check_component(component: &str) -> Result<(), Error> {
        check_ref_component(component, component)
    }

    /// A branch: `heads/<name>` where `name` may contain `/`.
    pub fn branch(name: &str) -> Result<Self, Error> {
        RefName::new(std::iter::once("heads").chain(name.split('/')))
    }

    /// A tag: `tags/<name>` where `name` may contain `/`.
    pub fn tag(name: &str) -> Result<Self, Error> {
        RefName::new(std::iter::once("tags").chain(name.split('/')))
    }

    /// The components, e.g. `["heads", "main"]`.
    pub fn components(&self) -> &[String] {
        &self.0
    }

    /// Whether this ref is a tag (`tags/…`).
    pub fn is_tag(&self) -> bool {
        self.0.first().is_some_and(|c| c == "tags")
    }
}

impl FromStr for RefName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        RefName::new(s.split('/'))
    }
}

impl fmt::Display for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

/// `git check-ref-format`'s rules for one component of a ref name; `input` is the whole name.
fn check_ref_component(component: &str, input: &str) -> Result<(), Error> {
    let invalid = |reason| Error::InvalidRefName {
        name: input.to_owned(),
        reason,
    };
    if component.is_empty() {
        return Err(Error::Empty {
            what: "ref component",
            input: input.to_owned(),
        });
    }
    if component == "." || component == ".." {
        return Err(Error::DotComponent {
            what: "ref component",
            name: component.to_owned(),
        });
    }
    if component.contains('/') {
        return Err(invalid("has a component containing '/'"));
    }
    if component.starts_with('.') {
        return Err(invalid("has a component starting with '.'"));
    }
    if component.ends_with(".lock") {
        return Err(invalid("has a component ending with '.lock'"));
    }
    if component.contains("..") {
        return Err(invalid("contains '..'"));
    }
    if component.contains("@{") {
        return Err(invalid("contains '@{'"));
    }
    if let Some(character) = component.chars().find(|&c| {
        c.is_ascii_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\')
    }) {
        return Err(Error::InvalidCharacter {
            what: "ref component",
            name: component.to_owned(),
            character,
        });
    }
    Ok(())
}

/// A commit hash in a source repository, as written in the metadata (lowercase hex).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommitHash(String);

impl CommitHash {
    /// The hash as hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first `n` characters, for display.
    pub fn short(&self, n: usize) -> &str {
        &self.0[..n.min(self.0.len())]
    }
}

impl FromStr for CommitHash {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        let hex = s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if hex && (s.len() == 40 || s.len() == 64) {
            Ok(CommitHash(s.to_owned()))
        } else {
            Err(Error::InvalidCommitHash(s.to_owned()))
        }
    }
}

impl fmt::Display for CommitHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the CI tests: a pull request or a ref of a repository.
///
/// Ordering follows the original: refs first (by repo, then name), then PRs (by repo, then number).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetId {
    /// A ref (branch, tag or other) of a repository.
    Ref(RepoId, RefName),
    /// A pull request of a repository.
    Pr(RepoId, u64),
}

impl TargetId {
    /// The repository the target belongs to.
    pub fn repo(&self) -> &RepoId {
        match self {
            TargetId::Ref(repo, _) | TargetId::Pr(repo, _) => repo,
        }
    }
}

/// `user/repo/prs/N` for PRs, `user/repo/<ref name>` for refs (spec §0.2).
impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetId::Pr(repo, n) => write!(f, "{repo}/prs/{n}"),
            TargetId::Ref(repo, name) => write!(f, "{repo}/{name}"),
        }
    }
}

/// One job: a named test applied to a target.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId {
    target: TargetId,
    name: String,
}

impl JobId {
    /// The job `name` of `target`.
    pub fn new(target: TargetId, name: impl Into<String>) -> Self {
        JobId {
            target,
            name: name.into(),
        }
    }

    /// The target the job tests.
    pub fn target(&self) -> &TargetId {
        &self.target
    }

    /// The test's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.target, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_validate_both_parts() {
        assert_eq!(
            "u/r".parse::<RepoId>().map(|r| r.to_string()),
            Ok("u/r".to_owned())
        );
        for bad in ["u", "u/r/x", "u/", "/r", "u/r r", "u/..", "ü/r"] {
            assert_eq!(
                bad.parse::<RepoId>(),
                Err(Error::InvalidRepoId(bad.to_owned())),
                "{bad}"
            );
        }
    }

    #[test]
    fn ref_names_reject_bad_components() {
        assert_eq!(
            RefName::branch("feature/x").map(|r| r.to_string()),
            Ok("heads/feature/x".into())
        );
        assert!(RefName::tag("v1.0").is_ok_and(|t| t.is_tag()));
        let err = RefName::branch("a b").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid character ' ' in ref component "a b""#
        );
        assert!(matches!(RefName::branch("x//y"), Err(Error::Empty { .. })));
        assert!(matches!(
            RefName::branch(".."),
            Err(Error::DotComponent { .. })
        ));
    }

    #[test]
    fn issue_14_every_name_git_accepts_is_a_ref_name() {
        for good in [
            "feature/ü",
            "emoji-🚀",
            "a&q",
            "x<b>",
            "$(id)",
            "quo\"te",
            "weird#hash",
            "pct%2Fenc",
            "x/head",
            "@",
            "a./b",
            "\u{a0}nbsp\u{3000}",
        ] {
            let name = RefName::branch(good).map(|r| r.to_string());
            assert_eq!(name, Ok(format!("heads/{good}")), "{good:?}");
        }
        for bad in [
            "a..b", "a@{b", "x.", ".x", "a/.x", "x.lock", "a~1", "a^", "a:b", "a?", "a*", "a[",
            "a\\b", "a\u{7f}", "a\tb",
        ] {
            assert!(RefName::branch(bad).is_err(), "{bad:?}");
        }
        assert!(RefName::new(["@"]).is_err(), "the single character '@'");
        assert!(
            RefName::new(["heads", "a/b"]).is_err(),
            "a '/' inside a component"
        );
    }

    #[test]
    fn targets_print_and_sort_like_the_original() {
        let repo: RepoId = "user/repo".parse().expect("valid");
        let pr = TargetId::Pr(repo.clone(), 3);
        let main = TargetId::Ref(repo, RefName::branch("master").expect("valid"));
        assert_eq!(pr.to_string(), "user/repo/prs/3");
        assert_eq!(main.to_string(), "user/repo/heads/master");
        assert!(main < pr, "refs sort before PRs");
    }

    #[test]
    fn commit_hashes_are_hex() {
        assert!(
            "0123456789abcdef0123456789abcdef01234567"
                .parse::<CommitHash>()
                .is_ok()
        );
        assert!(
            "0123456789ABCDEF0123456789abcdef01234567"
                .parse::<CommitHash>()
                .is_err()
        );
        assert!("abc".parse::<CommitHash>().is_err());
    }
}
