//! Credentials for fetching from a repository's remote over https ([`RemoteCredentials`]): the
//! program (e.g. the GitHub bridge's installation tokens) says what `Authorization` header git
//! sends. The header reaches git through `GIT_CONFIG_*` variables (`http.extraHeader`), never
//! its command line, so it is not shown in logs or process lists. Knows nothing of forges.

use futures::future::BoxFuture;

/// Gives the `Authorization` header for git's https requests to a remote, asked again before
/// each clone or fetch (tokens expire).
pub trait RemoteCredentials: Send + Sync + 'static {
    /// The header's value (e.g. `Basic <base64>`), or an error message (the fetch then goes on
    /// without credentials, and fails if the remote needs them).
    fn authorization(&self) -> BoxFuture<'static, Result<String, String>>;
}
