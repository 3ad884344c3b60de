//! Slot tables: each row is a schedule, an instant, and the slots that must follow it, written
//! out by hand (UTC) from the zone's rules.

use super::*;

fn at(text: &str) -> DateTime {
    DateTime::parse_rfc3339_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn cron(expression: &str, zone: &str) -> Slots {
    Schedule::cron(expression, zone).slots().unwrap()
}

/// The `n` slots after `after`, as RFC 3339 UTC strings.
fn following(slots: &Slots, after: &str, n: usize) -> Vec<String> {
    let mut cursor = at(after);
    (0..n)
        .map(|_| {
            cursor = slots.next_after(cursor).expect("a next slot");
            cursor.try_to_rfc3339_string().unwrap()
        })
        .collect()
}

#[test]
fn interval_slots_are_multiples_of_the_interval_since_the_epoch() {
    let every_5m = Schedule::every(300).slots().unwrap();
    assert_eq!(
        following(&every_5m, "2027-01-01T10:02:17Z", 3),
        [
            "2027-01-01T10:05:00Z",
            "2027-01-01T10:10:00Z",
            "2027-01-01T10:15:00Z"
        ]
    );
    // Strictly after: a slot instant itself is followed by the next one.
    assert_eq!(
        following(&every_5m, "2027-01-01T10:05:00Z", 1),
        ["2027-01-01T10:10:00Z"]
    );
    // An interval that does not divide a day keeps its own rhythm across midnight.
    let every_7s = Schedule::every(7).slots().unwrap();
    let slots = following(&every_7s, "2027-01-01T23:59:55Z", 2);
    let first = at(&slots[0]).timestamp_millis();
    assert_eq!(first % 7000, 0);
    assert_eq!(at(&slots[1]).timestamp_millis() - first, 7000);
}

#[test]
fn interval_counts_match_enumeration() {
    let slots = Schedule::every(60).slots().unwrap();
    for (from, until, expected) in [
        ("2027-01-01T10:00:00Z", "2027-01-01T10:00:00Z", 0),
        ("2027-01-01T10:00:00Z", "2027-01-01T10:00:00.001Z", 1),
        ("2027-01-01T10:00:00.001Z", "2027-01-01T10:01:00Z", 0),
        ("2027-01-01T10:00:00Z", "2027-01-01T10:03:00Z", 3),
        ("2027-01-01T09:59:59Z", "2027-01-01T10:03:00.5Z", 4),
    ] {
        assert_eq!(
            slots.count_between(at(from), at(until), u64::MAX),
            expected,
            "[{from}, {until})"
        );
        let listed = slots.between(
            at(from),
            DateTime::from_millis(at(until).timestamp_millis() - 1),
            100,
        );
        assert_eq!(
            listed.len() as u64,
            expected,
            "enumerated [{from}, {until})"
        );
    }
}

#[test]
fn cron_month_ends_leap_days_steps_and_ranges() {
    let cases: [(&str, &str, &[&str]); 6] = [
        // The 31st: months without one are passed over.
        (
            "0 0 31 * *",
            "2027-01-31T00:00:00Z",
            &[
                "2027-03-31T00:00:00Z",
                "2027-05-31T00:00:00Z",
                "2027-07-31T00:00:00Z",
            ],
        ),
        // The 30th: February has none.
        (
            "0 6 30 * *",
            "2027-01-30T06:00:00Z",
            &["2027-03-30T06:00:00Z"],
        ),
        // A leap day: the next is four years on.
        (
            "0 12 29 2 *",
            "2028-02-29T12:00:00Z",
            &["2032-02-29T12:00:00Z"],
        ),
        // Steps within a range of hours, on weekdays (2027-01-01 is a Friday).
        (
            "*/20 16-17 * * 1-5",
            "2027-01-01T17:30:00Z",
            &[
                "2027-01-01T17:40:00Z",
                "2027-01-04T16:00:00Z",
                "2027-01-04T16:20:00Z",
            ],
        ),
        // Lists and names.
        (
            "15 8,20 * JAN,JUL SUN",
            "2027-01-03T08:15:00Z",
            &["2027-01-03T20:15:00Z", "2027-01-10T08:15:00Z"],
        ),
        // A range with a step in the day-of-month field.
        (
            "0 0 1-10/3 * *",
            "2027-02-01T00:00:00Z",
            &[
                "2027-02-04T00:00:00Z",
                "2027-02-07T00:00:00Z",
                "2027-02-10T00:00:00Z",
            ],
        ),
    ];
    for (expression, after, expected) in cases {
        assert_eq!(
            following(&cron(expression, "UTC"), after, expected.len()),
            expected,
            "{expression} after {after}"
        );
    }
}

#[test]
fn cron_follows_the_zone_not_utc() {
    // 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
    let slots = cron("0 9 * * *", "Europe/Berlin");
    assert_eq!(
        following(&slots, "2027-01-15T12:00:00Z", 1),
        ["2027-01-16T08:00:00Z"]
    );
    assert_eq!(
        following(&slots, "2027-07-15T12:00:00Z", 1),
        ["2027-07-16T07:00:00Z"]
    );
}

/// Berlin, 2027-03-28: at 02:00 CET (01:00 UTC) the clocks jump to 03:00 CEST.
#[test]
fn berlin_spring_forward_a_skipped_time_runs_once_at_the_end_of_the_gap() {
    let daily = cron("30 2 * * *", "Europe/Berlin");
    assert_eq!(
        following(&daily, "2027-03-27T00:00:00Z", 3),
        [
            "2027-03-27T01:30:00Z", // 02:30 CET
            "2027-03-28T01:00:00Z", // 02:30 does not exist: 03:00 CEST, the first valid instant
            "2027-03-29T00:30:00Z", // 02:30 CEST
        ]
    );
    // Four wall-clock times in the gap and 03:00 itself are one instant: one slot.
    let quarter_hours = cron("*/15 2-3 * * *", "Europe/Berlin");
    assert_eq!(
        following(&quarter_hours, "2027-03-28T00:50:00Z", 4),
        [
            "2027-03-28T01:00:00Z",
            "2027-03-28T01:15:00Z",
            "2027-03-28T01:30:00Z",
            "2027-03-28T01:45:00Z",
        ]
    );
    // Just before and at the transition instant.
    assert_eq!(
        following(&daily, "2027-03-28T00:59:59Z", 1),
        ["2027-03-28T01:00:00Z"]
    );
    assert_eq!(
        following(&daily, "2027-03-28T01:00:00Z", 1),
        ["2027-03-29T00:30:00Z"]
    );
}

/// Berlin, 2027-10-31: at 03:00 CEST (01:00 UTC) the clocks go back to 02:00 CET, so 02:00 to
/// 02:59 happen twice.
#[test]
fn berlin_fall_back_a_repeated_time_runs_once_at_its_first_occurrence() {
    let daily = cron("30 2 * * *", "Europe/Berlin");
    assert_eq!(
        following(&daily, "2027-10-30T12:00:00Z", 2),
        [
            "2027-10-31T00:30:00Z", // 02:30 CEST, the first 02:30
            "2027-11-01T01:30:00Z", // the second 02:30 (01:30 UTC on the 31st) does not run
        ]
    );
    let half_hours = cron("*/30 * * * *", "Europe/Berlin");
    assert_eq!(
        following(&half_hours, "2027-10-30T23:45:00Z", 4),
        [
            "2027-10-31T00:00:00Z", // 02:00 CEST
            "2027-10-31T00:30:00Z", // 02:30 CEST
            "2027-10-31T02:00:00Z", // 03:00 CET: the repeated 02:00 and 02:30 CET do not run
            "2027-10-31T02:30:00Z",
        ]
    );
    // From inside the repeated hour's second pass (02:15 CET), the next slot is 03:00 CET.
    assert_eq!(
        following(&half_hours, "2027-10-31T01:15:00Z", 1),
        ["2027-10-31T02:00:00Z"]
    );
}

/// Lord Howe Island shifts by thirty minutes: on 2027-10-03 02:00 LHST (+10:30) becomes 02:30
/// LHDT (+11:00); on 2027-04-04 02:00 LHDT becomes 01:30 LHST, so 01:30 to 01:59 happen twice.
#[test]
fn lord_howe_half_hour_shifts() {
    let gap = cron("15 2 * * *", "Australia/Lord_Howe");
    assert_eq!(
        following(&gap, "2027-10-01T12:00:00Z", 2),
        [
            "2027-10-01T15:45:00Z", // 02:15 LHST on the 2nd
            "2027-10-02T15:30:00Z", // 02:15 does not exist on the 3rd: 02:30 LHDT
        ]
    );
    assert_eq!(
        following(&gap, "2027-10-02T15:30:00Z", 1),
        ["2027-10-03T15:15:00Z"] // 02:15 LHDT on the 4th
    );
    let fold = cron("45 1 * * *", "Australia/Lord_Howe");
    assert_eq!(
        following(&fold, "2027-04-02T12:00:00Z", 3),
        [
            "2027-04-02T14:45:00Z", // 01:45 LHDT on the 3rd
            "2027-04-03T14:45:00Z", // the first 01:45 on the 4th (LHDT)
            "2027-04-04T15:15:00Z", // 01:45 LHST on the 5th; the second 01:45 on the 4th never runs
        ]
    );
    // Asked from between the two occurrences, the repeated one is still not a slot.
    assert_eq!(
        following(&fold, "2027-04-03T15:00:00Z", 1),
        ["2027-04-04T15:15:00Z"]
    );
}

#[test]
fn validation_names_the_field() {
    let field = |schedule: Schedule| match schedule.validate() {
        Err(DomainError::Invalid { field, reason }) => format!("{field}: {reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    };
    for (schedule, expected) in [
        (Schedule::every(4), "schedule.cadence.every_seconds"),
        (Schedule::every(0), "schedule.cadence.every_seconds"),
        (Schedule::every(-60), "schedule.cadence.every_seconds"),
        (
            Schedule::every(MAX_INTERVAL_SECONDS + 1),
            "schedule.cadence.every_seconds",
        ),
        (
            Schedule::cron("0 3 * * *", "Mars/Olympus"),
            "schedule.cadence.time_zone",
        ),
        (
            Schedule::cron("0 3 * * *", "CEST"),
            "schedule.cadence.time_zone",
        ),
        (
            Schedule::cron("0 3 * *", "UTC"),
            "schedule.cadence.expression",
        ),
        (
            Schedule::cron("0 0 3 * * *", "UTC"),
            "schedule.cadence.expression",
        ),
        (
            Schedule::cron("61 3 * * *", "UTC"),
            "schedule.cadence.expression",
        ),
        (
            Schedule::cron("0 3 L * *", "UTC"),
            "schedule.cadence.expression",
        ),
        (
            Schedule::cron("0 3 * * 5#2", "UTC"),
            "schedule.cadence.expression",
        ),
        (
            Schedule::cron("0 3 15W * *", "UTC"),
            "schedule.cadence.expression",
        ),
        (
            Schedule::cron("0 3 ? * *", "UTC"),
            "schedule.cadence.expression",
        ),
        (
            Schedule::cron("0 0 31 2 *", "UTC"),
            "schedule.cadence.expression",
        ),
        (
            Schedule::cron("@reboot", "UTC"),
            "schedule.cadence.expression",
        ),
        (Schedule::cron("", "UTC"), "schedule.cadence.expression"),
    ] {
        let refusal = field(schedule.clone());
        assert!(
            refusal.starts_with(expected),
            "{schedule:?}: {refusal} should name {expected}"
        );
    }
    let mut wide = Schedule::every(60);
    wide.catch_up.window_seconds = MAX_CATCH_UP_WINDOW_SECONDS + 1;
    assert!(field(wide).starts_with("schedule.catch_up.window_seconds"));
    let mut negative = Schedule::every(60);
    negative.catch_up.window_seconds = MIN_CATCH_UP_WINDOW_SECONDS - 1;
    assert!(field(negative).starts_with("schedule.catch_up.window_seconds"));
    let mut narrowest = Schedule::every(60);
    narrowest.catch_up.window_seconds = MIN_CATCH_UP_WINDOW_SECONDS;
    narrowest.validate().unwrap();

    for accepted in [
        Schedule::every(MIN_INTERVAL_SECONDS),
        Schedule::every(MAX_INTERVAL_SECONDS),
        Schedule::cron("*/5 * * * *", "Europe/Berlin"),
        Schedule::cron("0 3 * * MON-FRI", "Australia/Lord_Howe"),
        Schedule::cron("@daily", "UTC"),
        Schedule::cron("0 12 29 2 *", "UTC"),
    ] {
        accepted
            .validate()
            .unwrap_or_else(|e| panic!("{accepted:?} refused: {e}"));
    }
}

#[test]
fn stored_form_and_defaults() {
    let schedule: Schedule = mongodb::bson::from_document(mongodb::bson::doc! {
        "cadence": { "type": "cron", "expression": "0 3 * * *", "time_zone": "Europe/Berlin" },
    })
    .unwrap();
    assert_eq!(schedule.catch_up, CatchUp::default());
    assert_eq!(schedule.catch_up.run, CatchUpRun::Latest);
    assert_eq!(schedule.overlap, Overlap::Skip);
    let unknown = mongodb::bson::from_document::<Schedule>(mongodb::bson::doc! {
        "cadence": { "type": "interval", "every_seconds": 60 },
        "jitter": 5,
    });
    assert!(unknown.is_err(), "an unknown field is refused");
}

/// A cron expression is at most 256 characters; the refusal does not quote it.
#[test]
fn a_cron_expression_longer_than_256_characters_is_refused() {
    let of_length = |n: usize| {
        let tail = " * * * *";
        let mut minutes = String::from("0");
        while minutes.len() + tail.len() + 2 <= n {
            minutes.push_str(",0");
        }
        while minutes.len() + tail.len() < n {
            minutes.insert(0, ' ');
        }
        format!("{minutes}{tail}")
    };
    let longest = of_length(MAX_CRON_CHARS);
    assert_eq!(longest.len(), 256);
    Schedule::cron(&longest, "UTC").validate().unwrap();
    let too_long = of_length(MAX_CRON_CHARS + 1);
    assert_eq!(too_long.len(), 257);
    match Schedule::cron(&too_long, "UTC").validate() {
        Err(DomainError::Invalid { field, reason }) => {
            assert_eq!(field, "schedule.cadence.expression");
            assert!(reason.contains("at most 256"), "{reason}");
            assert!(!reason.contains(",0,0"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}
