//! Terms reading the forge's view from a real `github-metadata` snapshot in a real store.

use datakit_ci_store::{BranchName, Snapshot, Store, StorePath};
use datakit_ci_term::{
    CiState, EvalContext, JobId, PrState, Problem, RefName, RepoId, Target, TargetId, Term,
};

const HEAD: &str = "1111111111111111111111111111111111111111";
const OTHER: &str = "2222222222222222222222222222222222222222";

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
}

impl Fixture {
    fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("state.git"))?;
        Ok(Fixture { _dir: dir, store })
    }

    /// Commits `files` (path, contents) to `github-metadata` and returns the new snapshot.
    async fn write(&self, files: &[(&str, &str)]) -> anyhow::Result<Snapshot> {
        let branch = self.store.branch(&BranchName::new("github-metadata")?);
        let mut transaction = branch.transaction().await?;
        for (path, contents) in files {
            transaction.create_file(&StorePath::new(*path)?, format!("{contents}\n"))?;
        }
        transaction.commit("test metadata").await?;
        Ok(branch.head().await?.expect("just committed").tree())
    }
}

fn repo() -> RepoId {
    "me/proj".parse().expect("valid")
}

fn main_branch() -> TargetId {
    TargetId::Ref(repo(), RefName::branch("main").expect("valid"))
}

fn job() -> JobId {
    JobId::new(main_branch(), "test")
}

async fn eval<T: Clone + Send + Sync + 'static>(
    term: Term<T>,
    snapshot: &Snapshot,
) -> (Result<T, Problem>, Vec<String>) {
    let evaluation = term
        .evaluate(&EvalContext::new(job(), Some(snapshot.clone())))
        .await;
    let paths = evaluation
        .dependencies
        .paths()
        .iter()
        .map(|p| p.to_string())
        .collect();
    (evaluation.status.result, paths)
}

#[tokio::test]
async fn targets_and_heads_resolve_and_record_their_paths() -> anyhow::Result<()> {
    let fixture = Fixture::new()?;
    let snapshot = fixture
        .write(&[
            ("me/proj/ref/heads/main/head", HEAD),
            ("me/proj/ref/tags/v1.0/head", OTHER),
            ("me/proj/pr/7/head", OTHER),
            ("me/proj/pr/7/state", "open"),
            ("me/proj/pr/7/owner", "alice"),
            ("me/proj/pr/7/title", "Fix things"),
        ])
        .await?;

    let (result, paths) = eval(Term::head(main_branch()), &snapshot).await;
    assert_eq!(result.map(|h| h.to_string()), Ok(HEAD.to_owned()));
    assert_eq!(paths, ["me/proj/ref/heads/main"]);

    let (tag, _) = eval(Term::tag(repo(), "v1.0"), &snapshot).await;
    assert_eq!(tag.map(|h| h.to_string()), Ok(OTHER.to_owned()));

    let (pr, paths) = eval(Term::target(TargetId::Pr(repo(), 7)), &snapshot).await;
    let Ok(Target::Pr(pr)) = pr else {
        panic!("expected a PR, got {pr:?}")
    };
    assert_eq!(
        (
            pr.state,
            pr.title.as_str(),
            pr.owner.as_str(),
            pr.base.as_str()
        ),
        (PrState::Open, "Fix things", "alice", "master")
    );
    assert_eq!(paths, ["me/proj/pr/7"]);

    let (missing, _) = eval(Term::branch_head(repo(), "nope"), &snapshot).await;
    assert_eq!(
        missing,
        Err(Problem::failure("Target me/proj/heads/nope does not exist"))
    );
    let (invalid, _) = eval(Term::branch_head(repo(), "bad name"), &snapshot).await;
    assert_eq!(
        invalid,
        Err(Problem::failure(
            r#"Invalid ref name "bad name": invalid character ' ' in ref component "bad name""#
        ))
    );
    Ok(())
}

#[tokio::test]
async fn other_repositories_can_be_read_too() -> anyhow::Result<()> {
    let fixture = Fixture::new()?;
    let snapshot = fixture
        .write(&[("other/lib/ref/heads/feature/x/head", HEAD)])
        .await?;
    let (head, _) = eval(
        Term::branch_head("other/lib".parse()?, "feature/x"),
        &snapshot,
    )
    .await;
    assert_eq!(head.map(|h| h.to_string()), Ok(HEAD.to_owned()));
    Ok(())
}

#[tokio::test]
async fn ci_success_target_url_follows_the_other_ci() -> anyhow::Result<()> {
    let fixture = Fixture::new()?;
    let status_dir = format!("me/proj/commit/{HEAD}/status/ci/circleci");
    let base = [("me/proj/ref/heads/main/head", HEAD)];
    let url = || Term::ci_success_target_url("ci/circleci", main_branch());

    let snapshot = fixture.write(&base).await?;
    let (result, paths) = eval(url(), &snapshot).await;
    assert_eq!(
        result,
        Err(Problem::pending("Waiting for ci/circleci status to appear"))
    );
    assert_eq!(
        paths,
        [status_dir.clone(), "me/proj/ref/heads/main".to_owned()],
        "sorted"
    );

    let state = format!("{status_dir}/state");
    let description = format!("{status_dir}/description");
    let target_url = format!("{status_dir}/target_url");
    type Case<'a> = (&'a [(&'a str, &'a str)], Result<String, Problem>);
    let cases: [Case<'_>; 5] = [
        (
            &[(&state, "pending"), (&description, "building")],
            Err(Problem::pending(
                "Waiting for ci/circleci to complete (building)",
            )),
        ),
        (
            &[(&state, "failure"), (&description, "tests failed")],
            Err(Problem::failure("ci/circleci failed (tests failed)")),
        ),
        (
            &[(&state, "error"), (&description, "oops")],
            Err(Problem::failure("ci/circleci errored (oops)")),
        ),
        (
            &[(&state, "success"), (&description, "ok")],
            Err(Problem::failure("ci/circleci succeeded, but has no URL!")),
        ),
        (
            &[(&state, "success"), (&target_url, "https://ci.example/1")],
            Ok("https://ci.example/1".to_owned()),
        ),
    ];
    for (files, expected) in cases {
        let snapshot = fixture.write(files).await?;
        assert_eq!(eval(url(), &snapshot).await.0, expected, "{files:?}");
    }
    let snapshot = fixture.write(&[(&state, "weird")]).await?;
    let (state, _) = eval(Term::ci_status("ci/circleci", main_branch()), &snapshot).await;
    assert_eq!(
        state,
        Ok(Some(CiState::Failure)),
        "unknown states read as failure"
    );
    let (url, _) = eval(Term::ci_target_url("ci/circleci", main_branch()), &snapshot).await;
    assert_eq!(url, Ok(Some("https://ci.example/1".to_owned())));
    Ok(())
}

#[tokio::test]
async fn dependencies_say_which_metadata_changes_matter() -> anyhow::Result<()> {
    let fixture = Fixture::new()?;
    let snapshot = fixture
        .write(&[("me/proj/ref/heads/main/head", HEAD)])
        .await?;
    let evaluation = Term::head(main_branch())
        .evaluate(&EvalContext::new(job(), Some(snapshot)))
        .await;
    let deps = evaluation.dependencies;
    assert!(deps.is_affected_by(&StorePath::new("me/proj/ref/heads/main/head")?));
    assert!(!deps.is_affected_by(&StorePath::new("me/proj/ref/heads/mainline/head")?));
    assert!(!deps.is_affected_by(&StorePath::new("me/proj/ref/heads/other/head")?));
    Ok(())
}

#[tokio::test]
async fn the_reader_lists_prs_and_nested_refs_skipping_bad_entries() -> anyhow::Result<()> {
    let fixture = Fixture::new()?;
    let snapshot = fixture
        .write(&[
            ("me/proj/ref/heads/main/head", HEAD),
            ("me/proj/ref/heads/feature/x/head", OTHER),
            ("me/proj/ref/heads/bad name/head", OTHER),
            ("me/proj/pr/3/head", HEAD),
            ("me/proj/pr/3/state", "closed"),
            ("me/proj/pr/3/owner", "bob"),
            ("me/proj/pr/4/head", HEAD),
            ("me/proj/pr/x/head", HEAD),
        ])
        .await?;
    let reader = datakit_ci_term::metadata::MetadataReader::new(&snapshot);
    let refs: Vec<String> = reader
        .refs(&repo())?
        .iter()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(refs, ["heads/feature/x", "heads/main"]);
    let prs: Vec<(u64, PrState)> = reader
        .prs(&repo())?
        .iter()
        .map(|p| (p.number, p.state))
        .collect();
    assert_eq!(
        prs,
        [(3, PrState::Closed)],
        "PR 4 lacks state and owner; 'x' is not a number"
    );
    Ok(())
}
