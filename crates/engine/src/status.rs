//! This CI's commit statuses in the metadata branch (DESIGN §6.1, spec §3.6 step 3): where they
//! live, what they contain, and the links they carry.

use datakit_ci_store::{Snapshot, StorePath, Transaction};
use datakit_ci_term::metadata::MetadataReader;
use datakit_ci_term::{CiState, CommitHash, JobResult, RepoId};

/// The context prefix of this CI's statuses.
const CONTEXT: &str = "ci/datakit";

/// What a status says, as compared between the engine's results and the metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReportedStatus {
    pub(crate) state: &'static str,
    pub(crate) description: String,
}

impl ReportedStatus {
    pub(crate) fn of_result(result: &JobResult) -> Self {
        ReportedStatus {
            state: result.status_word(),
            description: truncate_description(result.description()),
        }
    }
}

/// GitHub limits descriptions to 140 bytes; cut on a character boundary, then trim.
pub(crate) fn truncate_description(description: &str) -> String {
    let mut end = description.len().min(140);
    while !description.is_char_boundary(end) {
        end -= 1;
    }
    description[..end].trim().to_owned()
}

/// Reads the statuses of one commit's jobs, checking first whether this CI reported anything
/// for the commit at all: a new head usually has no status yet, and one lookup through the
/// metadata's `commit/` directory (which has an entry per commit ever reported, so each lookup
/// decodes a big tree) then answers for every job.
pub(crate) struct ReportedStatuses<'a> {
    repo: &'a RepoId,
    commit: &'a CommitHash,
    any: bool,
}

impl<'a> ReportedStatuses<'a> {
    pub(crate) fn read(tree: &Snapshot, repo: &'a RepoId, commit: &'a CommitHash) -> Self {
        let any = StorePath::new(format!("{repo}/commit/{commit}/status/{CONTEXT}"))
            .ok()
            .and_then(|dir| tree.kind(&dir).ok())
            // Unsure (an unreadable tree) means: read each job's status as before.
            .is_none_or(|kind| kind.is_some());
        ReportedStatuses { repo, commit, any }
    }

    /// The status of job `test`, as [`read_reported`].
    pub(crate) fn get(&self, reader: &MetadataReader<'_>, test: &str) -> Option<ReportedStatus> {
        if !self.any {
            return None;
        }
        read_reported(reader, self.repo, self.commit, test)
    }
}

/// The status of job `test` on `commit` as currently recorded in the metadata, if any.
pub(crate) fn read_reported(
    reader: &MetadataReader<'_>,
    repo: &RepoId,
    commit: &CommitHash,
    test: &str,
) -> Option<ReportedStatus> {
    let status = reader
        .status(repo, commit, &format!("{CONTEXT}/{test}"))
        .ok()??;
    let state = match status.state {
        CiState::Success => "success",
        CiState::Pending => "pending",
        CiState::Failure => "failure",
        CiState::Error => "error",
    };
    Some(ReportedStatus {
        state,
        description: status.description.unwrap_or_default(),
    })
}

/// The link of a status: the web UI's URL with its path replaced by the commit page and the
/// test in the query, e.g. `https://ci.example/me/proj/commit/<hash>?test=build`.
pub(crate) fn target_url(web_ui: &str, repo: &RepoId, commit: &CommitHash, test: &str) -> String {
    format!(
        "{}?test={}",
        commit_page_url(web_ui, repo, commit),
        percent_encode(test)
    )
}

/// The page of `commit` of `repo` in the web UI at `web_ui` (whose path, if any, is replaced),
/// e.g. `https://ci.example/me/proj/commit/<hash>`: what statuses and notifications link to.
///
/// ```
/// let url = datakit_ci_engine::commit_page_url(
///     "https://ci.example/some/path",
///     &"me/proj".parse().unwrap(),
///     &"a".repeat(40).parse().unwrap(),
/// );
/// assert_eq!(url, format!("https://ci.example/me/proj/commit/{}", "a".repeat(40)));
/// ```
pub fn commit_page_url(web_ui: &str, repo: &RepoId, commit: &CommitHash) -> String {
    let origin = match web_ui.find("://") {
        Some(scheme_end) => match web_ui[scheme_end + 3..].find('/') {
            Some(path_start) => &web_ui[..scheme_end + 3 + path_start],
            None => web_ui,
        },
        None => web_ui.trim_end_matches('/'),
    };
    format!("{origin}/{repo}/commit/{commit}")
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Writes the status of `test` on `commit` into `transaction` (files `state`, `description`,
/// `target_url`, each ending with a newline); returns the paths written.
pub(crate) fn write_status(
    transaction: &mut Transaction,
    repo: &RepoId,
    commit: &CommitHash,
    test: &str,
    status: &ReportedStatus,
    url: &str,
) -> Result<[StorePath; 3], datakit_ci_store::Error> {
    let dir = format!("{repo}/commit/{commit}/status/{CONTEXT}/{test}");
    let file = |name: &str| StorePath::new(format!("{dir}/{name}"));
    let paths = [file("state")?, file("description")?, file("target_url")?];
    let [state, description, target_url] = &paths;
    transaction.create_file(state, format!("{}\n", status.state))?;
    transaction.create_file(description, format!("{}\n", status.description))?;
    transaction.create_file(target_url, format!("{url}\n"))?;
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_replace_the_path_of_the_web_ui() {
        let repo: RepoId = "user/project".parse().expect("valid");
        let commit: CommitHash = "1234567890123456789012345678901234567890"
            .parse()
            .expect("hex");
        assert_eq!(
            target_url("https://localhost/some/path?x=1", &repo, &commit, "test"),
            "https://localhost/user/project/commit/1234567890123456789012345678901234567890?test=test"
        );
        assert_eq!(
            target_url("http://127.0.0.1:8080", &repo, &commit, "a b"),
            "http://127.0.0.1:8080/user/project/commit/1234567890123456789012345678901234567890?test=a%20b"
        );
    }

    #[test]
    fn descriptions_are_cut_at_140_bytes_on_a_character_boundary() {
        let long = "é".repeat(100);
        let cut = truncate_description(&long);
        assert_eq!(cut.len(), 140);
        assert_eq!(truncate_description("  ok  "), "ok");
    }
}
