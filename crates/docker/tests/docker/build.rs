//! `Builder`: images built from a commit's tree, cached by their inputs, rebuilt when pruned,
//! then used by `Command`.

use bollard::query_parameters::RemoveImageOptions;

use datakit_ci_docker::{BuildConfig, Builder, Command, CommandConfig, Image};
use datakit_ci_term::Term;

use crate::fixture::{BUSYBOX, Fixture, failure, value};

fn dockerfile(line: &str) -> String {
    format!("FROM {BUSYBOX}\nCOPY . /app\nRUN echo '{line}' > /built\n")
}

fn config() -> BuildConfig {
    BuildConfig {
        dockerfile: "docker/Dockerfile".to_owned(),
        context: "docker".to_owned(),
        ..BuildConfig::default()
    }
}

#[tokio::test]
async fn an_image_is_built_once_per_input_and_runs_commands() -> anyhow::Result<()> {
    let first = dockerfile("version one");
    let fixture = Fixture::new(&[("docker/Dockerfile", &first), ("README", "x\n")]).await?;
    let hosts = fixture.local_hosts(2)?;
    let builder = Builder::new(&hosts, "app", config(), &fixture.services)?;
    let image = builder.build(fixture.head(), None);
    let status = fixture.eval(&image).await;
    let built = value(status.result)?;
    let (log, build_commit) = fixture.saved_log(&status.output).await?;
    assert!(log.contains(": RUN echo 'version one' > /built\n"), "{log}");
    assert!(log.contains("Successfully built "), "{log}");
    assert!(built.reference().starts_with("sha256:"), "{built:?}");
    assert_eq!(built.host(), Some("local"));

    let command = Command::new(
        &hosts,
        "check",
        vec![
            "cat".to_owned(),
            "/built".to_owned(),
            "/app/Dockerfile".to_owned(),
        ],
        CommandConfig::default(),
        &fixture.services,
    )?;
    let run = command.run(image.clone(), fixture.head());
    let status = fixture.eval(&run).await;
    value(status.result)?;
    let (log, run_commit) = fixture.saved_log(&status.output).await?;
    assert!(log.contains("version one\n"), "{log}");
    assert_eq!(fixture.containers_created().await?, 1);

    // Evaluated again (a new job evaluation): nothing is built or run.
    let status = fixture.eval(&run).await;
    value(status.result)?;
    assert_eq!(fixture.saved_log(&status.output).await?.1, run_commit);
    assert_eq!(
        fixture.containers_created().await?,
        1,
        "no second container"
    );

    // A commit that changes nothing in the context: the same image, not built again.
    fixture
        .commit(&[("README", "y\n")], "outside the context")
        .await?;
    let status = fixture.eval(&image).await;
    assert_eq!(value(status.result)?, built);
    assert_eq!(fixture.saved_log(&status.output).await?.1, build_commit);

    // A changed Dockerfile is built.
    let second = dockerfile("version two");
    fixture
        .commit(&[("docker/Dockerfile", &second)], "new Dockerfile")
        .await?;
    let status = fixture.eval(&image).await;
    let rebuilt = value(status.result)?;
    assert_ne!(rebuilt, built);
    assert_ne!(fixture.saved_log(&status.output).await?.1, build_commit);
    let status = fixture.eval(&run).await;
    value(status.result)?;
    assert!(
        fixture
            .saved_log(&status.output)
            .await?
            .0
            .contains("version two\n")
    );
    Ok(())
}

#[tokio::test]
async fn a_pruned_image_is_built_again() -> anyhow::Result<()> {
    let fixture = Fixture::new(&[("docker/Dockerfile", &dockerfile("pruned"))]).await?;
    let hosts = fixture.local_hosts(1)?;
    let builder = Builder::new(&hosts, "app", config(), &fixture.services)?;
    let image = builder.build(fixture.head(), None);
    let status = fixture.eval(&image).await;
    let built = value(status.result)?;
    let (_, first_build) = fixture.saved_log(&status.output).await?;
    fixture
        .docker
        .remove_image(
            built.reference(),
            Some(RemoveImageOptions {
                force: true,
                ..Default::default()
            }),
            None,
        )
        .await?;
    assert!(
        fixture
            .docker
            .inspect_image(built.reference())
            .await
            .is_err()
    );

    // A restarted CI: a new cache over the same store finds the recorded image gone.
    let builder = Builder::new(&hosts, "app", config(), &fixture.services)?;
    let image = builder.build(fixture.head(), None);
    let status = fixture.eval(&image).await;
    let rebuilt = value(status.result)?;
    let (log, second_build) = fixture.saved_log(&status.output).await?;
    assert_ne!(second_build, first_build);
    assert!(log.contains("Successfully built "), "{log}");
    fixture.docker.inspect_image(rebuilt.reference()).await?;
    Ok(())
}

#[tokio::test]
async fn the_first_from_can_be_rewritten_to_a_built_image() -> anyhow::Result<()> {
    let base = format!("FROM {BUSYBOX}\nRUN echo base > /base\n");
    let app = "FROM registry.invalid/not-here:1\nRUN cat /base > /app\n";
    let fixture = Fixture::new(&[("base/Dockerfile", &base), ("app/Dockerfile", app)]).await?;
    let hosts = fixture.local_hosts(1)?;
    let config = |dir: &str| BuildConfig {
        dockerfile: format!("{dir}/Dockerfile"),
        context: dir.to_owned(),
        ..BuildConfig::default()
    };
    let base = Builder::new(&hosts, "base", config("base"), &fixture.services)?
        .build(fixture.head(), None);
    let app = Builder::new(&hosts, "app", config("app"), &fixture.services)?;
    let status = fixture
        .eval(&app.build(fixture.head(), Some(base.clone())))
        .await;
    value(status.result)?;
    let (log, _) = fixture.saved_log(&status.output).await?;
    let base_id = value(fixture.eval(&base).await.result)?;
    assert!(
        log.contains(&format!(
            "Rewrite Dockerfile's first line to:\nFROM {}\n",
            base_id.reference()
        )),
        "{log}"
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_build_is_a_failed_step_without_leftover_containers() -> anyhow::Result<()> {
    let broken = format!("FROM {BUSYBOX}\nRUN echo trying; exit 7\n");
    let fixture = Fixture::new(&[("Dockerfile", &broken)]).await?;
    let hosts = fixture.local_hosts(1)?;
    let builder = Builder::new(&hosts, "broken", BuildConfig::default(), &fixture.services)?;
    let status = fixture.eval(&builder.build(fixture.head(), None)).await;
    let message = failure(status.result)?;
    assert!(
        message.starts_with("docker build failed: The command '/bin/sh -c echo trying; exit 7' returned a non-zero code: 7"),
        "{message}"
    );
    let (log, _) = fixture.saved_log(&status.output).await?;
    assert!(log.contains("trying\n"), "{log}");
    // `forcerm`: the failed step's container is gone (it has no label of ours, so look for
    // containers of the base image).
    let filters =
        std::collections::HashMap::from([("ancestor".to_owned(), vec![BUSYBOX.to_owned()])]);
    let left = fixture
        .docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await?;
    let ours: Vec<_> = left
        .iter()
        .filter(|c| {
            c.command
                .as_deref()
                .is_some_and(|c| c.contains("echo trying; exit 7"))
        })
        .collect();
    assert!(ours.is_empty(), "{ours:?}");
    Ok(())
}

#[tokio::test]
async fn bad_dockerfile_paths_are_refused() -> anyhow::Result<()> {
    let fixture = Fixture::new(&[("Dockerfile", "FROM x\n")]).await?;
    let hosts = fixture.local_hosts(1)?;
    for (dockerfile, context, message) in [
        (
            "../Dockerfile",
            ".",
            "invalid Dockerfile path \"../Dockerfile\": '..' in the path",
        ),
        (
            "Dockerfile",
            "/abs",
            "invalid context directory \"/abs\": it must be relative",
        ),
    ] {
        let config = BuildConfig {
            dockerfile: dockerfile.to_owned(),
            context: context.to_owned(),
            ..BuildConfig::default()
        };
        let error = Builder::new(&hosts, "x", config, &fixture.services)
            .expect_err(dockerfile)
            .to_string();
        assert!(error.starts_with(message), "{error}");
    }
    let missing = BuildConfig {
        dockerfile: "sub/Dockerfile".to_owned(),
        ..BuildConfig::default()
    };
    let builder = Builder::new(&hosts, "missing", missing, &fixture.services)?;
    let status = fixture.eval(&builder.build(fixture.head(), None)).await;
    let message = failure(status.result)?;
    assert!(
        message.starts_with("invalid Dockerfile path \"sub/Dockerfile\": no such file in commit "),
        "{message}"
    );
    let _ = Term::ok(Image::of_published(BUSYBOX));
    Ok(())
}

#[tokio::test]
async fn built_images_no_cache_entry_refers_to_are_pruned() -> anyhow::Result<()> {
    let fixture = Fixture::new(&[("docker/Dockerfile", &dockerfile("kept"))]).await?;
    // Age 0: every unreferenced image is old enough.
    let hosts = fixture
        .local_hosts(1)?
        .with_image_pruning(std::time::Duration::ZERO);
    let builder = Builder::new(&hosts, "app", config(), &fixture.services)?;
    let kept = value(
        fixture
            .eval(&builder.build(fixture.head(), None))
            .await
            .result,
    )?;
    // An image of this instance whose cache entry records another image (or none): what a
    // rebuild leaves behind.
    let replaced = build_unreferenced(&fixture, "RUN echo replaced > /replaced").await?;

    assert_eq!(hosts.prune_images().await, 1);
    assert!(fixture.docker.inspect_image(&replaced).await.is_err());
    fixture.docker.inspect_image(kept.reference()).await?;
    Ok(())
}

/// Builds, outside any cache, an image of `fixture`'s instance from busybox and `step`, labelled
/// as if built for a cache entry that records another image (what a rebuild leaves behind);
/// returns its id.
async fn build_unreferenced(fixture: &Fixture, step: &str) -> anyhow::Result<String> {
    let dockerfile = format!("FROM {BUSYBOX}\n{step}\n");
    fixture
        .build_image(&dockerfile, None, Some("docker-build-app-of-0000"))
        .await
}

/// Waits until the clock's second changes: the engine dates images to the second, and the
/// pruner removes the oldest first.
fn next_second() -> anyhow::Result<()> {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
    };
    let start = now()?;
    while now()? == start {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(())
}

#[tokio::test]
async fn unreferenced_images_over_the_size_limit_are_pruned_oldest_first() -> anyhow::Result<()> {
    let fixture = Fixture::new(&[("docker/Dockerfile", &dockerfile("kept"))]).await?;
    // A referenced image, the oldest: never removed, and not counted.
    let builder = Builder::new(&fixture.local_hosts(1)?, "app", config(), &fixture.services)?;
    let kept = value(
        fixture
            .eval(&builder.build(fixture.head(), None))
            .await
            .result,
    )?;
    // Unreferenced images, oldest first: one that a (stopped) container uses, then three of
    // 1 MiB over the base each.
    let mut unreferenced = Vec::new();
    for name in ["used", "oldest", "older", "young"] {
        next_second()?;
        let step = format!("RUN head -c 1048576 /dev/zero > /{name}");
        unreferenced.push(build_unreferenced(&fixture, &step).await?);
    }
    let mut sizes = Vec::new();
    for id in &unreferenced {
        let size = fixture.docker.inspect_image(id).await?.size.unwrap_or(0);
        sizes.push(u64::try_from(size)?);
    }
    // Room for the used image and the young one only: the two between go, oldest first; the
    // used one stays although it is the oldest of all.
    let limit = sizes[0] + sizes[3] + 1024;
    let hosts = fixture
        .local_hosts_named("limited", 1)?
        .with_image_size_limit(limit);
    let none_left = fixture
        .local_hosts_named("none-left", 1)?
        .with_image_size_limit(0);
    // Hosts remove their instance's containers when first used (what a killed run left):
    // before the container that uses the image is made.
    hosts.reap_leftovers().await;
    none_left.reap_leftovers().await;
    fixture
        .docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            bollard::models::ContainerCreateBody {
                image: Some(unreferenced[0].clone()),
                cmd: Some(vec!["true".to_owned()]),
                labels: Some(std::collections::HashMap::from([(
                    datakit_ci_docker::labels::INSTANCE.to_owned(),
                    fixture.instance.to_string(),
                )])),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(hosts.prune_images().await, 2);
    let exists = |id: String| {
        let docker = fixture.docker.clone();
        async move { docker.inspect_image(&id).await.is_ok() }
    };
    let mut left = Vec::new();
    for id in &unreferenced {
        left.push(exists(id.clone()).await);
    }
    assert_eq!(left, [true, false, false, true]);
    assert!(exists(kept.reference().to_owned()).await);
    // Under the limit now: nothing more goes.
    assert_eq!(hosts.prune_images().await, 0);
    // Without a limit nothing goes at all; with a limit of 0, all but the used one go.
    let unlimited = fixture.local_hosts_named("unlimited", 1)?;
    assert_eq!(unlimited.prune_images().await, 0);
    assert_eq!(none_left.prune_images().await, 1);
    assert!(!exists(unreferenced[3].clone()).await);
    assert!(exists(unreferenced[0].clone()).await);
    assert!(exists(kept.reference().to_owned()).await);
    // The container goes with the fixture.
    Ok(())
}

#[tokio::test]
async fn a_failed_build_leaves_no_container_and_no_image() -> anyhow::Result<()> {
    let failing =
        format!("FROM {BUSYBOX}\nRUN echo one > /one\nRUN echo failing-$((1+1)); exit 3\n");
    let fixture = Fixture::new(&[("docker/Dockerfile", &failing)]).await?;
    let hosts = fixture.local_hosts(1)?;
    let builder = Builder::new(&hosts, "app", config(), &fixture.services)?;
    let status = fixture.eval(&builder.build(fixture.head(), None)).await;
    let message = failure(status.result)?;
    assert!(
        message.starts_with("docker build failed: The command '/bin/sh -c echo failing-$((1+1)); exit 3' returned a non-zero code: 3"),
        "{message}"
    );
    let (log, _) = fixture.saved_log(&status.output).await?;
    assert!(log.contains("failing-2\n"), "{log}");
    assert!(
        log.contains("Removed 1 intermediate image(s) of the failed build"),
        "{log}"
    );
    // What the engine said it made: the step containers and the first RUN's image.
    let mut containers = Vec::new();
    let mut images = Vec::new();
    for line in log.lines() {
        if let Some(id) = line.strip_prefix(" ---> Running in ") {
            containers.push(id.trim().to_owned());
        } else if let Some(id) = line.strip_prefix(" ---> ") {
            images.push(id.trim().to_owned());
        }
    }
    assert_eq!(containers.len(), 2, "{log}");
    // The base's id, then the first RUN's.
    assert_eq!(images.len(), 2, "{log}");
    for id in &containers {
        assert!(
            fixture.docker.inspect_container(id, None).await.is_err(),
            "container {id} is left"
        );
    }
    assert!(
        fixture.docker.inspect_image(&images[1]).await.is_err(),
        "image {} is left",
        images[1]
    );
    // The base stays.
    fixture.docker.inspect_image(&images[0]).await?;
    fixture.docker.inspect_image(BUSYBOX).await?;
    Ok(())
}
