//! What the pages show of the forges: the dashboard's connection lines ([`ForgeHealth`]: the
//! binary's is the GitHub bridge's last webhook, last sync, rate limit left, statuses waiting)
//! and each target's page on its forge ([`ForgeLinks`]: a PR's or branch's page on GitHub).
//! This crate owns the traits so that it depends on no forge crate.

use datakit_ci_term::TargetId;

/// Describes the program's connections to forges, for the dashboard.
pub trait ForgeHealth: Send + Sync + 'static {
    /// One line per connection, e.g. `GitHub: last webhook 3 s ago · last sync 2 min ago`.
    fn lines(&self) -> Vec<String>;
}

/// A target's page on its forge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForgeLink {
    /// The forge's name, as shown (`GitHub`).
    pub forge: String,
    /// The page, e.g. `https://github.com/me/proj/pull/7`.
    pub url: String,
}

/// Links targets to their pages on their forge.
pub trait ForgeLinks: Send + Sync + 'static {
    /// The forge's page of `target`, if it has one.
    fn target_link(&self, target: &TargetId) -> Option<ForgeLink>;
}
