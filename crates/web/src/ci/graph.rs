//! The graph of a target's jobs and what each needs (the pipeline file's `needs`), drawn as
//! server-rendered SVG: one column per layer (a job is one layer right of its latest need),
//! nodes coloured by phase with their duration, a matrix step's jobs boxed together, and an edge
//! per need. No script and no external program; each node links to the job's row on the page.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use maud::{Markup, PreEscaped};

use super::model::Phase;

/// One job as the graph draws it.
pub(crate) struct Node<'a> {
    pub(crate) name: &'a str,
    pub(crate) needs: &'a [String],
    pub(crate) phase: Phase,
    pub(crate) took: Option<Duration>,
}

const NODE_WIDTH: usize = 190;
const NODE_HEIGHT: usize = 34;
const COLUMN_GAP: usize = 50;
const ROW_GAP: usize = 10;
const MARGIN: usize = 8;

/// The SVG of `nodes`, or nothing if no job needs another (there is no graph to show).
pub(crate) fn graph(nodes: &[Node<'_>]) -> Option<Markup> {
    if nodes.iter().all(|node| node.needs.is_empty()) {
        return None;
    }
    let index: HashMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.name, i)).collect();
    let mut layers: Vec<Option<usize>> = vec![None; nodes.len()];
    for i in 0..nodes.len() {
        layer(i, nodes, &index, &mut layers, 0);
    }
    let mut columns: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, layer) in layers.iter().enumerate() {
        columns.entry(layer.unwrap_or(0)).or_default().push(i);
    }
    // Jobs of one step (a matrix) stay together within their column.
    for column in columns.values_mut() {
        column.sort_by_key(|&i| (step_of(nodes[i].name), i));
    }
    let mut position = vec![(0, 0); nodes.len()];
    for (&layer, column) in &columns {
        for (row, &i) in column.iter().enumerate() {
            position[i] = (
                MARGIN + layer * (NODE_WIDTH + COLUMN_GAP),
                MARGIN + row * (NODE_HEIGHT + ROW_GAP),
            );
        }
    }
    let width = 2 * MARGIN + columns.len() * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP;
    let rows = columns.values().map(Vec::len).max().unwrap_or(0);
    let height = 2 * MARGIN + rows * (NODE_HEIGHT + ROW_GAP) - ROW_GAP;

    let mut svg = String::new();
    let out = &mut svg;
    write_svg(
        out,
        format_args!(
            r#"<svg class="pipeline-graph" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="The jobs and what each needs" width="{width}" height="{height}" viewBox="0 0 {width} {height}">"#
        ),
    );
    // Boxes around the jobs of a matrix step (two jobs or more in one column).
    for column in columns.values() {
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for &i in column {
            if let Some(step) = step_of(nodes[i].name) {
                groups.entry(step).or_default().push(i);
            }
        }
        for (step, members) in groups.iter().filter(|(_, m)| m.len() > 1) {
            let (x, top) = position[members[0]];
            let bottom = members.iter().map(|&i| position[i].1).max().unwrap_or(top) + NODE_HEIGHT;
            write_svg(
                out,
                format_args!(
                    r##"<g class="matrix"><title>{} ({} jobs)</title><rect x="{}" y="{}" width="{}" height="{}" rx="8" fill="none" stroke="#8a8f98" stroke-dasharray="4 3"/></g>"##,
                    escape(step),
                    members.len(),
                    x - 4,
                    top - 4,
                    NODE_WIDTH + 8,
                    bottom - top + 8
                ),
            );
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        let (x, y) = position[i];
        for need in node.needs {
            let Some(&from) = index.get(need.as_str()) else {
                continue;
            };
            let (fx, fy) = position[from];
            let (x1, y1) = (fx + NODE_WIDTH, fy + NODE_HEIGHT / 2);
            let (x2, y2) = (x, y + NODE_HEIGHT / 2);
            let middle = (x1 + x2) / 2;
            write_svg(
                out,
                format_args!(
                    r##"<path class="edge" data-from="{}" data-to="{}" d="M{x1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}" fill="none" stroke="#8a8f98" stroke-width="1.5"/>"##,
                    escape(need),
                    escape(node.name),
                ),
            );
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        let (x, y) = position[i];
        let (fill, stroke) = colours(node.phase);
        let label = shorten(node.name, 24);
        let detail = match node.took {
            // Commit times have whole seconds, as on the jobs' rows.
            Some(took) if node.phase.is_final() && took.as_secs() == 0 => {
                format!("{} · under 1s", node.phase.word())
            }
            Some(took) if node.phase.is_final() => {
                format!("{} · {}", node.phase.word(), crate::time::duration(took))
            }
            _ => node.phase.word().to_owned(),
        };
        write_svg(
            out,
            format_args!(
                r##"<a class="node" href="#job-{anchor}" data-job="{name}"><title>{name}: {detail}</title><rect x="{x}" y="{y}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="5" fill="{fill}" stroke="{stroke}"/><text x="{tx}" y="{ty1}" font-size="12" font-weight="bold" fill="#1b1f24">{label}</text><text x="{tx}" y="{ty2}" font-size="10" fill="#3d434b">{detail}</text></a>"##,
                anchor = escape(node.name),
                name = escape(node.name),
                detail = escape(&detail),
                label = escape(&label),
                tx = x + 8,
                ty1 = y + 14,
                ty2 = y + 28,
            ),
        );
    }
    svg.push_str("</svg>");
    Some(PreEscaped(svg))
}

/// The layer of node `i`: 0 without needs, else one more than its needs' greatest. A cycle
/// (which the pipeline file refuses) is cut at the depth of the number of nodes.
fn layer(
    i: usize,
    nodes: &[Node<'_>],
    index: &HashMap<&str, usize>,
    layers: &mut [Option<usize>],
    depth: usize,
) -> usize {
    if let Some(layer) = layers[i] {
        return layer;
    }
    if depth > nodes.len() {
        return 0;
    }
    let layer = nodes[i]
        .needs
        .iter()
        .filter_map(|need| index.get(need.as_str()))
        .map(|&need| layer(need, nodes, index, layers, depth + 1) + 1)
        .max()
        .unwrap_or(0);
    layers[i] = Some(layer);
    layer
}

/// The step of a matrix job (`test` of `test (os=linux)`), if the name is a matrix job's.
fn step_of(name: &str) -> Option<&str> {
    name.strip_suffix(')')
        .and_then(|rest| rest.split_once(" ("))
        .map(|(step, _)| step)
}

/// Fill and stroke of a node in `phase`.
fn colours(phase: Phase) -> (&'static str, &'static str) {
    match phase {
        Phase::Passed => ("#d4f4dd", "#1a7f37"),
        Phase::Failed => ("#ffd8d3", "#cf222e"),
        Phase::Running => ("#fff1c2", "#9a6700"),
        Phase::Queued => ("#eef1f4", "#6e7781"),
        Phase::Cancelled | Phase::Skipped => ("#e6e8eb", "#8a8f98"),
        Phase::WaitingForApproval => ("#e2d9f7", "#8250df"),
    }
}

fn shorten(name: &str, longest: usize) -> String {
    if name.chars().count() <= longest {
        name.to_owned()
    } else {
        let cut: String = name.chars().take(longest - 1).collect();
        format!("{cut}…")
    }
}

/// Escapes text for XML content and attribute values.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

fn write_svg(out: &mut String, args: std::fmt::Arguments<'_>) {
    out.write_fmt(args)
        .expect("writing to a String cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node<'a>(name: &'a str, needs: &'a [String], phase: Phase) -> Node<'a> {
        Node {
            name,
            needs,
            phase,
            took: Some(Duration::from_secs(102)),
        }
    }

    #[test]
    fn the_graph_has_a_node_per_job_and_an_edge_per_need() {
        let none: Vec<String> = Vec::new();
        let build = vec!["build".to_owned()];
        let tests = vec!["test (os=linux)".to_owned(), "test (os=bsd)".to_owned()];
        let nodes = [
            node("build", &none, Phase::Passed),
            node("test (os=linux)", &build, Phase::Failed),
            node("test (os=bsd)", &build, Phase::Running),
            node("deploy <&\"'>", &tests, Phase::Skipped),
            node("lint", &none, Phase::Queued),
        ];
        let svg = graph(&nodes).expect("a graph").into_string();
        let document = roxmltree::Document::parse(&svg).expect("valid XML");
        let root = document.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        let jobs: Vec<&str> = root
            .descendants()
            .filter(|n| n.has_tag_name("a"))
            .filter_map(|n| n.attribute("data-job"))
            .collect();
        assert_eq!(
            jobs,
            [
                "build",
                "test (os=linux)",
                "test (os=bsd)",
                "deploy <&\"'>",
                "lint"
            ]
        );
        let edges: Vec<(&str, &str)> = root
            .descendants()
            .filter(|n| n.has_tag_name("path"))
            .filter_map(|n| Some((n.attribute("data-from")?, n.attribute("data-to")?)))
            .collect();
        assert_eq!(
            edges,
            [
                ("build", "test (os=linux)"),
                ("build", "test (os=bsd)"),
                ("test (os=linux)", "deploy <&\"'>"),
                ("test (os=bsd)", "deploy <&\"'>"),
            ]
        );
        // The matrix step is boxed, and the durations shown.
        assert_eq!(
            root.descendants().filter(|n| n.has_tag_name("g")).count(),
            1
        );
        assert!(svg.contains("passed · 1m 42s"), "{svg}");
        // Layers: deploy is two columns right of build.
        let x_of = |job: &str| -> i64 {
            root.descendants()
                .find(|n| n.attribute("data-job") == Some(job))
                .and_then(|n| n.children().find(|c| c.has_tag_name("rect")))
                .and_then(|r| r.attribute("x"))
                .and_then(|x| x.parse().ok())
                .expect("a node's x")
        };
        let column = (NODE_WIDTH + COLUMN_GAP) as i64;
        assert_eq!(x_of("test (os=bsd)") - x_of("build"), column);
        assert_eq!(x_of("deploy <&\"'>") - x_of("build"), 2 * column);
        assert_eq!(x_of("lint"), x_of("build"));
    }

    #[test]
    fn jobs_without_needs_make_no_graph() {
        let none: Vec<String> = Vec::new();
        assert!(graph(&[node("a", &none, Phase::Passed)]).is_none());
        assert!(graph(&[]).is_none());
    }
}
