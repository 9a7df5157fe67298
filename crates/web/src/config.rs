//! The web UI's configuration: [`WebConfig`] and the validated values it is made of
//! ([`ListenAddr`], [`PublicUrl`], [`SessionsBackend`], [`MetricsToken`]).
//!
//! Parsing only: no I/O happens here (the secrets directory is opened by `AppState`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use axum::http::Uri;

use crate::Error;
use crate::acl::{AccessPolicy, Acl};

/// Whether a listener speaks plain HTTP or HTTPS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTPS with the certificate of the secrets directory (generated on first run).
    Https,
}

/// Where the web UI listens: `http://ADDR:PORT` or `https://ADDR:PORT`.
///
/// ```
/// use datakit_ci_web::{ListenAddr, Scheme};
///
/// let addr: ListenAddr = "https://127.0.0.1:8443".parse()?;
/// assert_eq!(addr.scheme(), Scheme::Https);
/// assert_eq!(addr.addr().port(), 8443);
/// assert!("ftp://127.0.0.1:21".parse::<ListenAddr>().is_err());
/// # Ok::<(), datakit_ci_web::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr {
    scheme: Scheme,
    addr: SocketAddr,
}

impl ListenAddr {
    /// A listener on `addr` speaking `scheme`.
    pub fn new(scheme: Scheme, addr: SocketAddr) -> ListenAddr {
        ListenAddr { scheme, addr }
    }

    /// HTTP or HTTPS.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The socket address (port 0 picks a free port; see `WebServer::local_addr`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl FromStr for ListenAddr {
    type Err = Error;

    fn from_str(s: &str) -> Result<ListenAddr, Error> {
        let invalid = |reason| Error::InvalidListenAddr {
            input: s.to_owned(),
            reason,
        };
        let (scheme, rest) = if let Some(rest) = s.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else if let Some(rest) = s.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else {
            return Err(invalid("expected http://ADDR:PORT or https://ADDR:PORT"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let addr = rest
            .parse::<SocketAddr>()
            .map_err(|_| invalid("expected an IP address and a port, such as 0.0.0.0:8443"))?;
        Ok(ListenAddr { scheme, addr })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}", self.addr)
    }
}

/// The public URL of the web UI (`--web-ui`): an absolute `http` or `https` URL. It is used for the
/// first-run setup link and decides the cookies' `Secure` flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicUrl {
    scheme: Scheme,
    /// `scheme://authority`, without a trailing slash.
    origin: String,
    authority: String,
}

impl PublicUrl {
    /// The URL of `path` (which starts with `/`) on this site.
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// Whether the site is served over HTTPS (cookies are then marked `Secure`).
    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::Https
    }

    /// `host[:port]`.
    pub fn authority(&self) -> &str {
        &self.authority
    }
}

impl FromStr for PublicUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<PublicUrl, Error> {
        let invalid = |reason| Error::InvalidPublicUrl {
            input: s.to_owned(),
            reason,
        };
        let uri: Uri = s.parse().map_err(|_| invalid("not a URL"))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            Some(_) => return Err(invalid("unknown scheme; expected http or https")),
            None => return Err(invalid("missing scheme")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| invalid("missing host"))?
            .as_str()
            .to_owned();
        let origin = format!("{}://{authority}", uri.scheme_str().unwrap_or("https"));
        Ok(PublicUrl {
            scheme,
            origin,
            authority,
        })
    }
}

impl fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/", self.origin)
    }
}

/// Where sessions are kept: in memory (lost on restart) or in Redis.
///
/// ```
/// use datakit_ci_web::SessionsBackend;
///
/// assert_eq!("memory://".parse::<SessionsBackend>()?, SessionsBackend::Memory);
/// let redis: SessionsBackend = "redis://127.0.0.1:6380".parse()?;
/// assert_eq!(redis.to_string(), "redis://127.0.0.1:6380");
/// assert!("redis://".parse::<SessionsBackend>().is_ok()); // 127.0.0.1:6379
/// assert!("postgres://db".parse::<SessionsBackend>().is_err());
/// # Ok::<(), datakit_ci_web::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionsBackend {
    /// An in-process table.
    Memory,
    /// A Redis server.
    Redis {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
    },
}

impl FromStr for SessionsBackend {
    type Err = Error;

    fn from_str(s: &str) -> Result<SessionsBackend, Error> {
        let invalid = |reason| Error::InvalidSessionsBackend {
            input: s.to_owned(),
            reason,
        };
        if s == "memory://" || s == "memory:" {
            return Ok(SessionsBackend::Memory);
        }
        let rest = s
            .strip_prefix("redis://")
            .ok_or_else(|| invalid("expected memory:// or redis://host:port"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                let port = port.parse().map_err(|_| invalid("bad port"))?;
                (host, port)
            }
            _ => (rest, 6379),
        };
        let host = if host.is_empty() { "127.0.0.1" } else { host };
        if host.contains(['/', '@', '?', '#']) {
            return Err(invalid("expected redis://host:port"));
        }
        Ok(SessionsBackend::Redis {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for SessionsBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionsBackend::Memory => f.write_str("memory://"),
            SessionsBackend::Redis { host, port } => write!(f, "redis://{host}:{port}"),
        }
    }
}

/// The SHA-256 digest of the bearer token that `/metrics` requires, configured as 64 hex digits
/// (the original took the raw 32-byte digest; hex is easier to put on a command line).
///
/// ```
/// use datakit_ci_web::MetricsToken;
///
/// // printf secret | sha256sum
/// let token: MetricsToken =
///     "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b".parse()?;
/// assert!(token.matches(b"secret"));
/// assert!(!token.matches(b"guess"));
/// # Ok::<(), datakit_ci_web::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct MetricsToken {
    digest: [u8; 32],
}

impl MetricsToken {
    /// The token whose SHA-256 digest is `digest`.
    pub fn from_digest(digest: [u8; 32]) -> MetricsToken {
        MetricsToken { digest }
    }

    /// Whether `token` hashes to the configured digest (compared in constant time).
    pub fn matches(&self, token: &[u8]) -> bool {
        use sha2::Digest;
        use subtle::ConstantTimeEq;
        let digest = sha2::Sha256::digest(token);
        bool::from(digest.as_slice().ct_eq(&self.digest))
    }
}

impl FromStr for MetricsToken {
    type Err = Error;

    fn from_str(s: &str) -> Result<MetricsToken, Error> {
        let invalid = || Error::InvalidMetricsToken {
            input: s.to_owned(),
        };
        let s = s.trim();
        if s.len() != 64 {
            return Err(invalid());
        }
        let mut digest = [0u8; 32];
        for (i, byte) in digest.iter_mut().enumerate() {
            let pair = s.get(2 * i..2 * i + 2).ok_or_else(invalid)?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| invalid())?;
        }
        Ok(MetricsToken { digest })
    }
}

impl fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MetricsToken(..)")
    }
}

/// The configuration of the web UI (the original's `Web.config` plus the command-line options of the
/// web server). Start from [`WebConfig::new`] and chain the setters:
///
/// ```
/// use datakit_ci_web::{Acl, WebConfig};
///
/// let config = WebConfig::new("/var/lib/ci/secrets")
///     .name("my-ci")
///     .public_url("https://ci.example.org/".parse()?)
///     .listen("https://0.0.0.0:8443".parse()?)
///     .can_read(Acl::everyone())
///     .can_build("github-org:acme".parse()?);
/// assert_eq!(config.cookie_name(), "__ci_session-my-ci");
/// # Ok::<(), datakit_ci_web::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct WebConfig {
    name: String,
    public_url: PublicUrl,
    listen: ListenAddr,
    prometheus_listen: Option<SocketAddr>,
    secrets_dir: PathBuf,
    sessions: SessionsBackend,
    access: AccessPolicy,
    metrics_token: Option<MetricsToken>,
    state_repo: Option<String>,
    connections: ConnectionLimits,
    read_only: Option<String>,
    github_grants: GithubGrantTimes,
}

/// How long the GitHub-derived grants of a session (its user's organisations and repository
/// permissions, read with their OAuth token) are trusted before GitHub is asked again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GithubGrantTimes {
    /// After this long, the next request that may need them asks GitHub again (default 5 min).
    pub ttl: Duration,
    /// While GitHub cannot be reached, the previous grants are kept this long past `ttl`
    /// (default 15 min); after that they are dropped until GitHub answers again.
    pub grace: Duration,
}

impl Default for GithubGrantTimes {
    fn default() -> GithubGrantTimes {
        GithubGrantTimes {
            ttl: Duration::from_secs(5 * 60),
            grace: Duration::from_secs(15 * 60),
        }
    }
}

impl WebConfig {
    /// The defaults, with secrets (certificate, password file) in `secrets_dir`: name `datakit-ci`,
    /// public URL `https://127.0.0.1:8443/`, listening on `https://0.0.0.0:8443`, sessions in
    /// memory, only `admin` may read and build, `/metrics` closed (no token), no Prometheus
    /// listener.
    pub fn new(secrets_dir: impl Into<PathBuf>) -> WebConfig {
        WebConfig {
            name: "datakit-ci".to_owned(),
            public_url: PublicUrl {
                scheme: Scheme::Https,
                origin: "https://127.0.0.1:8443".to_owned(),
                authority: "127.0.0.1:8443".to_owned(),
            },
            listen: ListenAddr::new(Scheme::Https, SocketAddr::from(([0, 0, 0, 0], 8443))),
            prometheus_listen: None,
            secrets_dir: secrets_dir.into(),
            sessions: SessionsBackend::Memory,
            access: AccessPolicy {
                can_read: Acl::username("admin"),
                can_build: Acl::username("admin"),
            },
            metrics_token: None,
            state_repo: None,
            connections: ConnectionLimits::default(),
            read_only: None,
            github_grants: GithubGrantTimes::default(),
        }
    }

    /// The CI's name: the navbar brand and the session cookie's suffix.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The public URL of the UI (`--web-ui`).
    #[must_use]
    pub fn public_url(mut self, url: PublicUrl) -> Self {
        self.public_url = url;
        self
    }

    /// Where to listen (`--listen`).
    #[must_use]
    pub fn listen(mut self, addr: ListenAddr) -> Self {
        self.listen = addr;
        self
    }

    /// An extra plain-HTTP listener serving `/metrics` without authentication
    /// (`--listen-prometheus`).
    #[must_use]
    pub fn prometheus_listen(mut self, addr: SocketAddr) -> Self {
        self.prometheus_listen = Some(addr);
        self
    }

    /// Where sessions are kept (`--sessions-backend`).
    #[must_use]
    pub fn sessions(mut self, backend: SessionsBackend) -> Self {
        self.sessions = backend;
        self
    }

    /// Who may read (role `Reader`).
    #[must_use]
    pub fn can_read(mut self, acl: Acl) -> Self {
        self.access.can_read = acl;
        self
    }

    /// Who may rebuild and cancel (role `Builder`).
    #[must_use]
    pub fn can_build(mut self, acl: Acl) -> Self {
        self.access.can_build = acl;
        self
    }

    /// Opens `/metrics` to requests bearing the token with this digest.
    #[must_use]
    pub fn metrics_token(mut self, token: MetricsToken) -> Self {
        self.metrics_token = Some(token);
        self
    }

    /// Serves a replica read-only: every request that would change something (a POST —
    /// rebuild, cancel, approve, log in or out, settings —, the first-run link, GitHub login) is
    /// refused with `403` and `note`, which says where those happen instead.
    #[must_use]
    pub fn read_only(mut self, note: impl Into<String>) -> Self {
        self.read_only = Some(note.into());
        self
    }

    /// The web address of a published copy of the state repository, which log pages link to.
    #[must_use]
    pub fn state_repo(mut self, url: impl Into<String>) -> Self {
        self.state_repo = Some(url.into());
        self
    }

    /// Bounds on the server's connections (`--max-connections`, `--header-read-timeout`).
    #[must_use]
    pub fn connection_limits(mut self, limits: ConnectionLimits) -> Self {
        self.connections = limits;
        self
    }

    /// How long GitHub-derived grants are trusted (`--github-grants-ttl`), and kept while
    /// GitHub is unreachable.
    #[must_use]
    pub fn github_grants(mut self, times: GithubGrantTimes) -> Self {
        self.github_grants = times;
        self
    }

    /// The CI's name.
    pub fn ci_name(&self) -> &str {
        &self.name
    }

    /// The public URL.
    pub fn public(&self) -> &PublicUrl {
        &self.public_url
    }

    /// The main listener's address.
    pub fn listen_addr(&self) -> ListenAddr {
        self.listen
    }

    /// The Prometheus listener's address, if any.
    pub fn prometheus_addr(&self) -> Option<SocketAddr> {
        self.prometheus_listen
    }

    /// The secrets directory.
    pub fn secrets_dir(&self) -> &Path {
        &self.secrets_dir
    }

    /// The sessions backend.
    pub fn sessions_backend(&self) -> &SessionsBackend {
        &self.sessions
    }

    /// The access policy (`can_read`, `can_build`).
    pub fn access(&self) -> &AccessPolicy {
        &self.access
    }

    /// The metrics token, if `/metrics` is open.
    pub fn metrics(&self) -> Option<&MetricsToken> {
        self.metrics_token.as_ref()
    }

    /// Why writes are refused, if the UI is read-only ([`WebConfig::read_only`]).
    pub fn read_only_note(&self) -> Option<&str> {
        self.read_only.as_deref()
    }

    /// The published state repository, if any.
    pub fn state_repo_url(&self) -> Option<&str> {
        self.state_repo.as_deref()
    }

    /// The bounds on the server's connections.
    pub fn connections(&self) -> &ConnectionLimits {
        &self.connections
    }

    /// How long GitHub-derived grants are trusted.
    pub fn github_grant_times(&self) -> GithubGrantTimes {
        self.github_grants
    }

    /// The session cookie's name: `__ci_session-<name>`, characters outside a cookie token replaced
    /// by `_` (the original used `__ci_session:<name>`, but `:` is not allowed in cookie names).
    pub fn cookie_name(&self) -> String {
        let suffix: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("__ci_session-{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        let addr: ListenAddr = "http://0.0.0.0:8080/".parse().expect("valid");
        assert_eq!((addr.scheme(), addr.addr().port()), (Scheme::Http, 8080));
        assert_eq!(addr.to_string(), "http://0.0.0.0:8080");
        let addr: ListenAddr = "https://[::1]:8443".parse().expect("valid");
        assert_eq!(addr.scheme(), Scheme::Https);
        for bad in [
            "8443",
            "https://localhost:8443",
            "http://0.0.0.0",
            "tcp://1.2.3.4:5",
        ] {
            let error = bad.parse::<ListenAddr>().expect_err(bad).to_string();
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn public_urls() {
        let url: PublicUrl = "https://ci.example.org:8443/some/path"
            .parse()
            .expect("valid");
        assert!(url.is_https());
        assert_eq!(
            url.join("/auth/intro/x"),
            "https://ci.example.org:8443/auth/intro/x"
        );
        assert_eq!(url.authority(), "ci.example.org:8443");
        assert!(!"http://ci/".parse::<PublicUrl>().expect("valid").is_https());
        for bad in ["ci.example.org", "ftp://ci/", "/relative"] {
            assert!(bad.parse::<PublicUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn sessions_backends() {
        let parse = |s: &str| s.parse::<SessionsBackend>();
        assert_eq!(
            parse("redis://cache").expect("valid"),
            SessionsBackend::Redis {
                host: "cache".to_owned(),
                port: 6379
            }
        );
        assert_eq!(
            parse("redis://:7000").expect("valid"),
            SessionsBackend::Redis {
                host: "127.0.0.1".to_owned(),
                port: 7000
            }
        );
        for bad in [
            "memory",
            "redis://host:port",
            "redis://user@host",
            "https://x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn metrics_tokens_and_cookie_names() {
        assert!("00".parse::<MetricsToken>().is_err());
        assert!("zz".repeat(32).parse::<MetricsToken>().is_err());
        let config = WebConfig::new("/secrets").name("my ci:1");
        assert_eq!(config.cookie_name(), "__ci_session-my_ci_1");
        assert_eq!(
            WebConfig::new("/s").cookie_name(),
            "__ci_session-datakit-ci"
        );
    }
}

/// Bounds on the web server's connections, so that clients cannot hold the descriptors and tasks
/// the CI needs (issue 20).
///
/// ```
/// use std::time::Duration;
/// use datakit_ci_web::ConnectionLimits;
///
/// let limits = ConnectionLimits {
///     max_connections: Some(256),
///     ..ConnectionLimits::default()
/// };
/// assert_eq!(limits.header_read_timeout, Duration::from_secs(10));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a connection may take to send a request's header, counted from when it is
    /// accepted or its previous response ended: a slow or idle connection is closed after it. The
    /// TLS handshake has as long. Default 10 s.
    pub header_read_timeout: Duration,
    /// How long a request body may pause between two pieces before the request fails. Default 30 s.
    pub body_read_timeout: Duration,
    /// The most connections open at once; further clients wait in the kernel's backlog. `None`
    /// (the default): half the process's file-descriptor limit, leaving the other half to the
    /// engine, its builds and the store.
    pub max_connections: Option<usize>,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: None,
        }
    }
}

impl ConnectionLimits {
    /// The connection bound in effect: the configured one, or half the descriptor limit (at least
    /// 16; 512 if the limit cannot be read).
    pub fn resolved_max_connections(&self) -> usize {
        self.max_connections
            .unwrap_or_else(|| {
                match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
                    Ok((soft, _)) => usize::try_from(soft / 2).unwrap_or(usize::MAX).max(16),
                    Err(_) => 512,
                }
            })
            .max(1)
    }
}
