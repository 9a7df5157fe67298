//! "Log in with GitHub" against the fake GitHub: a code becomes the user's login, organisations
//! and read access to the repositories asked about; a bad code is refused with GitHub's reason.

use datakit_ci_forge_github::{OAuthApp, Secret};
use datakit_ci_testkit::github::{FakeGithub, FakeRepo};

#[tokio::test]
async fn a_code_becomes_the_users_login_orgs_and_readable_repositories() -> anyhow::Result<()> {
    let fake = FakeGithub::start();
    fake.set_oauth("client-id", "client-secret", "the-code", "octocat");
    fake.set_repo("me/proj", FakeRepo::default());
    let app = OAuthApp::new("client-id", Secret::new("client-secret"), &fake.url())?;
    let authorize = app.authorize_url("xyz", "https://ci.example/auth/github-callback");
    assert!(
        authorize.starts_with(&format!(
            "{}/login/oauth/authorize?client_id=client-id&",
            fake.url()
        )),
        "{authorize}"
    );
    let repos = ["me/proj".to_owned(), "me/secret".to_owned()];
    let user = app
        .complete(
            "the-code",
            "https://ci.example/auth/github-callback",
            &repos,
        )
        .await?;
    assert_eq!(user.login, "octocat");
    assert_eq!(user.orgs, ["github"], "from the fixture of GET /user/orgs");
    assert_eq!(
        user.can_read,
        [
            ("me/proj".to_owned(), true),
            ("me/secret".to_owned(), false)
        ]
    );
    let requests = fake.requests();
    assert!(
        requests
            .iter()
            .filter(|r| r.path == "/user"
                || r.path == "/user/orgs"
                || r.path.starts_with("/repos/"))
            .all(|r| r.authorization.as_deref() == Some("Bearer gho_octocat")),
        "asked with the user's token: {requests:?}"
    );

    let error = app
        .complete("stolen", "https://ci.example/auth/github-callback", &repos)
        .await
        .expect_err("a bad code");
    assert!(
        error
            .to_string()
            .contains("The code passed is incorrect or expired."),
        "{error}"
    );
    Ok(())
}
