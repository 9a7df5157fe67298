//! `when`: which targets a job applies to, matched with globset. Knows nothing of YAML.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// The kind of target a pipeline runs for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// The head of a branch, by name (`main`, `release/1.2`).
    Branch(String),
    /// A tag, by name (`v1.2.0`).
    Tag(String),
    /// A pull request.
    PullRequest {
        /// Its number on the forge.
        number: u64,
        /// The branch it is to be merged into.
        base: String,
    },
}

/// Which targets a job applies to. A restriction left out of the file restricts nothing.
#[derive(Debug, Clone, Default)]
pub struct When {
    branches: Option<Patterns>,
    tags: Option<Patterns>,
    pull_requests: Option<bool>,
    paths: Option<Patterns>,
}

// The compiled sets only mirror the pattern texts, so equality is that of the texts.
impl PartialEq for When {
    fn eq(&self, other: &Self) -> bool {
        self.branches() == other.branches()
            && self.tags() == other.tags()
            && self.pull_requests == other.pull_requests
            && self.paths() == other.paths()
    }
}
impl Eq for When {}

impl When {
    /// Whether a job with this `when` applies to `target`, whose changed files are
    /// `changed_paths` (`None`: unknown, which restricts nothing).
    ///
    /// A branch must match one of `branches`, a tag one of `tags`; a pull request applies
    /// when `pull_requests` is true (its branch names are not matched against `branches`).
    /// Then, if `paths` is given and the changed files are known, one of them must match.
    pub fn applies(&self, target: &TargetKind, changed_paths: Option<&[String]>) -> bool {
        let kind_applies = match target {
            TargetKind::Branch(name) => self.branches.as_ref().is_none_or(|p| p.set.is_match(name)),
            TargetKind::Tag(name) => self.tags.as_ref().is_none_or(|p| p.set.is_match(name)),
            TargetKind::PullRequest { .. } => self.pull_requests(),
        };
        kind_applies
            && match (&self.paths, changed_paths) {
                (Some(paths), Some(changed)) => changed.iter().any(|f| paths.set.is_match(f)),
                _ => true,
            }
    }

    /// The branch globs, `None` when every branch applies.
    pub fn branches(&self) -> Option<&[String]> {
        self.branches.as_ref().map(|p| p.texts.as_slice())
    }

    /// The tag globs, `None` when every tag applies.
    pub fn tags(&self) -> Option<&[String]> {
        self.tags.as_ref().map(|p| p.texts.as_slice())
    }

    /// Whether pull requests apply (true unless the file says otherwise).
    pub fn pull_requests(&self) -> bool {
        self.pull_requests.unwrap_or(true)
    }

    /// The globs of changed files, `None` when any change applies.
    pub fn paths(&self) -> Option<&[String]> {
        self.paths.as_ref().map(|p| p.texts.as_slice())
    }

    pub(crate) fn new(
        branches: Option<Patterns>,
        tags: Option<Patterns>,
        pull_requests: Option<bool>,
        paths: Option<Patterns>,
    ) -> Self {
        When {
            branches,
            tags,
            pull_requests,
            paths,
        }
    }
}

/// Glob patterns as written, and compiled.
#[derive(Debug, Clone)]
pub(crate) struct Patterns {
    texts: Vec<String>,
    set: GlobSet,
}

impl Patterns {
    /// Compiles the globs; the error is one message per bad glob, with its index.
    pub(crate) fn new(texts: Vec<String>) -> Result<Self, Vec<(usize, String)>> {
        let mut builder = GlobSetBuilder::new();
        let mut errors = Vec::new();
        for (index, text) in texts.iter().enumerate() {
            match glob(text) {
                Ok(glob) => {
                    builder.add(glob);
                }
                Err(message) => errors.push((index, message)),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let set = builder.build().map_err(|e| vec![(0, e.to_string())])?;
        Ok(Patterns { texts, set })
    }
}

/// One glob as we match them: `*` stays within a directory, `**` crosses directories.
pub(crate) fn glob(text: &str) -> Result<Glob, String> {
    GlobBuilder::new(text)
        .literal_separator(true)
        .build()
        .map_err(|e| e.to_string())
}
