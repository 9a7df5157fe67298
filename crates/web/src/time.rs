//! Times and durations as the pages show them (issue 21 item 1): durations (`1m 42s`, `2h 3m`,
//! `850 ms`), relative times (`3 min ago`) and absolute UTC times (`2026-12-07 18:12:29 UTC`),
//! and the `<time>` element that shows the first with the second on hover.
//!
//! Pure functions of their arguments (the caller passes "now"); knows nothing of the store.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use maud::{Markup, html};

/// A duration, to the millisecond under a second, else in its two largest units: `850 ms`,
/// `42s`, `1m 42s`, `2h 3m`, `3d 4h`.
pub(crate) fn duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds == 0 {
        return format!("{} ms", duration.subsec_millis());
    }
    let (minutes, seconds) = (seconds / 60, seconds % 60);
    let (hours, minutes) = (minutes / 60, minutes % 60);
    let (days, hours) = (hours / 24, hours % 24);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) => format!("{minutes}m {seconds}s"),
        (0, _, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h"),
    }
}

/// `then` relative to `now`: `just now`, `42 s ago`, `3 min ago`, `5 h ago`, `4 days ago`, or
/// the date (`on 2026-11-02`) beyond 30 days; `in 3 min` for a time ahead of `now`.
pub(crate) fn relative(then: SystemTime, now: SystemTime) -> String {
    let (ago, future) = match now.duration_since(then) {
        Ok(ago) => (ago, false),
        Err(ahead) => (ahead.duration(), true),
    };
    let seconds = ago.as_secs();
    let amount = match seconds {
        0..10 => return "just now".to_owned(),
        10..60 => format!("{seconds} s"),
        60..3_600 => format!("{} min", seconds / 60),
        3_600..86_400 => format!("{} h", seconds / 3_600),
        86_400..172_800 => "1 day".to_owned(),
        172_800..2_592_000 => format!("{} days", seconds / 86_400),
        _ => return format!("on {}", &utc(then)[..10]),
    };
    if future {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// The absolute time in UTC, to the second: `2026-12-07 18:12:29 UTC`.
pub(crate) fn utc(time: SystemTime) -> String {
    let (date, clock) = civil(time);
    format!("{date} {clock} UTC")
}

/// The time as `datetime` attributes want it: `2026-12-07T18:12:29Z`.
pub(crate) fn iso(time: SystemTime) -> String {
    let (date, clock) = civil(time);
    format!("{date}T{clock}Z")
}

/// `<time datetime="…" title="… UTC">3 min ago</time>`.
pub(crate) fn time_ago(time: SystemTime, now: SystemTime) -> Markup {
    html! { time datetime=(iso(time)) title=(utc(time)) { (relative(time, now)) } }
}

/// `YYYY-MM-DD` and `HH:MM:SS` of `time` in UTC (before 1970 clamps to the epoch).
fn civil(time: SystemTime) -> (String, String) {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Howard Hinnant's `civil_from_days`, for days since 1970-01-01 (non-negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!(
            "{:02}:{:02}:{:02}",
            rest / 3_600,
            rest % 3_600 / 60,
            rest % 60
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn durations_use_their_two_largest_units() {
        let check = |millis: u64, expected: &str| {
            assert_eq!(
                duration(Duration::from_millis(millis)),
                expected,
                "{millis} ms"
            );
        };
        check(0, "0 ms");
        check(850, "850 ms");
        check(1_000, "1s");
        check(42_900, "42s");
        check(102_000, "1m 42s");
        check(3_599_000, "59m 59s");
        check(7_380_000, "2h 3m");
        check(86_400_000 + 4 * 3_600_000 + 59_000, "1d 4h");
    }

    #[test]
    fn relative_times_round_down_and_show_old_dates() {
        let now = at(1_796_000_000);
        let check = |ago: i64, expected: &str| {
            let then = UNIX_EPOCH
                + Duration::from_secs(1_796_000_000u64.checked_add_signed(-ago).unwrap_or(0));
            assert_eq!(relative(then, now), expected, "{ago} s ago");
        };
        check(0, "just now");
        check(9, "just now");
        check(42, "42 s ago");
        check(3 * 60 + 59, "3 min ago");
        check(5 * 3_600 + 10, "5 h ago");
        check(86_400 + 5, "1 day ago");
        check(4 * 86_400, "4 days ago");
        check(40 * 86_400, "on 2026-10-21");
        check(-200, "in 3 min");
        check(-5, "just now");
    }

    #[test]
    fn absolute_times_are_utc() {
        assert_eq!(utc(at(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(at(951_782_400)), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(at(1_796_000_000)), "2026-11-30 00:53:20 UTC");
        assert_eq!(iso(at(1_796_000_000)), "2026-11-30T00:53:20Z");
        assert_eq!(
            time_ago(at(1_796_000_000), at(1_796_000_180)).into_string(),
            "<time datetime=\"2026-11-30T00:53:20Z\" title=\"2026-11-30 00:53:20 UTC\">3 min ago</time>"
        );
    }
}
