//! The `datakit-ci` binary: a CI for local Git repositories.
//!
//! ```text
//! datakit-ci --repo [USER/REPO=]PATH … [--test NAME=COMMAND …] [--state-dir DIR] [--web-ui URL]
//!            [--canary TARGET …] [--listen URL …] [-v]
//! datakit-ci check [FILE]
//! datakit-ci plan --repo PATH [--ref REF] [--state-dir DIR]
//! datakit-ci schema
//! ```
//!
//! Without `--test`, each commit's `.datakit-ci.yml` says what to run.
//!
//! It is [`datakit_ci::run`] with shell tests: prints one line per status change; Ctrl-C (or
//! SIGTERM) stops it cleanly. Bad arguments exit with status 2 and one message; a failure while
//! running exits with status 1.

use std::process::ExitCode;

use datakit_ci::cli::ShellTests;
use datakit_ci::local::shell_projects;

/// glibc's allocator kept hundreds of MiB of freed memory in its per-thread arenas (commits on a
/// 10,000-target metadata branch make short-lived buffers of about a megabyte on many blocking
/// threads): the resident size with 10,000 idle targets was 0.55–1 GiB with glibc against about
/// 0.49 GiB with mimalloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(first) = args.get(1).and_then(|a| a.to_str())
        && datakit_ci::pipeline_cli::SUBCOMMANDS.contains(&first)
    {
        return datakit_ci::pipeline_cli::main(args);
    }
    datakit_ci::run(|tests: ShellTests| {
        let shell = tests.into_config().map_err(|e| e.to_string())?;
        Ok(move |repos: &[_], services: &_| {
            shell_projects(&shell, repos, services).map_err(|e| e.to_string())
        })
    })
}
