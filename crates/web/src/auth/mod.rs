//! Local authentication state (spec §2.2–2.4): the password file, or, before the admin password is
//! set, the one-time intro token of the first-run setup; and the login rate limiter.
//!
//! Knows nothing of HTTP or sessions; the pages in `pages::auth` drive it.

mod passwords;
mod rate_limit;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use subtle::ConstantTimeEq as _;

pub use passwords::PASSWORD_FILE;
pub use rate_limit::{BURST as LOGIN_BURST, REFILL as LOGIN_REFILL};

use crate::Error;
use crate::secrets;
use passwords::Users;
use rate_limit::LoginLimiter;

/// What the intro link can do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum IntroOutcome {
    /// The token matched (and is now used up).
    LoggedIn,
    /// The admin password is already set.
    AlreadyConfigured,
    /// Wrong or used token.
    BadToken,
}

/// Whether the admin password could be set.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SetupOutcome {
    /// Set and saved.
    Done,
    /// The password file exists already.
    AlreadyConfigured,
}

#[derive(Debug)]
enum State {
    Configured(Users),
    /// No password file yet: `Some(token)` until the intro link is used.
    Unconfigured(Option<String>),
}

/// The local user database and first-run state. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Auth {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    password_file: PathBuf,
    state: Mutex<State>,
    limiter: LoginLimiter,
    setup_lock: tokio::sync::Mutex<()>,
}

impl Auth {
    /// Loads the password file from `secrets_dir`, or generates an intro token if it is missing.
    pub(crate) fn load(secrets_dir: &Path) -> Result<Auth, Error> {
        let password_file = secrets_dir.join(PASSWORD_FILE);
        let state = match Users::load(&password_file)? {
            Some(users) => State::Configured(users),
            None => State::Unconfigured(Some(secrets::random_token(24))),
        };
        Ok(Auth {
            inner: Arc::new(Inner {
                password_file,
                state: Mutex::new(state),
                limiter: LoginLimiter::default(),
                setup_lock: tokio::sync::Mutex::new(()),
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The intro token, while the admin password is not set and the token is unused.
    pub(crate) fn intro_token(&self) -> Option<String> {
        match &*self.state() {
            State::Unconfigured(token) => token.clone(),
            State::Configured(_) => None,
        }
    }

    /// Whether the admin password has been set.
    pub(crate) fn is_configured(&self) -> bool {
        matches!(*self.state(), State::Configured(_))
    }

    /// Uses the intro link's `token` (compared in constant time; usable once).
    pub(crate) fn use_intro_token(&self, token: &str) -> IntroOutcome {
        let mut state = self.state();
        match &mut *state {
            State::Configured(_) => IntroOutcome::AlreadyConfigured,
            State::Unconfigured(slot) => match slot {
                Some(expected) if bool::from(expected.as_bytes().ct_eq(token.as_bytes())) => {
                    *slot = None;
                    IntroOutcome::LoggedIn
                }
                _ => IntroOutcome::BadToken,
            },
        }
    }

    /// Sets the admin password and writes the password file, unless it is already set.
    pub(crate) async fn set_admin_password(&self, password: String) -> Result<SetupOutcome, Error> {
        // Serialises setups, so two concurrent ones cannot both succeed.
        let _setup = self.inner.setup_lock.lock().await;
        if self.is_configured() {
            return Ok(SetupOutcome::AlreadyConfigured);
        }
        let path = self.inner.password_file.clone();
        let users = tokio::task::spawn_blocking(move || -> Result<Users, Error> {
            let mut users = Users::default();
            users.set_password("admin", &password)?;
            users.save(&path)?;
            tracing::info!(path = %path.display(), "admin password set");
            Ok(users)
        })
        .await??;
        *self.state() = State::Configured(users);
        Ok(SetupOutcome::Done)
    }

    /// Checks `user`'s `password` (slow: runs on the blocking pool).
    pub(crate) async fn verify(&self, user: &str, password: &str) -> Result<bool, Error> {
        let users = match &*self.state() {
            State::Configured(users) => users.clone(),
            State::Unconfigured(_) => {
                tracing::info!("local users not configured yet");
                return Ok(false);
            }
        };
        let (user, password) = (user.to_owned(), password.to_owned());
        let ok = tokio::task::spawn_blocking(move || users.verify(&user, &password)).await?;
        Ok(ok)
    }

    /// Takes a login attempt for `user` from `addr`; `false` when rate-limited.
    pub(crate) fn allow_login_attempt(&self, user: &str, addr: Option<IpAddr>) -> bool {
        self.inner.limiter.try_acquire(user, addr)
    }
}
