//! Every combinator's result and logs, evaluated through the public API.

use datakit_ci_log::{LiveLog, LiveLogSpec, LogManager};
use datakit_ci_store::{BranchName, CommitId};
use datakit_ci_term::{
    EvalContext, JobId, LogLeaf, Logs, Problem, Ready, RefName, SavedLog, Status, TargetId, Term,
};

fn job() -> JobId {
    let target = TargetId::Ref(
        "me/proj".parse().expect("valid"),
        RefName::branch("main").expect("valid"),
    );
    JobId::new(target, "test")
}

async fn eval<T: Clone + Send + Sync + 'static>(term: &Term<T>) -> Status<T> {
    term.evaluate(&EvalContext::new(job(), None)).await.status
}

fn live(logs: &LogManager, branch: &str) -> LiveLog {
    logs.create(LiveLogSpec {
        branch: branch.into(),
        title: format!("Build {branch}"),
        pending: "building".into(),
        cancel: None,
    })
    .expect("one log per branch")
}

fn saved(branch: &str) -> SavedLog {
    let commit: CommitId = "0123456789abcdef0123456789abcdef01234567"
        .parse()
        .expect("hex");
    SavedLog::new(
        "Saved build",
        commit,
        BranchName::new(branch).expect("valid"),
        false,
        None,
    )
}

/// The branches of the log leaves, in order: `live:<b>` or `saved:<b>`.
fn leaves(logs: &Logs) -> Vec<String> {
    logs.leaves()
        .into_iter()
        .map(|leaf| match leaf {
            LogLeaf::Live(l) => format!("live:{}", l.branch()),
            LogLeaf::Saved(s) => format!("saved:{}", s.branch()),
        })
        .collect()
}

/// A term that succeeds with `value` and carries a live log on `branch`.
fn logged<T: Clone + Send + Sync + 'static>(value: Result<T, Problem>, log: Logs) -> Term<T> {
    Term::from_status(move || {
        let status = Status {
            result: value.clone(),
            output: log.clone(),
        };
        async move { status }
    })
}

#[tokio::test]
async fn constants() {
    assert_eq!(eval(&Term::ok(1)).await.result, Ok(1));
    assert_eq!(
        eval(&Term::<i32>::fail("bad")).await.result,
        Err(Problem::failure("bad"))
    );
    assert_eq!(
        eval(&Term::<i32>::pending("wait")).await.result,
        Err(Problem::pending("wait"))
    );
    let formatted: Term<()> = datakit_ci_term::fail!("exit {}", 2);
    assert_eq!(
        eval(&formatted).await.result,
        Err(Problem::failure("exit 2"))
    );
    let formatted: Term<()> = datakit_ci_term::pending!("waiting for {}", "x");
    assert_eq!(
        eval(&formatted).await.result,
        Err(Problem::pending("waiting for x"))
    );
    assert_eq!(
        eval(&Term::of_state(Err::<u8, _>(Problem::failure("x"))))
            .await
            .result,
        Err(Problem::failure("x"))
    );
    assert!(eval(&Term::ok(1)).await.output.is_empty());
}

#[tokio::test]
async fn state_and_catch() {
    let logs = LogManager::new();
    let log = Logs::Live(live(&logs, "b1"));
    let failing = logged::<u8>(Err(Problem::failure("boom")), log.clone());
    let state = eval(&failing.clone().state()).await;
    assert_eq!(state.result, Ok(Err(Problem::failure("boom"))));
    assert_eq!(leaves(&state.output), ["live:b1"]);

    assert_eq!(
        eval(&failing.catch()).await.result,
        Ok(Err("boom".to_owned()))
    );
    assert_eq!(eval(&Term::ok(3).catch()).await.result, Ok(Ok(3)));
    let pending = eval(&Term::<u8>::pending("later").catch()).await;
    assert_eq!(
        pending.result,
        Err(Problem::pending("later")),
        "pending passes through catch"
    );
}

#[tokio::test]
async fn from_future_and_map() {
    let term = Term::from_future(|| async { 20 }).map(|x| x + 1);
    assert_eq!(eval(&term).await.result, Ok(21));
}

#[tokio::test]
async fn and_then_keeps_both_logs_and_stops_at_a_problem() {
    let logs = LogManager::new();
    let (a, b) = (Logs::Live(live(&logs, "a")), Logs::Saved(saved("b")));
    let first = logged(Ok(2), a.clone());
    let b2 = b.clone();
    let chained = first
        .clone()
        .and_then(move |x| logged(Ok(x * 10), b2.clone()));
    let status = eval(&chained).await;
    assert_eq!(status.result, Ok(20));
    assert_eq!(leaves(&status.output), ["live:a", "saved:b"]);

    let stopped = logged::<i32>(Err(Problem::failure("no")), a)
        .and_then(|_: i32| -> Term<i32> { panic!("must not run after a failure") });
    let status = eval(&stopped).await;
    assert_eq!(status.result, Err(Problem::failure("no")));
    assert_eq!(leaves(&status.output), ["live:a"]);
}

#[tokio::test]
async fn pair_evaluates_both_and_prefers_the_first_problem() {
    let logs = LogManager::new();
    let (a, b) = (Logs::Live(live(&logs, "a")), Logs::Live(live(&logs, "b")));
    let ok = Term::pair(logged(Ok(1), a.clone()), logged(Ok("x"), b.clone()));
    let status = eval(&ok).await;
    assert_eq!(status.result, Ok((1, "x")));
    assert_eq!(leaves(&status.output), ["live:a", "live:b"]);

    let both_bad = logged::<u8>(Err(Problem::pending("p")), a)
        .zip(logged::<u8>(Err(Problem::failure("f")), b));
    let status = eval(&both_bad).await;
    assert_eq!(status.result, Err(Problem::pending("p")));
    assert_eq!(
        leaves(&status.output),
        ["live:a", "live:b"],
        "both sides evaluated"
    );
    let second_bad = Term::ok(1).zip(Term::<u8>::fail("f"));
    assert_eq!(eval(&second_bad).await.result, Err(Problem::failure("f")));
}

#[tokio::test]
async fn pair_runs_both_sides_concurrently() {
    // Each side waits until the other has started: only concurrent evaluation finishes.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let side = |b: std::sync::Arc<tokio::sync::Barrier>| {
        Term::from_future(move || {
            let b = b.clone();
            async move {
                b.wait().await;
                1
            }
        })
    };
    let term = Term::pair(side(barrier.clone()), side(barrier));
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), eval(&term)).await;
    assert_eq!(status.map(|s| s.result), Ok(Ok((1, 1))));
}

#[tokio::test]
async fn apply_and_join() {
    let f = Term::ok(|x: i32| x * 3);
    assert_eq!(eval(&f.apply(Term::ok(5))).await.result, Ok(15));
    assert_eq!(eval(&Term::ok(Term::ok(7)).join()).await.result, Ok(7));
    assert_eq!(
        eval(&Term::ok(Term::<u8>::fail("inner")).join())
            .await
            .result,
        Err(Problem::failure("inner"))
    );
}

#[tokio::test]
async fn all_keeps_input_order_and_reports_the_first_problem() {
    let logs = LogManager::new();
    let terms: Vec<Term<usize>> = (0..5)
        .map(|i| logged(Ok(i), Logs::Live(live(&logs, &format!("l{i}")))))
        .collect();
    let status = eval(&Term::all(terms)).await;
    assert_eq!(status.result, Ok(vec![0, 1, 2, 3, 4]));
    assert_eq!(
        leaves(&status.output),
        ["live:l0", "live:l1", "live:l2", "live:l3", "live:l4"]
    );

    let mixed = Term::all([Term::ok(1), Term::fail("second"), Term::pending("third")]);
    assert_eq!(eval(&mixed).await.result, Err(Problem::failure("second")));
    assert_eq!(eval(&Term::<u8>::all([])).await.result, Ok(vec![]));
}

#[tokio::test]
async fn wait_for_replaces_messages_and_keeps_logs() {
    let logs = LogManager::new();
    let log = Logs::Live(live(&logs, "w"));
    let w = |r: Result<u8, Problem>| logged(r, log.clone()).wait_for("still going", "it broke");
    assert_eq!(eval(&w(Ok(1))).await.result, Ok(()));
    assert_eq!(
        eval(&w(Err(Problem::pending("x")))).await.result,
        Err(Problem::pending("still going"))
    );
    let failed = eval(&w(Err(Problem::failure("x")))).await;
    assert_eq!(failed.result, Err(Problem::failure("it broke")));
    assert_eq!(leaves(&failed.output), ["live:w"]);
}

async fn wait_for_all_result(specs: &[(&str, Term<()>)]) -> Result<(), Problem> {
    eval(&Term::wait_for_all(specs.iter().cloned()))
        .await
        .result
}

#[tokio::test]
async fn wait_for_all_messages_match_the_original() {
    let ok = Term::ok(());
    let bad = Term::<()>::fail("x");
    let wait = Term::<()>::pending("y");
    assert_eq!(
        wait_for_all_result(&[("a", ok.clone()), ("b", ok.clone())]).await,
        Ok(())
    );
    assert_eq!(
        wait_for_all_result(&[("a", bad.clone()), ("b", ok.clone()), ("c", bad.clone())]).await,
        Err(Problem::failure("a, c failed"))
    );
    assert_eq!(
        wait_for_all_result(&[("a", wait.clone()), ("b", wait.clone())]).await,
        Err(Problem::pending("Waiting for a, b"))
    );
    assert_eq!(
        wait_for_all_result(&[("a", bad.clone()), ("b", wait.clone())]).await,
        Err(Problem::pending("a failed (still waiting for b)"))
    );
    let names: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
    let eleven: Vec<(&str, Term<()>)> = names.iter().map(|n| (n.as_str(), wait.clone())).collect();
    assert_eq!(
        wait_for_all_result(&eleven).await,
        Err(Problem::pending("Waiting for 11 tasks"))
    );
    let ten: Vec<(&str, Term<()>)> = names[..10]
        .iter()
        .map(|n| (n.as_str(), bad.clone()))
        .collect();
    assert_eq!(
        wait_for_all_result(&ten).await,
        Err(Problem::failure(
            "t0, t1, t2, t3, t4, t5, t6, t7, t8, t9 failed"
        ))
    );
}

#[tokio::test]
async fn without_logs_and_job_id() {
    let logs = LogManager::new();
    let term = logged(Ok(1), Logs::Live(live(&logs, "x"))).without_logs();
    let status = eval(&term).await;
    assert_eq!(status.result, Ok(1));
    assert!(status.output.is_empty());
    assert_eq!(eval(&Term::job_id()).await.result, Ok(job()));
}

#[tokio::test]
async fn pending_sources_register_ready_futures_and_settle() {
    let (sender, ready) = Ready::channel();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let term = Term::from_status(move || {
        let status = if flag.load(std::sync::atomic::Ordering::SeqCst) {
            Status::ok("built")
        } else {
            Status {
                result: Err(Problem::Pending {
                    reason: "building".into(),
                    ready: ready.clone(),
                }),
                output: Logs::Empty,
            }
        };
        async move { status }
    });
    let evaluation = term
        .clone()
        .map(|s| s.len())
        .evaluate(&EvalContext::new(job(), None))
        .await;
    assert_eq!(evaluation.status.result, Err(Problem::pending("building")));
    assert_eq!(evaluation.dependencies.ready_count(), 1);

    let settle =
        tokio::spawn(async move { term.evaluate_until_settled(job(), None).await.status.result });
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    sender.resolve();
    assert_eq!(settle.await.expect("no panic"), Ok("built"));
    // The superseded evaluation's dependencies resolve too, and dropping them drops the watch.
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        evaluation.dependencies.ready(),
    )
    .await
    .expect("the ready future resolved");
}

#[tokio::test]
async fn a_term_without_pending_parts_has_no_ready_dependencies() {
    let evaluation = Term::<u8>::pending("manual")
        .evaluate(&EvalContext::new(job(), None))
        .await;
    assert_eq!(evaluation.dependencies.ready_count(), 0);
    assert!(evaluation.dependencies.paths().is_empty());
}
