//! Names of the history in the store (spec §3.7): the status branch of a target and its
//! sub-name (`pr-<n>`, `ref-<x>-<rest>`), both ways. No I/O here.

use datakit_ci_store::{BranchName, escape, unescape};
use datakit_ci_term::{RefName, RepoId, TargetId};

use crate::Error;

/// The status branch holding the history of `target`:
/// `status-<escape(user)>-<escape(repo)>-<sub(target)>` (see [`target_sub`]).
///
/// ```
/// use datakit_ci_history::status_branch;
/// use datakit_ci_term::{RefName, TargetId};
/// let target = TargetId::Ref("me/my-project".parse()?, RefName::branch("feature/x_y")?);
/// assert_eq!(status_branch(&target).as_str(), "status-me-my_2dproject-ref-heads-feature_2fx_5fy");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// **Deviation:** escaping keeps `.`, so a few valid targets would give names Git refuses (a user
/// `a..b`, a tag `v1.` or `x.lock`). For those only, every `.` is escaped too (`_2e`); the name is
/// still unique and [`parse_status_branch`] reads it back.
///
/// **Deviation:** a name longer than [`BranchName::MAX_COMPONENT_LEN`] (250 bytes: a 250-byte
/// branch, or 125 × `a-`, which escapes to three times its length) cannot be a ref file, so it
/// is *shortened*: its first [`SHORTENED_PREFIX_LEN`] bytes, `--`, and the SHA-1 of the whole
/// name in hex (a full name never contains `--`). The branch then holds the full name in a file
/// `target` ([`TARGET_FILE`]), which [`History::status_branch_target`](crate::History::status_branch_target)
/// reads back. Names that fit keep their spelling.
///
/// ```
/// use datakit_ci_history::{is_shortened, status_branch};
/// use datakit_ci_store::BranchName;
/// use datakit_ci_term::{RefName, TargetId};
/// let long = TargetId::Ref("u/r".parse()?, RefName::branch(&"a-".repeat(125))?);
/// let branch = status_branch(&long);
/// assert!(branch.as_str().len() <= BranchName::MAX_COMPONENT_LEN);
/// assert!(is_shortened(branch.as_str()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn status_branch(target: &TargetId) -> BranchName {
    let full = full_status_branch(target);
    let name = if full.len() <= BranchName::MAX_COMPONENT_LEN {
        full
    } else {
        shorten(&full)
    };
    BranchName::new(name)
        .expect("a name of only [A-Za-z0-9._-] starting with a letter, without '..', not ending with '.' or '.lock' and of at most 250 bytes is a valid branch name")
}

/// The bytes of the full name that a shortened status-branch name keeps.
pub const SHORTENED_PREFIX_LEN: usize = 180;

/// The file of a shortened status branch that holds its full name (see [`status_branch`]).
pub const TARGET_FILE: &str = "target";

/// Whether `name` is a shortened status-branch name (see [`status_branch`]): its target is
/// known only from the branch's [`TARGET_FILE`].
pub fn is_shortened(name: &str) -> bool {
    name.starts_with("status-") && name.contains("--")
}

/// The status branch's full name, which [`status_branch`] shortens if it is too long for a file name
/// (`None` if it is not shortened).
pub(crate) fn full_name_if_shortened(target: &TargetId) -> Option<String> {
    let full = full_status_branch(target);
    (full.len() > BranchName::MAX_COMPONENT_LEN).then_some(full)
}

/// The unshortened status-branch name of `target`.
fn full_status_branch(target: &TargetId) -> String {
    let original = branch_name_with(target, escape);
    // Escaped names are made of [A-Za-z0-9._-] only: these are the only rules they can break.
    if original.contains("..") || original.ends_with('.') || original.ends_with(".lock") {
        branch_name_with(target, escape_with_dots)
    } else {
        original
    }
}

/// `<first SHORTENED_PREFIX_LEN bytes>--<SHA-1 of full in hex>`.
fn shorten(full: &str) -> String {
    use sha1::Digest;
    let digest = sha1::Sha1::digest(full.as_bytes());
    let mut name = String::with_capacity(SHORTENED_PREFIX_LEN + 2 + 40);
    // Full names are ASCII, so any byte index is a character boundary.
    name.push_str(&full[..SHORTENED_PREFIX_LEN.min(full.len())]);
    name.push_str("--");
    for byte in digest {
        name.push_str(&format!("{byte:02x}"));
    }
    name
}

/// The target whose full status-branch name is `full` and whose [`status_branch`] is `name`
/// (the contents of a shortened branch's [`TARGET_FILE`], checked against its name).
pub(crate) fn parse_shortened(name: &str, full: &str) -> Result<TargetId, Error> {
    let target = parse_status_branch(full)?;
    let canonical = status_branch(&target);
    if canonical.as_str() != name {
        return Err(Error::InvalidStatusBranch {
            name: name.to_owned(),
            reason: format!(
                "its {TARGET_FILE} file names {full:?}, whose branch is {:?}",
                canonical.as_str()
            ),
        });
    }
    Ok(target)
}

/// The part of a status branch's name (and of a commit-index path) that names the target within its
/// repository: `pr-<n>` for a PR, `ref-<escape(x)>-<escape(rest joined by "/")>` for a ref `x/rest…`
/// (`ref-<escape(x)>-` for a single-component ref).
///
/// ```
/// use datakit_ci_history::target_sub;
/// use datakit_ci_term::{RefName, TargetId};
/// assert_eq!(target_sub(&TargetId::Pr("u/r".parse()?, 3907)), "pr-3907");
/// assert_eq!(target_sub(&TargetId::Ref("u/r".parse()?, RefName::tag("v1.0")?)), "ref-tags-v1.0");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn target_sub(target: &TargetId) -> String {
    sub_with(target, escape)
}

/// The target whose [`status_branch`] is `name`.
///
/// Fails with [`Error::InvalidStatusBranch`] if `name` is not exactly the status branch of a target
/// (including names that decode to a target but are not spelled the way [`status_branch`] spells it,
/// so that each target has one branch), and for a shortened name (see [`status_branch`]), whose
/// target only [`History::status_branch_target`](crate::History::status_branch_target) knows.
/// The full name of a target whose branch is shortened parses.
pub fn parse_status_branch(name: &str) -> Result<TargetId, Error> {
    let invalid = |reason: String| Error::InvalidStatusBranch {
        name: name.to_owned(),
        reason,
    };
    if is_shortened(name) {
        return Err(invalid(format!(
            "a shortened name: its {TARGET_FILE} file names the target"
        )));
    }
    let parts: Vec<&str> = name.split('-').collect();
    let (user, repo, sub) = match parts.as_slice() {
        ["status", user, repo, sub @ ..] if !sub.is_empty() => (*user, *repo, sub),
        ["status", ..] => {
            return Err(invalid(
                "expected status-<user>-<repo>-pr-<n> or status-<user>-<repo>-ref-<x>-<rest>"
                    .to_owned(),
            ));
        }
        _ => return Err(invalid("does not start with \"status-\"".to_owned())),
    };
    let repo = parse_repo(user, repo).map_err(invalid)?;
    let target = parse_sub_parts(repo, sub).map_err(invalid)?;
    let canonical = full_status_branch(&target);
    if canonical != name {
        return Err(invalid(format!(
            "not the canonical name of {target} (which is {canonical:?})"
        )));
    }
    Ok(target)
}

/// The target of `repo` whose [`target_sub`] is `sub`.
///
/// Fails with [`Error::InvalidTargetSub`] if `sub` is not exactly the sub-name of a target.
pub fn parse_target_sub(repo: &RepoId, sub: &str) -> Result<TargetId, Error> {
    let invalid = |reason: String| Error::InvalidTargetSub {
        sub: sub.to_owned(),
        reason,
    };
    let parts: Vec<&str> = sub.split('-').collect();
    let target = parse_sub_parts(repo.clone(), &parts).map_err(invalid)?;
    let canonical = target_sub(&target);
    if canonical != sub {
        return Err(invalid(format!(
            "not the canonical sub-name of {target} (which is {canonical:?})"
        )));
    }
    Ok(target)
}

fn branch_name_with(target: &TargetId, escape: fn(&str) -> String) -> String {
    let repo = target.repo();
    format!(
        "status-{}-{}-{}",
        escape(repo.user()),
        escape(repo.repo()),
        sub_with(target, escape)
    )
}

fn sub_with(target: &TargetId, escape: fn(&str) -> String) -> String {
    match target {
        TargetId::Pr(_, number) => format!("pr-{number}"),
        TargetId::Ref(_, name) => {
            let (first, rest) = name
                .components()
                .split_first()
                .expect("a RefName has at least one component");
            format!("ref-{}-{}", escape(first), escape(&rest.join("/")))
        }
    }
}

/// [`escape`], escaping `.` too.
fn escape_with_dots(s: &str) -> String {
    escape(s).replace('.', "_2e")
}

fn parse_repo(user: &str, repo: &str) -> Result<RepoId, String> {
    let user = unescape(user).map_err(|error| error.to_string())?;
    let repo = unescape(repo).map_err(|error| error.to_string())?;
    RepoId::new(&user, &repo).map_err(|error| error.to_string())
}

/// Parses the `-`-separated parts of a sub-name (no canonical-spelling check).
fn parse_sub_parts(repo: RepoId, parts: &[&str]) -> Result<TargetId, String> {
    match parts {
        ["pr", number] => {
            if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("PR number {number:?} is not a decimal number"));
            }
            let number = number
                .parse()
                .map_err(|_| format!("PR number {number:?} is too large"))?;
            Ok(TargetId::Pr(repo, number))
        }
        ["ref", first, rest] => {
            let first = unescape(first).map_err(|error| error.to_string())?;
            let rest = unescape(rest).map_err(|error| error.to_string())?;
            let mut components = vec![first.as_str()];
            if !rest.is_empty() {
                components.extend(rest.split('/'));
            }
            let name = RefName::new(components).map_err(|error| error.to_string())?;
            Ok(TargetId::Ref(repo, name))
        }
        _ => Err("expected pr-<n> or ref-<x>-<rest>".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_are_escaped_only_when_git_would_refuse_the_name() {
        let repo: RepoId = "a..b/r".parse().expect("valid repo id");
        let target = TargetId::Pr(repo, 1);
        let branch = status_branch(&target);
        assert_eq!(branch.as_str(), "status-a_2e_2eb-r-pr-1");
        assert_eq!(parse_status_branch(branch.as_str()).ok(), Some(target));

        // Ref names Git accepts never end with '.' or '.lock' (issue 14): their dots stay.
        let tag = TargetId::Ref(
            "u/r".parse().expect("valid repo id"),
            RefName::tag("a./v1.0").expect("valid tag"),
        );
        assert_eq!(
            status_branch(&tag).as_str(),
            "status-u-r-ref-tags-a._2fv1.0"
        );
        assert_eq!(
            parse_status_branch(status_branch(&tag).as_str()).ok(),
            Some(tag)
        );
    }
}
