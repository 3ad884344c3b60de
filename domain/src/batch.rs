//! Many upserts (or deletes) in one round trip: one `update` (or `delete`) command with many
//! statements, sent with `run_command`. The driver's `Client::bulk_write` would do the same but
//! needs MongoDB 8.0 (the stand reports 6.0); the plain commands with a list of statements work
//! on every server and on the stand.

use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};

use crate::error::{DomainError, Result};

/// At most this many statements per command (MongoDB's own limit is 100,000)…
const MAX_STATEMENTS: usize = 1_000;
/// …and about this many bytes, well under the 16 MiB a command may carry.
const MAX_BYTES: usize = 4 * 1024 * 1024;

/// One statement of an `update` command.
pub(crate) fn statement(filter: Document, update: Document, upsert: bool) -> Document {
    doc! { "q": filter, "u": update, "upsert": upsert }
}

/// One statement of a `delete` command: the one document matching `filter`.
pub(crate) fn removal(filter: Document) -> Document {
    doc! { "q": filter, "limit": 1 }
}

/// A command that carries many statements: its name and the field of its statements.
#[derive(Clone, Copy)]
enum Command {
    Update,
    Delete,
}

impl Command {
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Command::Update => ("update", "updates"),
            Command::Delete => ("delete", "deletes"),
        }
    }
}

/// Sends `statements` to `collection`, unordered, in as few commands as the limits allow. A
/// statement's error fails the call; a duplicate-key error (two upserts of one key racing) and a
/// write-concern error are transient: the same statements may be sent again. Returns how many
/// documents the statements matched (or upserted).
pub(crate) async fn update_all(
    db: &Database,
    collection: &str,
    statements: Vec<Document>,
) -> Result<u64> {
    send_all(db, collection, Command::Update, statements).await
}

/// Sends the [`removal`]s `statements` to `collection` as [`update_all`] sends updates; returns
/// how many documents they deleted.
pub(crate) async fn delete_all(
    db: &Database,
    collection: &str,
    statements: Vec<Document>,
) -> Result<u64> {
    send_all(db, collection, Command::Delete, statements).await
}

async fn send_all(
    db: &Database,
    collection: &str,
    command: Command,
    statements: Vec<Document>,
) -> Result<u64> {
    let mut chunk = Vec::new();
    let mut bytes = 0;
    let mut matched = 0;
    for statement in statements {
        let size = mongodb::bson::to_vec(&statement).map_or(0, |v| v.len());
        if !chunk.is_empty() && (chunk.len() == MAX_STATEMENTS || bytes + size > MAX_BYTES) {
            matched += send(db, collection, command, std::mem::take(&mut chunk)).await?;
            bytes = 0;
        }
        bytes += size;
        chunk.push(statement);
    }
    if !chunk.is_empty() {
        matched += send(db, collection, command, chunk).await?;
    }
    Ok(matched)
}

async fn send(
    db: &Database,
    collection: &str,
    command: Command,
    statements: Vec<Document>,
) -> Result<u64> {
    let count = statements.len();
    let (name, field) = command.names();
    // A command sent as such does not take the database's write concern: it asks for a
    // majority itself, as every other write of the domain does.
    let reply = db
        .run_command(doc! {
            name: collection,
            field: statements.into_iter().map(Bson::Document).collect::<Vec<_>>(),
            "ordered": false,
            "writeConcern": { "w": "majority" },
        })
        .await?;
    if let Ok(errors) = reply.get_array("writeErrors")
        && let Some(Bson::Document(first)) = errors.first()
    {
        let code = first.get_i32("code").unwrap_or_default();
        let message = first.get_str("errmsg").unwrap_or("no message");
        let text = format!(
            "{} of {count} writes to {collection} failed; the first: code {code}: {message}",
            errors.len()
        );
        return Err(if code == 11000 {
            DomainError::Race(text)
        } else {
            DomainError::Write(text)
        });
    }
    if let Ok(error) = reply.get_document("writeConcernError") {
        return Err(DomainError::Race(format!(
            "write concern error on {collection}: {error}"
        )));
    }
    // `n` counts matched and upserted (or deleted) documents; servers send it as an int32 or an
    // int64.
    let matched = match reply.get("n") {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        _ => 0,
    };
    Ok(matched.max(0) as u64)
}
