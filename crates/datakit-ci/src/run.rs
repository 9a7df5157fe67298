//! `run`: the whole program around a CI configuration — command line, logging, runtime, the
//! local bridge, the engine, the web UI, status lines on stdout and clean shutdown. The
//! `datakit-ci` binary is `run` with shell tests; other programs bring their own projects.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use datakit_ci_engine::StatusChange;
use datakit_ci_git::Services;

use crate::cli::CommonArgs;
use crate::local::{CiOptions, LocalCi, Projects, SourceRepo, StartError};
use crate::replica::{ReadOnlyOptions, ReplicaCi};

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
///    stage makes the projects from those clones and the build services (a `Vec<Project>`, or
///    [`Projects`] with the cluster the jobs run on, for the dashboard).
///
/// The program owns its builds' whole process trees: it becomes a child subreaper (it adopts what
/// its builds orphan, which is killed and reaped at the end of each build) and starts a
/// [guardian](datakit_ci_process::Guardian), this program started again, which kills the builds
/// if this process dies, even by SIGKILL: call `run` first thing in `main`, so that the guardian
/// does nothing else.
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
///                 .collect::<Result<Vec<_>, _>>()
///         })
///     })
/// }
/// ```
pub fn run<A, V, P, R>(validate: V) -> ExitCode
where
    A: Args + FromArgMatches + std::fmt::Debug,
    V: FnOnce(A) -> Result<P, String>,
    P: FnOnce(&[SourceRepo], &Services) -> Result<R, String>,
    R: Into<Projects>,
{
    // A guardian is this program started again: it only waits for this process to exit.
    datakit_ci_process::guardian_main_if_asked();
    let matches = RunCli::<A>::command().get_matches();
    let cli = match RunCli::<A>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
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
    if let Some(read_only) = options.read_only.clone() {
        if let Some(option) = program_options_given::<A>(&matches).first() {
            eprintln!(
                "{program}: {}",
                crate::cli::UsageError::ReadOnlyOption(option.clone())
            );
            return ExitCode::from(2);
        }
        return serve_read_only(&program, options, read_only);
    }
    let make_projects = match validate(cli.program) {
        Ok(make_projects) => make_projects,
        Err(e) => {
            eprintln!("{program}: {e}");
            return ExitCode::from(2);
        }
    };
    disable_transparent_huge_pages();
    raise_descriptor_limit();
    // Own the builds' whole process trees: adopt what they orphan, and have a guardian kill
    // them if this process dies. Without either, the next start still kills what is left.
    if let Err(e) = datakit_ci_process::become_subreaper() {
        tracing::warn!("{:#}", anyhow::Error::new(e));
    }
    let guardian = match datakit_ci_process::Guardian::start() {
        Ok(guardian) => Some(guardian),
        Err(e) => {
            tracing::warn!("{:#}", anyhow::Error::new(e));
            None
        }
    };
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
        let events = ci.engine().subscribe();
        tokio::spawn(async move {
            print_status_changes(events, &mut std::io::stdout(), &mut std::io::stderr()).await
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
    // Its last sweep kills what a build still running (a blocking task cut short) left.
    drop(guardian);
    code
}

/// The program's own options (`A`) given on the command line, as `--name`.
fn program_options_given<A: Args>(matches: &clap::ArgMatches) -> Vec<String> {
    A::augment_args(clap::Command::new("program"))
        .get_arguments()
        .filter(|arg| {
            matches.value_source(arg.get_id().as_str())
                == Some(clap::parser::ValueSource::CommandLine)
        })
        .map(|arg| match arg.get_long() {
            Some(long) => format!("--{long}"),
            None => arg.get_id().to_string(),
        })
        .collect()
}

/// Serves a read-only web UI from a published store (`--read-only-store`) until Ctrl-C or
/// SIGTERM: no builds, so no guardian.
fn serve_read_only(program: &str, options: CiOptions, read_only: ReadOnlyOptions) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{program}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        let started =
            ReplicaCi::start(&options.state_dir, options.web_ui, options.web, read_only).await;
        let replica = match started {
            Ok(replica) => replica,
            Err(e) => {
                eprintln!("{program}: {:#}", anyhow::Error::new(e));
                return ExitCode::from(2);
            }
        };
        if let Some(web) = replica.web() {
            let scheme = if web.state().config().public().is_https() {
                "https"
            } else {
                "http"
            };
            eprintln!(
                "{program}: read-only web UI on {scheme}://{}",
                web.local_addr()
            );
        }
        let cancel = CancellationToken::new();
        let events = replica.engine().subscribe();
        tokio::spawn(async move {
            print_status_changes(events, &mut std::io::stdout(), &mut std::io::stderr()).await
        });
        tokio::spawn(stop_on_signal(cancel.clone()));
        match replica.run(cancel).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{program}: {:#}", anyhow::Error::new(e));
                ExitCode::FAILURE
            }
        }
    });
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

/// Raises this process's soft limit on open files to its hard limit, as servers do: the default
/// soft limit (often 1,024) is what the web server's connection bound is half of, and the engine's
/// `git` processes, store and builds need descriptors too. Failing only leaves the lower limit.
pub(crate) fn raise_descriptor_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::debug!(error = %e, "cannot raise the open-files limit");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "cannot read the open-files limit"),
    }
}

/// Prints a line per status change to `out` until the engine stops. If printing falls behind by
/// more than the engine's channel holds (a first run over thousands of branches, a slow
/// terminal), the changes missed are counted on `err` and printing goes on with the next.
async fn print_status_changes(
    mut events: broadcast::Receiver<StatusChange>,
    out: &mut impl Write,
    err: &mut impl Write,
) {
    loop {
        // A closed terminal or pipe is no reason to stop the CI: the lines are lost, that is all.
        let _ = match events.recv().await {
            Ok(change) => writeln!(
                out,
                "{} {}: {} ({})",
                change.target, change.job, change.state, change.description
            ),
            Err(broadcast::error::RecvError::Lagged(missed)) => writeln!(
                err,
                "({missed} status changes not shown: printing fell behind)"
            ),
            Err(broadcast::error::RecvError::Closed) => return,
        };
    }
}

#[cfg(test)]
mod tests {
    use datakit_ci_term::{CommitHash, RefName, RepoId, TargetId};

    use super::*;

    fn change(n: usize) -> StatusChange {
        let repo = RepoId::new("local", "sample").expect("a valid repository id");
        let name = RefName::new(["heads", &format!("b{n}")]).expect("a valid ref name");
        StatusChange {
            target: TargetId::Ref(repo, name),
            job: "build".to_owned(),
            commit: "0123456789abcdef0123456789abcdef01234567"
                .parse::<CommitHash>()
                .expect("a valid hash"),
            state: "success",
            description: "Passed".to_owned(),
        }
    }

    #[tokio::test]
    async fn status_lines_go_on_after_printing_fell_behind() {
        let (sender, receiver) = broadcast::channel(2);
        // Five changes into a channel of two, before any is printed: the first three are missed.
        for n in 0..5 {
            sender.send(change(n)).expect("a receiver");
        }
        drop(sender);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        print_status_changes(receiver, &mut out, &mut err).await;
        assert_eq!(
            String::from_utf8_lossy(&out),
            "local/sample/heads/b3 build: success (Passed)\n\
             local/sample/heads/b4 build: success (Passed)\n"
        );
        assert_eq!(
            String::from_utf8_lossy(&err),
            "(3 status changes not shown: printing fell behind)\n"
        );
    }
}
