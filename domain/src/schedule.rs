//! A scope's schedule: which instants are its slots, and the policies that say what happens to
//! a slot that comes late or while the previous run is still going. Pure computation; the
//! scheduler crate acts on it, the admin API validates edits with it.
//!
//! - `interval`: every N seconds, slots at whole multiples of N since the Unix epoch (so a
//!   schedule has the same slots whoever computes them, whenever: nothing drifts).
//! - `cron`: a standard 5-field expression evaluated on the wall clock of an IANA time zone,
//!   stored by name. A wall-clock time that a daylight-saving change skips runs once, at the
//!   first valid instant after it; a wall-clock time that occurs twice runs once, at its first
//!   occurrence.

use std::str::FromStr;

use chrono::{DateTime as Chrono, Duration as ChronoDuration, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use mongodb::bson::DateTime;
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, Result};

/// The shortest interval: below it a run's own overhead (a connector process, five stages)
/// approaches the interval itself.
pub const MIN_INTERVAL_SECONDS: i64 = 5;
/// The longest cron expression: five fields with lists of numbers fit in far less.
pub const MAX_CRON_CHARS: usize = 256;
/// The longest interval: a year (a longer cadence is a cron expression's job).
pub const MAX_INTERVAL_SECONDS: i64 = 366 * 24 * 3600;
/// The narrowest catch-up window: a tick starts a few milliseconds after the slot it wakes for,
/// and a busy tick later still; a narrower window would count on-time slots as missed.
pub const MIN_CATCH_UP_WINDOW_SECONDS: i64 = 10;
/// The widest catch-up window: thirty days.
pub const MAX_CATCH_UP_WINDOW_SECONDS: i64 = 30 * 24 * 3600;
/// The default catch-up window: a day (see [`CatchUp`]).
pub const DEFAULT_CATCH_UP_WINDOW_SECONDS: i64 = 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub cadence: Cadence,
    #[serde(default)]
    pub catch_up: CatchUp,
    #[serde(default)]
    pub overlap: Overlap,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Cadence {
    Interval {
        every_seconds: i64,
    },
    Cron {
        expression: String,
        time_zone: String,
    },
}

/// What happens to slots that came due while nothing could run them (a scheduler outage, a
/// suspended tenant). Slots older than `window_seconds` are missed: counted, not run. Of the
/// ones inside it, `latest` (the default) runs only the newest and counts the others as
/// superseded; `all` runs each.
///
/// The defaults, a day and `latest`: a scan reports its source's full state, so one late scan
/// replaces every slot it is late for, and a burst of stale scans would only delay the fresh
/// one; a day keeps a daily schedule from losing a whole day to a morning's outage, and past a
/// day the schedule's next slot is as good as a stale one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatchUp {
    pub window_seconds: i64,
    #[serde(default)]
    pub run: CatchUpRun,
}

impl Default for CatchUp {
    fn default() -> CatchUp {
        CatchUp {
            window_seconds: DEFAULT_CATCH_UP_WINDOW_SECONDS,
            run: CatchUpRun::Latest,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUpRun {
    #[default]
    Latest,
    All,
}

/// What a slot does when the scope's previous run has not finished: `skip` it (the default: two
/// scans of one source at once would report the same state twice and compete for its API
/// limits), run it once the previous one finishes (`buffer_one`, at most one waiting), or run it
/// anyway (`allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    #[default]
    Skip,
    BufferOne,
    Allow,
}

impl Overlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::BufferOne => "buffer_one",
            Overlap::Allow => "allow",
        }
    }
}

impl Schedule {
    pub fn every(seconds: i64) -> Schedule {
        Schedule {
            cadence: Cadence::Interval {
                every_seconds: seconds,
            },
            catch_up: CatchUp::default(),
            overlap: Overlap::default(),
        }
    }

    pub fn cron(expression: &str, time_zone: &str) -> Schedule {
        Schedule {
            cadence: Cadence::Cron {
                expression: expression.to_string(),
                time_zone: time_zone.to_string(),
            },
            catch_up: CatchUp::default(),
            overlap: Overlap::default(),
        }
    }

    /// Refuses what the scheduler could not follow, naming the field (`schedule.…`).
    pub fn validate(&self) -> Result<()> {
        self.slots()?;
        let window = self.catch_up.window_seconds;
        if !(MIN_CATCH_UP_WINDOW_SECONDS..=MAX_CATCH_UP_WINDOW_SECONDS).contains(&window) {
            return Err(DomainError::invalid(
                "schedule.catch_up.window_seconds",
                format!(
                    "must be {MIN_CATCH_UP_WINDOW_SECONDS} to {MAX_CATCH_UP_WINDOW_SECONDS} \
                     seconds (thirty days)"
                ),
            ));
        }
        Ok(())
    }

    /// The schedule's slot arithmetic; fails as [`Schedule::validate`] does.
    pub fn slots(&self) -> Result<Slots> {
        match &self.cadence {
            Cadence::Interval { every_seconds } => {
                if !(MIN_INTERVAL_SECONDS..=MAX_INTERVAL_SECONDS).contains(every_seconds) {
                    return Err(DomainError::invalid(
                        "schedule.cadence.every_seconds",
                        format!(
                            "must be {MIN_INTERVAL_SECONDS} to {MAX_INTERVAL_SECONDS} seconds (a year)"
                        ),
                    ));
                }
                Ok(Slots::Interval {
                    every_ms: every_seconds * 1000,
                })
            }
            Cadence::Cron {
                expression,
                time_zone,
            } => {
                let zone = Tz::from_str(time_zone).map_err(|_| {
                    DomainError::invalid(
                        "schedule.cadence.time_zone",
                        format!("{time_zone:?} is not an IANA time zone name (e.g. Europe/Berlin)"),
                    )
                })?;
                let cron = parse_cron(expression)?;
                let slots = Slots::Cron {
                    cron: Box::new(cron),
                    zone,
                };
                if slots.next_after(DateTime::now()).is_none() {
                    return Err(DomainError::invalid(
                        "schedule.cadence.expression",
                        format!("{expression:?} never matches a date"),
                    ));
                }
                Ok(slots)
            }
        }
    }
}

/// The standard five fields (minute, hour, day of month, month, day of week) with numbers,
/// names, `*`, `,`, `-` and `/`, or one of `@hourly`, `@daily`, `@weekly`, `@monthly`,
/// `@yearly`. Croner's extensions (`L`, `W`, `#`, `?`, seconds, years) are refused: other cron
/// implementations read them differently or not at all.
fn parse_cron(expression: &str) -> Result<Cron> {
    let invalid = |reason: String| DomainError::invalid("schedule.cadence.expression", reason);
    // Checked first, and the expression not echoed: every refusal below quotes it whole.
    let length = expression.chars().count();
    if length > MAX_CRON_CHARS {
        return Err(invalid(format!(
            "{length} characters; a cron expression has at most {MAX_CRON_CHARS}"
        )));
    }
    let text = expression.trim();
    if text.starts_with('@') {
        if ![
            "@hourly",
            "@daily",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
        ]
        .contains(&text.to_ascii_lowercase().as_str())
        {
            return Err(invalid(format!(
                "{expression:?}: the only @ forms are @hourly, @daily, @weekly, @monthly and @yearly"
            )));
        }
    } else {
        let fields = text.split_whitespace().count();
        if fields != 5 {
            return Err(invalid(format!(
                "{expression:?} has {fields} fields; a cron expression has 5: minute, hour, day of \
                 month, month, day of week"
            )));
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || " *,-/".contains(*c)))
        {
            return Err(invalid(format!(
                "{expression:?}: {bad:?} is not allowed (use numbers, names, `*`, `,`, `-`, `/`)"
            )));
        }
        // Letters only as day and month names: `L` and `W` are extensions.
        if text
            .split(|c: char| !c.is_ascii_alphabetic())
            .any(|word| !word.is_empty() && word.len() != 3)
        {
            return Err(invalid(format!(
                "{expression:?}: letters are allowed only as three-letter day and month names \
                 (`L`, `W` and `#` are not standard)"
            )));
        }
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|error| invalid(format!("{expression:?}: {error}")))
}

/// A validated schedule's slots, as instants.
#[derive(Debug, Clone)]
pub enum Slots {
    Interval { every_ms: i64 },
    // Boxed: a parsed expression is some 300 bytes, an interval 8.
    Cron { cron: Box<Cron>, zone: Tz },
}

/// How far back a cron search starts from the instant it looks after, in wall-clock time: more
/// than any daylight-saving shift, so a time in a repeated hour still finds the slots whose
/// first occurrence was before it.
const FOLD_LOOKBACK_HOURS: i64 = 3;

impl Slots {
    /// The first slot strictly after `after`; `None` if there is none (a cron date that never
    /// comes, or past the year 9999).
    pub fn next_after(&self, after: DateTime) -> Option<DateTime> {
        match self {
            Slots::Interval { every_ms } => {
                let t = after.timestamp_millis();
                let next = (t.div_euclid(*every_ms) + 1).checked_mul(*every_ms)?;
                Some(DateTime::from_millis(next))
            }
            Slots::Cron { cron, zone } => {
                let after = Chrono::<Utc>::from_timestamp_millis(after.timestamp_millis())?;
                let wall = after.with_timezone(zone).naive_local()
                    - ChronoDuration::hours(FOLD_LOOKBACK_HOURS);
                // Croner walks the wall clock (a naive time dressed as UTC, which has no
                // transitions); each wall-clock match is then placed in the zone by the policy.
                let mut cursor = wall.and_utc();
                loop {
                    cursor = cron.find_next_occurrence(&cursor, false).ok()?;
                    let instant = place(zone, cursor.naive_utc())?;
                    if instant > after {
                        return Some(DateTime::from_millis(instant.timestamp_millis()));
                    }
                }
            }
        }
    }

    /// The slots in `[from, until]`, at most `limit` of them, in order.
    pub fn between(&self, from: DateTime, until: DateTime, limit: usize) -> Vec<DateTime> {
        let mut slots = Vec::new();
        let mut cursor = DateTime::from_millis(from.timestamp_millis() - 1);
        while slots.len() < limit {
            match self.next_after(cursor) {
                Some(slot) if slot <= until => {
                    slots.push(slot);
                    cursor = slot;
                }
                _ => break,
            }
        }
        slots
    }

    /// How many slots fall in `[from, until)`, counting at most `cap` (an interval's are counted
    /// exactly by arithmetic).
    pub fn count_between(&self, from: DateTime, until: DateTime, cap: u64) -> u64 {
        if until <= from {
            return 0;
        }
        match self {
            Slots::Interval { every_ms } => {
                let first = from.timestamp_millis().div_euclid(*every_ms)
                    + i64::from(from.timestamp_millis().rem_euclid(*every_ms) != 0);
                let last = (until.timestamp_millis() - 1).div_euclid(*every_ms);
                (last - first + 1).max(0) as u64
            }
            Slots::Cron { .. } => {
                let until_inclusive = DateTime::from_millis(until.timestamp_millis() - 1);
                self.between(from, until_inclusive, cap as usize).len() as u64
            }
        }
    }
}

/// Places a wall-clock time in `zone`: a time that exists once is that instant; one that occurs
/// twice (the repeated hour) is its first occurrence; one that does not exist (the skipped
/// hour) is the first valid instant after it, the end of the gap.
fn place(zone: &Tz, wall: NaiveDateTime) -> Option<Chrono<Utc>> {
    if let Some(instant) = zone.from_local_datetime(&wall).earliest() {
        return Some(instant.with_timezone(&Utc));
    }
    // Transitions fall on whole minutes, and gaps last at most a few hours.
    let mut probe = wall;
    for _ in 0..24 * 60 {
        probe += ChronoDuration::minutes(1);
        if let Some(instant) = zone.from_local_datetime(&probe).earliest() {
            return Some(instant.with_timezone(&Utc));
        }
    }
    None
}

#[cfg(test)]
mod tests;
