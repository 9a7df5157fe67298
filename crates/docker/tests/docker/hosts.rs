//! Several Docker hosts: steps share them, and a host that stops answering is marked down and
//! its queued steps go elsewhere. The second host is a real second `dockerd` that the test
//! starts (the testkit's standalone daemon: its own network namespace, socket and data root,
//! outside the shared swarm) and, in one test, kills mid-run.

use std::time::{SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::exec::StartExecOptions;
use bollard::models::ExecConfig;

use datakit_ci_docker::{Command, CommandConfig, HostSpec, Hosts, Image};
use datakit_ci_term::{LogLeaf, Logs, Term};
use datakit_ci_testkit::dockerd;

use crate::fixture::{BUSYBOX, Fixture, failure, still_pending, value};

const LOCAL: &str = "unix:///var/run/docker.sock";

fn sh(script: &str) -> Vec<String> {
    vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()]
}

/// A second daemon of this test's own (`tag` tells the tests apart), with the tests' base image.
fn second_daemon(tag: &str) -> anyhow::Result<dockerd::Daemon> {
    let daemon = dockerd::Daemon::start(&format!("t16-{tag}-{}", std::process::id()))?;
    daemon.load_image(BUSYBOX)?;
    Ok(daemon)
}

/// A connection to the daemon at `url`.
async fn connect(url: &str) -> anyhow::Result<Docker> {
    Ok(
        Docker::connect_with_unix(url, 60, bollard::API_DEFAULT_VERSION)?
            .negotiate_version()
            .await?,
    )
}

/// The text of every saved log in `logs`, joined.
async fn saved_logs(fixture: &Fixture, logs: &Logs) -> anyhow::Result<String> {
    let mut text = String::new();
    for leaf in logs.leaves() {
        if let LogLeaf::Saved(saved) = leaf {
            let (log, _) = fixture.saved_log(&Logs::Saved(saved.clone())).await?;
            text.push_str(&log);
        }
    }
    Ok(text)
}

#[tokio::test]
async fn steps_spread_over_two_real_daemons() -> anyhow::Result<()> {
    let fixture = Fixture::new(&[("README", "x\n")]).await?;
    let second = second_daemon("spread")?;
    let since = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())? - 1;
    let hosts = Hosts::new(
        vec![
            HostSpec::new("a", LOCAL)?,
            HostSpec::new("b", second.docker_host())?,
        ],
        1,
        fixture.instance.clone(),
        &fixture.services,
    )?;
    // Two steps at once, one slot per host: the second goes to the host that has room.
    let commands: Vec<Command> = ["one", "two"]
        .into_iter()
        .map(|label| {
            Command::new(
                &hosts,
                label,
                sh("sleep 1; echo done-$((1+1))"),
                CommandConfig::default(),
                &fixture.services,
            )
        })
        .collect::<Result<_, _>>()?;
    let image = Term::ok(Image::of_published(BUSYBOX));
    let terms: Vec<Term<()>> = commands
        .iter()
        .map(|c| c.run(image.clone(), fixture.head()))
        .collect();
    let status = fixture.eval(&Term::all(terms)).await;
    value(status.result)?;
    let logs = saved_logs(&fixture, &status.output).await?;
    assert_eq!(logs.matches("done-2\n").count(), 2, "{logs}");
    for host in ["a", "b"] {
        assert!(logs.contains(&format!("on Docker host {host}\n")), "{logs}");
    }
    // Each daemon made one of the containers (the host's, and the second's own).
    let on_a = fixture
        .containers_created_on(&fixture.docker, since)
        .await?;
    let on_b = fixture
        .containers_created_on(&connect(&second.docker_host()).await?, since)
        .await?;
    assert_eq!((on_a, on_b), (1, 1));
    // And removed them.
    assert_eq!(fixture.containers().await?, Vec::<String>::new());
    assert_eq!(second.docker(&["ps", "-aq"])?, "");
    Ok(())
}

#[tokio::test]
async fn a_daemon_that_stops_mid_run_is_marked_down_and_its_queued_step_goes_elsewhere()
-> anyhow::Result<()> {
    let fixture = Fixture::new(&[("README", "x\n")]).await?;
    let second = second_daemon("stop")?;
    let url = second.docker_host();
    // The second daemon first: on a tie, a step goes there.
    let hosts = Hosts::new(
        vec![HostSpec::new("b", &url)?, HostSpec::new("a", LOCAL)?],
        1,
        fixture.instance.clone(),
        &fixture.services,
    )?;
    let step = |label: &str, script: &str| {
        Command::new(
            &hosts,
            label,
            sh(script),
            CommandConfig::default(),
            &fixture.services,
        )
    };
    // `lost` runs on b until b dies; `held` holds a's only slot until the test lets it go (it
    // waits for a file the test makes in its container); `queued` then waits for b's slot.
    let lost = step("lost", "echo lost-$((1+1)); sleep 600")?;
    let held = step(
        "held",
        "echo held-$((1+1)); while [ ! -e /tmp/go ]; do sleep 0.1; done",
    )?;
    let queued = step("queued", "echo queued-$((1+1))")?;
    let image = || Term::ok(Image::of_published(BUSYBOX));
    let lost = lost.run(image(), fixture.head());
    let held = held.run(image(), fixture.head());
    let queued = queued.run(image(), fixture.head());
    for (term, started) in [(&lost, "lost-2\n"), (&held, "held-2\n")] {
        loop {
            let status = fixture.eval_once(term).await;
            if let Some(log) = fixture.live_log(&status.output)
                && String::from_utf8_lossy(&log.contents()?).contains(started)
            {
                break;
            }
            still_pending(status.result).await?;
        }
    }
    let pool = |name: &str| {
        fixture
            .services
            .pools
            .list()
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| anyhow::anyhow!("no pool {name}"))
    };
    // `lost` runs on b and `held` on a (each in its host's only slot).
    assert_eq!(pool("docker-b")?.active(), 1);
    assert_eq!(pool("docker-a")?.active(), 1);
    while pool("docker-b")?.qlen() == 0 {
        still_pending(fixture.eval_once(&queued).await.result).await?;
    }

    second.stop()?;
    // Let `held` finish, freeing a's slot.
    let held_container = fixture
        .containers()
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no container of `held` on the host's daemon"))?;
    let exec = fixture
        .docker
        .create_exec(
            &held_container,
            ExecConfig {
                cmd: Some(vec!["touch".to_owned(), "/tmp/go".to_owned()]),
                ..Default::default()
            },
        )
        .await?;
    fixture
        .docker
        .start_exec(
            &exec.id,
            Some(StartExecOptions {
                detach: true,
                ..Default::default()
            }),
        )
        .await?;

    let status = fixture.eval(&queued).await;
    value(status.result)?;
    let log = saved_logs(&fixture, &status.output).await?;
    assert!(
        log.contains(&format!("cannot reach the Docker daemon at {url}: ")),
        "{log}"
    );
    assert!(log.contains("trying another Docker host"), "{log}");
    assert!(log.contains("on Docker host a\n"), "{log}");
    assert!(log.contains("queued-2\n"), "{log}");
    value(fixture.eval(&held).await.result)?;
    // The step that ran on b when it died fails, naming the host.
    let message = failure(fixture.eval(&lost).await.result)?;
    assert!(message.starts_with("Docker host \"b\": "), "{message}");

    let down = hosts.down();
    assert_eq!(down.len(), 1, "{down:?}");
    assert_eq!(down[0].0, "b");
    assert!(
        down[0]
            .1
            .starts_with(&format!("cannot reach the Docker daemon at {url}: ")),
        "{down:?}"
    );
    let troubles = fixture.services.health.troubles();
    let keys: Vec<&str> = troubles.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["Docker host b"]);
    assert_eq!(fixture.containers().await?, Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn a_host_without_a_daemon_is_marked_down_and_steps_go_elsewhere() -> anyhow::Result<()> {
    let fixture = Fixture::new(&[("README", "x\n")]).await?;
    let hosts = Hosts::new(
        vec![
            HostSpec::new("down", "unix:///nonexistent/docker.sock")?,
            HostSpec::new("up", LOCAL)?,
        ],
        1,
        fixture.instance.clone(),
        &fixture.services,
    )?;
    let command = Command::new(
        &hosts,
        "t",
        vec!["true".to_owned()],
        CommandConfig::default(),
        &fixture.services,
    )?;
    let status = fixture
        .eval(&command.run(Term::ok(Image::of_published(BUSYBOX)), fixture.head()))
        .await;
    value(status.result)?;
    // The image's name was resolved first, on the first host that answers: that found `down`
    // down, so the step went straight to `up` (the failover of a step already waiting for a
    // host that stops answering is the test above).
    let (log, _) = fixture.saved_log(&status.output).await?;
    assert!(log.contains("on Docker host up\n"), "{log}");
    let down: Vec<String> = hosts.down().into_iter().map(|(name, _)| name).collect();
    assert_eq!(down, ["down"]);
    // The dashboard's trouble list names it (issue 16: a host that stops answering is marked
    // down in the UI).
    let troubles = fixture.services.health.troubles();
    let keys: Vec<&str> = troubles
        .iter()
        .map(|trouble| trouble.key.as_str())
        .collect();
    assert_eq!(keys, ["Docker host down"]);
    assert!(
        troubles[0].message.starts_with(
            "not answering: cannot reach the Docker daemon at unix:///nonexistent/docker.sock"
        ),
        "{troubles:?}"
    );
    Ok(())
}
