//! ANSI escape sequences → HTML, for log frames (spec §1.6.3).
//!
//! [`AnsiHtml`] converts a byte stream, chunk by chunk, into safe HTML: text is escaped, colours
//! and bold become `<span class='…'>`, every other escape sequence is dropped. The escape parser
//! is `vte`'s (a terminal's state machine), so sequences split across chunks are handled and
//! invalid UTF-8 becomes U+FFFD. Knows nothing of HTTP.
//!
//! Deliberate differences from the original's hand-written parser (whose quirks are listed in spec
//! §9): OSC payloads (`ESC ] 0;title BEL`) are dropped instead of shown, a CSI sequence ends at its
//! real final byte (`ESC[2Kprogress` keeps the `p`), and an overlong string sequence (OSC, DCS,
//! SOS, PM, APC longer than [`MAX_STRING_SEQUENCE`] bytes) is abandoned with the rest of its line
//! rather than printed as `ESCAPE-TOO-LONG`, so a stray `ESC ]` cannot hide the rest of a log.

use std::fmt::Write as _;

use vte::{Params, Parser, Perform};

/// How many bytes of an unterminated string sequence (OSC and friends) are buffered before it is
/// abandoned.
pub const MAX_STRING_SEQUENCE: usize = 4096;

const COLOURS: [&str; 8] = [
    "black", "red", "green", "yellow", "blue", "magenta", "cyan", "white",
];

/// A streaming ANSI-to-HTML converter; one per HTTP response.
///
/// ```
/// use datakit_ci_web::AnsiHtml;
///
/// let mut ansi = AnsiHtml::new();
/// assert_eq!(
///     ansi.convert(b"TEST-\x1b[1;31mOUTPUT\x1b[m-1 <&>\n"),
///     "TEST-<span class='fg-bright-red bold'>OUTPUT</span>-1 &lt;&amp;&gt;\n"
/// );
/// ```
#[derive(Default)]
pub struct AnsiHtml {
    parser: Parser,
    html: Html,
    /// Whether the parser is known to be in its ground state (printing text).
    in_ground: bool,
    /// The byte after the ESC of the sequence being parsed, if any.
    sequence_kind: Option<u8>,
    /// Bytes of the current sequence seen so far.
    sequence_len: usize,
    /// After abandoning an overlong sequence: drop bytes until the end of the line.
    skipping_line: bool,
}

impl std::fmt::Debug for AnsiHtml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnsiHtml")
            .field("graphics", &self.html.graphics)
            .finish_non_exhaustive()
    }
}

impl AnsiHtml {
    /// A converter in the initial state (default colours, nothing buffered).
    pub fn new() -> AnsiHtml {
        AnsiHtml {
            in_ground: true,
            ..AnsiHtml::default()
        }
    }

    /// Like [`convert`](Self::convert), appending to `out` (no string per call).
    pub(crate) fn convert_into(&mut self, chunk: &[u8], out: &mut String) {
        std::mem::swap(&mut self.html.out, out);
        *out = self.convert(chunk);
    }

    /// Converts the next chunk of the stream. An escape sequence cut at the end of `chunk` is kept
    /// and completed by the next call; the returned HTML is always well-formed (spans are closed).
    pub fn convert(&mut self, chunk: &[u8]) -> String {
        let mut i = 0;
        while i < chunk.len() {
            if self.skipping_line {
                match chunk[i..].iter().position(|&b| b == b'\n') {
                    Some(offset) => {
                        self.skipping_line = false;
                        i += offset;
                    }
                    None => break,
                }
                continue;
            }
            if self.in_ground {
                // Fast path: text without ESC keeps the parser in its ground state.
                let run = chunk[i..]
                    .iter()
                    .position(|&b| b == 0x1b)
                    .unwrap_or(chunk.len() - i);
                if run > 0 {
                    self.parser.advance(&mut self.html, &chunk[i..i + run]);
                    i += run;
                    continue;
                }
                self.in_ground = false;
                self.sequence_kind = None;
                self.sequence_len = 0;
            }
            // Inside an escape sequence: one byte at a time, to see where it ends.
            let byte = chunk[i];
            self.html.back_to_ground = false;
            self.parser.advance(&mut self.html, &chunk[i..=i]);
            i += 1;
            self.sequence_len += 1;
            if self.sequence_len == 2 {
                self.sequence_kind = Some(byte);
            }
            if self.html.back_to_ground || byte == 0x18 || byte == 0x1a {
                self.in_ground = true;
            } else if self.sequence_len > MAX_STRING_SEQUENCE
                && matches!(self.sequence_kind, Some(b']' | b'P' | b'X' | b'^' | b'_'))
            {
                tracing::debug!("abandoning an overlong escape sequence");
                self.parser = Parser::new();
                self.in_ground = true;
                self.skipping_line = true;
            }
        }
        self.html.close_span();
        std::mem::take(&mut self.html.out)
    }
}

/// The graphics state set by SGR sequences.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Graphics {
    bold: bool,
    fg: Option<u8>,
    bg: Option<u8>,
}

impl Graphics {
    fn classes(&self) -> Option<String> {
        if *self == Graphics::default() {
            return None;
        }
        let mut classes = Vec::new();
        if let Some(bg) = self.bg {
            classes.push(format!("bg-{}", COLOURS[usize::from(bg)]));
        }
        match (self.bold, self.fg) {
            (true, fg) => classes.push(format!(
                "fg-bright-{}",
                COLOURS[usize::from(fg.unwrap_or(7))]
            )),
            (false, Some(fg)) => classes.push(format!("fg-{}", COLOURS[usize::from(fg)])),
            (false, None) => {}
        }
        if self.bold {
            classes.push("bold".to_owned());
        }
        Some(classes.join(" "))
    }

    /// Applies an SGR sequence; `None` (leaving `self` unchanged) if any part is unsupported.
    fn apply_sgr(&self, params: &Params) -> Option<Graphics> {
        let mut next = *self;
        for param in params.iter() {
            let [code] = param else { return None };
            match *code {
                0 => next = Graphics::default(),
                1 => next.bold = true,
                22 => next.bold = false,
                3 | 4 | 7 | 23 | 24 | 27 => {}
                30..=37 => next.fg = Some((code - 30) as u8),
                39 => next.fg = None,
                40..=47 => next.bg = Some((code - 40) as u8),
                49 => next.bg = None,
                _ => return None,
            }
        }
        Some(next)
    }
}

/// The HTML being produced, and the `vte` callbacks producing it.
#[derive(Default)]
struct Html {
    out: String,
    graphics: Graphics,
    span_open: bool,
    back_to_ground: bool,
}

impl Html {
    fn open_span(&mut self) {
        if !self.span_open
            && let Some(classes) = self.graphics.classes()
        {
            let _ = write!(self.out, "<span class='{classes}'>");
            self.span_open = true;
        }
    }

    fn close_span(&mut self) {
        if self.span_open {
            self.out.push_str("</span>");
            self.span_open = false;
        }
    }

    fn set_graphics(&mut self, graphics: Graphics) {
        if graphics != self.graphics {
            self.close_span();
            self.graphics = graphics;
        }
    }
}

impl Perform for Html {
    fn print(&mut self, c: char) {
        self.back_to_ground = true;
        self.open_span();
        match c {
            '<' => self.out.push_str("&lt;"),
            '>' => self.out.push_str("&gt;"),
            '&' => self.out.push_str("&amp;"),
            '"' => self.out.push_str("&quot;"),
            '\'' => self.out.push_str("&#39;"),
            c => self.out.push(c),
        }
    }

    fn execute(&mut self, byte: u8) {
        self.open_span();
        match byte {
            b'\t' | b'\n' | b'\r' => self.out.push(char::from(byte)),
            _ => {
                let _ = write!(self.out, "&#{byte};");
            }
        }
    }

    fn csi_dispatch(&mut self, params: &Params, intermediates: &[u8], ignore: bool, action: char) {
        self.back_to_ground = true;
        if action == 'm'
            && intermediates.is_empty()
            && !ignore
            && let Some(graphics) = self.graphics.apply_sgr(params)
        {
            self.set_graphics(graphics);
        }
    }

    fn esc_dispatch(&mut self, intermediates: &[u8], _ignore: bool, byte: u8) {
        self.back_to_ground = true;
        if intermediates.is_empty() && byte == b'c' {
            self.set_graphics(Graphics::default());
        }
    }

    fn osc_dispatch(&mut self, _params: &[&[u8]], _bell_terminated: bool) {
        self.back_to_ground = true;
    }

    fn unhook(&mut self) {
        self.back_to_ground = true;
    }
}

#[cfg(test)]
mod tests;
