//! sv0 pipeline's domain: what a scan is and where its results live.
//!
//! This crate owns the domain's types and collections: `scan_runs` (the pipeline-run root, with
//! its category cells), `tenants`, `connector_instances`, `scan_scopes`, `connector_syncs`,
//! `entities`, `findings`, `chains`, `stitched_paths`, `evidence_packs` and `set_heads` (who may
//! write each keyed set now), their indexes, and every write to them; the category-name rule; the
//! connector's graph format. Every document of a tenant carries `tenant_id`, and every query of a
//! tenant's data filters by it.
//!
//! It must not run anything: no job kinds, no connector processes, no credentials (the pipeline
//! crate does those), and it never writes the queue's `jobs` collection.

mod batch;
pub mod category;
mod entities;
mod error;
mod findings;
pub mod graph;
pub mod limits;
mod listing;
mod materialize;
mod retention;
pub mod run;
pub mod run_fence;
mod run_lifecycle;
pub mod schedule;
mod scopes;
pub mod set_head;
mod setup;
mod sightings;
mod syncs;
mod tenancy;

pub use category::{CategoryName, CategoryNameError};
pub use entities::{Edge, Entity};
pub use error::{DomainError, Result};
pub use findings::{Chain, Finding, Keyed, Severity, StitchedPath};
pub use graph::{EdgeType, EntityType, Graph, GraphEdge, GraphEntity};
pub use listing::{RunFilter, ScopeFilter};
pub use materialize::{Counts, content_hash};
pub use retention::{PrunedHistory, Retention};
pub use run::{
    Budget, CategoryResult, CellStatus, MAX_RUNTIME_SECONDS, Materializer, RunStatus, ScanRun,
    Trigger,
};
pub use run_fence::{FenceEntry, ForRun, RunFence, RunWriter};
pub use schedule::{Cadence, CatchUp, CatchUpRun, Overlap, Schedule, Slots};
pub use scopes::{ClaimedScopes, ScopeSettlement};
pub use setup::{SetUpTenant, TenantSetup};
pub use sightings::ItemSet;
pub use syncs::{ConnectorSync, EvidencePack, PackItem, RunRecord};
pub use tenancy::{
    ConnectorInstance, InstanceStatus, InstanceUpdate, Pause, ScanScope, ScopeClaim, ScopeUpdate,
    Tenant, TenantStatus, validate_budget, validate_kind, validate_tenant_id,
};

use mongodb::bson::{Document, doc};
use mongodb::options::{IndexOptions, ReadPreference};
use mongodb::{Collection, Database, IndexModel};
use set_head::SET_HEADS;

/// The domain's collections in one database.
#[derive(Debug, Clone)]
pub struct Domain {
    db: Database,
    /// The same database for the reads that may lag: list pages.
    lists: Database,
}

impl Domain {
    pub fn new(db: &Database) -> Domain {
        Domain {
            db: sv0_storage::durable(db),
            lists: sv0_storage::durable(db),
        }
    }

    /// Sends the list pages' reads where `preference` says, say to a secondary: a page may then
    /// lag behind the writes just made. Every other read stays on the primary.
    pub fn lag_tolerant_reads(mut self, preference: ReadPreference) -> Domain {
        self.lists = sv0_storage::lag_tolerant(&self.db, preference);
        self
    }

    /// `collection` as the list pages read it.
    fn listed<T: Send + Sync>(&self, collection: Collection<T>) -> Collection<T> {
        self.lists.collection(collection.name())
    }

    fn runs(&self) -> Collection<ScanRun> {
        self.db.collection("scan_runs")
    }
    fn tenants(&self) -> Collection<Tenant> {
        self.db.collection("tenants")
    }
    fn instances(&self) -> Collection<ConnectorInstance> {
        self.db.collection("connector_instances")
    }
    fn scopes(&self) -> Collection<ScanScope> {
        self.db.collection("scan_scopes")
    }
    fn syncs(&self) -> Collection<ConnectorSync> {
        self.db.collection("connector_syncs")
    }
    fn packs(&self) -> Collection<EvidencePack> {
        self.db.collection("evidence_packs")
    }

    /// Creates every index the domain's queries use (idempotent; run at start-up). Each names the
    /// query it serves. Unique indexes carry the idempotency of the stages' writes; on the stand,
    /// they are also the only ones it uses (devdb ignores the rest), which is why every write by
    /// key filters on exactly a unique index's fields.
    pub async fn ensure_indexes(&self) -> Result<()> {
        let unique = |keys: Document| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().unique(true).build())
                .build()
        };
        let plain = |keys: Document| IndexModel::builder().keys(keys).build();
        // A keyed set's stagings and their applying filter on the item's key and the `gen` it
        // was last staged under (crate::materialize). On MongoDB the key's own unique index
        // serves them; on the stand only a unique index of exactly these fields keeps each
        // write off a full scan of the collection.
        let staged = |keys: Document| {
            IndexModel::builder()
                .keys(keys)
                .options(
                    IndexOptions::builder()
                        .unique(true)
                        .name("staged".to_string())
                        .build(),
                )
                .build()
        };
        let sets: [(&str, Vec<IndexModel>); 10] = [
            (
                "scan_runs",
                vec![
                    // Run creation is idempotent per (scope, slot) and per (deploy, tenant); most
                    // runs have no key, hence sparse.
                    IndexModel::builder()
                        .keys(doc! { "dedup_key": 1 })
                        .options(IndexOptions::builder().unique(true).sparse(true).build())
                        .build(),
                    // A tenant's runs, newest first (`recent_runs`, for `sv0 runs`); `_id` is the
                    // sort's tie-break, so without it the sort cannot come from the index.
                    plain(doc! { "tenant_id": 1, "created_at": -1, "_id": -1 }),
                    // A tenant's runs a page at a time, newest first by id (the admin API's
                    // list): without it MongoDB sorts the tenant's whole run history per page.
                    plain(doc! { "tenant_id": 1, "_id": -1 }),
                    // A run by id within its tenant (every write that is not a holder's), and a
                    // stage holder's writes, which filter on its fence too (crate::run_fence): on the
                    // stand, only a unique index of exactly a filter's fields keeps it off a full
                    // scan of the runs.
                    unique(doc! { "_id": 1, "tenant_id": 1 }),
                    IndexModel::builder()
                        .keys(doc! { "_id": 1, "tenant_id": 1, "fence": 1 })
                        .options(
                            IndexOptions::builder()
                                .unique(true)
                                .name("fence".to_string())
                                .build(),
                        )
                        .build(),
                    // The orphaned-run reaper: running runs by when they were last taken up.
                    plain(doc! { "status": 1, "last_claimed_at": 1 }),
                    // The same reaper: queued runs whose first job it has not confirmed lately
                    // (both branches of its `$or` are ranges of this index). Partial, so the run
                    // history stays out of it.
                    IndexModel::builder()
                        .keys(doc! { "first_job_confirmed_at": 1, "created_at": 1, "_id": 1 })
                        .options(
                            IndexOptions::builder()
                                .name("unconfirmed_queued".to_string())
                                .partial_filter_expression(doc! { "status": "queued" })
                                .build(),
                        )
                        .build(),
                ],
            ),
            // A tenant's instances and scopes (lists, the scheduler's scope lookups); an
            // instance by id within its tenant (as for scopes, below).
            (
                "connector_instances",
                vec![
                    plain(doc! { "tenant_id": 1 }),
                    unique(doc! { "_id": 1, "tenant_id": 1 }),
                ],
            ),
            (
                "scan_scopes",
                vec![
                    plain(doc! { "tenant_id": 1, "instance_id": 1 }),
                    // The scheduler's claim and its next-due look-up: unpaused scopes, earliest
                    // due first. A paused scope keeps its `due_at`; with `due_at` alone, every
                    // tick walked past the paused scopes at the front of the index.
                    plain(doc! { "paused": 1, "due_at": 1 }),
                    // A claim's read-back, and giving a claim back.
                    plain(doc! { "claim.nonce": 1 }),
                    // A scope by id within its tenant, and a holder's fenced settle by id and
                    // nonce. On MongoDB the `_id` index serves both and these cost a little per
                    // scope write; on the stand, which uses an index only when a query's fields
                    // are exactly a unique index's, they keep each from scanning every scope (a
                    // tick of 10,000 scopes was quadratic without them).
                    unique(doc! { "_id": 1, "tenant_id": 1 }),
                    unique(doc! { "_id": 1, "claim.nonce": 1 }),
                ],
            ),
            (
                "connector_syncs",
                vec![
                    // One sync per run: a replayed execute_scan finds the first one's, and a
                    // newer holder's replaces an older one's (as for evidence packs, below).
                    unique(doc! { "scan_run_id": 1 }),
                    unique(doc! { "scan_run_id": 1, "fence": 1 }),
                    // A source's latest sync (the stitch stage's fan-out), by the same sort with
                    // its `_id` tie-break: without it every sync of the source (each holding
                    // a graph) was read and sorted to return one.
                    plain(doc! { "tenant_id": 1, "source": 1, "created_at": -1, "_id": -1 }),
                ],
            ),
            (
                "entities",
                vec![
                    // Upsert by external id.
                    unique(doc! { "tenant_id": 1, "external_id": 1 }),
                    staged(doc! { "tenant_id": 1, "external_id": 1, "gen": 1 }),
                    // A source's full state (the sync's read before it writes).
                    plain(doc! { "tenant_id": 1, "source": 1 }),
                    // The tenant's live entities (rules, chains).
                    plain(doc! { "tenant_id": 1, "status": 1 }),
                ],
            ),
            (
                "findings",
                vec![
                    unique(doc! { "tenant_id": 1, "key": 1 }),
                    staged(doc! { "tenant_id": 1, "key": 1, "gen": 1 }),
                    plain(doc! { "tenant_id": 1, "status": 1 }),
                ],
            ),
            (
                "chains",
                vec![
                    unique(doc! { "tenant_id": 1, "key": 1 }),
                    staged(doc! { "tenant_id": 1, "key": 1, "gen": 1 }),
                    plain(doc! { "tenant_id": 1, "status": 1 }),
                ],
            ),
            (
                "stitched_paths",
                vec![
                    unique(doc! { "tenant_id": 1, "key": 1 }),
                    staged(doc! { "tenant_id": 1, "key": 1, "gen": 1 }),
                    plain(doc! { "tenant_id": 1, "status": 1 }),
                ],
            ),
            (
                "evidence_packs",
                vec![
                    // One pack per run; a newer holder's pack replaces an older one's by a
                    // compare-and-set on the fence (crate::syncs), which on the stand needs a
                    // unique index of exactly its fields.
                    unique(doc! { "scan_run_id": 1 }),
                    unique(doc! { "scan_run_id": 1, "fence": 1 }),
                    plain(doc! { "tenant_id": 1, "created_at": -1 }),
                ],
            ),
            // A set's head: taken by `_id`, committed by `_id` and take number.
            (SET_HEADS, vec![unique(doc! { "_id": 1, "taken": 1 })]),
        ];
        for (collection, indexes) in sets {
            self.db
                .collection::<Document>(collection)
                .create_indexes(indexes)
                .await?;
        }
        // Indexes an earlier version created, now replaced by a longer key above that serves
        // their queries too: dropped, so an upgraded deployment does not maintain both.
        for (collection, name) in SUPERSEDED_INDEXES {
            let collection = self.db.collection::<Document>(collection);
            if collection
                .list_index_names()
                .await?
                .iter()
                .any(|n| n == name)
            {
                collection.drop_index(name).await?;
            }
        }
        Ok(())
    }
}

/// `(collection, index name)` of indexes [`Domain::ensure_indexes`] drops.
const SUPERSEDED_INDEXES: [(&str, &str); 3] = [
    ("scan_runs", "tenant_id_1_created_at_-1"),
    ("scan_scopes", "due_at_1"),
    ("connector_syncs", "tenant_id_1_source_1_created_at_-1"),
];
