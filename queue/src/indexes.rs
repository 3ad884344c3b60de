//! The `jobs` indexes, created idempotently at start-up. Each names the query it serves.
//!
//! On the devdb stand only the unique ones do anything (it ignores non-unique indexes); they are
//! here for MongoDB, where they cost what any index costs and serve the hot paths.

use mongodb::IndexModel;
use mongodb::bson::doc;
use mongodb::options::IndexOptions;

use crate::{Queue, Result};

fn named(keys: mongodb::bson::Document, name: &str) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(IndexOptions::builder().name(name.to_string()).build())
        .build()
}

impl Queue {
    /// Creates the queue's indexes; safe to call from every process at every start.
    pub async fn ensure_indexes(&self) -> Result<()> {
        let indexes = vec![
            // claim: {status: queued, kind: {$in}, run_at: {$lte: now}} sorted {priority: -1, run_at: 1}.
            named(
                doc! {"status": 1, "kind": 1, "priority": -1, "run_at": 1},
                "claim",
            ),
            // enqueue: a second job with the same dedup key is refused. Sparse, not partial: the
            // stand ignores partial filters, and for "unique when present" both mean the same.
            IndexModel::builder()
                .keys(doc! {"dedup_key": 1})
                .options(
                    IndexOptions::builder()
                        .name("dedup".to_string())
                        .unique(true)
                        .sparse(true)
                        .build(),
                )
                .build(),
            // reaper: {status: running, lease.expires_at: {$lte: now}}.
            named(doc! {"status": 1, "lease.expires_at": 1}, "reap"),
            // pruner: {status: {$in: finals}, finished_at: {$lte: cutoff}}.
            named(doc! {"status": 1, "finished_at": 1}, "prune"),
            // cancel_group: {group_id, status}.
            named(doc! {"group_id": 1, "status": 1}, "group"),
            // the reaper's cancel sweep: {status: queued, cancel_requested: true}, in every worker
            // on every pass. No other index has `cancel_requested`, so without this one each pass
            // read every queued job. Partial, so it holds only the few jobs marked for cancelling
            // (every job stores the mark, `false` until asked). The stand ignores partial filters.
            IndexModel::builder()
                .keys(doc! {"status": 1, "cancel_requested": 1})
                .options(
                    IndexOptions::builder()
                        .name("cancel_sweep".to_string())
                        .partial_filter_expression(doc! {"cancel_requested": true})
                        .build(),
                )
                .build(),
            // operator: {tenant_id, ...} sorted {_id: -1}, paged by {_id: {$lt: after}}; the
            // payload search's bound counts through it. Neither key ever changes, so only inserts
            // and prunes maintain it.
            named(doc! {"tenant_id": 1, "_id": -1}, "tenant"),
        ];
        self.jobs.create_indexes(indexes).await?;
        Ok(())
    }
}
