//! The dashboard's forge-connection lines: a [`ForgeHealth`] the program installs (the binary's
//! is the GitHub bridge's: last webhook, last sync, rate limit left, statuses waiting) says what
//! to show. This crate owns the trait so that it depends on no forge crate.

/// Describes the program's connections to forges, for the dashboard.
pub trait ForgeHealth: Send + Sync + 'static {
    /// One line per connection, e.g. `GitHub: last webhook 3 s ago · last sync 2 min ago`.
    fn lines(&self) -> Vec<String>;
}
