//! `Command`: commands in containers, cached per (image, commit); output, exit status, OOM,
//! cancel, timeout, a dropped run, leftovers, and unreachable daemons.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::ContainerCreateBody;

use datakit_ci_docker::{Command, CommandConfig, HostSpec, Hosts, Image, Instance, labels};

use crate::fixture::{BUSYBOX, Fixture, failure, value};

fn sh(script: &str) -> Vec<String> {
    vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()]
}

fn busybox() -> datakit_ci_term::Term<Image> {
    datakit_ci_term::Term::ok(Image::of_published(BUSYBOX))
}

#[tokio::test]
async fn a_command_runs_in_a_container_with_the_checkout_once_per_commit() -> anyhow::Result<()> {
    let fixture = Fixture::new(&[("README", "hello from the repository\n")]).await?;
    let hosts = fixture.local_hosts(2)?;
    let script = "cat README; echo \"job=$DATAKIT_CI_JOB ci=$CI\"; pwd; test ! -e .git";
    let command = Command::new(
        &hosts,
        "unit",
        sh(script),
        CommandConfig::default(),
        &fixture.services,
    )?;
    let term = command.run(busybox(), fixture.head());
    let status = fixture.eval(&term).await;
    value(status.result)?;
    let (log, commit) = fixture.saved_log(&status.output).await?;
    assert!(log.contains("hello from the repository\n"), "{log}");
    assert!(log.contains("job=test ci=true\n"), "{log}");
    assert!(log.contains("\n/src\n"), "{log}");
    assert!(
        log.contains(&format!("Running \"sh\" \"-c\" {script:?} in container ")),
        "{log}"
    );
    assert_eq!(fixture.containers_created().await?, 1);
    assert_eq!(fixture.containers().await?, Vec::<String>::new());

    // A new cache over the same store (a restarted CI) reuses the recorded result.
    let again = Command::new(
        &hosts,
        "unit",
        sh(script),
        CommandConfig::default(),
        &fixture.services,
    )?;
    let status = fixture.eval(&again.run(busybox(), fixture.head())).await;
    value(status.result)?;
    assert_eq!(fixture.saved_log(&status.output).await?.1, commit);
    assert_eq!(
        fixture.containers_created().await?,
        1,
        "no second container"
    );

    // A new commit is run again.
    fixture.commit(&[("README", "changed\n")], "second").await?;
    let status = fixture.eval(&again.run(busybox(), fixture.head())).await;
    value(status.result)?;
    assert!(
        fixture
            .saved_log(&status.output)
            .await?
            .0
            .contains("changed\n")
    );
    assert_eq!(fixture.containers_created().await?, 2);
    Ok(())
}

#[tokio::test]
async fn a_non_zero_exit_fails_with_the_command_and_status() -> anyhow::Result<()> {
    let fixture = Fixture::new(&[("README", "x\n")]).await?;
    let hosts = fixture.local_hosts(1)?;
    let command = Command::new(
        &hosts,
        "fails",
        sh("echo before; exit 3"),
        CommandConfig::default(),
        &fixture.services,
    )?;
    let status = fixture.eval(&command.run(busybox(), fixture.head())).await;
    assert_eq!(
        failure(status.result)?,
        r#"command "sh" "-c" "echo before; exit 3" exited with status 3"#
    );
    let (log, _) = fixture.saved_log(&status.output).await?;
    assert!(log.contains("before\n"), "{log}");
    assert_eq!(fixture.containers().await?, Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn a_container_over_its_memory_limit_is_reported_as_killed() -> anyhow::Result<()> {
    let fixture = Fixture::new(&[("README", "x\n")]).await?;
    let hosts = fixture.local_hosts(1)?;
    let config = CommandConfig {
        memory: Some(32 << 20),
        ..CommandConfig::default()
    };
    // dd allocates its 200 MiB block at once.
    let command = Command::new(
        &hosts,
        "oom",
        sh("dd if=/dev/zero of=/dev/null bs=200M count=1"),
        config,
        &fixture.services,
    )?;
    let status = fixture.eval(&command.run(busybox(), fixture.head())).await;
    assert_eq!(
        failure(status.result)?,
        "container killed: out of memory (limit 32 MiB)"
    );
    assert_eq!(fixture.containers().await?, Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn output_streams_live_and_a_cancel_removes_the_container() -> anyhow::Result<()> {
    let fixture = Fixture::new(&[("README", "x\n")]).await?;
    let hosts = fixture.local_hosts(1)?;
    let command = Command::new(
        &hosts,
        "slow",
        sh("echo first line; sleep 600; echo never"),
        CommandConfig::default(),
        &fixture.services,
    )?;
    let term = command.run(busybox(), fixture.head());
    let log = loop {
        let status = fixture.eval_once(&term).await;
        if let Some(log) = fixture.live_log(&status.output) {
            break log;
        }
        crate::fixture::still_pending(status.result).await?;
    };
    // The first line arrives while the container still runs (it sleeps for ten minutes).
    let mut reader = log.stream();
    let mut seen = String::new();
    while !seen.contains("first line\n") {
        let chunk = reader
            .next_chunk()
            .await?
            .ok_or_else(|| anyhow::anyhow!("the log ended before the first line: {seen}"))?;
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(!log.is_finished());
    assert_eq!(fixture.containers().await?.len(), 1, "one container runs");

    log.cancel()?;
    let status = fixture.eval(&term).await;
    assert_eq!(failure(status.result)?, "cancelled");
    assert_eq!(fixture.containers().await?, Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn a_timeout_fails_the_step_and_removes_the_container() -> anyhow::Result<()> {
    let fixture = Fixture::new(&[("README", "x\n")]).await?;
    let hosts = fixture.local_hosts(1)?;
    let config = CommandConfig {
        timeout: Some(Duration::from_secs(1)),
        ..CommandConfig::default()
    };
    let command = Command::new(&hosts, "hangs", sh("sleep 600"), config, &fixture.services)?;
    let status = fixture.eval(&command.run(busybox(), fixture.head())).await;
    assert_eq!(failure(status.result)?, "timed out after 1s");
    let (log, _) = fixture.saved_log(&status.output).await?;
    assert!(
        log.contains("Timed out after 1s: removing container"),
        "{log}"
    );
    assert_eq!(fixture.containers().await?, Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn an_unknown_image_is_named() -> anyhow::Result<()> {
    let fixture = Fixture::new(&[("README", "x\n")]).await?;
    let hosts = fixture.local_hosts(1)?;
    let command = Command::new(
        &hosts,
        "t",
        sh("true"),
        CommandConfig::default(),
        &fixture.services,
    )?;
    let image = datakit_ci_term::Term::ok(Image::of_published("datakit-ci-test/absent:0"));
    let status = fixture.eval(&command.run(image, fixture.head())).await;
    assert_eq!(
        failure(status.result)?,
        r#"unknown image "datakit-ci-test/absent:0" on Docker host "local""#
    );
    Ok(())
}

#[tokio::test]
async fn a_missing_daemon_fails_the_step_with_its_address() -> anyhow::Result<()> {
    let fixture = Fixture::new(&[("README", "x\n")]).await?;
    let url = "unix:///nonexistent/docker.sock";
    let hosts = Hosts::new(
        vec![HostSpec::new("gone", url)?],
        1,
        fixture.instance.clone(),
        &fixture.services,
    )?;
    let command = Command::new(
        &hosts,
        "t",
        sh("true"),
        CommandConfig::default(),
        &fixture.services,
    )?;
    let status = fixture.eval(&command.run(busybox(), fixture.head())).await;
    let message = failure(status.result)?;
    assert!(
        message.starts_with("cannot reach the Docker daemon at unix:///nonexistent/docker.sock: "),
        "{message}"
    );
    assert_eq!(hosts.down().len(), 1);
    assert_eq!(hosts.down()[0].0, "gone");
    Ok(())
}

#[tokio::test]
async fn containers_left_by_a_previous_run_are_removed() -> anyhow::Result<()> {
    let fixture = Fixture::new(&[("README", "x\n")]).await?;
    // What a CI killed with -9 leaves: a running container labelled with its instance.
    let left = fixture
        .docker
        .create_container(
            None,
            ContainerCreateBody {
                image: Some(BUSYBOX.to_owned()),
                cmd: Some(vec!["sleep".to_owned(), "600".to_owned()]),
                labels: Some(HashMap::from([(
                    labels::INSTANCE.to_owned(),
                    fixture.instance.to_string(),
                )])),
                ..Default::default()
            },
        )
        .await?;
    fixture.docker.start_container(&left.id, None).await?;
    // Another instance's container is not ours to remove.
    let other = Instance::new(format!("{}-other", fixture.instance))?;
    let theirs = fixture
        .docker
        .create_container(
            None,
            ContainerCreateBody {
                image: Some(BUSYBOX.to_owned()),
                cmd: Some(vec!["true".to_owned()]),
                labels: Some(HashMap::from([(
                    labels::INSTANCE.to_owned(),
                    other.to_string(),
                )])),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(fixture.containers().await?, vec![left.id.clone()]);

    let hosts = fixture.local_hosts(1)?;
    let removed = hosts.reap_leftovers().await;
    let theirs_remains = fixture
        .docker
        .inspect_container(&theirs.id, None)
        .await
        .is_ok();
    datakit_ci_testkit::docker::remove_instance(other.as_str()).map_err(anyhow::Error::msg)?;
    assert_eq!(removed, 1);
    assert_eq!(fixture.containers().await?, Vec::<String>::new());
    assert!(theirs_remains);
    // Once per host: a second call finds nothing to do.
    assert_eq!(hosts.reap_leftovers().await, 0);
    Ok(())
}

/// The CI's shutdown drops every running step with the runtime: the container goes too.
#[test]
fn a_run_dropped_with_its_runtime_removes_its_container() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let (fixture, hosts) = runtime.block_on(async {
        let fixture = Fixture::new(&[("README", "x\n")]).await?;
        let hosts = fixture.local_hosts(1)?;
        let command = Command::new(
            &hosts,
            "dropped",
            sh("echo started; sleep 600"),
            CommandConfig::default(),
            &fixture.services,
        )?;
        let term = command.run(busybox(), fixture.head());
        let log = loop {
            let status = fixture.eval_once(&term).await;
            if let Some(log) = fixture.live_log(&status.output) {
                break log;
            }
            crate::fixture::still_pending(status.result).await?;
        };
        let mut reader = log.stream();
        let mut seen = String::new();
        while !seen.contains("started\n") {
            let chunk = reader
                .next_chunk()
                .await?
                .ok_or_else(|| anyhow::anyhow!("the log ended early: {seen}"))?;
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert_eq!(fixture.containers().await?.len(), 1);
        anyhow::Ok((fixture, hosts))
    })?;
    drop(runtime);
    drop(hosts);
    let check = tokio::runtime::Runtime::new()?;
    let left = check.block_on(fixture.containers())?;
    assert_eq!(left, Vec::<String>::new());
    drop(fixture);
    Ok(())
}

#[tokio::test]
async fn a_published_name_retagged_to_another_image_runs_again() -> anyhow::Result<()> {
    let fixture = Fixture::new(&[("README", "x\n")]).await?;
    let tag = format!("datakit-ci-test/retag-{}:1", fixture.instance);
    let build = |word: &str| format!("FROM {BUSYBOX}\nRUN echo {word}-$((1+1)) > /which\n");
    let first = fixture
        .build_image(&build("first"), Some(&tag), None)
        .await?;
    let which = |hosts: &Hosts| {
        Command::new(
            hosts,
            "which",
            vec!["cat".to_owned(), "/which".to_owned()],
            CommandConfig::default(),
            &fixture.services,
        )
    };
    let image = || datakit_ci_term::Term::ok(Image::of_published(&tag));
    let hosts = fixture.local_hosts(1)?;
    let run = which(&hosts)?.run(image(), fixture.head());
    let status = fixture.eval(&run).await;
    value(status.result)?;
    let (log, recorded) = fixture.saved_log(&status.output).await?;
    assert!(log.contains("first-2\n"), "{log}");
    // Used again: the same id, so the recorded result.
    let status = fixture.eval(&run).await;
    value(status.result)?;
    assert_eq!(fixture.saved_log(&status.output).await?.1, recorded);
    assert_eq!(fixture.containers_created().await?, 1);

    // The name now stands for another image: the command runs again (on hosts with no recent
    // resolution, as any are 2 s later).
    let second = fixture
        .build_image(&build("second"), Some(&tag), None)
        .await?;
    assert_ne!(first, second);
    let hosts = fixture.local_hosts_named("again", 1)?;
    assert_eq!(hosts.resolve_published(&tag).await?, second);
    let run = which(&hosts)?.run(image(), fixture.head());
    let status = fixture.eval(&run).await;
    value(status.result)?;
    let (log, rerun) = fixture.saved_log(&status.output).await?;
    assert!(log.contains("second-2\n"), "{log}");
    assert_ne!(rerun, recorded);
    assert_eq!(fixture.containers_created().await?, 2);
    // The image id is in the recorded recipe.
    let recipe = fixture
        .services
        .store
        .commit(rerun.parse()?)
        .await?
        .tree()
        .read_file(&datakit_ci_store::StorePath::new("recipe")?)?
        .ok_or_else(|| anyhow::anyhow!("no recipe"))?;
    assert!(
        String::from_utf8(recipe)?.contains(&format!("image {second}\n")),
        "the recipe names the image id"
    );
    Ok(())
}
