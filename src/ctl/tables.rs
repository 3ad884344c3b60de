//! What `sv0 ctl` prints: a table per list, a summary of a run, indented JSON for the rest.
//!
//! What the API returns was partly written by connectors and users (errors, stderr, names,
//! notes): it is printed with terminal control characters and bidi marks made visible, so that
//! it cannot move the cursor, clear the screen or reorder what the operator reads.

use serde_json::Value;

/// `value[key]` for one line of a table or a summary, escaped.
pub(super) fn text(value: &Value, key: &str) -> String {
    line(value[key].as_str().unwrap_or("-"))
}

/// Any JSON value for one line: a string as itself, anything else as JSON; escaped either way.
fn cell(value: &Value) -> String {
    match value.as_str() {
        Some(text) => line(text),
        None => line(&value.to_string()),
    }
}

/// Text for one line of output: every character a terminal would act on instead of showing
/// (C0 controls, DEL, C1 controls, bidi marks and overrides) becomes a visible escape such as
/// `\u{1b}`, newlines included.
pub(super) fn line(text: &str) -> String {
    escape(text, false)
}

/// As [`line`], but newlines stay: for text printed on lines of its own.
fn lines(text: &str) -> String {
    escape(text, true)
}

fn escape(text: &str, keep_newlines: bool) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' if keep_newlines => escaped.push('\n'),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c if c.is_control() || is_bidi(c) => {
                escaped.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            }
            c => escaped.push(c),
        }
    }
    escaped
}

/// The marks and overrides that reorder how a terminal lays out the text around them.
fn is_bidi(c: char) -> bool {
    matches!(
        c,
        '\u{200e}' | '\u{200f}' | '\u{61c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

/// The value as indented JSON. serde_json escapes C0 controls in strings but writes DEL, C1
/// controls and bidi marks as they are; they are written here as `\uXXXX` instead, which parses
/// back to the same value, so `--json` read on a terminal is as inert as a table. Outside strings
/// JSON is ASCII and its only controls are the indentation's newlines, so every character
/// escaped here is inside a string, where the escape is valid.
pub(super) fn json_text(value: &Value) -> String {
    let pretty = serde_json::to_string_pretty(value).unwrap_or_default();
    let mut escaped = String::with_capacity(pretty.len());
    for c in pretty.chars() {
        if (c.is_control() && c >= '\u{7f}') || is_bidi(c) {
            escaped.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            escaped.push(c);
        }
    }
    escaped
}

pub(super) fn runs_table(page: &Value) {
    println!(
        "{:<24}  {:<12}  {:<10}  {:<13}  {:<24}  error",
        "id", "tenant", "status", "trigger", "created"
    );
    for run in page["items"].as_array().into_iter().flatten() {
        println!(
            "{:<24}  {:<12}  {:<10}  {:<13}  {:<24}  {}",
            text(run, "id"),
            text(run, "tenant_id"),
            text(run, "status"),
            text(&run["trigger"], "type"),
            text(run, "created_at"),
            line(run["error"].as_str().unwrap_or(""))
        );
    }
}

pub(super) fn run_detail(run: &Value) {
    println!(
        "run {} ({}) of tenant {}: {}",
        text(run, "id"),
        text(&run["trigger"], "type"),
        text(run, "tenant_id"),
        text(run, "status")
    );
    if let Some(error) = run["error"].as_str() {
        // Continuation lines are indented so that none can pass for a cell's line below.
        println!("  error: {}", lines(error).replace('\n', "\n         "));
    }
    for (name, result) in run["category_results"].as_object().into_iter().flatten() {
        println!(
            "  {:<16} {:<10} {:>8} items  {}",
            line(name),
            text(result, "status"),
            cell(&result["items_scanned"]),
            result["errors"]
                .as_array()
                .map(|e| e.iter().map(cell).collect::<Vec<_>>().join("; "))
                .unwrap_or_default()
        );
    }
}

pub(super) fn scopes_table(page: &Value) {
    println!(
        "{:<24}  {:<12}  {:<20}  {:<7}  {:<24}  schedule",
        "id", "tenant", "name", "paused", "next run"
    );
    for scope in page["items"].as_array().into_iter().flatten() {
        println!(
            "{:<24}  {:<12}  {:<20}  {:<7}  {:<24}  {}",
            text(scope, "id"),
            text(scope, "tenant_id"),
            text(scope, "name"),
            cell(&scope["paused"]),
            text(scope, "next_run_at"),
            cell(&scope["schedule"]["cadence"])
        );
    }
}

pub(super) fn instances_table(page: &Value) {
    println!("{:<24}  {:<10}  {:<10}  name", "id", "kind", "status");
    for instance in page["items"].as_array().into_iter().flatten() {
        println!(
            "{:<24}  {:<10}  {:<10}  {}",
            text(instance, "id"),
            text(instance, "kind"),
            text(instance, "status"),
            text(instance, "name")
        );
    }
}

pub(super) fn jobs_table(page: &Value) {
    println!(
        "{:<24}  {:<20}  {:<10}  {:>8}  {:<24}  last error",
        "id", "kind", "status", "attempts", "created"
    );
    for job in page["items"].as_array().into_iter().flatten() {
        println!(
            "{:<24}  {:<20}  {:<10}  {:>8}  {:<24}  {}",
            text(job, "id"),
            text(job, "kind"),
            text(job, "status"),
            format!("{}/{}", cell(&job["attempts"]), cell(&job["max_attempts"])),
            text(job, "created_at"),
            line(job["last_error"].as_str().unwrap_or(""))
        );
    }
}

/// Anything without a table of its own: its JSON, indented.
pub(super) fn plain(value: &Value) {
    println!("{}", json_text(value));
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    #[test]
    fn escapes_what_a_terminal_would_act_on() {
        let hostile = "a\x1b[2J\rb\tc\u{7f}\u{9b}\u{202e}\u{2066}\u{200f}\u{61c}é日\nz";
        assert_eq!(
            line(hostile),
            "a\\u{1b}[2J\\rb\\tc\\u{7f}\\u{9b}\\u{202e}\\u{2066}\\u{200f}\\u{61c}é日\\nz"
        );
        assert!(lines(hostile).ends_with("é日\nz"));
        let value = json!({ "error": hostile });
        let printed = json_text(&value);
        assert!(
            !printed.contains([
                '\u{7f}', '\u{9b}', '\u{202e}', '\u{2066}', '\u{200f}', '\u{61c}'
            ]),
            "{printed}"
        );
        assert_eq!(serde_json::from_str::<Value>(&printed).unwrap(), value);
    }
}
