//! The five platform stages after the connector, each a job kind stamping one cell; each stage's
//! doc below says what its cell's `items_scanned` counts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use mongodb::bson::DateTime;
use mongodb::bson::oid::ObjectId;
use sv0_domain::category::{CHAIN, EVAL, EVIDENCE, STITCH, SYNC};
use sv0_domain::{
    CategoryName, Counts, EvidencePack, ForRun, Keyed, PackItem, RunWriter, ScanRun, content_hash,
};
use sv0_worker::HandlerError;

use crate::stage_runner::{Stage, Worked, into_handler};
use crate::{Pipeline, chains, kinds, rules};

/// `sync_ingestion` → `__sync`: the run's graph written as its source's full state. Counts the
/// entities in that state (new, changed and unchanged alike; an unchanged one is not rewritten).
pub struct SyncIngestion;

#[async_trait::async_trait]
impl Stage for SyncIngestion {
    fn kind(&self) -> &'static str {
        kinds::SYNC_INGESTION
    }
    fn cell(&self) -> &'static str {
        SYNC
    }
    fn next(&self) -> Option<&'static str> {
        Some(kinds::EVALUATE_FINDINGS)
    }
    async fn work(&self, pipeline: &Pipeline, run: &ScanRun) -> Result<Worked, HandlerError> {
        let domain = &pipeline.domain;
        let sync = domain
            .sync_of_run(&run.tenant_id, run.id)
            .await
            .map_err(into_handler)?;
        let counts = domain
            .write_entities(
                &run.tenant_id,
                &sync.source,
                ForRun::holder_of(run),
                &sync.graph,
            )
            .await
            .map_err(into_handler)?;
        superseded(run, "entities", counts);
        tracing::info!(run_id = %run.id, source = sync.source, ?counts, "entities synced");
        Ok(counts.current().into())
    }
}

/// `evaluate_findings` → `__eval`: the rules over the tenant's live entities. Counts findings
/// created, updated and resolved.
pub struct EvaluateFindings;

#[async_trait::async_trait]
impl Stage for EvaluateFindings {
    fn kind(&self) -> &'static str {
        kinds::EVALUATE_FINDINGS
    }
    fn cell(&self) -> &'static str {
        EVAL
    }
    fn next(&self) -> Option<&'static str> {
        Some(kinds::ASSEMBLE_CHAINS)
    }
    async fn work(&self, pipeline: &Pipeline, run: &ScanRun) -> Result<Worked, HandlerError> {
        let domain = &pipeline.domain;
        let entities = domain
            .live_entities(&run.tenant_id)
            .await
            .map_err(into_handler)?;
        let findings = rules::evaluate(&entities);
        let counts = domain
            .write_findings(&run.tenant_id, ForRun::holder_of(run), &findings)
            .await
            .map_err(into_handler)?;
        superseded(run, "findings", counts);
        Ok((counts.created + counts.updated + counts.retired).into())
    }
}

/// `assemble_chains` → `__chain`. Counts chains created and updated. Keeps at most
/// [`chains::MAX_CHAINS`], the first in path order; a run that reaches the cap still succeeds,
/// and its cell's `errors` says the chains were capped.
pub struct AssembleChains;

#[async_trait::async_trait]
impl Stage for AssembleChains {
    fn kind(&self) -> &'static str {
        kinds::ASSEMBLE_CHAINS
    }
    fn cell(&self) -> &'static str {
        CHAIN
    }
    fn next(&self) -> Option<&'static str> {
        Some(kinds::STITCH_PATHS)
    }
    async fn work(&self, pipeline: &Pipeline, run: &ScanRun) -> Result<Worked, HandlerError> {
        materialize_chains(pipeline, run).await
    }
}

pub(crate) async fn materialize_chains(
    pipeline: &Pipeline,
    run: &ScanRun,
) -> Result<Worked, HandlerError> {
    let domain = &pipeline.domain;
    let tenant_id = &run.tenant_id;
    let entities = domain
        .live_entities(tenant_id)
        .await
        .map_err(into_handler)?;
    let assembled = chains::assemble(&entities);
    capped(run, "chains", &assembled);
    let counts = domain
        .write_chains(tenant_id, ForRun::holder_of(run), &assembled.items)
        .await
        .map_err(into_handler)?;
    superseded(run, "chains", counts);
    Ok(Worked {
        items: counts.created + counts.updated,
        notes: assembled.capped.into_iter().collect(),
    })
}

/// `stitch_paths` → `__stitch`. Counts the stitched paths materialized; the cell is also stamped
/// on every other run whose sync contributed a joined chain, with the paths its source takes part
/// in. Keeps at most [`chains::MAX_STITCHED_PATHS`] listing at most
/// [`chains::MAX_STITCHED_CHAIN_REFS`] chain keys between them, the first in path order; a run
/// that reaches a cap still succeeds, and the cells' `errors` say the paths were capped.
pub struct StitchPaths;

#[async_trait::async_trait]
impl Stage for StitchPaths {
    fn kind(&self) -> &'static str {
        kinds::STITCH_PATHS
    }
    fn cell(&self) -> &'static str {
        STITCH
    }
    fn next(&self) -> Option<&'static str> {
        Some(kinds::BUILD_EVIDENCE_PACK)
    }
    async fn work(&self, pipeline: &Pipeline, run: &ScanRun) -> Result<Worked, HandlerError> {
        let started = DateTime::now();
        let (worked, by_source) = materialize_stitched(pipeline, run).await?;
        fan_out(pipeline, run, &by_source, &worked.notes, started).await?;
        Ok(worked)
    }
}

/// Writes the tenant's stitched paths; returns how many there are, with what was capped, and
/// how many each source takes part in.
pub(crate) async fn materialize_stitched(
    pipeline: &Pipeline,
    run: &ScanRun,
) -> Result<(Worked, BTreeMap<String, u64>), HandlerError> {
    let domain = &pipeline.domain;
    let tenant_id = &run.tenant_id;
    let entities = domain
        .live_entities(tenant_id)
        .await
        .map_err(into_handler)?;
    let chains = domain.live_chains(tenant_id).await.map_err(into_handler)?;
    let stitched = chains::stitch(&chains, &entities);
    capped(run, "stitched_paths", &stitched);
    let counts = domain
        .write_stitched_paths(tenant_id, ForRun::holder_of(run), &stitched.items)
        .await
        .map_err(into_handler)?;
    superseded(run, "stitched_paths", counts);
    // The sources (connector instances, ingests) whose entities each path runs through.
    let source_of: HashMap<&str, &str> = entities
        .iter()
        .map(|e| (e.external_id.as_str(), e.source.as_str()))
        .collect();
    let mut by_source = BTreeMap::new();
    for path in &stitched.items {
        let sources: BTreeSet<&str> = path
            .path
            .iter()
            .filter_map(|id| source_of.get(id.as_str()).copied())
            .collect();
        for source in sources {
            *by_source.entry(source.to_string()).or_default() += 1;
        }
    }
    let worked = Worked {
        items: counts.current(),
        notes: stitched.capped.into_iter().collect(),
    };
    Ok((worked, by_source))
}

/// Stamps `__stitch` on the other finished runs whose syncs last delivered a source that takes
/// part. A participant still in progress is left to its own stitch stage, which would see a
/// stamp from here as its own work done.
async fn fan_out(
    pipeline: &Pipeline,
    run: &ScanRun,
    by_source: &BTreeMap<String, u64>,
    notes: &[String],
    started: DateTime,
) -> Result<(), HandlerError> {
    let domain = &pipeline.domain;
    let cell = CategoryName::parse(STITCH).expect("a stage cell");
    let mut participants: BTreeMap<ObjectId, u64> = BTreeMap::new();
    for (source, paths) in by_source {
        if let Some(other) = domain
            .latest_sync_run(&run.tenant_id, source)
            .await
            .map_err(into_handler)?
            .filter(|other| *other != run.id)
        {
            *participants.entry(other).or_default() += paths;
        }
    }
    let ids: Vec<ObjectId> = participants.keys().copied().collect();
    let statuses = domain.run_statuses(&ids).await.map_err(into_handler)?;
    for (other, paths) in participants {
        if !statuses.get(&other).is_some_and(|s| s.is_finished()) {
            continue;
        }
        domain
            .stamp_cell(
                &run.tenant_id,
                other,
                RunWriter::Outside,
                &cell,
                &Worked {
                    items: paths,
                    notes: notes.to_vec(),
                }
                .cell(started),
            )
            .await
            .map_err(into_handler)?;
        tracing::info!(run_id = %run.id, participant = %other, paths, "__stitch stamped on a participating run");
    }
    Ok(())
}

/// `build_evidence_pack` → `__evidence`: one pack per run, listing the tenant's open findings,
/// live chains and stitched paths with their hashes. Counts the run's pack: 1 (a replay finds the
/// pack the first try stored and keeps it).
pub struct BuildEvidencePack;

#[async_trait::async_trait]
impl Stage for BuildEvidencePack {
    fn kind(&self) -> &'static str {
        kinds::BUILD_EVIDENCE_PACK
    }
    fn cell(&self) -> &'static str {
        EVIDENCE
    }
    fn next(&self) -> Option<&'static str> {
        None
    }
    async fn work(&self, pipeline: &Pipeline, run: &ScanRun) -> Result<Worked, HandlerError> {
        let domain = &pipeline.domain;
        let tenant = &run.tenant_id;
        let findings = items(domain.open_findings(tenant).await.map_err(into_handler)?);
        let chains = items(domain.live_chains(tenant).await.map_err(into_handler)?);
        let stitched_paths = items(
            domain
                .live_stitched_paths(tenant)
                .await
                .map_err(into_handler)?,
        );
        let listed = mongodb::bson::to_document(&PackContent {
            findings: &findings,
            chains: &chains,
            stitched_paths: &stitched_paths,
        })
        .map_err(HandlerError::permanent)?;
        let pack = EvidencePack {
            id: ObjectId::new(),
            tenant_id: tenant.clone(),
            scan_run_id: run.id,
            hash: content_hash(&listed),
            fence: None,
            findings,
            chains,
            stitched_paths,
            created_at: DateTime::now(),
        };
        let stored = domain
            .put_evidence_pack(&pack, ForRun::holder_of(run))
            .await
            .map_err(into_handler)?;
        tracing::info!(run_id = %run.id, pack = %stored.id, hash = stored.hash, "evidence pack built");
        Ok(1.into())
    }
}

/// Logs a set write that a newer writer of the same set took over before it committed: another
/// run's stage of the tenant (which started later, so its picture holds this one's), or a newer
/// holder of this stage.
fn superseded(run: &ScanRun, set: &str, counts: Counts) {
    if counts.superseded {
        tracing::info!(run_id = %run.id, tenant_id = run.tenant_id, set,
            "a newer writer took the set over before this one committed; its picture stands");
    }
}

/// Logs an enumeration that stopped at its cap: its note goes to the cell, this says which run.
fn capped<T>(run: &ScanRun, set: &str, bounded: &chains::Bounded<T>) {
    if let Some(why) = &bounded.capped {
        tracing::warn!(run_id = %run.id, tenant_id = run.tenant_id, set, kept = bounded.items.len(),
            explored = bounded.explored, why, "enumeration capped");
    }
}

#[derive(serde::Serialize)]
struct PackContent<'a> {
    findings: &'a [PackItem],
    chains: &'a [PackItem],
    stitched_paths: &'a [PackItem],
}

fn items<T>(keyed: Vec<Keyed<T>>) -> Vec<PackItem> {
    let sorted: BTreeSet<(String, String)> = keyed.into_iter().map(|k| (k.key, k.hash)).collect();
    sorted
        .into_iter()
        .map(|(key, hash)| PackItem { key, hash })
        .collect()
}
