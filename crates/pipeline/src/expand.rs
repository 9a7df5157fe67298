//! From checked steps to jobs: `needs` between steps (unknown names, cycles), the job limit,
//! matrix expansion and job names. Knows nothing of YAML.

use std::collections::{BTreeMap, HashMap};

use crate::MAX_JOBS;
use crate::error::{Problem, did_you_mean};
use crate::job::Job;
use crate::validate::Step;

/// A step as the file has it: checked, or only its name when its keys could not be read.
pub(crate) struct Named {
    pub(crate) name: String,
    pub(crate) step: Option<Step>,
}

/// Checks the relations between `steps` and expands them into jobs, in file order.
pub(crate) fn jobs(steps: &[Named], problems: &mut Vec<Problem>) -> Vec<Job> {
    // Counted before anything else, so that a huge matrix is refused without being built,
    // and the searches below stay small. A step that could not be read counts as one job.
    let count = steps
        .iter()
        .map(|s| {
            s.step.as_ref().map_or(1, |s| {
                s.matrix
                    .iter()
                    .fold(1usize, |n, (_, values)| n.saturating_mul(values.len()))
            })
        })
        .fold(0usize, usize::saturating_add);
    if count >= MAX_JOBS {
        problems.push(Problem::at(
            None,
            format!("the file makes {count} jobs; the limit is {}", MAX_JOBS - 1),
        ));
        return Vec::new();
    }
    // Many steps with an empty matrix make no jobs but would still be searched.
    if steps.len() >= MAX_JOBS {
        problems.push(Problem::at(
            None,
            format!(
                "the file has {} steps; the limit is {}",
                steps.len(),
                MAX_JOBS - 1
            ),
        ));
        return Vec::new();
    }
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    // The graph between steps, for cycles: a step needs all the jobs of the steps it names.
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
    for (i, named) in steps.iter().enumerate() {
        let Some(step) = &named.step else { continue };
        for need in &step.needs {
            match index.get(need.value.as_str()) {
                Some(&j) if j == i => problems.push(Problem::at(
                    need.pos,
                    format!("step {:?} needs itself", step.name),
                )),
                Some(&j) => {
                    if !edges[i].contains(&j) {
                        edges[i].push(j);
                    }
                }
                None => {
                    let hint = did_you_mean(&need.value, steps.iter().map(|s| s.name.as_str()));
                    problems.push(Problem::at(
                        need.pos,
                        format!("unknown step {:?} in needs{hint}", need.value),
                    ));
                }
            }
        }
    }
    for cycle in cycles(&edges) {
        let (first, second) = (cycle[0], cycle[1]);
        let names: Vec<&str> = cycle.iter().map(|&i| steps[i].name.as_str()).collect();
        // Shown at the first step's need of the second, where the loop starts.
        let pos = steps[first]
            .step
            .as_ref()
            .and_then(|s| s.needs.iter().find(|n| n.value == steps[second].name))
            .and_then(|n| n.pos);
        problems.push(Problem::at(
            pos,
            format!("cycle in needs: {}", names.join(" -> ")),
        ));
    }

    let mut jobs_of_step: Vec<Vec<Job>> = steps
        .iter()
        .map(|s| s.step.as_ref().map(expand).unwrap_or_default())
        .collect();

    let mut made_by: HashMap<String, &str> = HashMap::new();
    for (named, jobs) in steps.iter().zip(&jobs_of_step) {
        for job in jobs {
            if let Some(first) = made_by.insert(job.name.clone(), &named.name) {
                let pos = named.step.as_ref().and_then(|s| s.name_pos);
                problems.push(Problem::at(
                    pos,
                    format!(
                        "job name {:?} is made by both step {first:?} and step {:?}",
                        job.name, named.name
                    ),
                ));
            }
        }
    }

    // Needs name steps; jobs need every job of those steps.
    let job_names: Vec<Vec<String>> = jobs_of_step
        .iter()
        .map(|jobs| jobs.iter().map(|j| j.name.clone()).collect())
        .collect();
    for (i, jobs) in jobs_of_step.iter_mut().enumerate() {
        let needs: Vec<String> = edges[i]
            .iter()
            .flat_map(|&j| job_names[j].iter().cloned())
            .collect();
        for job in jobs {
            job.needs.clone_from(&needs);
        }
    }
    jobs_of_step.into_iter().flatten().collect()
}

/// One job per combination of matrix values: keys in file order, the first varying slowest.
fn expand(step: &Step) -> Vec<Job> {
    let mut jobs = Vec::new();
    if step.matrix.iter().any(|(_, values)| values.is_empty()) {
        return jobs;
    }
    let mut choice = vec![0usize; step.matrix.len()];
    loop {
        let matrix: Vec<(String, String)> = step
            .matrix
            .iter()
            .zip(&choice)
            .map(|((key, values), &i)| (key.clone(), values[i].clone()))
            .collect();
        jobs.push(job(step, matrix));
        // Advance the last key first, carrying into the ones before it.
        let mut k = choice.len();
        loop {
            if k == 0 {
                return jobs;
            }
            k -= 1;
            choice[k] += 1;
            if choice[k] < step.matrix[k].1.len() {
                break;
            }
            choice[k] = 0;
        }
    }
}

fn job(step: &Step, matrix: Vec<(String, String)>) -> Job {
    let name = if matrix.is_empty() {
        step.name.clone()
    } else {
        let values: Vec<String> = matrix.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{} ({})", step.name, values.join(", "))
    };
    let mut env: BTreeMap<String, String> = step.env.clone();
    // A matrix value wins over an `env` entry of the same name.
    env.extend(matrix.iter().cloned());
    Job {
        name,
        step: step.name.clone(),
        matrix,
        run: step.run.clone(),
        runner: step.runner.clone(),
        needs: Vec::new(),
        env,
        secrets: step.secrets.clone(),
        timeout: step.timeout,
        retry: step.retry.clone(),
        when: step.when.clone(),
        allow_failure: step.allow_failure,
        manual: step.manual,
        schedule: step.schedule.clone(),
        artifacts: step.artifacts.clone(),
        inputs: step.inputs.clone(),
        pool: step.pool.clone(),
        stall_timeout: step.stall_timeout,
    }
}

/// The cycles of the graph, each as its steps in order with the first repeated at the end,
/// found by a depth-first search from each step in file order.
fn cycles(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit(
        node: usize,
        edges: &[Vec<usize>],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
        found: &mut Vec<Vec<usize>>,
    ) {
        marks[node] = Mark::OnPath;
        path.push(node);
        for &next in &edges[node] {
            match marks[next] {
                Mark::New => visit(next, edges, marks, path, found),
                Mark::OnPath => {
                    if let Some(start) = path.iter().position(|&n| n == next) {
                        let mut cycle = path[start..].to_vec();
                        cycle.push(next);
                        found.push(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[node] = Mark::Done;
    }
    let mut marks = vec![Mark::New; edges.len()];
    let mut found = Vec::new();
    for start in 0..edges.len() {
        if marks[start] == Mark::New {
            visit(start, edges, &mut marks, &mut Vec::new(), &mut found);
        }
    }
    found
}
