//! CPU time of the web server alone: it runs on a runtime of its own whose threads (workers and
//! blocking pool) are all named [`SERVER_THREADS`], and their `utime` + `stime` are summed from
//! `/proc/self/task/<tid>/stat`. The clients and the live log's writer run on other threads.

use std::time::Duration;

use anyhow::Context;

use crate::engine_group::sys::clock_ticks_per_second;

/// The name of every thread of the web server's runtime (at most 15 bytes: Linux truncates).
pub(super) const SERVER_THREADS: &str = "bench-web-srv";

/// User + system CPU time used so far by the threads named [`SERVER_THREADS`] that are alive
/// now (the runtime keeps its workers for its whole life; blocking threads that exited since
/// are missed, so this is a lower bound if any did).
pub(super) fn server_cpu() -> anyhow::Result<Duration> {
    let mut ticks = 0_u64;
    for entry in std::fs::read_dir("/proc/self/task").context("list /proc/self/task")? {
        let path = entry.context("list /proc/self/task")?.path().join("stat");
        // A thread may exit between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map_or("", |(_, name)| name);
        if name != SERVER_THREADS {
            continue;
        }
        // After the name: field 3 (state) first, so utime and stime (fields 14, 15) are 11, 12.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        for index in [11, 12] {
            ticks += fields
                .get(index)
                .with_context(|| format!("short {}", path.display()))?
                .parse::<u64>()
                .with_context(|| format!("bad field {} of {}", index + 3, path.display()))?;
        }
    }
    Ok(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second(),
    ))
}
