//! Issue 17 end to end, `artifacts`: the binary keeps the files a pipeline step's paths and globs
//! select on its cache branch, lists them in the JSON API and on the target's page, and serves
//! them over HTTP byte for byte; a later commit that leaves the step's inputs unchanged still
//! offers them; a failed step keeps its reports; files past `--max-artifact-size` are dropped
//! and fail the step; links are never followed; paths with `..` are refused.

mod common;

use common::{Ci, Repo, State, api_artifacts, free_port, http_get, http_get_bytes};

#[test]
fn issue_17_artifacts_are_stored_with_the_build_and_downloaded() {
    let file = r#"steps:
  build:
    run: mkdir -p out reports && printf '\001\002\377bin-%s\n' $((6*7)) > out/app.bin && echo '<ok/>' > reports/a.xml && echo '<b/>' > reports/b.xml && echo no > reports/c.txt && ln -s /etc/passwd reports/leak.xml
    artifacts: [out/app.bin, "reports/*.xml", missing/thing]
    inputs: [src]
  failing:
    run: echo "report-$((2+3))" > report.txt; exit 4
    artifacts: [report.txt]
    inputs: [src]
  big:
    run: head -c 3000 /dev/zero > big.bin && echo small > small.txt
    artifacts: [big.bin, small.txt]
    inputs: [src]
"#;
    let repo = Repo::new("app");
    let initial = repo.rev("main");
    let first = repo.commit(
        &initial,
        "Add the pipeline",
        &[
            (".datakit-ci.yml", file),
            ("src/main", "1\n"),
            ("docs/index", "a\n"),
        ],
    );
    repo.set_ref("refs/heads/main", &first);
    let state = State::new();
    let port = free_port();
    let listen = format!("http://127.0.0.1:{port}");
    let ci = Ci::start(
        &[&repo],
        &[],
        &state,
        &["--listen", &listen, "--max-artifact-size", "2KiB"],
    );

    assert_eq!(
        state.wait_for_description(&ci, "local/app", &first, "build", "success"),
        "Passed"
    );
    let listed = api_artifacts(&ci, port, &first, "build", 3);
    let names: Vec<(&str, u64)> = listed.iter().map(|(n, s, _)| (n.as_str(), *s)).collect();
    assert_eq!(
        names,
        [
            ("out/app.bin", 10),
            ("reports/a.xml", 6),
            ("reports/b.xml", 5)
        ]
    );
    let urls: Vec<String> = listed.into_iter().map(|(_, _, url)| url).collect();
    let (head, body) = http_get_bytes(port, &urls[0]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"\x01\x02\xffbin-42\n");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/octet-stream"),
        "{head}"
    );
    assert!(
        lower.contains("content-disposition: attachment; filename=\"app.bin\""),
        "{head}"
    );
    assert_eq!(http_get_bytes(port, &urls[1]).1, b"<ok/>\n");
    // The step's log says what was left and why.
    let branch = state
        .branches()
        .into_iter()
        .find(|b| b.starts_with("pipeline-build-of-"))
        .expect("the step's cache branch");
    let log = state.show(&branch, "log").expect("the step's log");
    assert!(
        log.contains("Warning: the artifact pattern \"missing/thing\" matched no file"),
        "{log}"
    );
    assert!(
        log.contains("Artifact reports/leak.xml not kept: a link (links are never followed)"),
        "{log}"
    );
    assert!(!log.contains("reports/c.txt"), "{log}");

    // The target's page links each file with its size.
    let page = http_get(port, "/local/app/ref/heads/main").expect("the target page");
    assert!(
        page.contains(&format!(
            "<a class=\"artifact\" href=\"{}\" download>out/app.bin</a>",
            urls[0]
        )),
        "{page}"
    );

    // A failed step keeps its report.
    let failure = state.wait_for_description(&ci, "local/app", &first, "failing", "failure");
    assert!(failure.contains("exited with status 4"), "{failure}");
    let report = api_artifacts(&ci, port, &first, "failing", 1);
    assert_eq!(http_get_bytes(port, &report[0].2).1, b"report-5\n");

    // Past the limit: the file is dropped, named in the log, the step fails; what fits is kept.
    let over = state.wait_for_description(&ci, "local/app", &first, "big", "failure");
    assert_eq!(
        over,
        "artifacts over the limit of 2 KiB: dropped big.bin (2.9 KiB)"
    );
    let small = api_artifacts(&ci, port, &first, "big", 1);
    assert_eq!((small[0].0.as_str(), small[0].1), ("small.txt", 6));
    let big_branch = state
        .branches()
        .into_iter()
        .find(|b| b.starts_with("pipeline-big-of-"))
        .expect("the step's cache branch");
    let log = state.show(&big_branch, "log").expect("the step's log");
    assert!(
        log.contains("Artifact big.bin (2.9 KiB) dropped: the step's artifacts would pass the limit of 2 KiB (--max-artifact-size)"),
        "{log}"
    );

    // Paths that leave the artifacts, and unknown ones.
    let base = urls[0]
        .strip_suffix("out/app.bin")
        .expect("the URL ends with the path");
    for bad in [
        "../../log",
        "out/../../log",
        "%2e%2e/%2e%2e/log",
        "out//app.bin",
        "./out/app.bin",
    ] {
        let (head, _) = http_get_bytes(port, &format!("{base}{bad}"));
        assert!(head.starts_with("HTTP/1.1 400"), "{bad}: {head}");
    }
    for unknown in ["out/nothing", "reports/c.txt", "reports/leak.xml"] {
        let (head, _) = http_get_bytes(port, &format!("{base}{unknown}"));
        assert!(head.starts_with("HTTP/1.1 404"), "{unknown}: {head}");
    }
    let (head, _) = http_get_bytes(
        port,
        &format!(
            "/api/v1/artifacts/{}/{}/out/app.bin",
            branch,
            "0".repeat(40)
        ),
    );
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // A commit that leaves the step's inputs unchanged still offers the same artifacts.
    let docs = repo.commit(&first, "Docs", &[("docs/index", "b\n")]);
    repo.set_ref("refs/heads/main", &docs);
    assert_eq!(
        state.wait_for_description(&ci, "local/app", &docs, "build", "success"),
        format!("Unchanged since {}", &first[..7])
    );
    let again: Vec<String> = api_artifacts(&ci, port, &docs, "build", 3)
        .into_iter()
        .map(|(_, _, url)| url)
        .collect();
    assert_eq!(again, urls);
    assert_eq!(http_get_bytes(port, &urls[0]).1, b"\x01\x02\xffbin-42\n");
}
