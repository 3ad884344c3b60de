//! When an item was last seen. A stage writes its set in full, so every item live in a set was
//! seen at the set's newest commit; reading that one time from the set's head replaces a write
//! per item per run. A retired item keeps its own `last_seen_at`, written when it was retired.

use mongodb::bson::{DateTime, Document, doc};

use crate::Domain;
use crate::entities::ENTITIES;
use crate::error::Result;
use crate::findings::{CHAINS, FINDINGS, STITCHED_PATHS};
use crate::set_head;

/// A tenant's keyed set, as [`Domain::last_seen`] names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemSet<'a> {
    /// The entities one source delivered.
    Entities {
        source: &'a str,
    },
    Findings,
    Chains,
    StitchedPaths,
}

impl Domain {
    /// When every item live in `tenant_id`'s `set` was last seen: the set's newest write. `None`
    /// for a set never written.
    pub async fn last_seen(&self, tenant_id: &str, set: ItemSet<'_>) -> Result<Option<DateTime>> {
        let (keyed, partition) = match set {
            ItemSet::Entities { source } => (&ENTITIES, doc! { "source": source }),
            ItemSet::Findings => (&FINDINGS, doc! {}),
            ItemSet::Chains => (&CHAINS, doc! {}),
            ItemSet::StitchedPaths => (&STITCHED_PATHS, doc! {}),
        };
        set_head::seen_at(&self.db, &keyed.head_id(tenant_id, &partition)).await
    }

    /// Removes the `last_seen_at` that live items stored when every write touched it: it stopped
    /// moving, and only the set's head says when they were last seen. Returns how many items
    /// lost it; harmless to run again (`sv0 migrate` does).
    pub async fn forget_stored_sightings(&self) -> Result<u64> {
        let mut forgotten = 0;
        for keyed in [&ENTITIES, &FINDINGS, &CHAINS, &STITCHED_PATHS] {
            forgotten += self
                .db
                .collection::<Document>(keyed.collection)
                .update_many(
                    doc! { "status": keyed.live, "last_seen_at": { "$exists": true } },
                    doc! { "$unset": { "last_seen_at": "" } },
                )
                .await?
                .modified_count;
        }
        Ok(forgotten)
    }
}
