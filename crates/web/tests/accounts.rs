//! Accounts over real HTTP with CSRF (issue 20): the password rule, changing one's own password on
//! the profile page, and the admin's user management; sessions of a changed or removed account end.

mod common;

use common::{Dirs, Running, client, csrf_token, http_config, log_in, state_builder, write_users};
use datakit_ci_log::LogManager;
use datakit_ci_web::{Acl, PASSWORD_FILE};
use reqwest::header;

const ADMIN_PASSWORD: &str = "admin-password-1";

async fn server(dirs: &Dirs, users: &[(&str, &str)]) -> anyhow::Result<Running> {
    write_users(&dirs.secrets(), users)?;
    let config = http_config(dirs)?.can_read(Acl::everyone());
    let state = state_builder(dirs.store()?, LogManager::new(), config).build()?;
    Running::start(state).await
}

/// The CSRF token of the page at `path`, as `client` sees it.
async fn page_token(
    client: &reqwest::Client,
    server: &Running,
    path: &str,
) -> anyhow::Result<String> {
    let page = client.get(server.url(path)).send().await?.text().await?;
    csrf_token(&page)
}

async fn post(
    client: &reqwest::Client,
    server: &Running,
    path: &str,
    token: &str,
    fields: &[(&str, &str)],
) -> anyhow::Result<reqwest::Response> {
    let mut form = vec![("CSRFToken", token)];
    form.extend_from_slice(fields);
    Ok(client.post(server.url(path)).form(&form).send().await?)
}

/// Whether `client` is logged in as `user` (the navbar names them).
async fn logged_in_as(
    client: &reqwest::Client,
    server: &Running,
    user: &str,
) -> anyhow::Result<bool> {
    let page = client.get(server.url("/user/profile")).send().await?;
    if page.status() != 200 {
        return Ok(false);
    }
    let page = page.text().await?;
    Ok(page.contains(&format!("<strong class=\"user\">{user}</strong>")))
}

#[tokio::test]
async fn a_user_changes_their_own_password_and_their_other_sessions_end() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    let server = server(
        &dirs,
        &[("admin", ADMIN_PASSWORD), ("alice", "old-password-1")],
    )
    .await?;
    let laptop = client()?;
    let phone = client()?;
    assert_eq!(
        log_in(&laptop, &server, "alice", "old-password-1")
            .await?
            .status(),
        303
    );
    assert_eq!(
        log_in(&phone, &server, "alice", "old-password-1")
            .await?
            .status(),
        303
    );

    let profile = laptop
        .get(server.url("/user/profile"))
        .send()
        .await?
        .text()
        .await?;
    assert!(profile.contains("At least 12 characters."), "{profile}");
    let token = csrf_token(&profile)?;
    let change = |current: &'static str, new: &'static str, confirm: &'static str| {
        let (laptop, server, token) = (&laptop, &server, token.clone());
        async move {
            post(
                laptop,
                server,
                "/user/profile/password",
                &token,
                &[
                    ("current", current),
                    ("password", new),
                    ("password2", confirm),
                ],
            )
            .await
        }
    };

    // Refused: a wrong current password, a short new one, a mismatched confirmation. The
    // password file is unchanged by each.
    let file_before = std::fs::read(dirs.secrets().join(PASSWORD_FILE))?;
    for (current, new, confirm, message) in [
        (
            "wrong-password",
            "new-password-1",
            "new-password-1",
            "Incorrect current password",
        ),
        (
            "old-password-1",
            "short",
            "short",
            "Must be at least 12 characters",
        ),
        (
            "old-password-1",
            "new-password-1",
            "new-password-2",
            "The new passwords don",
        ),
    ] {
        let response = change(current, new, confirm).await?;
        assert_eq!(response.status(), 400, "{message}");
        let page = response.text().await?;
        assert!(page.contains(message), "{message}: {page}");
        assert!(
            !page.contains(new) || new == "short",
            "a password was echoed: {page}"
        );
    }
    assert_eq!(
        std::fs::read(dirs.secrets().join(PASSWORD_FILE))?,
        file_before
    );

    // Accepted: this session goes on, the other one is logged out.
    let response = change("old-password-1", "new-password-1", "new-password-1").await?;
    assert_eq!(response.status(), 200);
    assert!(response.text().await?.contains("Password changed."));
    assert!(logged_in_as(&laptop, &server, "alice").await?);
    assert!(!logged_in_as(&phone, &server, "alice").await?);

    // Only the new password logs in now.
    let fresh = client()?;
    assert_eq!(
        log_in(&fresh, &server, "alice", "old-password-1")
            .await?
            .status(),
        400
    );
    assert_eq!(
        log_in(&fresh, &server, "alice", "new-password-1")
            .await?
            .status(),
        303
    );
    server.stop().await
}

#[tokio::test]
async fn the_admin_adds_resets_and_removes_users() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    let server = server(
        &dirs,
        &[("admin", ADMIN_PASSWORD), ("bob", "bobs-password-1")],
    )
    .await?;
    let admin = client()?;
    let bob = client()?;
    assert_eq!(
        log_in(&admin, &server, "admin", ADMIN_PASSWORD)
            .await?
            .status(),
        303
    );
    assert_eq!(
        log_in(&bob, &server, "bob", "bobs-password-1")
            .await?
            .status(),
        303
    );

    // Only the admin sees the users page.
    assert_eq!(
        bob.get(server.url("/settings/users"))
            .send()
            .await?
            .status(),
        403
    );
    let bob_token = page_token(&bob, &server, "/user/profile").await?;
    let response = post(
        &bob,
        &server,
        "/settings/users",
        &bob_token,
        &[("name", "mallory"), ("password", "mallorys-password")],
    )
    .await?;
    assert_eq!(response.status(), 403);

    let page = admin
        .get(server.url("/settings/users"))
        .send()
        .await?
        .text()
        .await?;
    assert!(page.contains("<td class=\"user\">bob</td>"), "{page}");
    assert!(page.contains("At least 12 characters."), "{page}");
    let token = csrf_token(&page)?;

    // Adding: a bad name, a short password and an existing name are refused.
    for (name, password, message) in [
        ("carol:x", "carols-password", "Names are 1 to 64 letters"),
        ("carol", "short", "Must be at least 12 characters"),
        (
            "bob",
            "another-password",
            "A user with that name exists already",
        ),
    ] {
        let response = post(
            &admin,
            &server,
            "/settings/users",
            &token,
            &[("name", name), ("password", password)],
        )
        .await?;
        assert_eq!(response.status(), 400, "{name}");
        assert!(response.text().await?.contains(message), "{message}");
    }
    // Without the CSRF token, nothing happens.
    let response = admin
        .post(server.url("/settings/users"))
        .form(&[("name", "carol"), ("password", "carols-password")])
        .send()
        .await?;
    assert_eq!(response.status(), 403);

    let response = post(
        &admin,
        &server,
        "/settings/users",
        &token,
        &[("name", "carol"), ("password", "carols-password")],
    )
    .await?;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()[header::LOCATION], "/settings/users");
    let carol = client()?;
    assert_eq!(
        log_in(&carol, &server, "carol", "carols-password")
            .await?
            .status(),
        303
    );

    // Resetting bob's password logs bob out; the new password works.
    let response = post(
        &admin,
        &server,
        "/settings/users/bob/password",
        &token,
        &[("password", "bobs-new-password")],
    )
    .await?;
    assert_eq!(response.status(), 303);
    assert!(!logged_in_as(&bob, &server, "bob").await?);
    assert_eq!(
        log_in(&bob, &server, "bob", "bobs-new-password")
            .await?
            .status(),
        303
    );
    let response = post(
        &admin,
        &server,
        "/settings/users/nobody/password",
        &token,
        &[("password", "some-password-1")],
    )
    .await?;
    assert_eq!(response.status(), 400);

    // Removing carol ends her session and her logins; the admin cannot be removed.
    let response = post(&admin, &server, "/settings/users/carol/remove", &token, &[]).await?;
    assert_eq!(response.status(), 303);
    assert!(!logged_in_as(&carol, &server, "carol").await?);
    assert_eq!(
        log_in(&carol, &server, "carol", "carols-password")
            .await?
            .status(),
        400
    );
    let response = post(&admin, &server, "/settings/users/admin/remove", &token, &[]).await?;
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await?
            .contains("The admin account cannot be removed")
    );
    assert!(logged_in_as(&admin, &server, "admin").await?);

    // The file holds exactly admin and bob, and survives a restart.
    let text = std::fs::read_to_string(dirs.secrets().join(PASSWORD_FILE))?;
    let names: Vec<&str> = text
        .lines()
        .filter_map(|line| line.split(':').next())
        .collect();
    assert_eq!(names, ["admin", "bob"]);
    assert!(!text.contains("bobs-new-password"));
    server.stop().await
}

#[tokio::test]
async fn guessing_the_current_password_is_rate_limited() -> anyhow::Result<()> {
    let dirs = Dirs::new()?;
    let server = server(
        &dirs,
        &[("admin", ADMIN_PASSWORD), ("dave", "daves-password-1")],
    )
    .await?;
    let dave = client()?;
    assert_eq!(
        log_in(&dave, &server, "dave", "daves-password-1")
            .await?
            .status(),
        303
    );
    let token = page_token(&dave, &server, "/user/profile").await?;
    let mut statuses = Vec::new();
    for guess in 0..(datakit_ci_web::LOGIN_BURST + 2) {
        let guess = format!("guess-number-{guess}");
        let response = post(
            &dave,
            &server,
            "/user/profile/password",
            &token,
            &[
                ("current", &guess),
                ("password", "new-password-1"),
                ("password2", "new-password-1"),
            ],
        )
        .await?;
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(
        statuses.iter().take(3).all(|status| *status == 400),
        "{statuses:?}"
    );
    server.stop().await
}
