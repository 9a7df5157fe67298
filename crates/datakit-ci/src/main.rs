//! The `datakit-ci` binary: a CI for local Git repositories.
//!
//! ```text
//! datakit-ci --repo [USER/REPO=]PATH … --test NAME=COMMAND … [--state-dir DIR] [--web-ui URL]
//!            [--canary TARGET …] [-v]
//! ```
//!
//! Prints one line per status change; Ctrl-C (or SIGTERM) stops it cleanly. Bad arguments exit
//! with status 2 and one message; a failure while running exits with status 1.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use datakit_ci::cli::Cli;
use datakit_ci::local::LocalCi;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
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

    let config = match cli.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("datakit-ci: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("datakit-ci: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let ci = match LocalCi::start(config).await {
            Ok(ci) => ci,
            Err(e) => {
                eprintln!("datakit-ci: {:#}", anyhow::Error::new(e));
                return ExitCode::from(2);
            }
        };
        if let Some(web) = ci.web() {
            let scheme = if web.state().config().public().is_https() {
                "https"
            } else {
                "http"
            };
            eprintln!("datakit-ci: web UI on {scheme}://{}", web.local_addr());
            if let Some(url) = web.state().setup_url() {
                eprintln!("datakit-ci: first run: open {url} to set the admin password");
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
                eprintln!("datakit-ci: {:#}", anyhow::Error::new(e));
                ExitCode::FAILURE
            }
        }
    })
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
