//! Tests of ACL parsing and matching against spec §2.9.

use super::*;

fn attrs(orgs: &[&str], repos: &[(&str, bool)]) -> UserAttrs {
    UserAttrs {
        github_orgs: orgs.iter().map(|s| (*s).to_owned()).collect(),
        can_read_github: repos.iter().map(|(r, b)| ((*r).to_owned(), *b)).collect(),
    }
}

#[test]
fn parses_every_form_and_prints_it_back() {
    for text in [
        "everyone",
        "user:alice",
        "github-org:acme",
        "can-read-github:owner/repo",
        "user:alice,github-org:acme,can-read-github:a/b",
    ] {
        let acl: Acl = text.parse().expect(text);
        assert_eq!(acl.to_string(), text);
    }
    assert_eq!(
        "user:alice, everyone".parse::<Acl>().expect("parses"),
        Acl::any([Acl::username("alice"), Acl::everyone()])
    );
}

#[test]
fn errors_name_the_bad_part() {
    let cases = [
        ("user:alice,bogus", "bogus"),
        ("user:", "user:"),
        ("team:x", "team:x"),
        ("can-read-github:norepo", "can-read-github:norepo"),
        ("everyone,github-org:a b", "github-org:a b"),
        ("", ""),
    ];
    for (text, part) in cases {
        match text.parse::<Acl>() {
            Err(Error::InvalidAcl { part: bad, .. }) => assert_eq!(bad, part, "{text}"),
            other => panic!("{text:?} gave {other:?}"),
        }
    }
    let message = "user:alice,bogus"
        .parse::<Acl>()
        .expect_err("invalid")
        .to_string();
    assert!(message.contains("\"bogus\""), "{message}");
}

#[test]
fn matching_follows_the_original() {
    let none = UserAttrs::default();
    assert_eq!(Acl::everyone().check(None, &none), Decision::Yes);
    assert_eq!(
        Acl::username("alice").check(Some("alice"), &none),
        Decision::Yes
    );
    assert_eq!(
        Acl::username("alice").check(Some("bob"), &none),
        Decision::No
    );
    assert_eq!(Acl::username("alice").check(None, &none), Decision::No);
    let org = Acl::github_org("acme");
    assert_eq!(
        org.check(Some("github:x"), &attrs(&["acme"], &[])),
        Decision::Yes
    );
    assert_eq!(
        org.check(Some("github:x"), &attrs(&["other"], &[])),
        Decision::No
    );

    let repo = Acl::can_read_github("o/r").expect("valid");
    assert_eq!(
        repo.check(Some("github:x"), &attrs(&[], &[("o/r", true)])),
        Decision::Yes
    );
    assert_eq!(
        repo.check(Some("github:x"), &attrs(&[], &[("o/r", false)])),
        Decision::No
    );
    assert_eq!(repo.check(Some("github:x"), &none), Decision::LogoutNeeded);
    assert_eq!(repo.check(Some("alice"), &none), Decision::No);
    assert_eq!(repo.github_repos(), vec!["o/r"]);

    // `any`: left to right, the first yes or error wins.
    let any = Acl::any([Acl::username("alice"), repo.clone(), Acl::everyone()]);
    assert_eq!(any.check(Some("alice"), &none), Decision::Yes);
    assert_eq!(any.check(Some("github:x"), &none), Decision::LogoutNeeded);
    assert_eq!(any.check(None, &none), Decision::Yes);
    assert_eq!(Acl::any([]).check(Some("admin"), &none), Decision::No);
}

#[test]
fn roles() {
    let policy = AccessPolicy {
        can_read: Acl::everyone(),
        can_build: Acl::github_org("acme"),
    };
    let acme = attrs(&["acme"], &[]);
    assert_eq!(policy.check(Role::Reader, None, &acme), Decision::Yes);
    // Anonymous users are checked with empty attributes.
    assert_eq!(policy.check(Role::Builder, None, &acme), Decision::No);
    assert_eq!(
        policy.check(Role::Builder, Some("github:x"), &acme),
        Decision::Yes
    );
    assert_eq!(policy.check(Role::LoggedIn, None, &acme), Decision::No);
    assert_eq!(
        policy.check(Role::LoggedIn, Some("bob"), &acme),
        Decision::Yes
    );
    assert_eq!(
        policy.check(Role::Admin, Some("admin"), &acme),
        Decision::Yes
    );
    assert_eq!(
        policy.check(Role::Admin, Some("github:admin"), &acme),
        Decision::No
    );
    assert_eq!(
        policy.check_all(&[Role::Reader, Role::Admin], Some("bob"), &acme),
        Decision::No
    );
    assert_eq!(
        policy.check_all(&[Role::Reader, Role::LoggedIn], Some("bob"), &acme),
        Decision::Yes
    );
}
