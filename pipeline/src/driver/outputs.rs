//! The two files a connector that exited 0 leaves behind, read and validated: each a regular file
//! of bounded size, `category_results.json` as the contract's cells (their number and their
//! errors bounded, secrets in the errors redacted), `graph.json` as a [`Graph`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use mongodb::bson::DateTime;
use nix::libc;
use serde::Deserialize;
use sv0_domain::{CategoryName, CategoryNameError, CategoryResult, CellStatus, Graph};

use super::{DriverError, GRAPH_FILE, RESULTS_FILE, one_line};
use crate::redact::Redactor;

/// The largest `category_results.json` read: a few hundred categories take a few KiB.
pub const MAX_RESULTS_BYTES: u64 = 1024 * 1024;
/// The largest `graph.json` read. A sync holds at most [`sv0_domain::graph::MAX_GRAPH_ENTITIES`]
/// entities in a 16 MiB document; the JSON of those, pretty-printed, stays well under this.
pub const MAX_GRAPH_BYTES: u64 = 64 * 1024 * 1024;
/// The most categories one `category_results.json` may hold: each becomes a cell of the run.
pub const MAX_CATEGORIES: usize = 256;
/// A category's errors as stored: at most this many, each at most [`MAX_ERROR_CHARS`]
/// characters; the rest is summarized in a last line, so a chatty connector still has its scan
/// recorded but cannot grow the run document without bound.
pub const MAX_ERRORS_PER_CATEGORY: usize = 32;
pub const MAX_ERROR_CHARS: usize = 2000;

/// Reads and validates both output files (blocking: run on a blocking thread).
pub(super) fn read_outputs(
    dir: &Path,
    redactor: &Redactor,
) -> Result<(BTreeMap<CategoryName, CategoryResult>, Graph, usize), DriverError> {
    let results = read_output(dir, RESULTS_FILE, MAX_RESULTS_BYTES)?;
    let categories = parse_results(&results, redactor)?;
    let graph_json = read_output(dir, GRAPH_FILE, MAX_GRAPH_BYTES)?;
    let graph = Graph::from_json(&graph_json).map_err(|e| DriverError::InvalidGraph {
        reason: one_line(&e.to_string()),
    })?;
    Ok((categories, graph, graph_json.len()))
}

/// One output file, which must be a regular file of at most `limit` bytes.
fn read_output(dir: &Path, file: &'static str, limit: u64) -> Result<Vec<u8>, DriverError> {
    let unreadable = |reason: String| DriverError::UnreadableOutput { file, reason };
    // O_NOFOLLOW: the output is the connector's own file, not one it points the worker at.
    // O_NONBLOCK: opening a FIFO left in its place would otherwise wait for a writer forever.
    let mut opened = match File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(dir.join(file))
    {
        Ok(opened) => opened,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(DriverError::MissingOutput { file });
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(unreadable("it is a symbolic link, not a file".into()));
        }
        Err(e) => return Err(unreadable(e.to_string())),
    };
    let metadata = opened.metadata().map_err(|e| unreadable(e.to_string()))?;
    if !metadata.is_file() {
        return Err(unreadable("it is not a regular file".into()));
    }
    let too_large = |size: u64| unreadable(format!("{size} bytes; at most {limit} are read"));
    if metadata.len() > limit {
        return Err(too_large(metadata.len()));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    // `take`: the size checked above is not trusted to stay put while reading.
    (&mut opened)
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(e.to_string()))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// A cell of `category_results.json`: the contract's form of a [`CategoryResult`], with times as
/// RFC 3339 strings and only the statuses a finished category can have.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireCell {
    status: WireStatus,
    items_scanned: u64,
    started_at: String,
    ended_at: String,
    errors: Vec<String>,
}

/// `running` is a platform cell's state while a stage works; a connector's file holds only
/// finished categories.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum WireStatus {
    Succeeded,
    Failed,
}

fn parse_results(
    bytes: &[u8],
    redactor: &Redactor,
) -> Result<BTreeMap<CategoryName, CategoryResult>, DriverError> {
    let invalid = |reason: String| DriverError::InvalidResults {
        reason: one_line(&reason),
    };
    let cells: BTreeMap<String, WireCell> =
        serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    if cells.len() > MAX_CATEGORIES {
        return Err(invalid(format!(
            "{} categories; at most {MAX_CATEGORIES}",
            cells.len()
        )));
    }
    let mut categories = BTreeMap::new();
    for (name, cell) in cells {
        let category = CategoryName::connector(&name).map_err(|refusal| match refusal {
            CategoryNameError::Reserved(_) => DriverError::ReservedCategory {
                name: one_line(&name),
            },
            CategoryNameError::Malformed(_) => DriverError::MalformedCategory {
                name: one_line(&name),
            },
        })?;
        let time = |field: &str, text: &str| {
            DateTime::parse_rfc3339_str(text).map_err(|e| invalid(format!("{name}.{field}: {e}")))
        };
        let started_at = time("started_at", &cell.started_at)?;
        let ended_at = time("ended_at", &cell.ended_at)?;
        if ended_at < started_at {
            return Err(invalid(format!("{name}.ended_at is before started_at")));
        }
        let items_scanned = i64::try_from(cell.items_scanned).map_err(|_| {
            invalid(format!(
                "{name}.items_scanned: {} is too large",
                cell.items_scanned
            ))
        })?;
        let status = match cell.status {
            WireStatus::Succeeded => CellStatus::Succeeded,
            WireStatus::Failed => CellStatus::Failed,
        };
        categories.insert(
            category,
            CategoryResult {
                status,
                items_scanned,
                started_at,
                ended_at: Some(ended_at),
                errors: bounded_errors(cell.errors, redactor),
            },
        );
    }
    Ok(categories)
}

/// A category's errors as stored: secrets redacted, each cut to [`MAX_ERROR_CHARS`], at most
/// [`MAX_ERRORS_PER_CATEGORY`] of them with the rest counted in a last line.
fn bounded_errors(errors: Vec<String>, redactor: &Redactor) -> Vec<String> {
    let total = errors.len();
    let mut kept: Vec<String> = errors
        .into_iter()
        .take(MAX_ERRORS_PER_CATEGORY)
        .map(|error| {
            let mut error: String = error.chars().take(MAX_ERROR_CHARS).collect();
            error = redactor.redact(&error);
            error
        })
        .collect();
    if total > MAX_ERRORS_PER_CATEGORY {
        kept.push(format!(
            "… and {} more errors not kept",
            total - MAX_ERRORS_PER_CATEGORY
        ));
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_categorys_errors_are_redacted_and_bounded() {
        let secret: &[u8] = b"canary-s3cr3t-7d1f";
        let redactor = Redactor::new(&[secret]);
        let mut errors = vec![
            "token canary-s3cr3t-7d1f refused".to_string(),
            "x".repeat(3 * MAX_ERROR_CHARS),
        ];
        errors.extend((0..40).map(|n| format!("account {n} unreachable")));
        let kept = bounded_errors(errors, &redactor);
        assert_eq!(kept[0], "token [REDACTED] refused");
        assert_eq!(kept[1].chars().count(), MAX_ERROR_CHARS);
        assert_eq!(kept.len(), MAX_ERRORS_PER_CATEGORY + 1);
        assert_eq!(
            kept[MAX_ERRORS_PER_CATEGORY],
            "… and 10 more errors not kept"
        );
    }

    #[test]
    fn too_many_categories_are_refused() {
        let cell = r#"{"status":"succeeded","items_scanned":1,"started_at":"2026-01-01T00:00:00Z","ended_at":"2026-01-01T00:00:01Z","errors":[]}"#;
        let file = |n: usize| {
            let cells: Vec<String> = (0..n).map(|i| format!("\"c{i}\": {cell}")).collect();
            format!("{{{}}}", cells.join(","))
        };
        let redactor = Redactor::new(&[]);
        assert_eq!(
            parse_results(file(MAX_CATEGORIES).as_bytes(), &redactor)
                .unwrap()
                .len(),
            MAX_CATEGORIES
        );
        let error = parse_results(file(MAX_CATEGORIES + 1).as_bytes(), &redactor).unwrap_err();
        assert!(error.to_string().contains("at most 256"), "{error}");
    }
}
