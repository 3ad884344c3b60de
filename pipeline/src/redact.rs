//! The connector's stderr, as the driver keeps it: its last [`STDERR_TAIL_BYTES`], with every
//! value of the run's bundle redacted.
//!
//! A connector is untrusted and holds its bundle's values, so it may print them in any form. Each
//! value is searched for in the forms a program commonly prints it in: as is; base64 (standard
//! and URL-safe, padded or not, alone or inside a longer base64 text at any byte alignment); hex
//! in any case; percent-encoded; escaped in a JSON string. Each form is also found when ASCII
//! whitespace splits it (a value printed in pieces on several lines, base64 wrapped at 76
//! columns). Every byte an occurrence covers, from its first matched byte to its last, is
//! replaced, and each run of replaced bytes becomes one [`REDACTED`].
//!
//! This is no defence against a connector bent on leaking its values (it can reverse, encrypt or
//! spread them at will): it keeps the common leaks, careless or lazy, out of a run's record.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use tokio::io::AsyncReadExt;
use tokio::process::ChildStderr;

use sv0_broker::REDACTED;

/// How much of the connector's stderr a run keeps: the end of it, where the reason for a failure
/// usually is.
pub const STDERR_TAIL_BYTES: usize = 16 * 1024;

/// The shortest encoded form searched for. A short value's encodings are a few characters that
/// plenty of innocent text (identifiers, hashes, base64 of anything) holds; its raw form is
/// searched for whatever its length, since a value printed as is must never survive.
const MIN_ENCODED_LEN: usize = 8;

/// The end of the connector's stderr, raw. It keeps [`STDERR_TAIL_BYTES`] plus the longest span
/// an occurrence of a secret can cover ([`Redactor::max_span`]): an occurrence that straddles
/// where the tail will be cut is then still whole in the raw bytes, and found.
pub(crate) struct StderrTail {
    raw: Vec<u8>,
    keep: usize,
    /// Whether bytes before `raw` were dropped.
    truncated: bool,
    redactor: Redactor,
}

impl StderrTail {
    pub(crate) fn new(secrets: &[&[u8]]) -> StderrTail {
        let redactor = Redactor::new(secrets);
        StderrTail {
            raw: Vec::new(),
            keep: STDERR_TAIL_BYTES + redactor.max_span,
            truncated: false,
            redactor,
        }
    }

    pub(crate) async fn read_from(&mut self, mut stderr: ChildStderr) {
        let mut chunk = [0u8; 8192];
        loop {
            match stderr.read(&mut chunk).await {
                Ok(0) => return,
                Ok(n) => self.push(&chunk[..n]),
                Err(error) => {
                    tracing::debug!(%error, "reading the connector's stderr failed");
                    return;
                }
            }
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        self.raw.extend_from_slice(chunk);
        // Trimming only past twice the size keeps the copying amortized.
        if self.raw.len() > 2 * self.keep {
            self.trim();
        }
    }

    fn trim(&mut self) {
        if self.raw.len() > self.keep {
            self.raw.drain(..self.raw.len() - self.keep);
            self.truncated = true;
        }
    }

    /// The tail as kept: the secrets given to [`StderrTail::new`] redacted, then cut to
    /// [`STDERR_TAIL_BYTES`].
    pub(crate) fn finish(mut self) -> String {
        self.trim();
        self.redactor.redact_tail(&self.raw, self.truncated)
    }
}

/// Whether a byte may split an occurrence of a secret: the whitespace that line wrapping and
/// printing in pieces put in.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

/// Every form of every secret searched for, built once per run.
#[derive(Clone)]
pub(crate) struct Redactor {
    needles: Vec<Needle>,
    /// The longest span of raw bytes one occurrence can cover: at most twice the longest form's
    /// length (see [`Needle`]).
    max_span: usize,
}

impl Redactor {
    pub(crate) fn new(secrets: &[&[u8]]) -> Redactor {
        let mut needles: Vec<Needle> = Vec::new();
        for value in secrets.iter().filter(|value| !value.is_empty()) {
            let mut forms = vec![Needle::new(value, false)];
            forms.extend(
                encoded_forms(value)
                    .into_iter()
                    .filter(|(form, _)| form.len() >= MIN_ENCODED_LEN)
                    .map(|(form, fold)| Needle::new(&form, fold)),
            );
            for needle in forms {
                if !needles.contains(&needle) {
                    needles.push(needle);
                }
            }
        }
        let max_span = needles.iter().map(|n| n.max_span).max().unwrap_or(0);
        Redactor { needles, max_span }
    }

    /// `text` with every form of every secret replaced by [`REDACTED`]: connector-written text
    /// other than stderr (a category's errors), at most [`STDERR_TAIL_BYTES`] long.
    pub(crate) fn redact(&self, text: &str) -> String {
        self.redact_tail(text.as_bytes(), false)
    }

    /// Replaces every occurrence of every form of every secret in `raw` with [`REDACTED`] and
    /// returns at most the last [`STDERR_TAIL_BYTES`] of the result, cut on a character boundary.
    ///
    /// Occurrences are marked byte by byte before anything is replaced, so that overlapping ones
    /// (one inside another, or one's end another's start) are redacted whole. When `raw` is
    /// itself a cut (`truncated`), its first `max_span - 1` bytes may hold the end of an
    /// occurrence whose start was dropped, which no search can recognize: those bytes are dropped
    /// too. Every byte kept then belongs only to occurrences that start inside `raw`, and are
    /// found.
    fn redact_tail(&self, raw: &[u8], truncated: bool) -> String {
        let haystack = Haystack::new(raw);
        // reach[i]: the end (exclusive) of the furthest-reaching occurrence starting at byte i.
        let mut reach = vec![0usize; raw.len()];
        for needle in &self.needles {
            needle.mark(&haystack, &mut reach);
        }
        let mut secret = vec![false; raw.len()];
        let mut secret_until = 0;
        for (i, reach) in reach.into_iter().enumerate() {
            secret_until = secret_until.max(reach);
            secret[i] = i < secret_until;
        }
        let mut at = if truncated {
            self.max_span.saturating_sub(1).min(raw.len())
        } else {
            0
        };
        let mut redacted = Vec::with_capacity(raw.len());
        while at < raw.len() {
            if secret[at] {
                redacted.extend_from_slice(REDACTED.as_bytes());
                while at < raw.len() && secret[at] {
                    at += 1;
                }
            } else {
                redacted.push(raw[at]);
                at += 1;
            }
        }
        // Lossy: a connector's stderr need not be UTF-8, and the raw cut may split a character.
        let text = String::from_utf8_lossy(&redacted);
        let mut start = text.len().saturating_sub(STDERR_TAIL_BYTES);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].to_string()
    }
}

/// The encoded forms of a value, each with whether it is matched ASCII case-insensitively.
fn encoded_forms(value: &[u8]) -> Vec<(Vec<u8>, bool)> {
    let mut forms = Vec::new();
    for (padded, unpadded) in [(STANDARD, STANDARD_NO_PAD), (URL_SAFE, URL_SAFE_NO_PAD)] {
        forms.push((padded.encode(value).into_bytes(), false));
        forms.push((unpadded.encode(value).into_bytes(), false));
        for filler in 0..3 {
            forms.push((base64_core(&unpadded, value, filler), false));
        }
    }
    forms.push((hex::encode(value).into_bytes(), true));
    let percent = percent_encoded(value);
    if percent != value {
        // Folding the whole form, not only the %XX digits, can only redact more: the value with
        // its letters' case changed.
        forms.push((percent, true));
    }
    let json = json_escaped(value);
    if json != value {
        forms.push((json, false));
    }
    forms
}

/// The characters of `value`'s base64 that encode its bytes only, when `filler` bytes come before
/// it in the encoded text (a value inside a longer base64 text, as in `user:password`). The
/// characters on either side also carry bits of the neighbouring bytes, so they depend on what
/// surrounds the value, and are left out: what is kept is the same whatever the neighbours are.
fn base64_core(engine: &impl Engine, value: &[u8], filler: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; filler];
    bytes.extend_from_slice(value);
    bytes.extend_from_slice(&[0, 0]);
    let encoded = engine.encode(&bytes).into_bytes();
    // Character j holds bits 6j..6j+6; the value's bits are 8·filler..8·(filler + len).
    let first = (8 * filler).div_ceil(6);
    let end = 8 * (filler + value.len()) / 6;
    encoded[first..end.max(first)].to_vec()
}

/// `value` as a URL carries it: every byte but the unreserved ones as `%XX`.
fn percent_encoded(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 * value.len());
    for &byte in value {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte);
        } else {
            out.extend_from_slice(format!("%{byte:02X}").as_bytes());
        }
    }
    out
}

/// `value` as the inside of a JSON string, escaped the way serde_json and JavaScript escape it.
fn json_escaped(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for &byte in value {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x00..=0x1f => out.extend_from_slice(format!("\\u{byte:04x}").as_bytes()),
            _ => out.push(byte),
        }
    }
    out
}

/// The raw bytes, and the same without whitespace, where forms split by whitespace are searched
/// for.
struct Haystack<'a> {
    raw: &'a [u8],
    dense: Vec<u8>,
    /// The index in `raw` of each byte of `dense`.
    at: Vec<usize>,
}

impl Haystack<'_> {
    fn new(raw: &[u8]) -> Haystack<'_> {
        let (dense, at) = raw
            .iter()
            .enumerate()
            .filter(|(_, byte)| !is_space(**byte))
            .map(|(i, byte)| (*byte, i))
            .unzip();
        Haystack { raw, dense, at }
    }
}

/// One form of one secret, searched for with whitespace skipped.
///
/// An occurrence may hold whitespace between any two of the form's bytes, as long as it spans at
/// most twice the form's length: for a form without whitespace (every encoded one), at most as
/// many whitespace bytes as the form has bytes. The tail's margin and what a cut window drops
/// rely on that bound. Wrapping and printing in pieces stay far below it; spreading a value
/// thinner than that is no accident.
#[derive(Clone, PartialEq)]
struct Needle {
    /// The form with its whitespace removed, lowercased if `fold`. A form that is all whitespace
    /// is kept whole and searched for as is in the raw bytes.
    bytes: Vec<u8>,
    /// Whether the search is ASCII case-insensitive.
    fold: bool,
    /// Whether the form is all whitespace.
    blank: bool,
    /// The longest span of raw bytes an occurrence may cover.
    max_span: usize,
    /// The Knuth-Morris-Pratt failure table of `bytes`, which keeps each search linear in the
    /// tail's size whatever a connector prints.
    fail: Vec<usize>,
}

impl Needle {
    fn new(form: &[u8], fold: bool) -> Needle {
        let dense: Vec<u8> = form
            .iter()
            .filter(|byte| !is_space(**byte))
            .map(|byte| {
                if fold {
                    byte.to_ascii_lowercase()
                } else {
                    *byte
                }
            })
            .collect();
        let (bytes, blank, max_span) = if dense.is_empty() {
            (form.to_vec(), true, form.len())
        } else {
            (dense, false, 2 * form.len())
        };
        let mut fail = vec![0; bytes.len()];
        let mut k = 0;
        for i in 1..bytes.len() {
            while k > 0 && bytes[i] != bytes[k] {
                k = fail[k - 1];
            }
            if bytes[i] == bytes[k] {
                k += 1;
            }
            fail[i] = k;
        }
        Needle {
            bytes,
            fold,
            blank,
            max_span,
            fail,
        }
    }

    /// Records in `reach` every occurrence in `haystack`.
    fn mark(&self, haystack: &Haystack, reach: &mut [usize]) {
        if self.blank {
            self.find(haystack.raw, |start, end| {
                reach[start] = reach[start].max(end + 1);
            });
        } else {
            self.find(&haystack.dense, |start, end| {
                let (first, last) = (haystack.at[start], haystack.at[end]);
                if last - first < self.max_span {
                    reach[first] = reach[first].max(last + 1);
                }
            });
        }
    }

    /// Calls `found` with the first and last index of every occurrence in `text`, overlapping
    /// ones included.
    fn find(&self, text: &[u8], mut found: impl FnMut(usize, usize)) {
        let n = self.bytes.len();
        let mut k = 0;
        for (i, &byte) in text.iter().enumerate() {
            let byte = if self.fold {
                byte.to_ascii_lowercase()
            } else {
                byte
            };
            while k > 0 && byte != self.bytes[k] {
                k = self.fail[k - 1];
            }
            if byte == self.bytes[k] {
                k += 1;
            }
            if k == n {
                found(i + 1 - n, i);
                k = self.fail[k - 1];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(raw: &[u8], secrets: &[&[u8]]) -> String {
        Redactor::new(secrets).redact_tail(raw, false)
    }

    fn redact_truncated(raw: &[u8], secrets: &[&[u8]]) -> String {
        Redactor::new(secrets).redact_tail(raw, true)
    }

    /// How far past [`STDERR_TAIL_BYTES`] the tail keeps raw bytes.
    fn margin(secrets: &[&[u8]]) -> usize {
        Redactor::new(secrets).max_span
    }

    fn through_tail(secrets: &[&[u8]], chunks: &[&[u8]]) -> String {
        let mut tail = StderrTail::new(secrets);
        for chunk in chunks {
            tail.push(chunk);
        }
        tail.finish()
    }

    const SECRET: &[u8] = b"canary-s3cr3t-7d1f";
    /// Its base64 holds both characters that differ between the standard and URL-safe
    /// alphabets, and padding.
    const B64_SECRET: &[u8] = b"canary-s>3c?r3t-7d1f";

    fn base64_engines() -> [(&'static str, base64::engine::GeneralPurpose); 4] {
        [
            ("standard", STANDARD),
            ("standard, unpadded", STANDARD_NO_PAD),
            ("url-safe", URL_SAFE),
            ("url-safe, unpadded", URL_SAFE_NO_PAD),
        ]
    }

    fn without_whitespace(text: &str) -> String {
        text.chars()
            .filter(|c| !matches!(c, ' ' | '\t' | '\r' | '\n'))
            .collect()
    }

    /// Checks that `kept`, the redacted `header` + `encoded`, kept of `encoded` at most the
    /// characters that carry bits of the `before` bytes encoded before the secret's `len` bytes,
    /// and those after them.
    fn assert_only_the_neighbours_survive(
        kept: &str,
        header: &str,
        encoded: &str,
        before: usize,
        len: usize,
    ) {
        let kept = without_whitespace(kept);
        let encoded = without_whitespace(encoded);
        let (first, end) = ((8 * before).div_ceil(6), 8 * (before + len) / 6);
        let prefix = format!(
            "{}{}{REDACTED}",
            without_whitespace(header),
            &encoded[..first]
        );
        let after = kept
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{encoded}: {kept} does not start with {prefix}"));
        assert!(
            encoded[end..].ends_with(after),
            "{encoded}: {after} survived after the secret"
        );
    }

    #[test]
    fn every_occurrence_is_redacted_and_short_tails_are_kept_whole() {
        let raw = b"start canary-s3cr3t-7d1f middle canary-s3cr3t-7d1fcanary-s3cr3t-7d1f end";
        assert_eq!(
            redact(raw, &[SECRET, b""]),
            "start [REDACTED] middle [REDACTED] end"
        );
    }

    #[test]
    fn overlapping_secrets_are_redacted_whole() {
        assert_eq!(redact(b"x abcdef y", &[b"abcd", b"cdef"]), "x [REDACTED] y");
        assert_eq!(redact(b"x abcd y", &[b"bc", b"abcd"]), "x [REDACTED] y");
    }

    /// A secret straddling the stream's last [`STDERR_TAIL_BYTES`], and one straddling the start
    /// of the raw window with more copies after it (whose redaction shortens the text, so that
    /// the final cut would not drop the remnant by itself): no part of either survives, and the
    /// result stays within the bound.
    #[test]
    fn a_secret_at_either_cut_leaves_no_remnant() {
        let cases = [
            (STDERR_TAIL_BYTES - 9, 0),
            (
                STDERR_TAIL_BYTES + margin(&[SECRET]) - 9 - 4 * SECRET.len(),
                4,
            ),
        ];
        for (after, repeats) in cases {
            let filler = vec![b'x'; after];
            let copies = SECRET.repeat(repeats);
            let kept = through_tail(&[SECRET], &[b"token=", SECRET, &filler, &copies]);
            assert!(
                kept.len() <= STDERR_TAIL_BYTES,
                "{after}: {} bytes",
                kept.len()
            );
            assert!(
                !kept.contains("cr3t-7d1f"),
                "{after}: a remnant of the secret survived"
            );
            let end = if repeats > 0 { "x[REDACTED]" } else { "xx" };
            assert!(kept.ends_with(end), "{after}: the end was not kept");
        }
    }

    #[test]
    fn the_cut_falls_on_a_character_boundary() {
        let raw = "é".repeat(STDERR_TAIL_BYTES);
        let kept = redact_truncated(raw.as_bytes(), &[]);
        assert_eq!(kept.len(), STDERR_TAIL_BYTES);
        assert!(kept.chars().all(|c| c == 'é'));
    }

    #[test]
    fn base64_of_the_secret_is_redacted() {
        for (name, engine) in base64_engines() {
            let encoded = engine.encode(B64_SECRET);
            assert_eq!(
                redact(format!("token: {encoded}\n").as_bytes(), &[B64_SECRET]),
                "token: [REDACTED]\n",
                "{name}: {encoded}"
            );
        }
    }

    /// `Authorization: Basic base64(user:secret)`: the secret starts at every byte alignment of
    /// the base64 text, and only the characters that also carry bits of its neighbours survive.
    #[test]
    fn base64_of_the_secret_inside_longer_text_is_redacted_at_every_alignment() {
        let users: [&[u8]; 3] = [b"user:", b"admin:", b"user_1:"];
        let alignments: Vec<usize> = users.iter().map(|user| user.len() % 3).collect();
        assert_eq!(alignments, [2, 0, 1]);
        for user in users {
            for after in [&b""[..], b"@db.internal", b"\x00"] {
                for (name, engine) in base64_engines() {
                    let encoded = engine.encode([user, B64_SECRET, after].concat());
                    let header = "Authorization: Basic ";
                    let kept = redact(format!("{header}{encoded}\n").as_bytes(), &[B64_SECRET]);
                    assert!(!kept.contains(&encoded), "{name}: {encoded} survived");
                    assert_only_the_neighbours_survive(
                        &kept,
                        header,
                        &encoded,
                        user.len(),
                        B64_SECRET.len(),
                    );
                }
            }
        }
    }

    #[test]
    fn hex_in_any_case_is_redacted() {
        let lower = hex::encode(SECRET);
        let upper = hex::encode_upper(SECRET);
        let mixed: String = lower
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 3 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        for encoded in [lower, upper, mixed] {
            assert_eq!(
                redact(format!("bytes={encoded};\n").as_bytes(), &[SECRET]),
                "bytes=[REDACTED];\n",
                "{encoded}"
            );
        }
    }

    /// `echo canary-; echo s3cr3t; echo -7d1f`, and the same with other whitespace.
    #[test]
    fn a_secret_printed_in_pieces_on_several_lines_is_redacted() {
        for raw in [
            &b"canary-\ns3cr3t\n-7d1f\n"[..],
            b"canary-\r\ns3cr3t\r\n-7d1f\r\n",
            b"canary- s3cr3t\t-7d1f\n",
        ] {
            assert_eq!(
                redact(raw, &[SECRET]),
                format!(
                    "[REDACTED]{}",
                    if raw.ends_with(b"\r\n") { "\r\n" } else { "\n" }
                ),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    /// What `base64` and MIME print for a long value, such as a key: lines of 76 characters.
    #[test]
    fn base64_wrapped_at_76_columns_is_redacted() {
        let alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/=-_";
        let key: Vec<u8> = (0..200)
            .map(|i| alphabet[(i * 7 + i / 5) % alphabet.len()])
            .collect();
        let wrap = |encoded: &str, newline: &str| -> String {
            let lines: Vec<&str> = encoded
                .as_bytes()
                .chunks(76)
                .map(|line| std::str::from_utf8(line).unwrap())
                .collect();
            lines.join(newline) + newline
        };
        for newline in ["\n", "\r\n"] {
            let encoded = STANDARD.encode(&key);
            let wrapped = wrap(&encoded, newline);
            assert!(wrapped.matches(newline).count() > 3);
            assert_eq!(
                redact(wrapped.as_bytes(), &[&key]),
                format!("[REDACTED]{newline}")
            );

            let encoded = STANDARD.encode([&b"-----BEGIN KEY-----\n"[..], &key].concat());
            let kept = redact(wrap(&encoded, newline).as_bytes(), &[&key]);
            assert_only_the_neighbours_survive(&kept, "", &encoded, 20, key.len());
        }
    }

    #[test]
    fn a_percent_encoded_secret_is_redacted() {
        let secret = b"p@ss w/rd+&=?:canary-7d1f";
        for encoded in [
            "p%40ss%20w%2Frd%2B%26%3D%3F%3Acanary-7d1f",
            "p%40ss%20w%2frd%2b%26%3d%3f%3acanary-7d1f",
        ] {
            assert_eq!(
                redact(
                    format!("GET /login?password={encoded}&next=%2F HTTP/1.1").as_bytes(),
                    &[secret]
                ),
                "GET /login?password=[REDACTED]&next=%2F HTTP/1.1"
            );
        }
    }

    #[test]
    fn a_json_escaped_secret_is_redacted() {
        for secret in ["pa\"ss\\word-canary", "tab\there-canary\u{1}"] {
            let json = serde_json::to_string(&serde_json::json!({ "password": secret })).unwrap();
            assert!(!json.contains(secret));
            assert_eq!(
                redact(json.as_bytes(), &[secret.as_bytes()]),
                r#"{"password":"[REDACTED]"}"#,
                "{json}"
            );
        }
    }

    /// A 3-byte secret's encodings (`azlx`, `6b3971`) are too short to tell from innocent text,
    /// and are left alone; the secret itself is still found, even split.
    #[test]
    fn a_short_secret_redacts_itself_but_not_innocent_text() {
        let secret: &[u8] = b"k9q";
        assert_eq!(STANDARD.encode(secret), "azlx");
        let innocent = "id=azlx color=#6b3971";
        assert_eq!(redact(innocent.as_bytes(), &[secret]), innocent);
        assert_eq!(
            redact(format!("{innocent} key=k9\nq").as_bytes(), &[secret]),
            format!("{innocent} key=[REDACTED]")
        );
    }

    /// Hex spread by a newline after every character, as far as the bound on whitespace allows,
    /// straddling the stream's last [`STDERR_TAIL_BYTES`] and the start of the raw window.
    #[test]
    fn a_spread_encoded_secret_at_either_cut_leaves_no_remnant() {
        let hex = hex::encode(SECRET);
        let spread: String = hex.chars().map(|c| format!("{c}\n")).collect();
        let spread = spread.trim_end();
        // The longest form is the hex: its occurrences span at most twice its length.
        assert!(spread.len() < 2 * hex.len());
        for after in [STDERR_TAIL_BYTES - 30, STDERR_TAIL_BYTES + 30] {
            let filler = vec![b'x'; after];
            let kept = through_tail(&[SECRET], &[b"token=", spread.as_bytes(), &filler]);
            assert!(
                kept.len() <= STDERR_TAIL_BYTES,
                "{after}: {} bytes",
                kept.len()
            );
            assert!(
                !without_whitespace(&kept).contains(&hex[hex.len() - 8..]),
                "{after}: a remnant of the secret survived"
            );
            assert!(kept.ends_with("xx"), "{after}: the end was not kept");
        }
    }

    fn percent_encoded_for_test(value: &[u8]) -> String {
        value
            .iter()
            .map(|&byte| match byte {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(byte).to_string()
                }
                _ => format!("%{byte:02X}"),
            })
            .collect()
    }

    proptest::proptest! {
        /// Whatever surrounds them and wherever lines break inside them, no encoding of a
        /// secret survives, nor the part of its base64 inside a longer base64 text that encodes
        /// it alone.
        #[test]
        fn no_encoding_of_a_secret_survives(
            secret in "[ -~]{8,40}",
            around in proptest::collection::vec("[ -~\n]{0,30}", 16),
            breaks in proptest::collection::vec(proptest::collection::vec(0usize..200, 0..3), 16),
            user in "[ -~]{0,7}",
            chunk in 1usize..100,
        ) {
            let value = secret.as_bytes();
            let mut forms: Vec<String> = base64_engines()
                .iter()
                .map(|(_, engine)| engine.encode(value))
                .collect();
            forms.push(secret.clone());
            forms.push(hex::encode(value));
            forms.push(hex::encode_upper(value));
            forms.push(percent_encoded_for_test(value));
            let json = serde_json::to_string(&secret).unwrap();
            forms.push(json[1..json.len() - 1].to_string());
            let embedded = STANDARD.encode([user.as_bytes(), value, b"@host"].concat());

            let mut stream = String::new();
            for (i, form) in forms.iter().chain([&embedded]).enumerate() {
                let mut printed = form.clone();
                let mut breaks = breaks[i].clone();
                breaks.sort_unstable();
                for at in breaks.into_iter().rev() {
                    let at = at % (printed.len() + 1);
                    if printed.is_char_boundary(at) {
                        printed.insert(at, '\n');
                    }
                }
                stream.push_str(&around[i]);
                stream.push(' ');
                stream.push_str(&printed);
                stream.push(' ');
            }
            let chunks: Vec<&[u8]> = stream.as_bytes().chunks(chunk).collect();
            let kept = through_tail(&[value], &chunks);
            let dense = without_whitespace(&kept);
            for form in forms.iter().chain([&embedded]) {
                proptest::prop_assert!(!kept.contains(form.as_str()), "{form} survived in {kept}");
                let form = without_whitespace(form);
                proptest::prop_assert!(
                    form.is_empty() || !dense.contains(&form),
                    "{form} survived in {kept}"
                );
            }
            let (first, end) = ((8 * user.len()).div_ceil(6), 8 * (user.len() + value.len()) / 6);
            let core = &embedded[first..end];
            proptest::prop_assert!(!dense.contains(core), "{core} survived in {kept}");
        }
    }
}
