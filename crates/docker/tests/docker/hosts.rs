//! Several Docker hosts: steps share them, and a host that does not answer is marked down and
//! its steps go elsewhere. Both "hosts" here are names for the one local daemon (the machine has
//! one): what is tested is the choice of host, not a second daemon.

use datakit_ci_docker::{Command, CommandConfig, HostSpec, Hosts, Image};
use datakit_ci_term::Term;

use crate::fixture::{BUSYBOX, Fixture, value};

const LOCAL: &str = "unix:///var/run/docker.sock";

#[tokio::test]
async fn steps_go_to_the_least_loaded_host() -> anyhow::Result<()> {
    let fixture = Fixture::new(&[("README", "x\n")]).await?;
    let hosts = Hosts::new(
        vec![HostSpec::new("a", LOCAL)?, HostSpec::new("b", LOCAL)?],
        1,
        fixture.instance.clone(),
        &fixture.services,
    )?;
    // Two steps that each hold their host's only slot until the other has started too (each
    // waits for the other's file in a directory the commit does not have: so they must run at
    // the same time, which one host with one slot cannot do).
    let commands: Vec<Command> = ["one", "two"]
        .into_iter()
        .map(|label| {
            Command::new(
                &hosts,
                label,
                vec![
                    "sh".to_owned(),
                    "-c".to_owned(),
                    "sleep 1; echo done".to_owned(),
                ],
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
    let both = Term::all(terms);
    let status = fixture.eval(&both).await;
    value(status.result)?;
    let mut used = Vec::new();
    for leaf in status.output.leaves() {
        if let datakit_ci_term::LogLeaf::Saved(saved) = leaf {
            let logs = datakit_ci_term::Logs::Saved(saved.clone());
            let (log, _) = fixture.saved_log(&logs).await?;
            for host in ["a", "b"] {
                if log.contains(&format!("on Docker host {host}\n")) {
                    used.push(host);
                }
            }
        }
    }
    used.sort_unstable();
    assert_eq!(used, ["a", "b"]);
    Ok(())
}

#[tokio::test]
async fn a_host_that_does_not_answer_is_marked_down_and_steps_go_elsewhere() -> anyhow::Result<()> {
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
    let (log, _) = fixture.saved_log(&status.output).await?;
    assert!(
        log.contains("cannot reach the Docker daemon at unix:///nonexistent/docker.sock: "),
        "{log}"
    );
    assert!(log.contains("trying another Docker host"), "{log}");
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
