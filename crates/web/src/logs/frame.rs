//! Log frames (spec §1.6.1): the page around a log, streamed as chunked HTML — the head (with the
//! log viewer's script, [`LOG_SCRIPT`]), then the log converted chunk by chunk into numbered lines
//! ([`LogLines`]), then the tail — or as raw bytes for `?raw`.
//!
//! Knows nothing of where the log comes from: it takes a [`LogSource`].

use std::io;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use datakit_ci_log::LogStream;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use tokio_util::sync::CancellationToken;

use super::lines::LogLines;

/// The log viewer's script, inlined into every log page; the Content-Security-Policy allows it by
/// its hash ([`crate::csp`]).
pub(crate) const LOG_SCRIPT: &str = include_str!("../../static/log.js");

/// Size of the pieces a saved log is converted and sent in.
const SAVED_CHUNK: usize = 40960;

/// Where the placeholder for the log goes; user text cannot produce it (`<` is escaped).
const PLACEHOLDER: &str = "<!--LOG-->";

/// The bytes of a log, in chunks.
pub(crate) enum LogSource {
    /// A running build's log, followed until it finishes or the server shuts down.
    Live {
        stream: LogStream,
        shutdown: CancellationToken,
    },
    /// A saved log, read from the store in pieces by a blocking task (so a log of gigabytes is
    /// never held whole), with a little read-ahead.
    Saved {
        chunks: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    },
    /// A part of a saved log already read (see [`super::window`]), sent in pieces.
    Part { bytes: Bytes },
}

impl LogSource {
    /// Streams a saved log from `reader`.
    pub(crate) fn saved(reader: datakit_ci_store::FileReader) -> LogSource {
        LogSource::Saved {
            chunks: crate::stored_file::read_in_pieces(reader, SAVED_CHUNK),
        }
    }

    /// Sends `bytes`, [`SAVED_CHUNK`] at a time.
    pub(crate) fn part(bytes: Bytes) -> LogSource {
        LogSource::Part { bytes }
    }

    /// Whether a live log stopped because the server is shutting down (not finished).
    fn interrupted(&self) -> bool {
        matches!(self, LogSource::Live { shutdown, .. } if shutdown.is_cancelled())
    }

    async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        match self {
            LogSource::Live { stream, shutdown } => tokio::select! {
                // Recent bytes come back shared with every other viewer of the log: a raw
                // viewer's body passes them on without copying them.
                chunk = stream.next_bytes() => chunk,
                () = shutdown.cancelled() => Ok(None),
            },
            LogSource::Saved { chunks } => chunks.recv().await.transpose(),
            LogSource::Part { bytes } => {
                if bytes.is_empty() {
                    return Ok(None);
                }
                let end = bytes.len().min(SAVED_CHUNK);
                Ok(Some(bytes.split_to(end)))
            }
        }
    }
}

/// A frame's head (title, buttons) and tail, around the log.
pub(crate) struct Frame {
    pub(crate) title: String,
    pub(crate) header: Markup,
    /// Sent after the log, only once it is complete.
    pub(crate) footer: Markup,
}

impl Frame {
    fn render(&self) -> (String, String) {
        let page = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (self.title) }
                    link rel="stylesheet" href="/css/style.css";
                    base target="_parent";
                    script { (PreEscaped(LOG_SCRIPT)) }
                }
                body.log {
                    (self.header)
                    div.log-text { (PreEscaped(PLACEHOLDER)) }
                    (self.footer)
                }
            }
        }
        .into_string();
        match page.split_once(PLACEHOLDER) {
            Some((head, tail)) => (head.to_owned(), tail.to_owned()),
            None => (page, String::new()),
        }
    }
}

enum Step {
    Head,
    Log,
    Tail,
    Done,
}

struct Streaming {
    step: Step,
    head: String,
    tail: String,
    source: LogSource,
    lines: LogLines,
}

/// The HTML frame around `source`, streamed, its lines converted by `lines` (which knows the
/// first line's number).
pub(crate) fn html_response(frame: &Frame, source: LogSource, lines: LogLines) -> Response {
    let (head, tail) = frame.render();
    let state = Streaming {
        step: Step::Head,
        head,
        tail,
        source,
        lines,
    };
    let body = futures::stream::unfold(state, |mut state| async move {
        loop {
            match state.step {
                Step::Head => {
                    state.step = Step::Log;
                    let head = std::mem::take(&mut state.head);
                    return Some((Ok::<_, io::Error>(Bytes::from(head)), state));
                }
                Step::Log => match state.source.next_chunk().await {
                    Ok(Some(chunk)) => {
                        let html = state.lines.convert(&chunk);
                        if !html.is_empty() {
                            return Some((Ok(Bytes::from(html)), state));
                        }
                    }
                    Ok(None) if state.source.interrupted() => state.step = Step::Done,
                    Ok(None) => state.step = Step::Tail,
                    Err(error) => {
                        tracing::warn!(%error, "error streaming log");
                        state.step = Step::Done;
                        return Some((Err(error), state));
                    }
                },
                Step::Tail => {
                    state.step = Step::Done;
                    let mut tail = state.lines.finish();
                    tail.push_str(&state.tail);
                    return Some((Ok(Bytes::from(tail)), state));
                }
                Step::Done => return None,
            }
        }
    });
    // This page's policy: the site's, plus the log viewer's script by its hash.
    let policy = crate::csp::policy_with_script(LOG_SCRIPT);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
            (
                header::HeaderName::from_static("x-accel-buffering"),
                "no".to_owned(),
            ),
            (header::CONTENT_SECURITY_POLICY, policy),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// The bytes of `source`, as `text/plain`, for `curl`.
pub(crate) fn raw_response(source: LogSource) -> Response {
    let body = futures::stream::unfold(source, |mut source| async move {
        match source.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok::<_, io::Error>(chunk), source)),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "error streaming log");
                Some((Err(error), source))
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}
