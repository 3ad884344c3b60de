//! Keyed sets rewritten in full by each run of a stage: entities (per source), findings, chains
//! and stitched paths (per tenant). Each item has a key and a content hash. Writing a new full
//! set creates the new keys, rewrites the changed ones, retires the keys no longer produced, and
//! touches only `last_seen_at` on the unchanged ones, so a re-run on unchanged input changes
//! nothing else (ADR-027 §c). Items are upserted by `(tenant_id, key)`, so a stage that crashed
//! half-way and runs again converges on the same documents.

use std::collections::{HashMap, HashSet};

use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::{self, DateTime, Document, doc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::batch;
use crate::error::{DomainError, Result};

/// How one collection keeps its set.
pub(crate) struct KeyedSet {
    pub collection: &'static str,
    /// The field holding the item's key (`external_id` for entities, `key` otherwise).
    pub key_field: &'static str,
    /// Status of a current item, and of one no longer produced.
    pub live: &'static str,
    pub retired: &'static str,
    /// The timestamp set when an item is retired.
    pub retired_at: &'static str,
}

/// One item of a new full set: its key, the fields that identify its partition (e.g. `source`),
/// and its content.
pub(crate) struct Item {
    pub key: String,
    pub data: Document,
}

/// What writing a set did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub retired: u64,
}

impl Counts {
    /// Items of the new set that were written or touched.
    pub fn current(&self) -> u64 {
        self.created + self.updated + self.unchanged
    }
}

/// The SHA-256 of a document's BSON bytes, hex: the same content (with its fields in the same
/// order) always has the same hash.
pub fn content_hash(data: &Document) -> String {
    let bytes = bson::to_vec(data).expect("a document always serializes");
    hex::encode(Sha256::digest(&bytes))
}

impl KeyedSet {
    /// Replaces the set of `tenant_id`'s items matching `partition` with `items`.
    pub async fn write(
        &self,
        db: &Database,
        tenant_id: &str,
        partition: Document,
        items: Vec<Item>,
    ) -> Result<Counts> {
        let mut filter = partition.clone();
        filter.insert("tenant_id", tenant_id);
        // What is there now: key → (hash, live?). One read of the partition.
        let existing: HashMap<String, (String, bool)> = db
            .collection::<Document>(self.collection)
            .find(filter)
            .projection(doc! { self.key_field: 1, "hash": 1, "status": 1, "_id": 0 })
            .await?
            .try_filter_map(|d| async move {
                let key = d.get_str(self.key_field).ok().map(str::to_string);
                let hash = d.get_str("hash").unwrap_or_default().to_string();
                let live = d.get_str("status").ok() == Some(self.live);
                Ok(key.map(|k| (k, (hash, live))))
            })
            .try_collect()
            .await?;

        let now = DateTime::now();
        let mut counts = Counts::default();
        let mut statements = Vec::new();
        let mut produced = HashSet::with_capacity(items.len());
        for item in items {
            if !produced.insert(item.key.clone()) {
                return Err(DomainError::invalid(
                    self.key_field,
                    format!("{:?} appears twice in one set", item.key),
                ));
            }
            let hash = content_hash(&item.data);
            let key_filter = doc! { "tenant_id": tenant_id, self.key_field: &item.key };
            match existing.get(&item.key) {
                Some((old, true)) if *old == hash => {
                    counts.unchanged += 1;
                    statements.push(batch::statement(
                        key_filter,
                        doc! { "$set": { "last_seen_at": now } },
                        false,
                    ));
                }
                found => {
                    if found.is_some() {
                        counts.updated += 1;
                    } else {
                        counts.created += 1;
                    }
                    let mut set = partition.clone();
                    set.insert("hash", hash);
                    set.insert("status", self.live);
                    set.insert("data", item.data);
                    set.insert("updated_at", now);
                    set.insert("last_seen_at", now);
                    statements.push(batch::statement(
                        key_filter,
                        doc! {
                            "$set": set,
                            "$unset": { self.retired_at: "" },
                            "$setOnInsert": { "first_seen_at": now },
                        },
                        true,
                    ));
                }
            }
        }
        for (key, (_, live)) in &existing {
            if *live && !produced.contains(key) {
                counts.retired += 1;
                statements.push(batch::statement(
                    doc! { "tenant_id": tenant_id, self.key_field: key },
                    doc! { "$set": { "status": self.retired, self.retired_at: now, "updated_at": now } },
                    false,
                ));
            }
        }
        batch::update_all(db, self.collection, statements).await?;
        Ok(counts)
    }

    /// The live items of `tenant_id` matching `partition`, as stored.
    pub async fn live(
        &self,
        db: &Database,
        tenant_id: &str,
        partition: Document,
    ) -> Result<Vec<Document>> {
        let mut filter = partition;
        filter.insert("tenant_id", tenant_id);
        filter.insert("status", self.live);
        Ok(db
            .collection::<Document>(self.collection)
            .find(filter)
            .sort(doc! { self.key_field: 1 })
            .await?
            .try_collect()
            .await?)
    }
}
