//! Artifacts: files a build keeps for people to download, stored with its result on its cache
//! branch, so that they live as long as the result (retention keeps them, a reused result still
//! offers them) and go when it is built again.
//!
//! The layout (DESIGN §6.1, beside `log`, `failure` and `value/`):
//! - `artifacts/files/<path>` — each file, at its path relative to where the build ran;
//! - `artifacts/index` — one line per file, `<size in bytes> <path>`, sorted by path, so that a
//!   listing with sizes reads one small file rather than every artifact.
//!
//! This module owns that layout; builders write through [`write_artifacts`] and readers (the web
//! UI) use [`read_artifacts`] and [`artifact_path`]. Knows nothing of how artifacts are chosen.

use std::io::Read;

use datakit_ci_store::{Snapshot, StorePath, Transaction};

/// The directory of a cache branch holding its artifacts (removed before each build).
pub const ARTIFACTS_DIR: &str = "artifacts";

/// The index of the artifacts, inside [`ARTIFACTS_DIR`].
const INDEX_FILE: &str = "artifacts/index";

/// The directory of the artifacts' contents, inside [`ARTIFACTS_DIR`].
const FILES_DIR: &str = "artifacts/files";

/// One kept file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// Its path relative to where the build ran, `/`-separated (e.g. `reports/unit.xml`).
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Why artifacts could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
    /// The path cannot be an artifact's (empty, `..`, `.git`, a line break…).
    #[error("invalid artifact path {path:?}")]
    InvalidPath {
        /// The path.
        path: String,
        /// Why the store refuses it.
        #[source]
        source: Option<datakit_ci_store::Error>,
    },
    /// The store could not be read or written.
    #[error("cannot {action} the artifact {path:?} in the store")]
    Store {
        /// `read` or `write`.
        action: &'static str,
        /// The artifact (or `index`).
        path: String,
        /// The store's error.
        #[source]
        source: datakit_ci_store::Error,
    },
    /// An artifact's contents could not be read where the build left them.
    #[error("cannot read the artifact {path:?}")]
    Read {
        /// The artifact.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The index names a file in a form this version cannot read.
    #[error("malformed artifact index line {line:?}")]
    MalformedIndex {
        /// The line.
        line: String,
    },
}

/// The store path of the contents of the artifact `path` (`artifacts/files/<path>`); refuses a
/// path that is not a plain relative path (`..`, `.`, an empty component, `.git`, a line break).
pub fn artifact_path(path: &str) -> Result<StorePath, ArtifactError> {
    let invalid = |source| ArtifactError::InvalidPath {
        path: path.to_owned(),
        source,
    };
    // The index is line-based.
    if path.is_empty() || path.contains(['\n', '\r']) || path.starts_with('/') {
        return Err(invalid(None));
    }
    StorePath::new(format!("{FILES_DIR}/{path}")).map_err(|e| invalid(Some(e)))
}

/// Writes the artifacts of a build into its transaction, replacing any earlier ones: each of
/// `paths`, its contents streamed into the store from the reader `open` gives for it (opened one
/// at a time), and the index. The sizes recorded are the bytes read.
pub fn write_artifacts<R: Read>(
    transaction: &mut Transaction,
    paths: &[String],
    mut open: impl FnMut(&str) -> std::io::Result<R>,
) -> Result<Vec<Artifact>, ArtifactError> {
    clear_artifacts(transaction)?;
    let mut written = Vec::new();
    for path in paths {
        let target = artifact_path(path)?;
        let reader = open(path).map_err(|source| ArtifactError::Read {
            path: path.clone(),
            source,
        })?;
        let mut counting = CountingReader {
            inner: reader,
            count: 0,
        };
        transaction
            .create_file_from_reader(&target, &mut counting)
            .map_err(|source| ArtifactError::Store {
                action: "write",
                path: path.clone(),
                source,
            })?;
        written.push(Artifact {
            path: path.clone(),
            size: counting.count,
        });
    }
    written.sort_by(|a, b| a.path.cmp(&b.path));
    if !written.is_empty() {
        let index = render_index(&written);
        transaction
            .create_file(&index_path(), index)
            .map_err(|source| ArtifactError::Store {
                action: "write",
                path: "index".to_owned(),
                source,
            })?;
    }
    Ok(written)
}

/// Removes the artifacts a transaction's branch holds from an earlier build, if any.
pub fn clear_artifacts(transaction: &mut Transaction) -> Result<(), ArtifactError> {
    let dir = StorePath::new(ARTIFACTS_DIR).expect("a constant valid path");
    let store_error = |source| ArtifactError::Store {
        action: "write",
        path: ARTIFACTS_DIR.to_owned(),
        source,
    };
    if transaction.exists(&dir).map_err(store_error)? {
        transaction.remove(&dir).map_err(store_error)?;
    }
    Ok(())
}

/// The artifacts a cache commit's tree holds, sorted by path (none without an index).
pub fn read_artifacts(tree: &Snapshot) -> Result<Vec<Artifact>, ArtifactError> {
    let index = tree
        .read_file(&index_path())
        .map_err(|source| ArtifactError::Store {
            action: "read",
            path: "index".to_owned(),
            source,
        })?;
    match index {
        None => Ok(Vec::new()),
        Some(bytes) => parse_index(&String::from_utf8_lossy(&bytes)),
    }
}

fn index_path() -> StorePath {
    StorePath::new(INDEX_FILE).expect("a constant valid path")
}

/// `<size> <path>` per line.
fn render_index(artifacts: &[Artifact]) -> String {
    artifacts
        .iter()
        .map(|a| format!("{} {}\n", a.size, a.path))
        .collect()
}

fn parse_index(text: &str) -> Result<Vec<Artifact>, ArtifactError> {
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let malformed = || ArtifactError::MalformedIndex {
                line: line.to_owned(),
            };
            let (size, path) = line.split_once(' ').ok_or_else(malformed)?;
            let size = size.parse().map_err(|_| malformed())?;
            if path.is_empty() {
                return Err(malformed());
            }
            Ok(Artifact {
                path: path.to_owned(),
                size,
            })
        })
        .collect()
}

/// Counts the bytes read through it.
struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_round_trips_and_refuses_what_it_cannot_read() {
        let artifacts = vec![
            Artifact {
                path: "out.txt".into(),
                size: 3,
            },
            Artifact {
                path: "reports/a b.xml".into(),
                size: 0,
            },
        ];
        let text = render_index(&artifacts);
        assert_eq!(text, "3 out.txt\n0 reports/a b.xml\n");
        assert_eq!(parse_index(&text).expect("parses"), artifacts);
        for bad in ["x out", "12", "3 "] {
            assert!(
                matches!(parse_index(bad), Err(ArtifactError::MalformedIndex { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn artifact_paths_stay_inside_the_files_directory() {
        assert_eq!(
            artifact_path("reports/unit.xml")
                .expect("valid")
                .to_string(),
            "artifacts/files/reports/unit.xml"
        );
        for bad in [
            "",
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            ".git/config",
            "a\nb",
            ".",
        ] {
            assert!(artifact_path(bad).is_err(), "{bad:?}");
        }
    }
}
