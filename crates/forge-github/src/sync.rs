//! The full sync: what the REST API says a repository holds (open pull requests, branches, tags,
//! each listing paginated and conditional) as a [`Listing`], and the repository's `clone_url`.
//! Knows nothing of webhooks; the bridge turns a listing into metadata edits.

use serde::Deserialize;

use datakit_ci_term::RepoId;

use crate::Error;
use crate::api::Client;
use crate::metadata::{self, Listing};
use crate::webhook::PullRequest;

/// Items per page: GitHub's maximum, so a sync costs as few requests as possible.
const PER_PAGE: u32 = 100;

#[derive(Deserialize)]
struct NamedCommit {
    name: String,
    commit: Sha,
}

#[derive(Deserialize)]
struct Sha {
    sha: String,
}

/// What the bridge needs of a repository besides its refs.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct RepoInfo {
    /// The URL `git` fetches from.
    pub clone_url: String,
    /// The default branch.
    #[serde(default)]
    pub default_branch: Option<String>,
}

/// `GET /repos/{owner}/{repo}`.
pub(crate) async fn repo_info(client: &Client, repo: &RepoId) -> Result<RepoInfo, Error> {
    client.get(repo, &format!("repos/{repo}")).await
}

/// Lists the open PRs, branches and tags of `repo`. The flag says whether every page was
/// answered `304 Not Modified`.
pub(crate) async fn list(client: &Client, repo: &RepoId) -> Result<(Listing, bool), Error> {
    let (prs, prs_unchanged) = client
        .list::<PullRequest>(
            repo,
            &format!("repos/{repo}/pulls?state=open&per_page={PER_PAGE}"),
        )
        .await?;
    let (branches, branches_unchanged) = client
        .list::<NamedCommit>(repo, &format!("repos/{repo}/branches?per_page={PER_PAGE}"))
        .await?;
    let (tags, tags_unchanged) = client
        .list::<NamedCommit>(repo, &format!("repos/{repo}/tags?per_page={PER_PAGE}"))
        .await?;
    let mut listing = Listing::default();
    for (kind, items) in [("heads", branches), ("tags", tags)] {
        for item in items {
            let name = format!("{kind}/{}", item.name);
            if let Some(metadata::Edit::SetRef { name, head, .. }) =
                metadata::ref_edit(repo, &name, Some(&item.commit.sha))
            {
                listing.refs.insert(name, head);
            }
        }
    }
    for pr in prs {
        let fields = pr.into_fields(&repo.to_string());
        let number = fields.number;
        if let Some(updated_at) = fields.updated_at {
            listing.updated_at.insert(number, updated_at);
        }
        if let Some(files) = metadata::pr_files(repo, fields) {
            listing.open_prs.insert(number, files);
        }
    }
    Ok((
        listing,
        prs_unchanged && branches_unchanged && tags_unchanged,
    ))
}
