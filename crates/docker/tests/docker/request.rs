//! `Hosts::run_container`: one container of a job without a cache — the commit's tree in
//! `/src`, the variables given, the output in the log, the exit status as the outcome, and no
//! container left.

use datakit_ci_docker::{ContainerRequest, Error, Image, Priority, container_environment};
use datakit_ci_git::JobEnvironment;
use datakit_ci_log::LiveLogSpec;
use tokio_util::sync::CancellationToken;

use crate::fixture::{BUSYBOX, Fixture, value};

#[tokio::test]
async fn a_container_of_a_job_runs_once_with_the_tree_and_the_variables_given() -> anyhow::Result<()>
{
    let fixture = Fixture::new(&[("README", "hello from the repository\n")]).await?;
    let hosts = fixture.local_hosts(1)?;
    let commit = value(fixture.eval(&fixture.head()).await.result)?;
    let job = fixture.job();
    let image = Image::of_published(BUSYBOX);
    let log = fixture.services.logs.create(LiveLogSpec {
        branch: "run-container".to_owned(),
        title: "run_container".to_owned(),
        pending: "starting".to_owned(),
        cancel: None,
    })?;
    let mut env = container_environment(&JobEnvironment::default(), &job, &commit);
    assert!(
        env.iter().any(|v| v == "CI=true") && !env.iter().any(|v| v.starts_with("HOME=")),
        "{env:?}"
    );
    env.push("GREETING=hi".to_owned());
    let argv = |script: &str| vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()];
    let request = |argv| ContainerRequest {
        job: &job,
        holder: "test on main".to_owned(),
        key: "pipeline-test-of-0".to_owned(),
        image: &image,
        argv,
        env: env.clone(),
        commit: &commit,
        workdir: None,
        user: None,
        memory: None,
        cpus: None,
        timeout: None,
        priority: Priority::of_job(&job),
        pool: None,
        stall_timeout: None,
        copy_out: None,
    };
    let cancel = CancellationToken::new();

    let passing = argv("cat README; echo \"$GREETING from $PWD job=$DATAKIT_CI_JOB\"");
    hosts
        .run_container(&request(&passing), &log, &cancel)
        .await?;
    let failing = argv("exit 6");
    let outcome = hosts.run_container(&request(&failing), &log, &cancel).await;
    assert!(
        matches!(outcome, Err(Error::Exit { code: 6, .. })),
        "{outcome:?}"
    );
    let text = String::from_utf8(log.contents()?)?;
    assert!(
        text.contains("hello from the repository\nhi from /src job=test\n"),
        "{text}"
    );
    assert_eq!(fixture.containers_created().await?, 2);
    assert_eq!(fixture.containers().await?, Vec::<String>::new());
    log.finish();
    Ok(())
}
