//! `sv0 enqueue` bounds what it is given as the rest of the system does, before it writes
//! anything: a payload at most 32 levels deep (checked before it is parsed, so that any depth
//! is a clean refusal, never a stack overflow), at most 64 KiB as BSON, with storable keys; and
//! free-text flags without control characters or bidirectional marks. Each refusal names the
//! flag and exits non-zero, and no job is stored. Real `sv0 enqueue` processes.

mod support;

use std::process::{Command, Output};

use mongodb::bson::doc;
use support::{count, sv0};
use sv0_testkit::TestDb;

/// `{"a": … {"a": 1}}`, `levels` objects deep.
fn nested(levels: usize) -> String {
    let mut text = String::from("1");
    for _ in 0..levels {
        text = format!("{{\"a\":{text}}}");
    }
    text
}

fn enqueue(uri: &str, database: &str, args: &[&str]) -> Output {
    Command::new(sv0())
        .args(["enqueue", "--mongodb-uri", uri, "--database", database])
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn payloads_and_labels_past_the_bounds_are_refused_naming_the_flag_and_nothing_is_stored() {
    let test = TestDb::new("enqueue_bounds").await;
    sv0_queue::Queue::new(&test.db)
        .ensure_indexes()
        .await
        .unwrap();
    let arrays = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    let bare_arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let unclosed = "{\"a\":".to_string() + &"[".repeat(10_000);
    let too_large = format!("{{\"blob\":\"{}\"}}", "x".repeat(64 * 1024));
    let payload = |text: &str| {
        vec![
            "--kind".to_string(),
            "probe".into(),
            "--payload".into(),
            text.into(),
        ]
    };
    let label = |flag: &str, value: &str| {
        let mut args = vec![
            "--kind".to_string(),
            "probe".into(),
            flag.into(),
            value.into(),
        ];
        if flag == "--kind" {
            args.drain(..2);
        }
        args
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            payload(&arrays),
            "--payload.a[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]: nested deeper than 32 levels",
        ),
        (
            payload(&bare_arrays),
            "--payload[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]: nested deeper than 32 levels",
        ),
        (
            payload(&unclosed),
            "--payload.a[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]: nested deeper than 32 levels",
        ),
        (
            payload(&nested(33)),
            "--payload.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a: nested deeper than 32 levels",
        ),
        (
            payload(r#"{"$where": "1"}"#),
            "--payload.$where: a key must be",
        ),
        (
            payload(r#"{"x": {"a.b": 1}}"#),
            "--payload.x.a.b: a key must be",
        ),
        (
            payload(r#"{"a\u0000b": 1}"#),
            "--payload.a\\0b: a key must be",
        ),
        (
            payload(&too_large),
            "--payload: 65552 bytes as BSON; at most 65536",
        ),
        (
            label("--kind", "probe\x1b[2J"),
            "--kind: U+001B at character 5",
        ),
        (
            label("--tenant-id", "acme\u{202e}txt"),
            "--tenant-id: U+202E at character 4",
        ),
        (
            label("--group-id", "run\n1"),
            "--group-id: U+000A at character 3",
        ),
        (
            label("--dedup-key", "key\u{9b}31m"),
            "--dedup-key: U+009B at character 3",
        ),
    ];
    let mut wrong = Vec::new();
    for (args, expected) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = enqueue(test.uri(), test.name(), &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stored = count(&test.db, "jobs", doc! {}).await;
        if output.status.code() != Some(1)
            || !stderr.contains(expected)
            || !output.stdout.is_empty()
            || stored != 0
        {
            wrong.push(format!(
                "{expected}: exit {:?}, {stored} stored, stderr {stderr}",
                output.status
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // At the bounds, and brackets and `$` or `.` inside strings and keys' middles, are taken.
    let at_bounds = format!(
        r#"{{"deep": {}, "text": "{}{}", "a$": "$b.", "blob": "{}"}}"#,
        nested(31),
        "[".repeat(100),
        "{\\\"".repeat(100),
        "x".repeat(60 * 1024)
    );
    let output = enqueue(
        test.uri(),
        test.name(),
        &[
            "--kind",
            "probe",
            "--tenant-id",
            "Zürich – 東京",
            "--payload",
            &at_bounds,
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(count(&test.db, "jobs", doc! {}).await, 1);
}
