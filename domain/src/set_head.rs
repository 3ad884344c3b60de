//! `set_heads`: one document per keyed set (collection, tenant, partition), saying who may write
//! the set now. Each writer *takes* the head (a new take number, only growing, and a new
//! generation) before it stages anything, and *commits* with a compare-and-set on its take
//! number: so only the newest taker's writes are ever applied ([`crate::materialize`]).
//!
//! The head keeps the last commits in `log` (take number, generation, the run and the holder's
//! run fence, the time): the per-attempt record of the set's writes. The newest commit's time is
//! also when every live item of the set was last seen: a write is of the full set, so an item
//! written again unchanged needs no write of its own to say it was seen. Within one run, the fences there never
//! decrease (the chaos run checks it).

use std::collections::{HashMap, HashSet};

use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::options::ReturnDocument;
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, Result};
use crate::run_fence::{ForRun, RunFence};

pub(crate) const SET_HEADS: &str = "set_heads";

/// How many commits a head's `log` keeps.
const LOG_LENGTH: i32 = 32;

/// One taking of a set's head.
#[derive(Debug, Clone)]
pub(crate) struct Take {
    pub head: String,
    pub number: i64,
    pub generation: ObjectId,
    /// The generation of the newest commit when this take was made.
    pub committed: Option<ObjectId>,
    /// When that commit was made: the last time every live item of the set was seen.
    pub committed_at: Option<DateTime>,
}

/// One commit in a head's `log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetCommit {
    pub take: i64,
    #[serde(rename = "gen")]
    pub generation: ObjectId,
    pub run_id: ObjectId,
    /// The run fence of the stage holder that wrote; absent for a writer outside the stages.
    pub fence: Option<RunFence>,
    pub at: DateTime,
}

/// A set's head as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetHead {
    #[serde(rename = "_id")]
    pub id: String,
    pub tenant_id: String,
    pub taken: i64,
    #[serde(default)]
    pub committed: Option<ObjectId>,
    #[serde(default)]
    pub log: Vec<SetCommit>,
}

/// The commits in a head's log made by a stage holder after a newer holder of the same run had
/// committed: writes of a taken-over holder that landed (there must be none).
pub fn stale_commits(log: &[SetCommit]) -> Vec<&SetCommit> {
    let mut highest: HashMap<ObjectId, RunFence> = HashMap::new();
    let mut stale = Vec::new();
    for commit in log {
        let Some(fence) = commit.fence else { continue };
        match highest.get(&commit.run_id) {
            Some(h) if fence < *h => stale.push(commit),
            _ => {
                highest.insert(commit.run_id, fence);
            }
        }
    }
    stale
}

/// Takes the head `head` of `tenant_id`'s set for `by`.
pub(crate) async fn take(db: &Database, head: &str, tenant_id: &str, by: ForRun) -> Result<Take> {
    let generation = ObjectId::new();
    let heads = db.collection::<Document>(SET_HEADS);
    let mut tries = 0;
    let taken = loop {
        let result = heads
            .find_one_and_update(
                doc! { "_id": head },
                doc! {
                    "$inc": { "taken": 1_i64 },
                    "$set": { "tenant_id": tenant_id, "gen": generation, "run_id": by.run_id },
                },
            )
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await;
        match result {
            Ok(Some(taken)) => break taken,
            // Two first takes of a new head raced on its insert: the loser takes it again.
            Err(e) if sv0_storage::is_duplicate(&e) && tries == 0 => tries += 1,
            Ok(None) => {
                return Err(DomainError::Race(format!(
                    "set head {head}: the upsert returned nothing"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    };
    Ok(Take {
        head: head.to_string(),
        number: taken.get_i64("taken").unwrap_or_default(),
        generation,
        committed: taken.get_object_id("committed").ok(),
        committed_at: last_commit_at(&taken),
    })
}

/// When the head's newest commit was made, from its log.
fn last_commit_at(head: &Document) -> Option<DateTime> {
    head.get_array("log")
        .ok()?
        .last()?
        .as_document()?
        .get_datetime("at")
        .ok()
        .copied()
}

/// When the set `head` was last written in full (its newest commit): the time every item live
/// in it now was last seen. `None` for a set never written.
pub(crate) async fn seen_at(db: &Database, head: &str) -> Result<Option<DateTime>> {
    let found = db
        .collection::<Document>(SET_HEADS)
        .find_one(doc! { "_id": head })
        .projection(doc! { "log": { "$slice": -1 } })
        .await?;
    Ok(found.as_ref().and_then(last_commit_at))
}

/// Whether `take` is still the head's newest.
pub(crate) async fn is_newest(db: &Database, take: &Take) -> Result<bool> {
    Ok(db
        .collection::<Document>(SET_HEADS)
        .find_one(doc! { "_id": &take.head, "taken": take.number })
        .projection(doc! { "_id": 1 })
        .await?
        .is_some())
}

/// Commits `take`'s stagings: true when `take` was still the newest, false when a newer writer
/// has taken the head (then this take's stagings are never applied).
pub(crate) async fn commit(db: &Database, take: &Take, by: ForRun) -> Result<bool> {
    let fence = by.fence().map_or(Bson::Null, Bson::from);
    let entry = doc! {
        "take": take.number, "gen": take.generation, "run_id": by.run_id, "fence": fence,
        "at": DateTime::now(),
    };
    let committed = db
        .collection::<Document>(SET_HEADS)
        .update_one(
            doc! { "_id": &take.head, "taken": take.number },
            doc! {
                "$set": { "committed": take.generation },
                "$push": { "log": { "$each": [entry], "$slice": -LOG_LENGTH } },
            },
        )
        .await?;
    Ok(committed.matched_count == 1)
}

/// The committed generation of each head in `heads`.
pub(crate) async fn committed(
    db: &Database,
    heads: HashSet<String>,
) -> Result<HashMap<String, Option<ObjectId>>> {
    if heads.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<String> = heads.into_iter().collect();
    let found: Vec<Document> = db
        .collection::<Document>(SET_HEADS)
        .find(doc! { "_id": { "$in": ids } })
        .projection(doc! { "committed": 1 })
        .await?
        .try_collect()
        .await?;
    Ok(found
        .into_iter()
        .filter_map(|d| {
            let id = d.get_str("_id").ok()?.to_string();
            Some((id, d.get_object_id("committed").ok()))
        })
        .collect())
}

impl crate::Domain {
    /// Every set head, with its log of commits (for the chaos run's stale-commit check).
    pub async fn set_heads(&self) -> Result<Vec<SetHead>> {
        Ok(self
            .db
            .collection::<SetHead>(SET_HEADS)
            .find(doc! {})
            .await?
            .try_collect()
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_below_an_earlier_one_of_the_same_run_is_stale() {
        let (r1, r2) = (ObjectId::new(), ObjectId::new());
        let commit = |run_id, fence: Option<RunFence>| SetCommit {
            take: 0,
            generation: ObjectId::new(),
            run_id,
            fence,
            at: DateTime::from_millis(0),
        };
        let log = [
            commit(r1, Some(RunFence::new(2, 2))),
            commit(r2, Some(RunFence::new(3, 1))),
            commit(r1, Some(RunFence::new(2, 3))),
            commit(r2, None),
            commit(r1, Some(RunFence::new(2, 2))),
        ];
        assert_eq!(stale_commits(&log), vec![&log[4]]);
        assert!(stale_commits(&log[..4]).is_empty());
        // One holder committing the set twice (its stage's work retried) is not stale.
        let again = [log[0].clone(), log[0].clone()];
        assert!(stale_commits(&again).is_empty());
    }
}
