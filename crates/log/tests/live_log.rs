//! Integration tests of live logs through the public API: formats, the manager, pending reasons,
//! cancellation, streaming with many readers, spilling to disk and spill failures.

use std::io::Read;
use std::task::Poll;

use anyhow::Context as _;
use datakit_ci_log::{
    DEFAULT_MEMORY_LIMIT, DEFAULT_RECENT_WINDOW, LiveLog, LiveLogSpec, LogConfig, LogManager,
    LogStream, PendingState,
};
use tokio_util::sync::CancellationToken;

fn spec(branch: &str) -> LiveLogSpec {
    LiveLogSpec {
        branch: branch.to_owned(),
        title: format!("Title of {branch}"),
        pending: "Initial".to_owned(),
        cancel: None,
    }
}

fn new_log(branch: &str) -> anyhow::Result<(LogManager, LiveLog)> {
    let manager = LogManager::new();
    let log = manager.create(spec(branch))?;
    Ok((manager, log))
}

/// Whether `line` starts with the original's timestamp, `^\[....-..-.. ..:.....\] `, with digits
/// where the timestamp has digits.
fn has_timestamp(line: &str) -> bool {
    let template = b"[dddd-dd-dd dd:dd.dd] ";
    let bytes = line.as_bytes();
    bytes.len() >= template.len()
        && template
            .iter()
            .zip(bytes)
            .all(|(expected, byte)| match expected {
                b'd' => byte.is_ascii_digit(),
                _ => expected == byte,
            })
}

/// Strips timestamps, as the original's tests do.
fn strip_timestamps(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| {
            if has_timestamp(line) {
                &line[22..]
            } else {
                line
            }
        })
        .collect()
}

async fn read_all(mut stream: LogStream) -> std::io::Result<Vec<u8>> {
    let mut all = Vec::new();
    while let Some(chunk) = stream.next_chunk().await? {
        assert!(!chunk.is_empty(), "streams never yield empty chunks");
        assert!(chunk.len() <= 64 * 1024, "chunk of {} bytes", chunk.len());
        all.extend_from_slice(&chunk);
    }
    Ok(all)
}

/// Order-sensitive checksum (FNV-1a over 64-bit words, bytes for the remainder).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Checksum {
    hash: u64,
    len: u64,
}

impl Checksum {
    fn new() -> Self {
        Self {
            hash: 0xcbf2_9ce4_8422_2325,
            len: 0,
        }
    }

    fn update(&mut self, data: &[u8]) {
        // Byte-wise so that the result does not depend on how data is split into chunks.
        for byte in data {
            self.hash = (self.hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
        self.len += data.len() as u64;
    }
}

/// Deterministic, position-dependent test data.
fn pattern_chunk(index: u64, size: usize) -> Vec<u8> {
    let mut state = index.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut chunk = Vec::with_capacity(size);
    while chunk.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.extend_from_slice(&state.to_le_bytes());
    }
    chunk.truncate(size);
    chunk
}

#[test]
fn timestamp_matcher_accepts_only_timestamps() {
    assert!(has_timestamp("[2024-01-31 12:34.56] x"));
    assert!(!has_timestamp("[2024-01-31 12:34:56] x"));
    assert!(!has_timestamp("2024-01-31 12:34.56 x"));
    assert!(!has_timestamp("[2024-01-31 12:34.56]x"));
}

#[test]
fn write_heading_and_log_formats() -> anyhow::Result<()> {
    let (_manager, log) = new_log("formats")?;
    assert!(log.is_empty());
    log.heading("First");
    assert_eq!(
        log.contents()?,
        b"=== First\n",
        "no blank line on an empty log"
    );
    log.write_str("some output");
    log.heading("Second");
    log.log("Building");
    writeln!(log, "n={}", 42);
    let text = String::from_utf8(log.contents()?)?;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..3], ["=== First", "some output", "=== Second"]);
    assert!(has_timestamp(lines[3]), "bad timestamp in {:?}", lines[3]);
    assert_eq!(
        strip_timestamps(&text),
        "=== First\nsome output\n=== Second\nBuilding\nn=42\n"
    );
    assert_eq!(log.len(), text.len() as u64);
    assert_eq!(log.branch(), "formats");
    assert_eq!(log.title(), "Title of formats");
    Ok(())
}

#[test]
fn log_uses_local_time() -> anyhow::Result<()> {
    let (_manager, log) = new_log("local-time")?;
    let before = chrono::Local::now().format("[%Y-%m-%d %H:%M").to_string();
    log.log("x");
    let after = chrono::Local::now().format("[%Y-%m-%d %H:%M").to_string();
    let text = String::from_utf8(log.contents()?)?;
    assert!(
        text.starts_with(&before) || text.starts_with(&after),
        "{text:?} is not local time {before:?}"
    );
    Ok(())
}

#[test]
fn invalid_utf8_is_kept_verbatim() -> anyhow::Result<()> {
    let (_manager, log) = new_log("bytes")?;
    let data = [b'a', 0xff, 0xfe, 0xc3, b'\n', 0x80, 0];
    log.write(&data);
    log.heading("after");
    let mut expected = data.to_vec();
    expected.extend_from_slice(b"\n=== after\n");
    assert_eq!(log.contents()?, expected);
    Ok(())
}

#[test]
fn one_active_log_per_branch() -> anyhow::Result<()> {
    let manager = LogManager::new();
    let first = manager.create(spec("b/1"))?;
    let second = manager.create(spec("a"))?;
    let error = manager
        .create(spec("b/1"))
        .err()
        .context("a second log on the branch was accepted")?;
    assert_eq!(
        error.to_string(),
        r#"can't create new live log on branch "b/1"; one is already active"#
    );
    let branches: Vec<String> = manager
        .active()
        .iter()
        .map(|log| log.branch().to_owned())
        .collect();
    assert_eq!(branches, ["a", "b/1"]);
    assert_eq!(
        manager
            .get("b/1")
            .map(|log| log.title().to_owned())
            .as_deref(),
        Some("Title of b/1")
    );

    first.finish();
    assert!(manager.get("b/1").is_none());
    let third = manager.create(spec("b/1"))?;
    third.write_str("new build");
    // Finishing the old log again must not unregister the new one.
    first.finish();
    let active = manager.get("b/1").context("new log unregistered")?;
    assert_eq!(active.contents()?, b"new build");
    second.finish();
    third.finish();
    assert!(manager.active().is_empty());
    Ok(())
}

#[test]
fn managers_are_independent() -> anyhow::Result<()> {
    let one = LogManager::new();
    let two = LogManager::new();
    let _a = one.create(spec("same"))?;
    let _b = two.create(spec("same"))?;
    assert_eq!(one.clone().active().len(), 1);
    Ok(())
}

#[test]
fn pending_reasons_form_a_stack() -> anyhow::Result<()> {
    let (_manager, log) = new_log("pending")?;
    let mut watch = log.pending_watch();
    assert_eq!(log.pending_reason().as_deref(), Some("Initial"));
    assert!(!watch.has_changed()?);

    let a = log.push_pending_reason("A");
    assert!(watch.has_changed()?);
    assert_eq!(watch.borrow_and_update().reason.as_deref(), Some("A"));
    let b = log.push_pending_reason("B");
    assert_eq!(log.pending_reason().as_deref(), Some("B"));
    assert_eq!(watch.borrow_and_update().reason.as_deref(), Some("B"));

    drop(b);
    assert!(watch.has_changed()?);
    assert_eq!(log.pending_reason().as_deref(), Some("A"));
    assert_eq!(watch.borrow_and_update().reason.as_deref(), Some("A"));
    drop(a);
    assert_eq!(log.pending_reason().as_deref(), Some("Initial"));
    assert_eq!(
        *watch.borrow_and_update(),
        PendingState {
            reason: Some("Initial".to_owned()),
            finished: false
        }
    );
    Ok(())
}

#[test]
fn dropping_a_guard_removes_one_occurrence() -> anyhow::Result<()> {
    let (_manager, log) = new_log("pending-dup")?;
    let outer = log.push_pending_reason("Waiting");
    let middle = log.push_pending_reason("Other");
    let inner = log.push_pending_reason("Waiting");
    assert_eq!(inner.reason(), "Waiting");
    // As in the original, a guard removes the first occurrence from the top of the stack.
    drop(outer);
    assert_eq!(log.pending_reason().as_deref(), Some("Other"));
    drop(inner);
    assert_eq!(log.pending_reason().as_deref(), Some("Other"));
    drop(middle);
    assert_eq!(log.pending_reason().as_deref(), Some("Initial"));
    Ok(())
}

#[tokio::test]
async fn with_pending_reason_on_an_immediate_future_changes_nothing() -> anyhow::Result<()> {
    let (_manager, log) = new_log("immediate")?;
    let watch = log.pending_watch();
    let value = log.with_pending_reason("Never seen", async { 7 }).await;
    assert_eq!(value, 7);
    assert!(!watch.has_changed()?, "the pending state changed");
    assert_eq!(log.pending_reason().as_deref(), Some("Initial"));
    Ok(())
}

#[tokio::test]
async fn with_pending_reason_shows_the_reason_while_waiting() -> anyhow::Result<()> {
    let (_manager, log) = new_log("slow")?;
    let mut watch = log.pending_watch();
    let (release, released) = tokio::sync::oneshot::channel::<u32>();
    let task = tokio::spawn({
        let log = log.clone();
        async move { log.with_pending_reason("Waiting for lock", released).await }
    });
    watch
        .wait_for(|state| state.reason.as_deref() == Some("Waiting for lock"))
        .await?;
    assert_eq!(log.pending_reason().as_deref(), Some("Waiting for lock"));
    release
        .send(5)
        .map_err(|_| anyhow::anyhow!("the waiting task is gone"))?;
    assert_eq!(task.await??, 5);
    assert_eq!(log.pending_reason().as_deref(), Some("Initial"));
    assert_eq!(watch.borrow_and_update().reason.as_deref(), Some("Initial"));
    Ok(())
}

#[tokio::test]
async fn finish_is_idempotent_and_ends_readers() -> anyhow::Result<()> {
    let (manager, log) = new_log("finish")?;
    let mut watch = log.pending_watch();
    log.write_str("hello\n");
    let readers: Vec<_> = (0..3)
        .map(|_| tokio::spawn(read_all(log.stream())))
        .collect();
    log.write_str("world\n");
    log.finish();
    assert!(log.is_finished());
    assert!(manager.get("finish").is_none());
    watch.wait_for(|state| state.finished).await?;
    log.finish();
    assert_eq!(
        *watch.borrow_and_update(),
        PendingState {
            reason: Some("Initial".to_owned()),
            finished: true
        }
    );
    for reader in readers {
        assert_eq!(reader.await??, b"hello\nworld\n");
    }
    // Writes after finish are dropped.
    log.write_str("late");
    log.log("late");
    assert_eq!(log.contents()?, b"hello\nworld\n");
    // A reader that starts after finish gets everything, then ends.
    let mut stream = log.stream();
    assert_eq!(
        stream.next_chunk().await?.as_deref(),
        Some(&b"hello\nworld\n"[..])
    );
    assert_eq!(stream.offset(), 12);
    assert!(stream.next_chunk().await?.is_none());
    Ok(())
}

#[tokio::test]
async fn a_stream_waits_for_new_data() -> anyhow::Result<()> {
    let (_manager, log) = new_log("waiting")?;
    let mut stream = log.stream();
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(async move {
        let first = stream.next_chunk().await?;
        // The test waits for this before writing more.
        let _ = first_tx.send(first);
        let second = stream.next_chunk().await?;
        let end = stream.next_chunk().await?;
        std::io::Result::Ok((second, end, stream.offset()))
    });
    log.write_str("one");
    assert_eq!(first_rx.await?.as_deref(), Some(&b"one"[..]));
    log.write_str("two");
    log.finish();
    let (second, end, offset) = reader.await??;
    assert_eq!(second.as_deref(), Some(&b"two"[..]));
    assert!(end.is_none());
    assert_eq!(offset, 6);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_readers_each_get_every_byte() -> anyhow::Result<()> {
    let manager = LogManager::with_config(LogConfig::default().memory_limit(256 * 1024));
    let log = manager.create(spec("many-readers"))?;
    let readers: Vec<_> = (0..100)
        .map(|_| {
            let mut stream = log.stream();
            tokio::spawn(async move {
                let mut checksum = Checksum::new();
                while let Some(chunk) = stream.next_chunk().await? {
                    checksum.update(&chunk);
                }
                std::io::Result::Ok(checksum)
            })
        })
        .collect();
    let writer = {
        let log = log.clone();
        tokio::spawn(async move {
            let mut expected = Checksum::new();
            for index in 0..400_u64 {
                // Odd sizes, so chunk boundaries never line up with the memory limit.
                let chunk = pattern_chunk(index, 1 + (index as usize * 7919) % 8000);
                log.write(&chunk);
                expected.update(&chunk);
                if index % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            log.finish();
            expected
        })
    };
    let expected = writer.await?;
    assert!(expected.len > 256 * 1024, "the test must spill");
    for reader in readers {
        assert_eq!(reader.await??, expected);
    }
    Ok(())
}

/// What a log with the default settings may hold in memory: its head, the recent window of
/// shared segments, and a block of room for small writes.
const MEMORY_BOUND: usize = DEFAULT_MEMORY_LIMIT + DEFAULT_RECENT_WINDOW + 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spilling_200_mb_keeps_memory_bounded() -> anyhow::Result<()> {
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: u64 = 200 * 16; // 200 MiB
    let (_manager, log) = new_log("spill")?;
    let mut stream = log.stream();
    let reader = tokio::spawn(async move {
        let mut checksum = Checksum::new();
        while let Some(chunk) = stream.next_chunk().await? {
            checksum.update(&chunk);
        }
        std::io::Result::Ok(checksum)
    });
    let mut expected = Checksum::new();
    // Every chunk differs only in its first word, which keeps the test fast.
    let mut chunk = pattern_chunk(0, CHUNK);
    for index in 0..CHUNKS {
        chunk[..8].copy_from_slice(&index.to_le_bytes());
        log.write(&chunk);
        expected.update(&chunk);
        assert!(
            log.memory_bytes() <= MEMORY_BOUND,
            "{} bytes in memory",
            log.memory_bytes()
        );
        if index % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    log.finish();
    assert_eq!(log.len(), CHUNKS * CHUNK as u64);
    assert_eq!(reader.await??, expected);

    // The synchronous reader sees the same bytes.
    let mut from_reader = Checksum::new();
    let mut reader = log.reader();
    assert_eq!(reader.total_len(), log.len());
    let mut buffer = vec![0; 100_000];
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        from_reader.update(&buffer[..n]);
    }
    assert_eq!(from_reader, expected);
    assert!(log.memory_bytes() <= MEMORY_BOUND);
    Ok(())
}

#[tokio::test]
async fn everything_spills_with_a_zero_memory_limit() -> anyhow::Result<()> {
    let manager = LogManager::with_config(LogConfig::default().memory_limit(0).recent_window(0));
    let log = manager.create(spec("zero"))?;
    log.heading("x");
    log.write(b"\xffdata");
    log.finish();
    assert_eq!(log.memory_bytes(), 0);
    assert_eq!(log.contents()?, b"=== x\n\xffdata");
    assert_eq!(read_all(log.stream()).await?, b"=== x\n\xffdata");
    Ok(())
}

#[tokio::test]
async fn reads_across_the_memory_boundary() -> anyhow::Result<()> {
    // Without and with the recent window of shared segments.
    for window in [0, DEFAULT_RECENT_WINDOW] {
        reads_across_the_memory_boundary_with(window).await?;
    }
    Ok(())
}

async fn reads_across_the_memory_boundary_with(window: usize) -> anyhow::Result<()> {
    let manager =
        LogManager::with_config(LogConfig::default().memory_limit(10).recent_window(window));
    let log = manager.create(spec("boundary"))?;
    let stream = log.stream();
    let mut expected = Vec::new();
    for word in ["abc", "defghij", "klmnopqrstu", "v", "", "wxyz\n"] {
        log.write_str(word);
        expected.extend_from_slice(word.as_bytes());
    }
    // A reader made now does not see later writes.
    let snapshot = log.reader();
    log.write_str("later");
    let mut snapshot_text = Vec::new();
    std::io::copy(&mut { snapshot }, &mut snapshot_text)?;
    assert_eq!(snapshot_text, expected);
    expected.extend_from_slice(b"later");
    log.finish();
    assert_eq!(read_all(stream).await?, expected);
    assert_eq!(log.contents()?, expected);
    if window == 0 {
        assert!(log.memory_bytes() <= 10);
    }
    Ok(())
}

/// `len` bytes of a pattern that differs at every offset in a chunk, starting with `seed`.
fn numbered(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((seed * 31 + i * 7) % 251) as u8)
        .collect()
}

#[tokio::test]
async fn followers_share_recently_spilled_bytes() -> anyhow::Result<()> {
    let manager = LogManager::with_config(LogConfig::default().memory_limit(0));
    let log = manager.create(spec("shared"))?;
    let (mut first, mut second) = (log.stream(), log.stream());
    let chunks: Vec<Vec<u8>> = (0..3).map(|seed| numbered(seed, 64 * 1024)).collect();
    for chunk in &chunks {
        log.write(chunk);
    }
    log.finish();
    for chunk in &chunks {
        let (a, b) = (first.next_bytes().await?, second.next_bytes().await?);
        let (a, b) = (a.context("first stream ended")?, b.context("second ended")?);
        assert_eq!(a, chunk[..]);
        // The same memory: the writer's one copy, not a copy per follower.
        assert_eq!(a.as_ptr(), b.as_ptr());
    }
    assert!(first.next_bytes().await?.is_none());
    Ok(())
}

#[tokio::test]
async fn a_follower_behind_the_window_reads_the_spill_file() -> anyhow::Result<()> {
    let window = 64 * 1024;
    let manager = LogManager::with_config(
        LogConfig::default()
            .memory_limit(1000)
            .recent_window(window),
    );
    let log = manager.create(spec("behind"))?;
    let stream = log.stream();
    let mut expected = Vec::new();
    // Sizes around the small-write threshold and the window, so segments are evicted, merged
    // and skipped (one write larger than the window).
    for (seed, len) in [100, 5000, 3000, 70_000, 20_000, 10, 4096, 64 * 1024, 1]
        .into_iter()
        .enumerate()
    {
        let chunk = numbered(seed, len);
        log.write(&chunk);
        expected.extend_from_slice(&chunk);
    }
    for seed in 0..500 {
        let line = numbered(seed, 37);
        log.write(&line);
        expected.extend_from_slice(&line);
    }
    log.finish();
    assert_eq!(read_all(stream).await?, expected);
    assert_eq!(log.contents()?, expected);
    assert!(log.memory_bytes() <= 1000 + window + 64 * 1024);
    Ok(())
}

#[tokio::test]
async fn small_writes_come_back_merged() -> anyhow::Result<()> {
    let manager = LogManager::with_config(LogConfig::default().memory_limit(0));
    let log = manager.create(spec("lines"))?;
    let mut stream = log.stream();
    let mut expected = Vec::new();
    for index in 0..1000 {
        let line = format!("line {index}\n");
        log.write_str(&line);
        expected.extend_from_slice(line.as_bytes());
    }
    log.finish();
    let first = stream.next_bytes().await?.context("no chunk")?;
    assert!(first.len() > 100, "a chunk of {} bytes", first.len());
    let mut all = first.to_vec();
    while let Some(chunk) = stream.next_bytes().await? {
        all.extend_from_slice(&chunk);
    }
    assert_eq!(all, expected);
    Ok(())
}

#[tokio::test]
async fn a_spill_failure_truncates_the_log_without_panicking() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("does-not-exist");
    let manager = LogManager::with_config(LogConfig::default().memory_limit(8).spill_dir(&missing));
    let log = manager.create(spec("disk-full"))?;
    let stream = log.stream();
    log.write_str("12345678"); // fits in memory
    log.write_str("9abc"); // cannot be spilled
    log.write_str("more");
    log.finish();
    let text = String::from_utf8(read_all(stream).await?)?;
    assert!(
        text.starts_with("12345678\n=== log truncated: cannot create the spill file: "),
        "{text:?}"
    );
    assert!(text.contains("further output is dropped\n"), "{text:?}");
    assert!(
        text.ends_with("=== 8 bytes of output were dropped after the log was truncated\n"),
        "{text:?}"
    );
    assert_eq!(log.contents()?, text.as_bytes());
    assert_eq!(log.len(), text.len() as u64);
    Ok(())
}

#[test]
fn cancel_without_a_token_is_refused() -> anyhow::Result<()> {
    let (_manager, log) = new_log("no-token")?;
    assert!(!log.can_cancel());
    let error = log.cancel().err().context("cancel succeeded")?;
    assert_eq!(
        error.to_string(),
        r#"branch "no-token" cannot be cancelled"#
    );
    assert!(log.is_empty(), "nothing is logged");
    Ok(())
}

#[test]
fn cancel_logs_and_cancels_the_token() -> anyhow::Result<()> {
    let manager = LogManager::new();
    let build = CancellationToken::new();
    let log = manager.create(LiveLogSpec {
        cancel: Some(build.clone()),
        ..spec("cancellable")
    })?;
    assert!(log.can_cancel());
    log.write_str("building\n");
    // Any clone of the log (e.g. the web UI's, found through the manager) can cancel.
    manager
        .get("cancellable")
        .context("log not registered")?
        .cancel()?;
    assert!(build.is_cancelled());
    assert!(!log.can_cancel());
    let text = String::from_utf8(log.contents()?)?;
    let last = text.lines().last().context("empty log")?;
    assert!(has_timestamp(last), "{last:?}");
    assert_eq!(
        strip_timestamps(&text),
        "building\nCancelled at user's request\n"
    );
    Ok(())
}

#[test]
fn cancel_cancels_only_the_given_token() -> anyhow::Result<()> {
    let manager = LogManager::new();
    let parent = CancellationToken::new();
    let job = parent.child_token();
    let log = manager.create(LiveLogSpec {
        cancel: Some(job.clone()),
        ..spec("child")
    })?;
    log.cancel()?;
    assert!(job.is_cancelled());
    assert!(!parent.is_cancelled());
    Ok(())
}

#[test]
fn a_finished_log_cannot_be_cancelled_from_the_ui() -> anyhow::Result<()> {
    let manager = LogManager::new();
    let log = manager.create(LiveLogSpec {
        cancel: Some(CancellationToken::new()),
        ..spec("done")
    })?;
    assert!(log.can_cancel());
    log.finish();
    assert!(!log.can_cancel());
    Ok(())
}

#[tokio::test]
async fn dropping_next_chunk_loses_nothing() -> anyhow::Result<()> {
    let (_manager, log) = new_log("cancel-safe")?;
    let mut stream = log.stream();
    {
        // Poll once with no data, then drop the future.
        let mut next = std::pin::pin!(stream.next_chunk());
        let first_poll =
            std::future::poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx).is_ready())).await;
        assert!(!first_poll, "no data yet");
    }
    log.write_str("data");
    log.finish();
    assert_eq!(read_all(stream).await?, b"data");
    Ok(())
}

#[test]
fn handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    fn assert_send<T: Send>() {}
    assert_send_sync::<LogManager>();
    assert_send_sync::<LiveLog>();
    assert_send::<LogStream>();
    assert_send::<datakit_ci_log::LogReader>();
    assert_send::<datakit_ci_log::PendingReasonGuard>();
}

/// Issue 20: a log over the saved limit is saved as its head and tail with a line saying what
/// was cut; one within it is saved whole. Read with small and large buffers, across the spill.
#[tokio::test]
async fn a_log_over_the_saved_limit_keeps_its_head_and_tail() -> anyhow::Result<()> {
    let manager =
        LogManager::with_config(LogConfig::default().memory_limit(5_000).saved_limit(10_000));
    let log = manager.create(spec("big"))?;
    let text: Vec<u8> = (0..50_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    log.write(&text);
    log.finish();
    for buffer_size in [1, 7, 4096, 100_000] {
        let mut reader = log.saved_reader();
        let total = reader.total_len();
        let mut saved = Vec::new();
        let mut buffer = vec![0; buffer_size];
        loop {
            let n = reader.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            saved.extend_from_slice(&buffer[..n]);
        }
        assert_eq!(saved.len() as u64, total, "buffer {buffer_size}");
        assert_eq!(&saved[..5_000], &text[..5_000]);
        assert_eq!(&saved[saved.len() - 5_000..], &text[text.len() - 5_000..]);
        let note = String::from_utf8_lossy(&saved[5_000..saved.len() - 5_000]).into_owned();
        assert!(
            note.contains("40000 bytes cut here: the log was 50000 bytes, over the limit of 10000 bytes (--max-log-size)"),
            "{note}"
        );
    }

    // Within the limit: whole.
    let small = manager.create(spec("small"))?;
    small.write(&text[..10_000]);
    small.finish();
    let mut saved = Vec::new();
    small.saved_reader().read_to_end(&mut saved)?;
    assert_eq!(saved, &text[..10_000]);
    Ok(())
}

#[test]
fn masked_values_never_reach_the_log_even_split_across_writes() -> anyhow::Result<()> {
    let (_manager, log) = new_log("masked")?;
    log.write_str("before hunter2\n");
    let guard = log.mask([b"hunter2".to_vec()]);
    log.write_str("pw=hun");
    assert_eq!(
        String::from_utf8(log.contents()?)?,
        "before hunter2\npw=",
        "the start of a value is held back"
    );
    log.write_str("ter2 and hunt");
    drop(guard);
    log.write_str(" hunter2\n");
    assert_eq!(
        String::from_utf8(log.contents()?)?,
        "before hunter2\npw=*** and hunt hunter2\n",
        "masked while the guard lives; its drop writes what was held back"
    );
    Ok(())
}
