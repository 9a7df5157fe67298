//! `schedule`: a cron pattern, parsed by croner, and the times it names. Knows nothing of YAML.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A cron schedule: five fields (minute, hour, day of month, month, day of week), in UTC.
#[derive(Debug, Clone)]
pub struct Schedule {
    text: String,
    cron: Cron,
}

// The parsed pattern only mirrors the text.
impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}
impl Eq for Schedule {}

impl Schedule {
    /// Parses a five-field cron pattern; the error says what is wrong with it.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let fields = text.split_whitespace().count();
        if fields != 5 {
            return Err(format!(
                "invalid schedule {text:?}: a schedule has 5 fields (minute hour day month weekday), this one has {fields}"
            ));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(text)
            // croner ends its messages with a period; ours end without one.
            .map_err(|e| {
                format!(
                    "invalid schedule {text:?}: {}",
                    e.to_string().trim_end_matches('.')
                )
            })?;
        Ok(Schedule {
            text: text.to_owned(),
            cron,
        })
    }

    /// The pattern as written in the file.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The latest time the schedule names at or before `time` (`None` if there is none in
    /// the range croner searches).
    pub fn latest_at_or_before(&self, time: SystemTime) -> Option<SystemTime> {
        let time = DateTime::<Utc>::from(time);
        self.cron
            .find_previous_occurrence(&time, true)
            .ok()
            .map(SystemTime::from)
    }

    /// The first time the schedule names strictly after `time`.
    pub fn next_after(&self, time: SystemTime) -> Option<SystemTime> {
        let time = DateTime::<Utc>::from(time);
        self.cron
            .find_next_occurrence(&time, false)
            .ok()
            .map(SystemTime::from)
    }
}
