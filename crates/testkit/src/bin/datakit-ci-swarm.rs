//! The tests' swarm from the command line: `datakit-ci-swarm up [WORKERS]` brings it up (or
//! repairs it) and prints its nodes; `datakit-ci-swarm down` removes everything the harness made
//! (`.ci/run` runs it when the tests are done).

use std::process::ExitCode;

use datakit_ci_testkit::swarm::Cluster;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["up"] => up(3),
        ["up", workers] => match workers.parse() {
            Ok(workers) => up(workers),
            Err(_) => Err(format!("WORKERS must be a number, not {workers:?}")),
        },
        ["down"] => Cluster::teardown().map_err(|e| e.to_string()),
        _ => Err("usage: datakit-ci-swarm up [WORKERS] | down".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("datakit-ci-swarm: {error}");
            ExitCode::FAILURE
        }
    }
}

fn up(workers: usize) -> Result<(), String> {
    let cluster = Cluster::ensure(workers).map_err(|e| e.to_string())?;
    println!(
        "manager {} at {} (socket {}), registry {}",
        cluster.manager_id(),
        cluster.manager_address(),
        cluster.manager_socket().display(),
        cluster.registry().address()
    );
    for worker in cluster.workers() {
        println!(
            "{} {} at {} (socket {})",
            worker.name(),
            worker.node_id(),
            worker.address(),
            worker.socket().display()
        );
    }
    Ok(())
}
