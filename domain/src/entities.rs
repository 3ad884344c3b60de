//! `entities`: the tenant's current inventory, one document per `(tenant_id, external_id)`,
//! written in full-state syncs per source (a connector instance, or a named ingest): an entity the
//! source's latest sync did not include is marked `gone`.

use mongodb::bson::{self, Document, doc};
use serde::{Deserialize, Serialize};

use crate::Domain;
use crate::error::{DomainError, Result};
use crate::graph::{EdgeType, EntityType, Graph};
use crate::materialize::{Counts, Item, KeyedSet};
use crate::run_fence::ForRun;

pub(crate) const ENTITIES: KeyedSet = KeyedSet {
    collection: "entities",
    key_field: "external_id",
    live: "live",
    retired: "gone",
    retired_at: "gone_at",
};

/// An entity as the stages read it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub external_id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub entity_type: EntityType,
    pub cloud: String,
    pub name: String,
    pub properties: Document,
    /// Outgoing edges.
    pub edges: Vec<Edge>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    pub to: String,
    #[serde(rename = "type")]
    pub edge_type: EdgeType,
}

impl Entity {
    pub fn flag(&self, name: &str) -> bool {
        self.properties.get_bool(name).unwrap_or(false)
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.properties.get_str(name).ok()
    }
}

/// The stored content of an entity (what its hash covers).
#[derive(Serialize, Deserialize)]
struct EntityData {
    #[serde(rename = "type")]
    entity_type: EntityType,
    cloud: String,
    name: String,
    properties: Document,
    edges: Vec<Edge>,
}

impl Domain {
    /// Writes `graph` as the full state of `source` for `tenant_id`, on behalf of `by`: every
    /// entity upserted, those of the source it no longer has marked gone. Returns what changed.
    pub async fn write_entities(
        &self,
        tenant_id: &str,
        source: &str,
        by: ForRun,
        graph: &Graph,
    ) -> Result<Counts> {
        let mut edges: std::collections::HashMap<&str, Vec<Edge>> = Default::default();
        for edge in &graph.edges {
            edges.entry(edge.from.as_str()).or_default().push(Edge {
                to: edge.to.clone(),
                edge_type: edge.edge_type,
            });
        }
        let mut items = Vec::with_capacity(graph.entities.len());
        for entity in &graph.entities {
            let mut out = edges.remove(entity.id.as_str()).unwrap_or_default();
            out.sort_by(|a, b| (&a.to, a.edge_type).cmp(&(&b.to, b.edge_type)));
            let properties = bson::to_document(&entity.properties).map_err(|e| {
                DomainError::invalid(
                    format!("graph entity {:?} properties", entity.id),
                    e.to_string(),
                )
            })?;
            let data = EntityData {
                entity_type: entity.entity_type,
                cloud: entity.cloud.clone(),
                name: entity.name.clone(),
                properties,
                edges: out,
            };
            items.push(Item {
                key: entity.id.clone(),
                data: bson::to_document(&data)?,
            });
        }
        self.write_set(&ENTITIES, tenant_id, doc! { "source": source }, by, items)
            .await
    }

    /// Every live entity of the tenant, from every source, by external id.
    pub async fn live_entities(&self, tenant_id: &str) -> Result<Vec<Entity>> {
        let docs = ENTITIES.live(&self.db, tenant_id, doc! {}).await?;
        docs.into_iter()
            .map(|d| {
                let external_id = d.get_str("external_id").unwrap_or_default().to_string();
                let source = d.get_str("source").unwrap_or_default().to_string();
                let data: EntityData = d
                    .get_document("data")
                    .ok()
                    .and_then(|data| bson::from_document(data.clone()).ok())
                    .ok_or_else(|| DomainError::Malformed {
                        what: "entity",
                        id: external_id.clone(),
                        reason: "its `data` does not read as an entity".into(),
                    })?;
                Ok(Entity {
                    external_id,
                    source,
                    entity_type: data.entity_type,
                    cloud: data.cloud,
                    name: data.name,
                    properties: data.properties,
                    edges: data.edges,
                })
            })
            .collect()
    }

    /// How many live entities `source` has: what its latest sync held.
    pub async fn count_live_entities(&self, tenant_id: &str, source: &str) -> Result<u64> {
        Ok(self
            .db
            .collection::<Document>(ENTITIES.collection)
            .count_documents(
                doc! { "tenant_id": tenant_id, "source": source, "status": ENTITIES.live },
            )
            .await?)
    }
}
