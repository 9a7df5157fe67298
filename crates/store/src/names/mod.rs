//! Validated identifiers: branch names, commit and tree ids, paths inside trees, and the `_XX`
//! escaping used to turn arbitrary strings into branch names; and the store's [`Error`], which
//! names them. No I/O here.
//!
//! The bottom layer: it must never know anything of the store above it (objects, trees, refs,
//! transactions). Split so that no file needs another that needs it: `ids` (the types), `error`
//! (the error, naming them), `parse` (making them from input, failing with the error).

mod error;
mod ids;
mod parse;

pub use error::Error;
pub use ids::{BranchName, CommitId, EntryKind, StorePath, TreeId};
pub use parse::{escape, unescape};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_examples_from_the_spec() {
        let branch = format!(
            "status-{}-{}-ref-{}-{}",
            escape("me"),
            escape("my-project"),
            escape("heads"),
            escape("feature/x_y")
        );
        assert_eq!(branch, "status-me-my_2dproject-ref-heads-feature_2fx_5fy");
        assert_eq!(escape("v1.0"), "v1.0");
        assert_eq!(unescape("feature_2fx_5fy").expect("valid"), "feature/x_y");
        assert!(unescape("bad_2").is_err());
        assert!(unescape("bad_zz").is_err());
    }

    #[test]
    fn branch_names() {
        for good in [
            "main",
            "status-me-repo-pr-1",
            "a/b",
            "git-pull-of-abc",
            "x_2d.y",
        ] {
            assert!(BranchName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "", "-x", ".x", "a/.x", "a..b", "a b", "a~", "a^", "a:", "a?", "a*", "a[", "a\\b",
            "a/", "a.", "a.lock", "a.lock/b", "a//b", "@", "a@{b", "HEAD", "a\u{7}",
        ] {
            assert!(BranchName::new(bad).is_err(), "{bad:?}");
        }
        let longest = "x".repeat(BranchName::MAX_COMPONENT_LEN);
        assert!(BranchName::new(longest.as_str()).is_ok());
        assert!(BranchName::new(format!("{longest}/{longest}")).is_ok());
        assert!(BranchName::new(format!("{longest}y")).is_err());
    }

    #[test]
    fn paths() {
        let path = StorePath::new("a/b/c").expect("valid");
        assert_eq!(path.components().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(path.parent(), Some(StorePath::new("a/b").expect("valid")));
        assert_eq!(path.file_name(), Some("c"));
        assert_eq!(
            StorePath::root().join("x/y").expect("valid").to_string(),
            "x/y"
        );
        assert_eq!(StorePath::root().components().count(), 0);
        for bad in [
            "a//b", "/a", "a/", "..", "a/../b", "./a", "a\0b", ".git", "x/.GIT", "git~1",
        ] {
            assert!(StorePath::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn commit_ids() {
        let hex = "0123456789abcdef0123456789abcdef01234567";
        let id: CommitId = hex.parse().expect("valid");
        assert_eq!(id.to_string(), hex);
        assert!("0123".parse::<CommitId>().is_err());
        assert!(
            "g123456789abcdef0123456789abcdef01234567"
                .parse::<CommitId>()
                .is_err()
        );
    }
}
