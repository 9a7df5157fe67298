//! Figure 2, terms: the time per node to evaluate a 1,000-node term made of `pair`/`map` and
//! `zip`/`and_then` over `Term::ok` leaves and `Cache::find` of already-built keys.

use std::time::{Duration, Instant};

use anyhow::ensure;

use datakit_ci_term::{EvalContext, JobId, RefName, TargetId, Term};

use super::cache::{BuiltCache, Double};
use crate::Scale;
use crate::report::{Figure, Report};
use crate::stats::quantile;

/// Nodes of the evaluated term: combinators and leaves, each counted once.
const NODES: usize = 1000;
/// Distinct built keys the `Cache::find` leaves look up.
const KEYS: u32 = 16;
/// Evaluations before timing starts.
const WARM_UP: usize = 10;

/// Measures the terms figure.
pub(super) async fn run(scale: Scale, report: &mut Report) -> anyhow::Result<()> {
    let repeats = match scale {
        Scale::Full => 500,
        Scale::Quick => 50,
    };
    let built = BuiltCache::new(KEYS).await?;
    let mut tree = TermTree {
        built: &built,
        nodes: 0,
        leaves: 0,
        finds: 0,
    };
    let (term, expected) = tree.build(NODES, 0);
    let nodes = tree.nodes;
    ensure!(nodes == NODES, "the term has {nodes} nodes, not {NODES}");

    let job = JobId::new(
        TargetId::Ref("u/r".parse()?, RefName::branch("main")?),
        "bench",
    );
    let mut times = Vec::with_capacity(repeats);
    for repeat in 0..WARM_UP + repeats {
        let ctx = EvalContext::new(job.clone(), None);
        let started = Instant::now();
        let evaluation = term.evaluate(&ctx).await;
        let elapsed = started.elapsed();
        ensure!(
            evaluation.status.result.as_ref().ok() == Some(&expected),
            "the term evaluated to {:?}, not Ok({expected})",
            evaluation.status.result
        );
        if repeat >= WARM_UP {
            times.push(elapsed);
        }
    }
    built.cache.shutdown().await;

    let median: Duration = quantile(&times, 0.5);
    report.add(Figure::new(
        format!(
            "terms: evaluation of a {nodes}-node term ({} cache.find leaves), median of {repeats}",
            tree.finds
        ),
        median.as_secs_f64() * 1e9 / nodes as f64,
        "ns/node",
    ));
    Ok(())
}

/// Builds a balanced term of a given number of nodes, counting what it made.
struct TermTree<'a> {
    built: &'a BuiltCache,
    nodes: usize,
    leaves: usize,
    finds: usize,
}

impl TermTree<'_> {
    /// A term of exactly `budget` nodes (at least 1) and the value it evaluates to. Even depths
    /// are `pair(..).map(..)` (2 nodes), odd depths `zip(..).and_then(|..| ok(..))` (3 nodes);
    /// a leaf given more than one node is wrapped in `map`s.
    fn build(&mut self, budget: usize, depth: usize) -> (Term<u64>, u64) {
        let own = if depth.is_multiple_of(2) { 2 } else { 3 };
        if budget < own + 2 {
            let (mut term, mut value) = self.leaf();
            for _ in 1..budget {
                term = term.map(|x| x + 1);
                value += 1;
                self.nodes += 1;
            }
            return (term, value);
        }
        let left_budget = (budget - own) / 2;
        let (left, a) = self.build(left_budget, depth + 1);
        let (right, b) = self.build(budget - own - left_budget, depth + 1);
        self.nodes += own;
        if depth.is_multiple_of(2) {
            (Term::pair(left, right).map(|(x, y)| x + y), a + b)
        } else {
            let term = left.zip(right).and_then(|(x, y)| Term::ok(x + y + 1));
            (term, a + b + 1)
        }
    }

    fn leaf(&mut self) -> (Term<u64>, u64) {
        let index = self.leaves;
        self.leaves += 1;
        self.nodes += 1;
        if index.is_multiple_of(2) {
            (Term::ok(index as u64), index as u64)
        } else {
            self.finds += 1;
            let key = index as u32 % KEYS;
            (self.built.cache.find((), key), Double::double(key))
        }
    }
}
