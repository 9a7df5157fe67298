//! Measures live-log append throughput while many readers stream the log.
//!
//! Run with `cargo run --release -p datakit-ci-log --example throughput -- [MiB] [readers]`
//! (defaults: 256 MiB, 100 readers). Prints the writer's MB/s and checks every reader got every byte.

use std::time::Instant;

use datakit_ci_log::{LiveLogSpec, LogManager};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mebibytes: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(256);
    let readers: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(100);

    let manager = LogManager::new();
    let log = manager.create(LiveLogSpec {
        branch: "throughput".to_owned(),
        title: "Throughput".to_owned(),
        pending: "Running".to_owned(),
        cancel: None,
    })?;
    let tasks: Vec<_> = (0..readers)
        .map(|_| {
            let mut stream = log.stream();
            tokio::spawn(async move {
                let mut total = 0_u64;
                while let Some(chunk) = stream.next_chunk().await? {
                    total += chunk.len() as u64;
                }
                std::io::Result::Ok(total)
            })
        })
        .collect();

    let chunk = vec![b'x'; 64 * 1024];
    let chunks = mebibytes * 16;
    let started = Instant::now();
    for index in 0..chunks {
        log.write(&chunk);
        if index % 16 == 0 {
            tokio::task::yield_now().await;
        }
    }
    log.finish();
    let write_time = started.elapsed();
    for task in tasks {
        let total = task.await??;
        anyhow::ensure!(
            total == log.len(),
            "a reader got {total} of {} bytes",
            log.len()
        );
    }
    let all_time = started.elapsed();
    let megabytes = log.len() as f64 / 1e6;
    println!(
        "{readers} readers: append {:.0} MB/s ({megabytes:.0} MB in {write_time:.2?}); all readers done after {all_time:.2?}",
        megabytes / write_time.as_secs_f64()
    );
    Ok(())
}
