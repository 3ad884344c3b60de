//! The bound on a request body's nesting, checked on its bytes before it is parsed: a parser
//! (serde_json's, and every `Deserialize` under it) recurses per level, so the depth is counted
//! here with an explicit stack, and a body of any depth is refused as a 400 naming the path.

use sv0_domain::limits::MAX_DEPTH;

use crate::error::ApiError;

/// Refuses a body nested deeper than [`MAX_DEPTH`] levels (the body itself is level 1), naming
/// the path of the first object or array past it (`scope.a.a…`, `graph.entities[0].properties…`).
/// Anything that is not well-formed JSON is left to the parser to report.
pub(crate) fn check_body_depth(bytes: &[u8]) -> Result<(), ApiError> {
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
                    if path.is_empty() {
                        path.push_str("body");
                    }
                    return Err(ApiError::invalid(
                        path,
                        format!("nested deeper than {MAX_DEPTH} levels"),
                    ));
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        let mut body = String::from("1");
        for _ in 0..levels {
            body = format!("{{\"a\":{body}}}");
        }
        body
    }

    fn field(bytes: &[u8]) -> String {
        match check_body_depth(bytes) {
            Err(ApiError::Invalid { field, reason }) => {
                assert_eq!(reason, "nested deeper than 32 levels");
                field
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn thirty_two_levels_pass_and_thirty_three_are_refused_naming_the_path() {
        check_body_depth(nested(32).as_bytes()).unwrap();
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
            .spawn(move || check_body_depth(body.as_bytes()).is_err())
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
