//! `run`: the whole program around a CI configuration — command line, logging, runtime, the
//! local bridge, the engine, the web UI, status lines on stdout and clean shutdown. The
//! `datakit-ci` binary is `run` with shell tests; other programs bring their own projects.

use std::process::ExitCode;

use clap::{Args, FromArgMatches, Parser};
use tokio_util::sync::CancellationToken;

use datakit_ci_engine::Project;
use datakit_ci_git::Services;

use crate::cli::CommonArgs;
use crate::local::{LocalCi, SourceRepo, StartError};

// The command line of a program using `run`: the common options plus the program's own. (A `//`
// comment: clap would show a doc comment as the program's description.)
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Continuous integration: tests every branch, tag and pull-request ref of the given \
             repositories and keeps statuses, logs and history in a Git repository"
)]
struct RunCli<A: Args> {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    program: A,
}

/// Runs a CI program until Ctrl-C or SIGTERM, and returns its exit status.
///
/// The command line is [`CommonArgs`] (`--repo`, `--state-dir`, `--web-ui`, `--canary`,
/// `--listen` and the web UI's options, `-v`) plus the program's own options `A`. Two stages,
/// so that bad arguments are refused before anything is created:
///
/// 1. `validate(args)` checks the program's options (no I/O) and returns the second stage, or a
///    message (printed, exit status 2);
/// 2. once the state is open and the repositories given with `--repo` are cloned, the second
///    stage makes the projects from those clones and the build services.
///
/// ```no_run
/// use datakit_ci::engine::Project;
/// use datakit_ci::term::Term;
///
/// #[derive(Debug, clap::Args)]
/// struct Options {}
///
/// fn main() -> std::process::ExitCode {
///     datakit_ci::run(|_: Options| {
///         Ok(|repos: &[datakit_ci::local::SourceRepo], _: &datakit_ci::git::Services| {
///             repos
///                 .iter()
///                 .map(|source| {
///                     let repo = source.repo.clone();
///                     Project::new(&source.id.to_string(), move |target| {
///                         let head = repo.fetch_head(target.clone());
///                         vec![("fetch".to_owned(), head.map(|c| format!("Fetched {}", c.hash())))]
///                     })
///                     .map_err(|e| e.to_string())
///                 })
///                 .collect()
///         })
///     })
/// }
/// ```
pub fn run<A, V, P>(validate: V) -> ExitCode
where
    A: Args + FromArgMatches + std::fmt::Debug,
    V: FnOnce(A) -> Result<P, String>,
    P: FnOnce(&[SourceRepo], &Services) -> Result<Vec<Project>, String>,
{
    let cli = RunCli::<A>::parse();
    let program = std::env::args()
        .next()
        .and_then(|arg0| {
            std::path::Path::new(&arg0)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "datakit-ci".to_owned());
    init_logging(cli.common.verbose);

    let options = match cli.common.into_options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("{program}: {e}");
            return ExitCode::from(2);
        }
    };
    let make_projects = match validate(cli.program) {
        Ok(make_projects) => make_projects,
        Err(e) => {
            eprintln!("{program}: {e}");
            return ExitCode::from(2);
        }
    };
    disable_transparent_huge_pages();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{program}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        let started = LocalCi::start_with(options, |repos, services| {
            make_projects(repos, services).map_err(StartError::Projects)
        })
        .await;
        let ci = match started {
            Ok(ci) => ci,
            Err(e) => {
                eprintln!("{program}: {:#}", anyhow::Error::new(e));
                return ExitCode::from(2);
            }
        };
        if let Some(web) = ci.web() {
            let scheme = if web.state().config().public().is_https() {
                "https"
            } else {
                "http"
            };
            eprintln!("{program}: web UI on {scheme}://{}", web.local_addr());
            if let Some(url) = web.state().setup_url() {
                eprintln!("{program}: first run: open {url} to set the admin password");
            }
        }
        let cancel = CancellationToken::new();
        let mut events = ci.engine().subscribe();
        tokio::spawn(async move {
            while let Ok(change) = events.recv().await {
                println!(
                    "{} {}: {} ({})",
                    change.target, change.job, change.state, change.description
                );
            }
        });
        tokio::spawn(stop_on_signal(cancel.clone()));
        match ci.run(cancel).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{program}: {:#}", anyhow::Error::new(e));
                ExitCode::FAILURE
            }
        }
    });
    // Everything we own has stopped; don't let a stray blocking task hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    code
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("warn,datakit_ci={level}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn stop_on_signal(cancel: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("stopping");
    cancel.cancel();
}

/// Turns transparent huge pages off for this process and the processes it starts
/// (`PR_SET_THP_DISABLE`, what mimalloc itself does when its `allow_thp` option is 0).
///
/// mimalloc asks for huge pages on its arenas (`MADV_HUGEPAGE`), so each first touch of a fresh
/// region zeroes 2 MiB. Builds run on many short-lived blocking threads whose allocations keep
/// reaching fresh regions: with 500 concurrent builds, zeroing huge pages was 18% of the
/// process's CPU, and the CPU per build of its own threads fell from 9.4–16.8 ms to 6.0–6.8 ms
/// without them. [`run`] calls it before starting the runtime; a program embedding
/// [`LocalCi`] should call it early in `main`. Failing (e.g. on a kernel without THP) only costs
/// that CPU, so it is logged, not returned.
pub fn disable_transparent_huge_pages() {
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        tracing::debug!(error = %e, "cannot turn transparent huge pages off");
    }
}
