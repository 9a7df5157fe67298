//! The ANSI renderer of log pages on any bytes, cut into two chunks anywhere: it never panics,
//! and its HTML is safe and well-formed — outside the `<span class='…'>` and `</span>` it
//! writes itself there is no `<` or `>`, every `&` starts a named or decimal character
//! reference, and spans are balanced in each chunk's output.
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
                class
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ' '),
                "class {class:?}"
            );
            depth += 1;
            rest = &after[end + 2..];
        } else if tail.starts_with('&') {
            rest = &tail[entity_len(tail).unwrap_or_else(|| panic!("bare & in {html:?}"))..];
        } else {
            panic!("unescaped markup at {tail:?} in {html:?}");
        }
    }
    assert_eq!(depth, 0, "spans are closed at the end of a chunk: {html:?}");
}

/// The length of the character reference `text` starts with (`&amp;`, `&lt;`, `&gt;`,
/// `&quot;`, `&#39;`, `&#<digits>;`), if it starts with one.
fn entity_len(text: &str) -> Option<usize> {
    if let Some(named) = ["&amp;", "&lt;", "&gt;", "&quot;"]
        .into_iter()
        .find(|entity| text.starts_with(entity))
    {
        return Some(named.len());
    }
    let digits = text.strip_prefix("&#")?;
    let count = digits.bytes().take_while(u8::is_ascii_digit).count();
    (count > 0 && digits[count..].starts_with(';')).then_some(2 + count + 1)
}
