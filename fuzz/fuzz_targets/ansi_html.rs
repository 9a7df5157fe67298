//! The ANSI renderer of log pages on any bytes, cut into two chunks anywhere: it never panics,
//! and its HTML is safe and well-formed — outside the `<span class='…'>` and `</span>` it
//! writes itself there is no `<` or `>`, every `&` starts an entity, and spans are balanced in
//! each chunk's output.
#![no_main]

use datakit_ci_web::AnsiHtml;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&cut, bytes)) = input.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(bytes.len());
    let mut ansi = AnsiHtml::new();
    for chunk in [&bytes[..cut], &bytes[cut..]] {
        check(&ansi.convert(chunk));
    }
});

fn check(html: &str) {
    let mut depth = 0_usize;
    let mut rest = html;
    while let Some(index) = rest.find(['<', '>', '&']) {
        let tail = &rest[index..];
        if let Some(after) = tail.strip_prefix("</span>") {
            depth = depth.checked_sub(1).expect("a </span> closes an open span");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("<span class='") {
            let end = after.find("'>").expect("a span's class is closed");
            let class = &after[..end];
            assert!(
                class.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ' '),
                "class {class:?}"
            );
            depth += 1;
            rest = &after[end + 2..];
        } else if tail.starts_with('&') {
            let entity = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&#x27;"]
                .into_iter()
                .find(|entity| tail.starts_with(entity))
                .unwrap_or_else(|| panic!("bare & in {html:?}"));
            rest = &tail[entity.len()..];
        } else {
            panic!("unescaped markup at {tail:?} in {html:?}");
        }
    }
    assert_eq!(depth, 0, "spans are closed at the end of a chunk: {html:?}");
}
