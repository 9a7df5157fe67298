//! The original's examples (spec §1.6.3) and hostile inputs.

use super::*;

/// Converts `chunks` in order and joins the output.
fn check(chunks: &[&[u8]], expected: &str) {
    let mut ansi = AnsiHtml::new();
    let html: String = chunks.iter().map(|chunk| ansi.convert(chunk)).collect();
    assert_eq!(html, expected, "input {chunks:?}");
}

#[test]
fn the_originals_examples() {
    check(
        &[b"TEST-\x1b[1;31mOUTPUT\x1b[m-1\n"],
        "TEST-<span class='fg-bright-red bold'>OUTPUT</span>-1\n",
    );
    check(&[b"\x1b[42mX"], "<span class='bg-green'>X</span>");
    check(
        &[b"\x1b[1;44mX"],
        "<span class='bg-blue fg-bright-white bold'>X</span>",
    );
    check(&[b"\x1b[31mX"], "<span class='fg-red'>X</span>");
    check(&[b"\x1b[38;5;1mX"], "X");
    check(&[b"TEST-OUTPUT-<&2>\n"], "TEST-OUTPUT-&lt;&amp;2&gt;\n");
    check(&[b"\x1b[2K\rabc"], "\rabc");
    check(&[b"a\x1b[3", b"1mb"], "a<span class='fg-red'>b</span>");
}

#[test]
fn deliberate_differences_from_the_original() {
    // OSC payloads are dropped, not shown (the original showed `0;title&#7;rest`).
    check(&[b"\x1b]0;title\x07rest"], "rest");
    check(&[b"\x1b]0;title\x1b\\rest"], "rest");
    // A CSI sequence ends at its final byte (the original swallowed the `p`).
    check(&[b"\x1b[2Kprogress"], "progress");
}

#[test]
fn graphics_state_carries_across_chunks_and_resets() {
    check(
        &[b"\x1b[31mred", b" still red\x1b[0m plain"],
        "<span class='fg-red'>red</span><span class='fg-red'> still red</span> plain",
    );
    check(
        &[b"\x1b[1mA\x1b[22mB"],
        "<span class='fg-bright-white bold'>A</span>B",
    );
    check(
        &[b"\x1b[31;42mA\x1b[39mB\x1bcC"],
        "<span class='bg-green fg-red'>A</span><span class='bg-green'>B</span>C",
    );
    // Unsupported parts invalidate the whole sequence: no partial effect.
    check(&[b"\x1b[1;90mX"], "X");
    // Colon subparameters are not understood either.
    check(&[b"\x1b[38:5:1mX"], "X");
    // Italic, underline and reverse are accepted without effect.
    check(&[b"\x1b[4mX\x1b[24m"], "X");
}

#[test]
fn hostile_input_never_becomes_markup() {
    check(
        &[b"<script>alert('x')</script> \"q\" &amp;"],
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &quot;q&quot; &amp;amp;",
    );
    // Escapes cannot smuggle markup either.
    check(
        &[b"\x1b[31m<img src=x onerror=alert(1)>"],
        "<span class='fg-red'>&lt;img src=x onerror=alert(1)&gt;</span>",
    );
    // Control characters become numeric references; tab, newline and CR are kept.
    check(&[b"a\x07b\x00c\td\r\n"], "a&#7;b&#0;c\td\r\n");
    // Broken and unknown escapes are dropped, never shown as garbage.
    check(&[b"\x1b[?25lhidden cursor\x1b[?25h"], "hidden cursor");
    check(&[b"x\x1b[1;2;3;4;5;6;7;8;9;10;11;12;13;14;15;16;17;18;19;20;21;22;23;24;25;26;27;28;29;30;31;32;33;34;35mY"], "xY");
    check(&[b"\x1b[99999999999999999999999999mZ"], "Z");
    check(&[b"a\x1b(Bb\x1b7c\x1b8"], "abc");
    // A cancelled sequence (CAN) returns to text.
    check(&[b"\x1b[31\x18ok"], "&#24;ok");
    // An unterminated sequence at the end of the stream is dropped.
    check(&[b"end\x1b[31"], "end");
    check(&[b"end\x1b"], "end");
}

#[test]
fn overlong_string_sequences_are_abandoned_with_their_line() {
    let mut input = b"before\x1b]".to_vec();
    input.extend(std::iter::repeat_n(b'a', 3 * MAX_STRING_SEQUENCE));
    input.extend_from_slice(b"\nafter\n");
    check(&[&input], "before\nafter\n");
    // Also when the sequence arrives in small chunks.
    let chunks: Vec<&[u8]> = input.chunks(7).collect();
    check(&chunks, "before\nafter\n");
}

#[test]
fn invalid_utf8_is_shown_lossily() {
    check(
        &[b"caf\xc3\xa9 \xff\xfe ok"],
        "caf\u{e9} \u{fffd}\u{fffd} ok",
    );
    // A code point split across chunks is reassembled.
    check(&[b"caf\xc3", b"\xa9"], "caf\u{e9}");
}
