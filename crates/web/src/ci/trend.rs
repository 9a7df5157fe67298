//! A job's trend (issue 21 item 7): the results and durations of its last runs on a target, read
//! from the target's recorded states, drawn as a small SVG bar chart, and whether the job is
//! **flaky**.
//!
//! A *run* ends at each recorded state where the job's result became final (passed, failed,
//! cancelled, skipped) after being pending or on a new head; it took from the first state on that
//! head where the job was pending since the previous run, to that state. Two runs had the *same
//! inputs* when they ran on the same source commit, or when their saved logs are the same cache
//! entry (the cache key names every input of a build); a job is flaky when runs with the same
//! inputs both passed and failed. Cancelled and skipped runs say nothing about flakiness.
//!
//! Knows nothing of HTTP; the SVG is written with `maud`, so text is escaped.

use std::time::{Duration, SystemTime};

use maud::{Markup, html};

use datakit_ci_store::CommitId;
use datakit_ci_term::{CommitHash, JobResult, LogLeaf};

use super::model::{Phase, Recorded, phase_of};
use crate::time;

/// How many runs the chart shows.
pub(crate) const TREND_RUNS: usize = 50;
/// How many recorded states are read to find them (a run takes a few states).
pub(crate) const TREND_STATES: usize = 250;

/// One finished run of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    /// The recorded state where it finished.
    pub(crate) state: CommitId,
    pub(crate) head: Option<CommitHash>,
    pub(crate) phase: Phase,
    pub(crate) took: Option<Duration>,
    /// The branch of its last saved log: its cache entry.
    pub(crate) cache_entry: Option<String>,
    pub(crate) finished: SystemTime,
}

/// The runs of `job` in `states` (recorded states, newest first), newest first, at most
/// [`TREND_RUNS`].
pub(crate) fn runs(job: &str, states: &[Recorded]) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut previous: Option<(Option<&CommitHash>, &JobResult)> = None;
    let mut pending_since: Option<(Option<&CommitHash>, SystemTime)> = None;
    for recorded in states.iter().rev() {
        let Some(output) = recorded.state.jobs.get(job) else {
            continue;
        };
        let head = recorded.state.source_commit.as_ref();
        let phase = phase_of(Some(output));
        if !phase.is_final() {
            if pending_since.is_none_or(|(since_head, _)| since_head != head) {
                pending_since = Some((head, recorded.time));
            }
            previous = Some((head, &output.result));
            continue;
        }
        let new_run = match previous {
            None => true,
            Some((previous_head, previous_result)) => {
                previous_head != head || previous_result != &output.result
            }
        };
        if new_run && let Some(state) = recorded.state.commit {
            let took = pending_since
                .filter(|(since_head, _)| *since_head == head)
                .and_then(|(_, since)| recorded.time.duration_since(since).ok());
            let cache_entry = output
                .logs
                .leaves()
                .into_iter()
                .rev()
                .find_map(|leaf| match leaf {
                    LogLeaf::Saved(saved) => Some(saved.branch().to_string()),
                    LogLeaf::Live(_) => None,
                });
            runs.push(Run {
                state,
                head: head.cloned(),
                phase,
                took,
                cache_entry,
                finished: recorded.time,
            });
            pending_since = None;
        }
        previous = Some((head, &output.result));
    }
    runs.reverse();
    runs.truncate(TREND_RUNS);
    runs
}

/// Why the job is flaky, if runs with the same inputs (`runs`, newest first) passed and failed.
pub(crate) fn flaky(runs: &[Run]) -> Option<String> {
    let decisive = |run: &&Run| matches!(run.phase, Phase::Passed | Phase::Failed);
    for (index, run) in runs.iter().enumerate().filter(|(_, run)| decisive(run)) {
        let same_inputs = runs[index + 1..].iter().filter(decisive).find(|other| {
            other.phase != run.phase
                && ((run.head.is_some() && other.head == run.head)
                    || (run.cache_entry.is_some() && other.cache_entry == run.cache_entry))
        });
        if let Some(other) = same_inputs {
            let inputs = if other.head == run.head {
                format!(
                    "commit {}",
                    run.head.as_ref().map_or("?", |head| head.short(8))
                )
            } else {
                format!("cache entry {}", run.cache_entry.as_deref().unwrap_or("?"))
            };
            return Some(format!(
                "Flaky: with the same inputs ({inputs}) it {} and {}",
                run.phase.word(),
                other.phase.word()
            ));
        }
    }
    None
}

const BAR_WIDTH: u64 = 8;
const BAR_GAP: u64 = 2;
const CHART_HEIGHT: u64 = 40;
const MIN_BAR: u64 = 6;

/// The chart of `runs` (newest first), oldest on the left: one bar per run, as high as it took
/// long, coloured by its result, linking to its recorded state.
pub(crate) fn chart(job: &str, runs: &[Run], now: SystemTime) -> Markup {
    let longest = runs
        .iter()
        .filter_map(|run| run.took)
        .max()
        .unwrap_or_default()
        .as_secs()
        .max(1);
    let width = (runs.len() as u64).max(1) * (BAR_WIDTH + BAR_GAP);
    let label = format!(
        "Results and durations of the last {} runs of {job}",
        runs.len()
    );
    html! {
        svg.trend xmlns="http://www.w3.org/2000/svg" role="img" aria-label=(label)
            width=(width) height=(CHART_HEIGHT) viewBox=(format!("0 0 {width} {CHART_HEIGHT}")) {
            @for (index, run) in runs.iter().rev().enumerate() {
                @let height = run.took.map_or(MIN_BAR, |took| {
                    (took.as_secs() * CHART_HEIGHT / longest).clamp(MIN_BAR, CHART_HEIGHT)
                });
                @let class = match run.phase {
                    Phase::WaitingForApproval => "approval",
                    other => other.word(),
                };
                a href=(format!("?history={}", run.state)) {
                    rect class={ "run run-" (class) } x=((index as u64) * (BAR_WIDTH + BAR_GAP))
                        y=(CHART_HEIGHT - height) width=(BAR_WIDTH) height=(height) {
                        title {
                            (run.phase.word())
                            @if let Some(head) = &run.head { " on " (head.short(8)) }
                            @if let Some(took) = run.took { ", took " (time::duration(took)) }
                            ", " (time::relative(run.finished, now))
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use datakit_ci_history::HistoryState;
    use datakit_ci_term::{JobOutput, Logs};

    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    /// A recorded state, `seconds` after the epoch, of `job` on `head` with `result`.
    fn state(n: u8, seconds: u64, head: &str, result: JobResult) -> anyhow::Result<Recorded> {
        let mut jobs = BTreeMap::new();
        jobs.insert(
            "test".to_owned(),
            JobOutput {
                result,
                logs: Logs::Empty,
            },
        );
        Ok(Recorded {
            state: HistoryState {
                commit: Some(format!("{:040x}", n).parse()?),
                parents: Vec::new(),
                source_commit: Some(head.parse()?),
                metadata_commit: None,
                jobs,
            },
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
            subject: String::new(),
        })
    }

    fn pending() -> JobResult {
        JobResult::Pending("Building".into())
    }
    fn passed() -> JobResult {
        JobResult::Success("ok".into())
    }
    fn failed() -> JobResult {
        JobResult::Failure("exit 1".into())
    }

    #[test]
    fn runs_are_read_from_the_states_and_flakiness_from_same_inputs() -> anyhow::Result<()> {
        // Oldest first here; the history is newest first.
        let mut states = vec![
            state(1, 100, A, pending())?,
            state(2, 160, A, failed())?,
            // A rebuild of the same commit passes: flaky.
            state(3, 200, A, pending())?,
            state(4, 230, A, passed())?,
            // Recorded again unchanged: not a new run.
            state(5, 240, A, passed())?,
            // A new head, its result from the cache at once: no duration.
            state(6, 300, B, passed())?,
        ];
        states.reverse();
        let found = runs("test", &states);
        let summary: Vec<(Phase, Option<u64>)> = found
            .iter()
            .map(|run| (run.phase, run.took.map(|took| took.as_secs())))
            .collect();
        assert_eq!(
            summary,
            [
                (Phase::Passed, None),
                (Phase::Passed, Some(30)),
                (Phase::Failed, Some(60))
            ]
        );
        assert_eq!(
            flaky(&found).as_deref(),
            Some("Flaky: with the same inputs (commit aaaaaaaa) it passed and failed")
        );
        // Without the failure, nothing is flaky.
        assert_eq!(flaky(&found[..2]), None);
        assert!(runs("other", &states).is_empty());
        Ok(())
    }

    #[test]
    fn the_chart_is_valid_svg_with_a_bar_per_run() -> anyhow::Result<()> {
        let mut states = Vec::new();
        for n in 0..60_u8 {
            let head = format!("{:040x}", u64::from(n) + 1);
            let seconds = u64::from(n) * 100;
            states.push(state(2 * n + 1, seconds, &head, pending())?);
            let result = if n % 7 == 0 { failed() } else { passed() };
            states.push(state(
                2 * n + 2,
                seconds + u64::from(n % 5) * 10 + 5,
                &head,
                result,
            )?);
        }
        states.reverse();
        let found = runs("test", &states);
        assert_eq!(found.len(), TREND_RUNS);
        let svg = chart(
            "test <&>",
            &found,
            SystemTime::UNIX_EPOCH + Duration::from_secs(10_000),
        )
        .into_string();
        let document = roxmltree::Document::parse(&svg)?;
        let bars: Vec<_> = document
            .descendants()
            .filter(|node| node.has_tag_name("rect"))
            .collect();
        assert_eq!(bars.len(), TREND_RUNS);
        let failures = bars
            .iter()
            .filter(|bar| bar.attribute("class") == Some("run run-failed"))
            .count();
        assert_eq!(
            failures,
            found.iter().filter(|r| r.phase == Phase::Failed).count()
        );
        assert!(
            document
                .root_element()
                .attribute("aria-label")
                .is_some_and(|label| label.ends_with("of test <&>"))
        );
        assert_eq!(flaky(&found), None);
        Ok(())
    }
}
