//! Keyed sets rewritten in full by each run of a stage: entities (per source), findings, chains
//! and stitched paths (per tenant). Each item has a key and a content hash. Writing a new full set
//! creates the new keys, rewrites the changed ones, retires the keys no longer produced, and
//! writes nothing for the unchanged ones, so a re-run on unchanged input writes only the set's
//! head, and a re-run changing some items writes those. When a live item was last seen is when
//! its set was last written ([`Domain::last_seen`], from the head); a retired item keeps, in its
//! `last_seen_at`, the last write in which it was still produced. Items are kept by `(tenant_id, key)`, so a stage that crashed half-way and runs
//! again converges on the same documents.
//!
//! A set is shared by every run of its tenant, and a stage holder whose lease was reaped may
//! still be writing it when the job's next holder (or another run's stage) rewrites it. Without
//! transactions (the stand has none), a write of many documents is made safe in two phases,
//! fenced by the set's head ([`crate::set_head`]):
//!
//! 1. **Take** the head: a new take number and generation (`gen`). Then check that the writer
//!    still holds its run: a holder taken over by a newer one stops here.
//! 2. **Stage** each change in the document's `next`, with `gen` set to this take's, filtered on
//!    the `gen` the document had when read: readers never look at `next`, and a write that lands
//!    on a document someone else staged meanwhile matches nothing.
//! 3. **Commit**: a compare-and-set on the head, which succeeds only while this take is still
//!    the newest. A writer that was taken over never commits, so its stagings are never applied.
//! 4. **Apply** the committed stagings to the documents (`next` becomes the document).
//!
//! A commit whose apply did not finish (its writer crashed) is applied by the set's next writer,
//! which reads the committed `gen` from the head. What readers see moves only at step 4, and only
//! to a committed picture, so no write of a taken-over holder becomes visible. The documents
//! that a taken-over writer created for keys nobody produces since are deleted by the next
//! writer, after its apply.

use std::collections::{HashMap, HashSet};

use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{self, Bson, DateTime, Document, doc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::Domain;
use crate::batch;
use crate::error::{DomainError, Result};
use crate::run_fence::ForRun;
use crate::set_head::{self, Take};

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

/// One item of a new full set: its key and its content.
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
    /// A newer writer took the set before this one committed: nothing of this write was
    /// applied, and the counts say what it would have done. The newer writer started after this
    /// one, so its picture holds everything this one's did.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub superseded: bool,
}

impl Counts {
    fn superseded(self) -> Counts {
        Counts {
            superseded: true,
            ..self
        }
    }

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

/// How many times a writer stages again when a taken-over writer's late staging lands between
/// its read and its own staging.
const STAGE_TRIES: usize = 4;

/// A document of the set as a writer reads it.
struct Stored {
    key: String,
    /// The `gen` it was last staged under (absent on a document never staged).
    generation: Option<ObjectId>,
    /// What readers see of it now: `(hash, live?)`; `None` for a document that only a staging
    /// that never committed created.
    current: Option<(String, bool)>,
    /// A committed staging not yet applied: what the document is once it is.
    committed: Option<Document>,
    /// Stored in another partition (an entity another source delivered before).
    elsewhere: bool,
    /// Staged by a newer take of this set, not committed: that writer is at work, and this one
    /// can no longer commit; staging over it would undo part of the newer picture.
    newer: bool,
    /// Created by an older take of this set that never committed (its writer was taken over):
    /// no reader ever saw it and none ever will, unless a later writer produces its key.
    abandoned: bool,
}

impl Stored {
    /// What the document is for this writer: a committed staging counts as applied.
    fn state(&self) -> Option<(&str, bool)> {
        match &self.committed {
            Some(next) => Some((
                next.get_str("hash").unwrap_or_default(),
                next.get_bool("live").unwrap_or(false),
            )),
            None => self.current.as_ref().map(|(h, live)| (h.as_str(), *live)),
        }
    }
}

impl KeyedSet {
    /// The set's head id: one head per (collection, tenant, partition).
    pub(crate) fn head_id(&self, tenant_id: &str, partition: &Document) -> String {
        let parts: Vec<String> = partition
            .values()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect();
        format!("{}|{tenant_id}|{}", self.collection, parts.join("|"))
    }

    /// The filter of a write to the document `key` staged last under `gen`: exactly the fields
    /// of the `{tenant_id, key, generation}` unique index, as the stand needs.
    fn filter(&self, tenant_id: &str, key: &str, generation: Option<ObjectId>) -> Document {
        doc! {
            "tenant_id": tenant_id,
            self.key_field: key,
            "gen": generation.map_or(Bson::Null, Bson::ObjectId),
        }
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

    /// Every document of the partition, and those of the produced keys that are stored in
    /// another partition (an entity another source delivered before): key → document.
    async fn read(
        &self,
        db: &Database,
        tenant_id: &str,
        partition: &Document,
        produced: &HashSet<String>,
    ) -> Result<HashMap<String, Document>> {
        let collection = db.collection::<Document>(self.collection);
        let mut filter = partition.clone();
        filter.insert("tenant_id", tenant_id);
        let mut projection =
            doc! { self.key_field: 1, "hash": 1, "status": 1, "gen": 1, "next": 1, "_id": 0 };
        for field in partition.keys() {
            projection.insert(field.clone(), 1);
        }
        let mut found: HashMap<String, Document> = HashMap::new();
        let mut cursor = collection
            .find(filter)
            .projection(projection.clone())
            .await?;
        while let Some(d) = cursor.try_next().await? {
            if let Ok(key) = d.get_str(self.key_field) {
                found.insert(key.to_string(), d);
            }
        }
        if !partition.is_empty() {
            let elsewhere: Vec<&String> = produced
                .iter()
                .filter(|k| !found.contains_key(*k))
                .collect();
            if !elsewhere.is_empty() {
                let mut cursor = collection
                    .find(doc! { "tenant_id": tenant_id, self.key_field: { "$in": elsewhere } })
                    .projection(projection)
                    .await?;
                while let Some(d) = cursor.try_next().await? {
                    if let Ok(key) = d.get_str(self.key_field) {
                        found.insert(key.to_string(), d);
                    }
                }
            }
        }
        Ok(found)
    }
}

impl Domain {
    /// Replaces the set of `tenant_id`'s items matching `partition` with `items`, on behalf of
    /// `by` (see the module's comment for how a taken-over holder is kept out).
    pub(crate) async fn write_set(
        &self,
        set: &'static KeyedSet,
        tenant_id: &str,
        partition: Document,
        by: ForRun,
        items: Vec<Item>,
    ) -> Result<Counts> {
        let mut produced = HashSet::with_capacity(items.len());
        for item in &items {
            if !produced.insert(item.key.clone()) {
                return Err(DomainError::invalid(
                    set.key_field,
                    format!("{:?} appears twice in one set", item.key),
                ));
            }
        }
        let write = SetWrite::begin(self, set, tenant_id, partition, by).await?;
        let mut tries = 0;
        let plan = loop {
            let plan = write.plan(&items).await?;
            if write.stage(&plan).await? {
                break plan;
            }
            // Some document moved between the read and the staging: a newer writer's staging
            // (then this writer is taken over), or a taken-over writer's late one (read again).
            if !set_head::is_newest(&self.db, &write.take).await? {
                return Ok(plan.counts.superseded());
            }
            tries += 1;
            if tries == STAGE_TRIES {
                return Err(DomainError::Race(format!(
                    "{}: documents kept moving under take {}",
                    write.take.head, write.take.number
                )));
            }
        };
        if !write.commit().await? {
            return Ok(plan.counts.superseded());
        }
        let counts = plan.counts;
        write.apply(plan).await?;
        Ok(counts)
    }
}

/// One writer's write of one set, step by step (the steps of the module's comment).
pub(crate) struct SetWrite<'a> {
    domain: &'a Domain,
    set: &'static KeyedSet,
    tenant_id: String,
    partition: Document,
    by: ForRun,
    take: Take,
}

impl<'a> SetWrite<'a> {
    /// Takes the set's head, then checks that `by` still holds its run.
    pub(crate) async fn begin(
        domain: &'a Domain,
        set: &'static KeyedSet,
        tenant_id: &str,
        partition: Document,
        by: ForRun,
    ) -> Result<SetWrite<'a>> {
        let head = set.head_id(tenant_id, &partition);
        let take = set_head::take(&domain.db, &head, tenant_id, by).await?;
        domain.check_holder(tenant_id, by).await?;
        Ok(SetWrite {
            domain,
            set,
            tenant_id: tenant_id.to_string(),
            partition,
            by,
            take,
        })
    }

    /// Reads the set and plans the statements that make it `items`.
    pub(crate) async fn plan(&self, items: &[Item]) -> Result<Plan> {
        let produced: HashSet<String> = items.iter().map(|i| i.key.clone()).collect();
        let stored = self
            .domain
            .read_stored(
                self.set,
                &self.tenant_id,
                &self.partition,
                &produced,
                &self.take,
            )
            .await?;
        Ok(self
            .set
            .plan(&self.tenant_id, &self.partition, &self.take, stored, items))
    }

    /// Sends the plan's stagings: true when every one landed. Sends nothing when a newer
    /// writer's stagings were read.
    pub(crate) async fn stage(&self, plan: &Plan) -> Result<bool> {
        if plan.newer_writer {
            return Ok(false);
        }
        let stagings = plan.stage.len() as u64;
        match batch::update_all(&self.domain.db, self.set.collection, plan.stage.clone()).await {
            Ok(n) => Ok(n == stagings),
            Err(DomainError::Race(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Commits: false when a newer writer has taken the set.
    pub(crate) async fn commit(&self) -> Result<bool> {
        set_head::commit(&self.domain.db, &self.take, self.by).await
    }

    /// Applies committed stagings, then deletes the abandoned
    /// documents. Misses are stagings a newer writer has applied already, and documents it has
    /// deleted or staged again.
    pub(crate) async fn apply(&self, plan: Plan) -> Result<()> {
        batch::update_all(&self.domain.db, self.set.collection, plan.apply).await?;
        if !plan.discard.is_empty() {
            batch::delete_all(&self.domain.db, self.set.collection, plan.discard).await?;
        }
        Ok(())
    }
}

impl Domain {
    /// The set's documents as `take`'s writer reads them: committed stagings (of this set, or of
    /// another partition's for a key that moved) count as applied.
    async fn read_stored(
        &self,
        set: &KeyedSet,
        tenant_id: &str,
        partition: &Document,
        produced: &HashSet<String>,
        take: &Take,
    ) -> Result<Vec<Stored>> {
        let docs = set.read(&self.db, tenant_id, partition, produced).await?;
        // The heads whose stagings the documents hold; this take's own head as of the take (a
        // newer commit would need a newer take, which makes this writer superseded anyway), so
        // it is not read again.
        let heads: HashSet<String> = docs
            .values()
            .filter_map(|d| d.get_document("next").ok()?.get_str("set").ok())
            .filter(|head| *head != take.head)
            .map(str::to_string)
            .collect();
        let mut committed = set_head::committed(&self.db, heads).await?;
        committed.insert(take.head.clone(), take.committed);
        Ok(docs
            .into_iter()
            .map(|(key, d)| {
                let generation = d.get_object_id("gen").ok();
                let current = d.get_str("status").ok().map(|status| {
                    (
                        d.get_str("hash").unwrap_or_default().to_string(),
                        status == set.live,
                    )
                });
                let elsewhere = partition
                    .iter()
                    .any(|(field, value)| d.get(field) != Some(value));
                let next = d.get_document("next").ok();
                let committed = next.filter(|next| {
                    let head = next.get_str("set").unwrap_or_default();
                    generation.is_some() && committed.get(head).copied().flatten() == generation
                });
                let staged_here = next.is_some_and(|next| {
                    committed.is_none() && next.get_str("set").ok() == Some(take.head.as_str())
                });
                let newer = staged_here
                    && next.is_some_and(|next| next.get_i64("take").is_ok_and(|n| n > take.number));
                let abandoned = staged_here && !newer && current.is_none();
                Stored {
                    key,
                    generation,
                    current,
                    committed: committed.cloned(),
                    elsewhere,
                    newer,
                    abandoned,
                }
            })
            .collect())
    }
}

/// The statements of one write: its stagings, then (after the commit) their applying.
pub(crate) struct Plan {
    stage: Vec<Document>,
    apply: Vec<Document>,
    /// Removals of the abandoned documents of keys this write does not produce.
    discard: Vec<Document>,
    counts: Counts,
    /// A newer take of the set has staged some of it: this write may not stage.
    newer_writer: bool,
}

/// What every staging of one plan shares: whose set, which take, when.
#[derive(Clone, Copy)]
struct Staging<'a> {
    tenant_id: &'a str,
    partition: &'a Document,
    take: &'a Take,
    now: DateTime,
}

impl KeyedSet {
    fn plan(
        &self,
        tenant_id: &str,
        partition: &Document,
        take: &Take,
        stored: Vec<Stored>,
        items: &[Item],
    ) -> Plan {
        let at = Staging {
            tenant_id,
            partition,
            take,
            now: DateTime::now(),
        };
        let mut plan = Plan {
            stage: Vec::new(),
            apply: Vec::new(),
            discard: Vec::new(),
            counts: Counts::default(),
            newer_writer: stored.iter().any(|s| s.newer),
        };
        let mut stored: HashMap<String, Stored> =
            stored.into_iter().map(|s| (s.key.clone(), s)).collect();
        for item in items {
            let hash = content_hash(&item.data);
            let found = stored.remove(&item.key);
            let state = found.as_ref().and_then(Stored::state);
            let elsewhere = found.as_ref().is_some_and(|s| s.elsewhere);
            match state {
                Some((old, true)) if old == hash && !elsewhere => plan.counts.unchanged += 1,
                Some(_) => plan.counts.updated += 1,
                None => plan.counts.created += 1,
            }
            let found_gen = found.as_ref().and_then(|s| s.generation);
            let unchanged = found.as_ref().is_some_and(|s| {
                s.committed.is_none() && !s.elsewhere && state == Some((hash.as_str(), true))
            });
            if unchanged {
                continue;
            }
            let mut next = partition.clone();
            next.insert("set", &take.head);
            next.insert("live", true);
            next.insert("hash", hash);
            next.insert("data", item.data.clone());
            self.stage(&mut plan, &at, &item.key, found_gen, next);
        }
        // What is left was not produced: retire what is live here, and apply (under this take)
        // the committed stagings of the rest, among them another partition's that moved a key
        // away from this one.
        for (key, found) in stored {
            let moved_away = found
                .committed
                .as_ref()
                .is_some_and(|next| next.get_str("set").is_ok_and(|head| head != take.head));
            let mut next = match (found.committed.clone(), found.state()) {
                (Some(committed), _) if moved_away => committed,
                (committed, Some((_, true))) => {
                    plan.counts.retired += 1;
                    let mut next = committed.unwrap_or_default();
                    next.insert("live", false);
                    next
                }
                (Some(committed), _) => committed,
                (None, _) => {
                    if found.abandoned {
                        plan.discard.push(batch::removal(self.filter(
                            tenant_id,
                            &key,
                            found.generation,
                        )));
                    }
                    continue;
                }
            };
            next.insert("set", &take.head);
            self.stage(&mut plan, &at, &key, found.generation, next);
        }
        plan
    }

    /// Adds the staging of `next` on document `key` (last staged under `gen`) and, for after
    /// the commit, its applying.
    fn stage(
        &self,
        plan: &mut Plan,
        at: &Staging,
        key: &str,
        generation: Option<ObjectId>,
        next: Document,
    ) {
        let Staging {
            tenant_id,
            partition,
            take,
            now,
        } = *at;
        let mut next = next;
        next.insert("take", take.number);
        let mut on_insert = partition.clone();
        on_insert.insert("first_seen_at", now);
        plan.stage.push(batch::statement(
            self.filter(tenant_id, key, generation),
            doc! {
                "$set": { "gen": take.generation, "next": &next },
                "$setOnInsert": on_insert,
            },
            generation.is_none(),
        ));
        let mut set = doc! { "updated_at": now };
        let mut unset = doc! { "next": "" };
        for (field, value) in &next {
            match field.as_str() {
                "set" | "live" | "take" => {}
                _ => {
                    set.insert(field.clone(), value.clone());
                }
            }
        }
        if next.get_bool("live").unwrap_or(false) {
            // A live item's last sighting is its set's newest commit; a stored one would go
            // stale at the next unchanged write, which writes nothing here.
            set.insert("status", self.live);
            unset.insert(self.retired_at, "");
            unset.insert("last_seen_at", "");
        } else {
            set.insert("status", self.retired);
            set.insert(self.retired_at, now);
            if let Some(seen) = take.committed_at {
                set.insert("last_seen_at", seen);
            }
        }
        plan.apply.push(batch::statement(
            self.filter(tenant_id, key, Some(take.generation)),
            doc! { "$set": set, "$unset": unset },
            false,
        ));
    }
}

#[cfg(test)]
mod tests;
