//! Bounds on what callers may store: how deep and how large a free-form document may be, which
//! keys it may hold, and which characters free text may carry.
//!
//! A reader of a stored document recurses per nesting level (serde's BSON deserializer does), so
//! depth is bounded where documents are written, and every check here walks with an explicit
//! stack: a check that recursed would itself overflow on the input it exists to refuse. Free
//! text ends up in tables, terminals and log lines, where a control character (a NUL, an escape
//! sequence) or a bidirectional override can rewrite what an operator sees; both are refused.

use mongodb::bson::{Bson, Document, RawBsonRef, RawDocument};

use crate::error::{DomainError, Result};

/// The deepest a free-form document (a scope, a graph entity's properties) or a request body may
/// nest: the document itself is level 1.
pub const MAX_DEPTH: usize = 32;

/// The largest scope document, as BSON: a scope says what to scan, not the scan's data.
pub const MAX_SCOPE_BYTES: usize = 64 * 1024;

/// The deepest a stored document is read: past it, a reader refuses the document rather than
/// deserialize it. MongoDB stores at most 100 levels; this bound is for documents on stores that
/// take any depth, and is well within what the processes' 64 MiB runtime stacks read.
pub const MAX_READ_DEPTH: usize = 1_000;

/// True for a character free text must not carry: a control character (C0, DEL, C1), or a mark
/// that reorders the text around it when shown (the bidirectional embeddings, overrides and
/// isolates, and the implicit left-to-right, right-to-left and Arabic letter marks).
pub fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
        )
}

/// Refuses free text with a control character or a bidirectional mark, naming `field` and where.
pub fn check_text(field: &str, value: &str) -> Result<()> {
    match value
        .chars()
        .enumerate()
        .find(|(_, c)| is_forbidden_char(*c))
    {
        None => Ok(()),
        Some((at, c)) => Err(DomainError::invalid(
            field,
            format!(
                "U+{:04X} at character {at}: control characters and bidirectional marks are \
                 not allowed",
                c as u32
            ),
        )),
    }
}

/// Checks a free-form document before it is stored as `field`: at most [`MAX_DEPTH`] levels,
/// every key storable (no NUL, no leading `$`, no `.`: MongoDB reads those as operators and
/// paths), and at most `max_bytes` as BSON. A refusal names the path of the offending part.
pub fn check_document(field: &str, document: &Document, max_bytes: usize) -> Result<()> {
    enum Node<'a> {
        Document(&'a Document),
        Array(&'a [Bson]),
    }
    let mut stack = vec![(field.to_string(), Node::Document(document), 1usize)];
    while let Some((path, node, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(DomainError::invalid(
                path,
                format!("nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        match node {
            Node::Document(document) => {
                for (key, value) in document {
                    let child = format!("{path}.{}", key.escape_debug());
                    if key.is_empty() || key.starts_with('$') || key.contains(['.', '\0']) {
                        return Err(DomainError::invalid(
                            child,
                            "a key must be non-empty, not start with `$`, and hold no `.` or NUL",
                        ));
                    }
                    if let Some(node) = container(value) {
                        stack.push((child, node, depth + 1));
                    }
                }
            }
            Node::Array(items) => {
                for (i, value) in items.iter().enumerate() {
                    if let Some(node) = container(value) {
                        stack.push((format!("{path}[{i}]"), node, depth + 1));
                    }
                }
            }
        }
    }
    let mut bytes = Vec::new();
    document
        .to_writer(&mut bytes)
        .map_err(|e| DomainError::invalid(field, e.to_string()))?;
    if bytes.len() > max_bytes {
        return Err(DomainError::invalid(
            field,
            format!("{} bytes as BSON; at most {max_bytes}", bytes.len()),
        ));
    }
    return Ok(());

    fn container(value: &Bson) -> Option<Node<'_>> {
        match value {
            Bson::Document(document) => Some(Node::Document(document)),
            Bson::Array(items) => Some(Node::Array(items)),
            _ => None,
        }
    }
}

/// Checks a free-form JSON object before it is stored as `field` (a graph entity's properties):
/// at most [`MAX_DEPTH`] levels and every key storable, as [`check_document`].
pub fn check_json(field: &str, value: &serde_json::Value) -> Result<()> {
    let mut stack = vec![(field.to_string(), value, 1usize)];
    while let Some((path, value, depth)) = stack.pop() {
        let is_container = value.is_object() || value.is_array();
        if is_container && depth > MAX_DEPTH {
            return Err(DomainError::invalid(
                path,
                format!("nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        match value {
            serde_json::Value::Object(fields) => {
                for (key, value) in fields {
                    let child = format!("{path}.{}", key.escape_debug());
                    if key.is_empty() || key.starts_with('$') || key.contains(['.', '\0']) {
                        return Err(DomainError::invalid(
                            child,
                            "a key must be non-empty, not start with `$`, and hold no `.` or NUL",
                        ));
                    }
                    stack.push((child, value, depth + 1));
                }
            }
            serde_json::Value::Array(items) => {
                for (i, value) in items.iter().enumerate() {
                    stack.push((format!("{path}[{i}]"), value, depth + 1));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// How deep a stored document nests (itself level 1), counted without recursing, and stopping
/// once past `limit`: what a reader checks before deserializing a document written by anyone.
pub fn raw_depth_exceeds(document: &RawDocument, limit: usize) -> bool {
    let mut stack = vec![(document, 1usize)];
    while let Some((document, depth)) = stack.pop() {
        if depth > limit {
            return true;
        }
        for element in document {
            // A malformed element is the deserializer's to report.
            let Ok((_, value)) = element else { continue };
            match value {
                RawBsonRef::Document(child) => stack.push((child, depth + 1)),
                // An array's bytes are a document keyed "0", "1", …
                RawBsonRef::Array(items) => {
                    if let Ok(items) = RawDocument::from_bytes(items.as_bytes()) {
                        stack.push((items, depth + 1));
                    }
                }
                _ => {}
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{RawDocumentBuf, doc};

    use super::*;

    fn nested(levels: usize) -> Document {
        let mut document = doc! { "leaf": 1 };
        for _ in 1..levels {
            document = doc! { "a": document };
        }
        document
    }

    fn field_of(result: Result<()>) -> String {
        match result {
            Err(DomainError::Invalid { field, .. }) => field,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_document_of_32_levels_is_accepted_and_of_33_refused_naming_the_path() {
        check_document("scope", &nested(32), MAX_SCOPE_BYTES).unwrap();
        let field = field_of(check_document("scope", &nested(33), MAX_SCOPE_BYTES));
        assert_eq!(field, format!("scope{}", ".a".repeat(32)));
        let mut in_array = doc! { "leaf": 1 };
        for _ in 0..40 {
            in_array = doc! { "list": [in_array] };
        }
        let field = field_of(check_document("scope", &in_array, MAX_SCOPE_BYTES));
        assert!(field.starts_with("scope.list[0].list[0]"), "{field}");
    }

    #[test]
    fn a_very_deep_document_is_refused_without_recursing() {
        // Built and dropped on a thread with a large stack: only the check must not need one.
        let refused = std::thread::Builder::new()
            .stack_size(512 * 1024 * 1024)
            .spawn(|| {
                let document = nested(20_000);
                let result = std::thread::scope(|s| {
                    std::thread::Builder::new()
                        .stack_size(256 * 1024)
                        .spawn_scoped(s, || {
                            check_document("scope", &document, MAX_SCOPE_BYTES).is_err()
                        })
                        .unwrap()
                        .join()
                        .unwrap()
                });
                let mut bytes = Vec::new();
                document.to_writer(&mut bytes).unwrap();
                let raw = RawDocumentBuf::from_bytes(bytes).unwrap();
                let deep = std::thread::scope(|s| {
                    std::thread::Builder::new()
                        .stack_size(256 * 1024)
                        .spawn_scoped(s, || raw_depth_exceeds(&raw, 100))
                        .unwrap()
                        .join()
                        .unwrap()
                });
                std::mem::forget(document);
                (result, deep)
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(refused, (true, true));
    }

    #[test]
    fn raw_depth_counts_levels() {
        let mut bytes = Vec::new();
        nested(10).to_writer(&mut bytes).unwrap();
        let raw = RawDocumentBuf::from_bytes(bytes).unwrap();
        assert!(!raw_depth_exceeds(&raw, 10));
        assert!(raw_depth_exceeds(&raw, 9));
    }

    #[test]
    fn keys_with_a_dollar_a_dot_or_nul_are_refused() {
        for (key, path) in [
            ("$where", "scope.x.$where"),
            ("a.b", "scope.x.a.b"),
            ("a\0b", "scope.x.a\\0b"),
            ("", "scope.x."),
        ] {
            let mut inner = Document::new();
            inner.insert(key, 1);
            let field = field_of(check_document(
                "scope",
                &doc! { "x": inner },
                MAX_SCOPE_BYTES,
            ));
            assert_eq!(field, path);
        }
        check_document("scope", &doc! { "a$": {"b": "$c."} }, MAX_SCOPE_BYTES).unwrap();
    }

    #[test]
    fn a_document_larger_than_the_bound_is_refused() {
        let big = doc! { "blob": "x".repeat(MAX_SCOPE_BYTES) };
        assert_eq!(
            field_of(check_document("scope", &big, MAX_SCOPE_BYTES)),
            "scope"
        );
        let fits = doc! { "blob": "x".repeat(MAX_SCOPE_BYTES - 100) };
        check_document("scope", &fits, MAX_SCOPE_BYTES).unwrap();
    }

    #[test]
    fn control_characters_and_bidirectional_marks_are_refused() {
        for bad in [
            "a\0b",
            "a\u{1b}[2Jb",
            "a\nb",
            "a\u{7f}",
            "a\u{85}",
            "a\u{202E}b",
            "a\u{202A}",
            "a\u{2066}",
            "a\u{2069}",
            "a\u{200E}",
            "a\u{200F}",
            "a\u{061C}",
        ] {
            assert!(check_text("name", bad).is_err(), "{bad:?}");
        }
        for good in ["Acme GmbH", "Zürich – 東京", "שלום", "deploy-1.2"] {
            check_text("name", good).unwrap();
        }
    }
}

/// Where JSON text first nests deeper than [`MAX_DEPTH`] levels (the outermost value is level
/// 1), counted on the text before it is parsed: a parser (serde_json's, and every `Deserialize`
/// under it) recurses per level, so text of any depth is measured here with an explicit stack.
/// `Some(path)` names the first object or array past the bound (`scope.a.a…`,
/// `graph.entities[0].properties…`; empty when the outermost value is the one); `None` when the
/// text is within it. Text that is not well-formed JSON is left to the parser to report.
pub fn json_text_too_deep(bytes: &[u8]) -> Option<String> {
    enum Frame {
        Object { key: String, expect_key: bool },
        Array { index: usize },
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if let Some(Frame::Object { key, expect_key }) = stack.last_mut()
                    && *expect_key
                {
                    *key = String::from_utf8_lossy(&bytes[start..i.min(bytes.len())]).into_owned();
                    *expect_key = false;
                }
            }
            open @ (b'{' | b'[') => {
                if stack.len() == MAX_DEPTH {
                    let mut path = String::new();
                    for frame in &stack {
                        match frame {
                            Frame::Object { key, .. } => {
                                if !path.is_empty() {
                                    path.push('.');
                                }
                                path.push_str(key);
                            }
                            Frame::Array { index } => path.push_str(&format!("[{index}]")),
                        }
                    }
                    return Some(path);
                }
                stack.push(if open == b'{' {
                    Frame::Object {
                        key: String::new(),
                        expect_key: true,
                    }
                } else {
                    Frame::Array { index: 0 }
                });
            }
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object { expect_key, .. }) => *expect_key = true,
                Some(Frame::Array { index }) => *index += 1,
                None => {}
            },
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod json_depth_tests {
    use super::*;

    fn nested(levels: usize) -> String {
        let mut body = String::from("1");
        for _ in 0..levels {
            body = format!("{{\"a\":{body}}}");
        }
        body
    }

    fn field(bytes: &[u8]) -> String {
        json_text_too_deep(bytes).expect("a refusal")
    }

    #[test]
    fn thirty_two_levels_pass_and_thirty_three_are_refused_naming_the_path() {
        assert_eq!(json_text_too_deep(nested(32).as_bytes()), None);
        assert_eq!(field(nested(33).as_bytes()), vec!["a"; 32].join("."));
    }

    #[test]
    fn the_path_follows_keys_and_indexes_and_ignores_brackets_in_strings() {
        let mut inner = String::from("0");
        for _ in 0..31 {
            inner = format!("[{inner}]");
        }
        let body =
            format!(r#"{{"name": "{{[{{\"[", "list": [1, {{"x": 2}}, {{"deep": {inner}}}]}}"#);
        assert_eq!(
            field(body.as_bytes()),
            format!("list[2].deep{}", "[0]".repeat(29))
        );
    }

    #[test]
    fn a_body_a_hundred_thousand_levels_deep_is_refused_without_recursing() {
        let body = "[".repeat(100_000);
        let result = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || json_text_too_deep(body.as_bytes()).is_some())
            .unwrap()
            .join()
            .unwrap();
        assert!(result);
    }

    /// Without the check, serde_json's own limit stops a parse at 128 levels, as an error: the
    /// depth check comes first and names the path instead.
    #[test]
    fn serde_json_alone_stops_at_128_levels() {
        let error = serde_json::from_str::<serde_json::Value>(&nested(200)).unwrap_err();
        assert!(error.to_string().contains("recursion limit"), "{error}");
    }
}
