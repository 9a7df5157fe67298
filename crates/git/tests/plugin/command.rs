//! `Command`: cached runs of argument vectors on commits, their saved logs, failures, rebuilds,
//! timeouts and cancellation.

use std::path::Path;
use std::time::Duration;

use datakit_ci_git::{Command, CommandConfig, Commit, Error, JobEnvironment, Repo};
use datakit_ci_term::{LogLeaf, Logs, Problem, TargetId};

use crate::fixture::{Fixture, branch_target, git, repo_id, value};

fn sh(script: &str) -> Vec<String> {
    vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()]
}

/// How many times the scripts appended to `counter`.
fn runs(counter: &Path) -> usize {
    match std::fs::read_to_string(counter) {
        Ok(text) => text.lines().count(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => panic!("cannot read {counter:?}: {e}"),
    }
}

fn failure<T: std::fmt::Debug>(result: &Result<T, Problem>) -> &str {
    match result {
        Err(Problem::Failure(message)) => message,
        other => panic!("expected a failure, got {other:?}"),
    }
}

async fn main_commit(fx: &Fixture, repo: &Repo) -> anyhow::Result<Commit> {
    value(
        fx.eval(&repo.fetch_head(branch_target("main")))
            .await
            .result,
    )
}

#[tokio::test]
async fn a_successful_command_is_run_once_and_its_log_saved() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    let repo = fx.repo().await?;
    let counter = fx.root.join("counter");
    let script = format!(
        "echo run >> {}; echo \"hello from $PWD\"; cat README",
        counter.display()
    );
    let command = Command::new(
        &repo,
        "hello",
        vec![sh(&script), vec!["true".to_owned()]],
        CommandConfig::default(),
    )?;
    let term = command.run(repo.fetch_head(branch_target("main")));
    let status = fx.eval(&term).await;
    assert_eq!(status.result, Ok(()));
    assert_eq!(runs(&counter), 1);

    let log = fx.saved_log(&status.output).await?;
    assert!(
        log.starts_with(&format!("=== Run hello on commit {}\n", fx.main)),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            r#"Running "sh" "-c" "echo run >> {}"#,
            counter.display()
        )),
        "{log}"
    );
    assert!(log.contains(r#"Running "true""#), "{log}");
    assert!(log.contains("hello from /"), "{log}");
    assert!(
        log.contains("/with_clone"),
        "runs in a temporary clone: {log}"
    );
    assert!(log.contains("one\ntwo\n"), "{log}");
    let commit = main_commit(&fx, &repo).await?;
    assert_eq!(
        command.branch(&commit).as_str(),
        format!("shell-of-hello-on-{}", fx.main)
    );
    assert_eq!(fx.store_commits(command.branch(&commit).as_str()), 1);

    // Evaluating again (another job, too) reuses the result.
    let again = fx.eval(&command.run_on(&commit)).await;
    assert_eq!(again.result, Ok(()));
    let other_job = datakit_ci_term::JobId::new(TargetId::Pr(repo_id(), 1), "other");
    let evaluation = term
        .evaluate_until_settled(other_job, Some(fx.snapshot.clone()))
        .await;
    assert_eq!(evaluation.status.result, Ok(()));
    assert_eq!(runs(&counter), 1);
    Ok(())
}

#[tokio::test]
async fn a_failing_command_fails_once_and_runs_again_after_a_rebuild() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    let repo = fx.repo().await?;
    let counter = fx.root.join("counter");
    let script = format!(
        "echo run >> {}; echo about to fail; exit 3",
        counter.display()
    );
    let command = Command::new(&repo, "fail", vec![sh(&script)], CommandConfig::default())?;
    let term = command.run(repo.fetch_head(branch_target("main")));

    let status = fx.eval(&term).await;
    let expected = format!(r#"command "sh" "-c" "{script}" exited with status 3"#);
    assert_eq!(failure(&status.result), expected);
    assert_eq!(runs(&counter), 1);
    let log = fx.saved_log(&status.output).await?;
    assert!(log.contains("about to fail"), "{log}");
    assert!(log.contains(&format!("Failed: {expected}")), "{log}");

    let again = fx.eval(&term).await;
    assert_eq!(failure(&again.result), expected);
    assert_eq!(runs(&counter), 1, "a recorded failure is not run again");

    // The saved log's rebuild button marks the cache branch for rebuild.
    let trigger = saved(&again.output)
        .request_rebuild()
        .expect("a saved failure is rebuildable");
    trigger.fire().await.map_err(anyhow::Error::msg)?;
    let rebuilt = fx.eval(&term).await;
    assert_eq!(failure(&rebuilt.result), expected);
    assert_eq!(runs(&counter), 2);

    // So does asking the command directly.
    let commit = main_commit(&fx, &repo).await?;
    command.mark_for_rebuild(&commit).await?;
    assert_eq!(failure(&fx.eval(&term).await.result), expected);
    assert_eq!(runs(&counter), 3);
    // One commit per build and one per rebuild request.
    assert_eq!(fx.store_commits(command.branch(&commit).as_str()), 5);
    Ok(())
}

fn saved(logs: &Logs) -> datakit_ci_term::SavedLog {
    logs.leaves()
        .into_iter()
        .filter_map(|leaf| match leaf {
            LogLeaf::Saved(saved) => Some(saved.clone()),
            LogLeaf::Live(_) => None,
        })
        .next_back()
        .expect("a saved log")
}

#[tokio::test]
async fn results_survive_a_restart() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    let counter = fx.root.join("counter");
    let script = format!("echo run >> {}", counter.display());
    let repo = fx.repo().await?;
    let command = Command::new(&repo, "once", vec![sh(&script)], CommandConfig::default())?;
    let status = fx
        .eval(&command.run(repo.fetch_head(branch_target("main"))))
        .await;
    assert_eq!(status.result, Ok(()));
    drop((command, repo));

    let mut services = fx.services.clone();
    services.pools = datakit_ci_pool::Pools::new();
    let repo = Repo::open(&fx.local, None, &services).await?;
    let command = Command::new(&repo, "once", vec![sh(&script)], CommandConfig::default())?;
    let status = fx
        .eval(&command.run(repo.fetch_head(branch_target("main"))))
        .await;
    assert_eq!(status.result, Ok(()));
    assert_eq!(runs(&counter), 1);
    Ok(())
}

#[tokio::test]
async fn a_command_can_run_in_the_checkout() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    let repo = fx.repo().await?;
    let config = CommandConfig {
        clone: false,
        ..CommandConfig::default()
    };
    let command = Command::new(&repo, "pwd", vec![vec!["pwd".to_owned()]], config)?;
    let status = fx
        .eval(&command.run(repo.fetch_head(TargetId::Pr(repo_id(), 1))))
        .await;
    assert_eq!(status.result, Ok(()));
    let log = fx.saved_log(&status.output).await?;
    assert!(
        log.contains(&format!("\n{}\n", fx.local.display())),
        "{log}"
    );
    assert!(
        fx.local.join("pr.txt").exists(),
        "the checkout is at the PR"
    );
    Ok(())
}

#[tokio::test]
async fn a_timeout_kills_the_command() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    let repo = fx.repo().await?;
    let config = CommandConfig {
        timeout: Some(Duration::from_millis(300)),
        ..CommandConfig::default()
    };
    let command = Command::new(
        &repo,
        "slow",
        vec![vec!["sleep".to_owned(), "30".to_owned()]],
        config,
    )?;
    let status = fx
        .eval(&command.run(repo.fetch_head(branch_target("main"))))
        .await;
    assert_eq!(failure(&status.result), "timed out after 300ms");
    let log = fx.saved_log(&status.output).await?;
    assert!(log.contains("Timed out after 300ms"), "{log}");
    Ok(())
}

#[tokio::test]
async fn cancelling_the_build_makes_it_fail() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    let repo = fx.repo().await?;
    let command = Command::new(
        &repo,
        "cancel-me",
        vec![sh("echo started; exec sleep 30")],
        CommandConfig::default(),
    )?;
    let commit = main_commit(&fx, &repo).await?;
    let term = command.run_on(&commit);
    let first = term
        .evaluate(&datakit_ci_term::EvalContext::new(
            fx.job(),
            Some(fx.snapshot.clone()),
        ))
        .await;
    assert!(
        matches!(first.status.result, Err(Problem::Pending { .. })),
        "{:?}",
        first.status.result
    );
    let branch = command.branch(&commit);
    let live = fx
        .services
        .logs
        .get(branch.as_str())
        .expect("the build's live log is active");
    // Wait until the command is running.
    let mut stream = live.stream();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("\nstarted\n") {
        let chunk = stream
            .next_chunk()
            .await?
            .expect("the log stays open while the command runs");
        seen.extend_from_slice(&chunk);
    }
    live.cancel()?;
    let status = fx.eval(&term).await;
    assert_eq!(failure(&status.result), "cancelled");
    let log = fx.saved_log(&status.output).await?;
    assert!(log.contains("Cancelled at user's request"), "{log}");
    Ok(())
}

#[tokio::test]
async fn a_commit_of_another_repository_is_refused() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    let repo = fx.repo().await?;
    let other_dir = fx.root.join("other");
    let remote = fx.origin.to_str().expect("UTF-8 temp path");
    let other = Repo::open(&other_dir, Some(remote), &fx.services).await?;
    let command = Command::new(
        &repo,
        "x",
        vec![vec!["true".to_owned()]],
        CommandConfig::default(),
    )?;
    let status = fx
        .eval(&command.run(other.fetch_head(branch_target("main"))))
        .await;
    assert!(
        failure(&status.result).starts_with(&format!("commit {} is in {other_dir:?}", fx.main)),
        "{:?}",
        status.result
    );
    Ok(())
}

#[tokio::test]
async fn bad_labels_and_empty_commands_are_rejected() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    let repo = fx.repo().await?;
    let error =
        Command::new(&repo, "a/b", vec![], CommandConfig::default()).expect_err("slash in label");
    assert!(matches!(error, Error::InvalidLabel { .. }));
    assert!(
        error
            .to_string()
            .starts_with(r#"invalid command label "a/b": "#),
        "{error}"
    );
    let error = Command::new(
        &repo,
        "ok",
        vec![vec!["true".to_owned()], vec![]],
        CommandConfig::default(),
    )
    .expect_err("empty argv");
    assert_eq!(error.to_string(), r#"command 1 of "ok" has no arguments"#);
    Ok(())
}

/// Issue 14, defect 2: restarting with another command under the same test name runs it, rather
/// than showing the result recorded for the old command; the same command again reuses its
/// result.
#[tokio::test]
async fn issue_14_a_changed_command_is_run_again() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    let repo = fx.repo().await?;
    let head = || repo.fetch_head(branch_target("main"));
    let passing = Command::new(
        &repo,
        "build",
        vec![sh("echo passing")],
        CommandConfig::default(),
    )?;
    assert_eq!(fx.eval(&passing.run(head())).await.result, Ok(()));
    let branch = passing.branch(&main_commit(&fx, &repo).await?);

    // A new program (a restart) with a changed command under the same name.
    let failing = || {
        Command::new(
            &repo,
            "build",
            vec![sh("echo now failing; exit 3")],
            CommandConfig::default(),
        )
    };
    let status = fx.eval(&failing()?.run(head())).await;
    let message = failure(&status.result);
    assert!(message.contains("exited with status 3"), "{message}");
    let commits = fx.store_commits(branch.as_str());

    // The same command again: its recorded result, without running it.
    let status = fx.eval(&failing()?.run(head())).await;
    assert!(failure(&status.result).contains("exited with status 3"));
    assert_eq!(fx.store_commits(branch.as_str()), commits, "not run again");
    Ok(())
}

/// Issue 20: the commands get exactly the documented environment, not the server's, plus what
/// the operator passes on; a passed value is part of the recipe (a new value runs again).
#[tokio::test]
async fn issue_20_commands_get_a_clean_documented_environment() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    let repo = fx.repo().await?;
    let with_extra = |value: &str| CommandConfig {
        environment: JobEnvironment::Clean {
            pass: vec![("EXTRA".to_owned(), value.into())],
        },
        ..CommandConfig::default()
    };
    // A variable of the test process (the server) that must not leak.
    assert!(
        std::env::var_os("CARGO").is_some(),
        "cargo sets CARGO for tests"
    );
    let command = Command::new(&repo, "env", vec![sh("env")], with_extra("one"))?;
    let status = fx
        .eval(&command.run(repo.fetch_head(branch_target("main"))))
        .await;
    assert_eq!(status.result, Ok(()));
    let log = fx.saved_log(&status.output).await?;
    let mut variables: Vec<(&str, &str)> = log
        .lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(name, _)| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        // Set by the shell itself.
        .filter(|(name, _)| !matches!(*name, "PWD" | "SHLVL" | "_" | "OLDPWD"))
        .collect();
    variables.sort_unstable();
    let names: Vec<&str> = variables.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "CI",
            "DATAKIT_CI_BRANCH",
            "DATAKIT_CI_COMMIT",
            "DATAKIT_CI_JOB",
            "DATAKIT_CI_PROCESS",
            "DATAKIT_CI_TARGET",
            "EXTRA",
            "HOME",
            "PATH"
        ],
        "{log}"
    );
    let value = |name: &str| {
        variables
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
    };
    assert_eq!(value("CI").as_deref(), Some("true"));
    assert_eq!(value("DATAKIT_CI_BRANCH").as_deref(), Some("main"));
    assert_eq!(value("DATAKIT_CI_COMMIT"), Some(fx.main.to_string()));
    assert_eq!(value("DATAKIT_CI_JOB").as_deref(), Some("test"));
    assert_eq!(
        value("DATAKIT_CI_TARGET"),
        Some(format!("{}/heads/main", repo_id()))
    );
    assert_eq!(value("EXTRA").as_deref(), Some("one"));
    let home = value("HOME").expect("HOME is set");
    assert_ne!(Some(home.as_str()), std::env::var("HOME").ok().as_deref());

    // Another value of a passed variable is another recipe: run again.
    let command = Command::new(&repo, "env", vec![sh("env")], with_extra("two"))?;
    let status = fx
        .eval(&command.run(repo.fetch_head(branch_target("main"))))
        .await;
    let log = fx.saved_log(&status.output).await?;
    assert!(log.contains("EXTRA=two"), "{log}");
    let branch = command.branch(&main_commit(&fx, &repo).await?);
    let recipe = git(&fx.store_path, &["show", &format!("{branch}:recipe")]);
    assert!(recipe.contains("\nenv EXTRA sha256:"), "{recipe}");
    assert!(
        !recipe.contains("two"),
        "the recipe holds a digest, not the value: {recipe}"
    );
    Ok(())
}
