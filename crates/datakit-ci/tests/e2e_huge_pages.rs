//! End-to-end test of the `datakit-ci` binary's process settings: transparent huge pages are off
//! for it and the builds it starts (`datakit_ci::disable_transparent_huge_pages`).

mod common;

use common::{Ci, Repo, State};

#[test]
fn builds_run_without_transparent_huge_pages() {
    let repo = Repo::new("pages");
    let state = State::new();
    // `PR_SET_THP_DISABLE` is inherited by children and kept across `exec`, so the build sees
    // the binary's setting in its own status file.
    let ci = Ci::start(
        &[&repo],
        &[(
            "pages",
            "grep -q '^THP_enabled:[[:space:]]*0$' /proc/self/status",
        )],
        &state,
        &[],
    );
    ci.wait_for_line("local/pages/heads/main pages: success (Passed)");
}
