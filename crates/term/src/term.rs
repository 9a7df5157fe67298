//! `Term<T>`: a description of a computation that the engine evaluates again and again as its
//! inputs change, and its combinators (DESIGN §3).

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::context::{Dependencies, EvalContext};
use crate::ids::JobId;
use crate::logs::Logs;
use crate::status::{Problem, Status};

type EvalFn<T> = dyn Fn(EvalContext) -> BoxFuture<'static, Status<T>> + Send + Sync;

/// A computation producing a `T`, with logs, that may be pending or fail.
///
/// Terms are descriptions: building one does nothing; [`Term::evaluate`] runs it against a
/// context. They are cheap to clone (an `Arc` inside) and `Send + Sync`.
///
/// ```
/// use datakit_ci_term::{EvalContext, JobId, Problem, RefName, TargetId, Term};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let build = Term::ok(2).map(|x| x * 21);
/// let lint = Term::<i32>::pending("Waiting for the linter");
/// let all = Term::pair(build.clone(), lint);
///
/// let job = JobId::new(TargetId::Ref("u/r".parse().unwrap(), RefName::branch("main").unwrap()), "test");
/// let ctx = EvalContext::new(job, None);
/// assert_eq!(build.evaluate(&ctx).await.status.result, Ok(42));
/// let result = all.evaluate(&ctx).await.status.result;
/// assert_eq!(result, Err(Problem::pending("Waiting for the linter")));
/// # }
/// ```
#[must_use = "a term does nothing until it is evaluated"]
pub struct Term<T> {
    eval: Arc<EvalFn<T>>,
}

impl<T> Clone for Term<T> {
    fn clone(&self) -> Self {
        Term {
            eval: Arc::clone(&self.eval),
        }
    }
}

/// The outcome of one evaluation: the status and what it depended on.
#[derive(Debug)]
pub struct Evaluation<T> {
    /// The result and logs.
    pub status: Status<T>,
    /// What to watch to know when evaluating again is worthwhile.
    pub dependencies: Dependencies,
}

/// Renders a list of names as the original did: `a, b, c`, or `<n> tasks` past ten.
fn name_list(names: &[String]) -> String {
    if names.len() > 10 {
        format!("{} tasks", names.len())
    } else {
        names.join(", ")
    }
}

impl<T: Clone + Send + Sync + 'static> Term<T> {
    /// A term evaluated by calling `f` with the context each time.
    pub fn from_fn<F, Fut>(f: F) -> Self
    where
        F: Fn(EvalContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Status<T>> + Send + 'static,
    {
        Term {
            eval: Arc::new(move |ctx| f(ctx).boxed()),
        }
    }

    /// Evaluates the term once in `ctx`, returning its status and dependencies.
    pub async fn evaluate(&self, ctx: &EvalContext) -> Evaluation<T> {
        let status = self.eval(ctx.clone()).await;
        Evaluation {
            status,
            dependencies: ctx.take_dependencies(),
        }
    }

    /// Evaluates the term again and again, each time one of its pending parts may have
    /// progressed, until it succeeds, fails, or is pending on nothing that can resolve by itself
    /// (e.g. an explicit [`Term::pending`]). The metadata snapshot stays the same throughout.
    ///
    /// This is what the engine does for one job, minus watching the metadata; tests, benchmarks
    /// and one-off tools use it directly.
    pub async fn evaluate_until_settled(
        &self,
        job: JobId,
        metadata: Option<datakit_ci_store::Snapshot>,
    ) -> Evaluation<T> {
        loop {
            let evaluation = self
                .evaluate(&EvalContext::new(job.clone(), metadata.clone()))
                .await;
            let pending = matches!(evaluation.status.result, Err(Problem::Pending { .. }));
            if !pending || evaluation.dependencies.ready_count() == 0 {
                return evaluation;
            }
            evaluation.dependencies.ready().await;
        }
    }

    fn eval(&self, ctx: EvalContext) -> BoxFuture<'static, Status<T>> {
        (self.eval)(ctx)
    }

    /// Succeeds with `value`.
    pub fn ok(value: T) -> Self {
        Term::from_fn(move |_| std::future::ready(Status::ok(value.clone())))
    }

    /// Fails with `message` (see also the [`fail!`](crate::fail) macro).
    pub fn fail(message: impl Into<String>) -> Self {
        let message = message.into();
        Term::from_fn(move |_| std::future::ready(Status::failure(message.clone())))
    }

    /// Is pending with `reason`, until something else changes (see also [`pending!`](crate::pending)).
    pub fn pending(reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Term::from_fn(move |_| std::future::ready(Status::pending(reason.clone())))
    }

    /// A term with the given result and no logs. A pending result's `ready` future is watched.
    pub fn of_state(result: Result<T, Problem>) -> Self {
        Term::from_fn(move |ctx: EvalContext| {
            if let Err(Problem::Pending { ready, .. }) = &result {
                ctx.record_ready(ready.clone());
            }
            std::future::ready(Status {
                result: result.clone(),
                output: Logs::Empty,
            })
        })
    }

    /// Always succeeds, with this term's result as the value (logs kept).
    pub fn state(self) -> Term<Result<T, Problem>> {
        Term::from_fn(move |ctx| {
            let inner = self.eval(ctx);
            async move {
                let status = inner.await;
                Status {
                    result: Ok(status.result),
                    output: status.output,
                }
            }
        })
    }

    /// Turns success and failure into a successful `Result`; pending stays pending.
    pub fn catch(self) -> Term<Result<T, String>> {
        Term::from_fn(move |ctx| {
            let inner = self.eval(ctx);
            async move {
                let status = inner.await;
                let result = match status.result {
                    Ok(value) => Ok(Ok(value)),
                    Err(Problem::Failure(message)) => Ok(Err(message)),
                    Err(pending @ Problem::Pending { .. }) => Err(pending),
                };
                Status {
                    result,
                    output: status.output,
                }
            }
        })
    }

    /// A term whose value is computed by `f` at each evaluation; never pending (`of_lwt_quick`).
    pub fn from_future<F, Fut>(f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        Term::from_fn(move |_| f().map(Status::ok))
    }

    /// A term whose status is checked by `check` at each evaluation (`of_lwt_slow`): when it is
    /// pending, its `ready` future is watched, and the job is evaluated again once it resolves.
    pub fn from_status<F, Fut>(check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Status<T>> + Send + 'static,
    {
        Term::from_fn(move |ctx: EvalContext| {
            check().map(move |status| {
                if let Err(Problem::Pending { ready, .. }) = &status.result {
                    ctx.record_ready(ready.clone());
                }
                status
            })
        })
    }

    /// Feeds this term's value to `f` and evaluates the term it returns; a problem stops here.
    /// Logs: this term's, then those of `f`'s term.
    pub fn and_then<U, F>(self, f: F) -> Term<U>
    where
        U: Clone + Send + Sync + 'static,
        F: Fn(T) -> Term<U> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        Term::from_fn(move |ctx: EvalContext| {
            let first = self.eval(ctx.clone());
            let f = Arc::clone(&f);
            async move {
                let first = first.await;
                match first.result {
                    Err(problem) => Status {
                        result: Err(problem),
                        output: first.output,
                    },
                    Ok(value) => {
                        let second = f(value).eval(ctx).await;
                        Status {
                            result: second.result,
                            output: Logs::pair(first.output, second.output),
                        }
                    }
                }
            }
        })
    }

    /// Transforms the value.
    pub fn map<U, F>(self, f: F) -> Term<U>
    where
        U: Clone + Send + Sync + 'static,
        F: Fn(T) -> U + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        Term::from_fn(move |ctx| {
            let inner = self.eval(ctx);
            let f = Arc::clone(&f);
            async move {
                let status = inner.await;
                Status {
                    result: status.result.map(|v| f(v)),
                    output: status.output,
                }
            }
        })
    }

    /// Both values, evaluated concurrently. The first term's problem wins over the second's;
    /// logs are both, in order.
    pub fn pair<U>(first: Term<T>, second: Term<U>) -> Term<(T, U)>
    where
        U: Clone + Send + Sync + 'static,
    {
        Term::from_fn(move |ctx: EvalContext| {
            let a = first.eval(ctx.clone());
            let b = second.eval(ctx);
            async move {
                let (a, b) = futures::join!(a, b);
                let result = match (a.result, b.result) {
                    (Ok(x), Ok(y)) => Ok((x, y)),
                    (Err(problem), _) | (Ok(_), Err(problem)) => Err(problem),
                };
                Status {
                    result,
                    output: Logs::pair(a.output, b.output),
                }
            }
        })
    }

    /// This term's value and `other`'s, evaluated concurrently ([`Term::pair`] as a method).
    pub fn zip<U>(self, other: Term<U>) -> Term<(T, U)>
    where
        U: Clone + Send + Sync + 'static,
    {
        Term::pair(self, other)
    }

    /// Every term's value, in input order, all evaluated concurrently (`list_map_p`, without the
    /// original's reversed order). The first problem in input order wins.
    pub fn all(terms: impl IntoIterator<Item = Term<T>>) -> Term<Vec<T>> {
        let terms: Arc<[Term<T>]> = terms.into_iter().collect();
        Term::from_fn(move |ctx: EvalContext| {
            let evals = terms
                .iter()
                .map(|t| t.eval(ctx.clone()))
                .collect::<Vec<_>>();
            async move {
                let statuses = futures::future::join_all(evals).await;
                let mut output = Logs::Empty;
                let mut result = Ok(Vec::with_capacity(statuses.len()));
                for status in statuses {
                    output = Logs::pair(output, status.output);
                    match (&mut result, status.result) {
                        (Ok(values), Ok(value)) => values.push(value),
                        (Ok(_), Err(problem)) => result = Err(problem),
                        (Err(_), _) => {}
                    }
                }
                Status { result, output }
            }
        })
    }

    /// Succeeds with `()` when this term does; otherwise pending with `while_pending` or failed
    /// with `on_failure`. Logs are kept.
    pub fn wait_for(
        self,
        while_pending: impl Into<String>,
        on_failure: impl Into<String>,
    ) -> Term<()> {
        let while_pending = while_pending.into();
        let on_failure = on_failure.into();
        Term::from_fn(move |ctx| {
            let inner = self.eval(ctx);
            let while_pending = while_pending.clone();
            let on_failure = on_failure.clone();
            async move {
                let status = inner.await;
                let result = match status.result {
                    Ok(_) => Ok(()),
                    Err(Problem::Pending { ready, .. }) => Err(Problem::Pending {
                        reason: while_pending,
                        ready,
                    }),
                    Err(Problem::Failure(_)) => Err(Problem::Failure(on_failure)),
                };
                Status {
                    result,
                    output: status.output,
                }
            }
        })
    }

    /// The same result without logs.
    pub fn without_logs(self) -> Self {
        Term::from_fn(move |ctx| {
            let inner = self.eval(ctx);
            async move {
                Status {
                    result: inner.await.result,
                    output: Logs::Empty,
                }
            }
        })
    }
}

impl<T: Clone + Send + Sync + 'static> Term<Term<T>> {
    /// Evaluates the term this term produces.
    pub fn join(self) -> Term<T> {
        self.and_then(|inner| inner)
    }
}

impl<F: Clone + Send + Sync + 'static> Term<F> {
    /// Applies the function this term produces to `arg`'s value (both evaluated concurrently).
    pub fn apply<A, B>(self, arg: Term<A>) -> Term<B>
    where
        F: Fn(A) -> B,
        A: Clone + Send + Sync + 'static,
        B: Clone + Send + Sync + 'static,
    {
        Term::pair(self, arg).map(|(f, a)| f(a))
    }
}

impl Term<()> {
    /// Succeeds when every named term does; otherwise explains which failed and which are still
    /// pending, using the names (spec §3.13):
    /// `a, b failed`, `Waiting for a, b`, or `a failed (still waiting for b)`; more than ten
    /// names are shown as `<n> tasks`.
    pub fn wait_for_all<S, T>(named: impl IntoIterator<Item = (S, Term<T>)>) -> Term<()>
    where
        S: Into<String>,
        T: Clone + Send + Sync + 'static,
    {
        let named: Arc<[(String, Term<T>)]> = named
            .into_iter()
            .map(|(name, term)| (name.into(), term))
            .collect();
        Term::from_fn(move |ctx: EvalContext| {
            let evals = named
                .iter()
                .map(|(_, t)| t.eval(ctx.clone()))
                .collect::<Vec<_>>();
            let named = Arc::clone(&named);
            async move {
                let statuses = futures::future::join_all(evals).await;
                let mut output = Logs::Empty;
                let (mut failed, mut pending) = (Vec::new(), Vec::new());
                for ((name, _), status) in named.iter().zip(statuses) {
                    output = Logs::pair(output, status.output);
                    match status.result {
                        Ok(_) => {}
                        Err(Problem::Failure(_)) => failed.push(name.clone()),
                        Err(Problem::Pending { .. }) => pending.push(name.clone()),
                    }
                }
                let result = match (failed.is_empty(), pending.is_empty()) {
                    (true, true) => Ok(()),
                    (false, true) => {
                        Err(Problem::failure(format!("{} failed", name_list(&failed))))
                    }
                    (true, false) => Err(Problem::pending(format!(
                        "Waiting for {}",
                        name_list(&pending)
                    ))),
                    (false, false) => Err(Problem::pending(format!(
                        "{} failed (still waiting for {})",
                        name_list(&failed),
                        name_list(&pending)
                    ))),
                };
                Status { result, output }
            }
        })
    }
}

impl Term<JobId> {
    /// The id of the job being evaluated.
    pub fn job_id() -> Self {
        Term::from_fn(|ctx: EvalContext| std::future::ready(Status::ok(ctx.job().clone())))
    }
}

/// `Term::fail(format!(...))`.
///
/// ```
/// let t: datakit_ci_term::Term<()> = datakit_ci_term::fail!("exit status {}", 2);
/// ```
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => { $crate::Term::fail(::std::format!($($arg)*)) };
}

/// `Term::pending(format!(...))`.
///
/// ```
/// let t: datakit_ci_term::Term<()> = datakit_ci_term::pending!("waiting for {}", "lint");
/// ```
#[macro_export]
macro_rules! pending {
    ($($arg:tt)*) => { $crate::Term::pending(::std::format!($($arg)*)) };
}
