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
pub(crate) use passwords::valid_new_user_name;
pub use rate_limit::{BURST as LOGIN_BURST, REFILL as LOGIN_REFILL};

use crate::Error;
use crate::secrets;
pub(crate) use passwords::Users;
use rate_limit::LoginLimiter;

/// The fewest characters a new password may have (issue 20).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The most characters a password may have (hashing is deliberately slow).
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// The rule for new passwords, as forms say it.
pub const PASSWORD_RULE: &str = "At least 12 characters.";

/// What is wrong with `password` as a new password, if anything.
pub(crate) fn password_problem(password: &str) -> Option<&'static str> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        Some("Must be at least 12 characters")
    } else if chars > MAX_PASSWORD_CHARS {
        Some("Must be at most 1024 characters")
    } else {
        None
    }
}

/// Why an account change was refused: each renders as a message on the form.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AccountProblem {
    #[error("Local users are not set up yet")]
    NotConfigured,
    #[error("No such user")]
    UnknownUser,
    #[error("A user with that name exists already")]
    UserExists,
    #[error("Names are 1 to 64 letters, digits, '.', '_' or '-'")]
    BadName,
    #[error("The admin account cannot be removed")]
    CannotRemoveAdmin,
    #[error("Incorrect current password")]
    WrongPassword,
    #[error("{0}")]
    BadPassword(&'static str),
}

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
    /// Serialises changes of the password file, so two concurrent ones cannot lose each other.
    write_lock: tokio::sync::Mutex<()>,
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
                write_lock: tokio::sync::Mutex::new(()),
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
        let _write = self.inner.write_lock.lock().await;
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

    /// The local users' names, sorted (none before the admin password is set).
    pub(crate) fn user_names(&self) -> Vec<String> {
        match &*self.state() {
            State::Configured(users) => users.names().map(str::to_owned).collect(),
            State::Unconfigured(_) => Vec::new(),
        }
    }

    /// The current stamp of local user `name`'s password (see `Users::stamp`); `None` for an
    /// unknown user, and before the admin password is set.
    pub(crate) fn stamp(&self, name: &str) -> Option<String> {
        match &*self.state() {
            State::Configured(users) => users.stamp(name),
            State::Unconfigured(_) => None,
        }
    }

    /// Changes `user`'s own password, given their current one.
    pub(crate) async fn change_password(
        &self,
        user: &str,
        current: &str,
        new: String,
    ) -> Result<Result<(), AccountProblem>, Error> {
        if let Some(problem) = password_problem(&new) {
            return Ok(Err(AccountProblem::BadPassword(problem)));
        }
        if !self.verify(user, current).await? {
            return Ok(Err(AccountProblem::WrongPassword));
        }
        let user = user.to_owned();
        self.update_users(move |users| {
            if !users.contains(&user) {
                return Ok(Err(AccountProblem::UnknownUser));
            }
            users.set_password(&user, &new)?;
            tracing::info!(%user, "password changed");
            Ok(Ok(()))
        })
        .await
    }

    /// Adds a user (`create`) or resets an existing user's password, as the admin does.
    pub(crate) async fn set_password(
        &self,
        user: &str,
        new: String,
        create: bool,
    ) -> Result<Result<(), AccountProblem>, Error> {
        if create && !valid_new_user_name(user) {
            return Ok(Err(AccountProblem::BadName));
        }
        if let Some(problem) = password_problem(&new) {
            return Ok(Err(AccountProblem::BadPassword(problem)));
        }
        let user = user.to_owned();
        self.update_users(move |users| {
            match (create, users.contains(&user)) {
                (true, true) => return Ok(Err(AccountProblem::UserExists)),
                (false, false) => return Ok(Err(AccountProblem::UnknownUser)),
                _ => {}
            }
            users.set_password(&user, &new)?;
            if create {
                tracing::info!(%user, "user added");
            } else {
                tracing::info!(%user, "password reset by the admin");
            }
            Ok(Ok(()))
        })
        .await
    }

    /// Removes a local user (never `admin`); their sessions end with the next request.
    pub(crate) async fn remove_user(
        &self,
        user: &str,
    ) -> Result<Result<(), AccountProblem>, Error> {
        if user == "admin" {
            return Ok(Err(AccountProblem::CannotRemoveAdmin));
        }
        let user = user.to_owned();
        self.update_users(move |users| {
            if !users.remove(&user) {
                return Ok(Err(AccountProblem::UnknownUser));
            }
            tracing::info!(%user, "user removed");
            Ok(Ok(()))
        })
        .await
    }

    /// Applies `change` to a copy of the users (on the blocking pool: hashing is slow), saves the
    /// file if it succeeded, and only then makes the copy current: a failed write changes nothing.
    async fn update_users<F>(&self, change: F) -> Result<Result<(), AccountProblem>, Error>
    where
        F: FnOnce(&mut Users) -> Result<Result<(), AccountProblem>, Error> + Send + 'static,
    {
        let _write = self.inner.write_lock.lock().await;
        let mut users = match &*self.state() {
            State::Configured(users) => users.clone(),
            State::Unconfigured(_) => return Ok(Err(AccountProblem::NotConfigured)),
        };
        let path = self.inner.password_file.clone();
        let (users, outcome) = tokio::task::spawn_blocking(
            move || -> Result<(Users, Result<(), AccountProblem>), Error> {
                let outcome = change(&mut users)?;
                if outcome.is_ok() {
                    users.save(&path)?;
                }
                Ok((users, outcome))
            },
        )
        .await??;
        if outcome.is_ok() {
            *self.state() = State::Configured(users);
        }
        Ok(outcome)
    }

    /// Takes a login attempt for `user` from `addr`; `false` when rate-limited.
    pub(crate) fn allow_login_attempt(&self, user: &str, addr: Option<IpAddr>) -> bool {
        self.inner.limiter.try_acquire(user, addr)
    }
}
