//! The files the project shows its users are valid: the README's example and the project's own
//! `.datakit-ci.yml`.

use datakit_ci_pipeline::parse;

#[test]
fn the_readmes_example_and_the_projects_own_file_are_valid() {
    let readme = include_str!("../../../../README.md");
    let example = readme
        .split("### The pipeline file")
        .nth(1)
        .and_then(|section| section.split("```yaml\n").nth(1))
        .and_then(|block| block.split("```").next())
        .expect("the README has a pipeline example");
    let pipeline = parse(example).unwrap_or_else(|e| panic!("the README's example: {e}"));
    let names: Vec<&str> = pipeline.jobs().iter().map(|j| j.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "build",
            "test (os=linux)",
            "test (os=bsd)",
            "docs",
            "nightly",
            "package"
        ]
    );
    let package = &pipeline.jobs()[5];
    assert!(!package.artifacts.is_empty(), "the example shows artifacts");
    let own = include_str!("../../../../.datakit-ci.yml");
    let pipeline = parse(own).unwrap_or_else(|e| panic!("the project's .datakit-ci.yml: {e}"));
    assert!(
        pipeline.jobs().iter().all(|job| !job.inputs.is_empty()),
        "a README change runs nothing"
    );
}
