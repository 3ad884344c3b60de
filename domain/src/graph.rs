//! The connector's graph (`graph.json`, docs/connector-contract.md): what a scan saw, as entities
//! and the edges between them. Validated once, when it enters the pipeline; the stages then trust
//! it.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::{DomainError, Result};

/// The largest graph one sync may carry: the sync document holds it, and a MongoDB document holds
/// at most 16 MiB.
pub const MAX_GRAPH_ENTITIES: usize = 50_000;
/// The most edges one sync may carry: two per entity at [`MAX_GRAPH_ENTITIES`], more than real
/// inventories have (a machine runs as one identity or two, an identity has a few roles). An edge
/// takes 50 bytes or more in the sync document, so a graph with entities and ids of real size
/// hits the 16 MiB before this; the cap refuses the rest by count, with a reason, and bounds the
/// work of reading a graph before the stages' own caps on chains and stitched paths apply.
pub const MAX_GRAPH_EDGES: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityType {
    Machine,
    Identity,
    Role,
    Storage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeType {
    /// machine → identity
    RunsAs,
    /// identity → role
    HasRole,
    /// role → storage
    CanAccess,
}

impl EdgeType {
    /// The entity types an edge of this type joins, from → to.
    pub fn joins(self) -> (EntityType, EntityType) {
        match self {
            EdgeType::RunsAs => (EntityType::Machine, EntityType::Identity),
            EdgeType::HasRole => (EntityType::Identity, EntityType::Role),
            EdgeType::CanAccess => (EntityType::Role, EntityType::Storage),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphEntity {
    pub id: String,
    #[serde(rename = "type")]
    pub entity_type: EntityType,
    pub cloud: String,
    pub name: String,
    #[serde(default)]
    pub properties: serde_json::Map<String, serde_json::Value>,
}

impl GraphEntity {
    /// A boolean property; absent or not a boolean reads as false.
    pub fn flag(&self, name: &str) -> bool {
        self.properties
            .get(name)
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    }

    /// A string property.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.properties
            .get(name)
            .and_then(serde_json::Value::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphEdge {
    pub from: String,
    pub to: String,
    #[serde(rename = "type")]
    pub edge_type: EdgeType,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Graph {
    pub entities: Vec<GraphEntity>,
    #[serde(default)]
    pub edges: Vec<GraphEdge>,
}

impl Graph {
    /// Parses and validates a `graph.json`; the error names the first offending field.
    pub fn from_json(bytes: &[u8]) -> Result<Graph> {
        let graph: Graph = serde_json::from_slice(bytes)
            .map_err(|e| DomainError::invalid("graph.json", e.to_string()))?;
        graph.validate()?;
        Ok(graph)
    }

    /// Ids unique and non-empty, at most [`MAX_GRAPH_ENTITIES`] entities and [`MAX_GRAPH_EDGES`]
    /// edges, every edge joining two entities of the graph of the types its edge type joins.
    pub fn validate(&self) -> Result<()> {
        if self.entities.len() > MAX_GRAPH_ENTITIES {
            return Err(DomainError::invalid(
                "graph.entities",
                format!(
                    "{} entities; at most {MAX_GRAPH_ENTITIES} per sync",
                    self.entities.len()
                ),
            ));
        }
        if self.edges.len() > MAX_GRAPH_EDGES {
            return Err(DomainError::invalid(
                "graph.edges",
                format!(
                    "{} edges; at most {MAX_GRAPH_EDGES} per sync",
                    self.edges.len()
                ),
            ));
        }
        let mut types = std::collections::HashMap::with_capacity(self.entities.len());
        for (i, entity) in self.entities.iter().enumerate() {
            if entity.id.is_empty() || entity.id.len() > 512 {
                return Err(DomainError::invalid(
                    format!("graph.entities[{i}].id"),
                    "must be 1 to 512 characters",
                ));
            }
            // Lists, findings and evidence packs show these; the properties are stored as they
            // are. Whoever wrote the graph (a connector, an API caller), it is checked here.
            for (field, value) in [
                ("id", &entity.id),
                ("cloud", &entity.cloud),
                ("name", &entity.name),
            ] {
                crate::limits::check_text(&format!("graph.entities[{i}].{field}"), value)?;
            }
            let properties = serde_json::Value::Object(entity.properties.clone());
            crate::limits::check_json(&format!("graph.entities[{i}].properties"), &properties)?;
            for (key, value) in &entity.properties {
                storable(&format!("graph.entities[{i}].properties.{key}"), value)?;
            }
            if types
                .insert(entity.id.as_str(), entity.entity_type)
                .is_some()
            {
                return Err(DomainError::invalid(
                    format!("graph.entities[{i}].id"),
                    format!("{:?} appears more than once", entity.id),
                ));
            }
        }
        let mut seen = HashSet::with_capacity(self.edges.len());
        for (i, edge) in self.edges.iter().enumerate() {
            let (from_type, to_type) = edge.edge_type.joins();
            for (end, id, wanted) in [("from", &edge.from, from_type), ("to", &edge.to, to_type)] {
                match types.get(id.as_str()) {
                    None => {
                        return Err(DomainError::invalid(
                            format!("graph.edges[{i}].{end}"),
                            format!("{id:?} is not an entity of this graph"),
                        ));
                    }
                    Some(&actual) if actual != wanted => {
                        return Err(DomainError::invalid(
                            format!("graph.edges[{i}].{end}"),
                            format!(
                                "{id:?} is a {actual:?}; a {:?} edge needs a {wanted:?} here",
                                edge.edge_type
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
            // A repeated edge would only repeat chains; refuse it as the connector's mistake.
            if !seen.insert((edge.from.as_str(), edge.to.as_str(), edge.edge_type)) {
                return Err(DomainError::invalid(
                    format!("graph.edges[{i}]"),
                    "appears more than once",
                ));
            }
        }
        Ok(())
    }
}

/// BSON has no unsigned 64-bit integer: a JSON integer past `i64::MAX` cannot be stored, and
/// is refused here, by its path, before any document of the run is written.
fn storable(path: &str, value: &serde_json::Value) -> Result<()> {
    match value {
        serde_json::Value::Number(n) if n.is_u64() && n.as_i64().is_none() => Err(
            DomainError::invalid(path, format!("{n} is larger than a 64-bit signed integer")),
        ),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| storable(&format!("{path}[{i}]"), item)),
        serde_json::Value::Object(fields) => fields
            .iter()
            .try_for_each(|(key, item)| storable(&format!("{path}.{key}"), item)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(json: serde_json::Value) -> Result<Graph> {
        Graph::from_json(json.to_string().as_bytes())
    }

    fn field(result: Result<Graph>) -> String {
        match result {
            Err(DomainError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid-input error, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_graph_reads() {
        let g = graph(serde_json::json!({
            "entities": [
                {"id": "m", "type": "machine", "cloud": "aws", "name": "m", "properties": {"internet_exposed": true}},
                {"id": "i", "type": "identity", "cloud": "aws", "name": "i"}
            ],
            "edges": [{"from": "m", "to": "i", "type": "runs_as"}]
        }))
        .unwrap();
        assert!(g.entities[0].flag("internet_exposed"));
        assert!(!g.entities[1].flag("admin"));
    }

    #[test]
    fn each_mistake_is_named() {
        let m = serde_json::json!({"id": "m", "type": "machine", "cloud": "aws", "name": "m"});
        let i = serde_json::json!({"id": "i", "type": "identity", "cloud": "aws", "name": "i"});
        assert_eq!(
            field(graph(serde_json::json!({"entities": [m, m]}))),
            "graph.entities[1].id"
        );
        assert_eq!(
            field(graph(
                serde_json::json!({"entities": [m], "edges": [{"from": "m", "to": "x", "type": "runs_as"}]})
            )),
            "graph.edges[0].to"
        );
        assert_eq!(
            field(graph(
                serde_json::json!({"entities": [m, i], "edges": [{"from": "i", "to": "m", "type": "runs_as"}]})
            )),
            "graph.edges[0].from"
        );
        assert_eq!(
            field(graph(serde_json::json!({"entities": [m, i], "edges": [
                {"from": "m", "to": "i", "type": "runs_as"}, {"from": "m", "to": "i", "type": "runs_as"}]}))),
            "graph.edges[1]"
        );
        assert_eq!(
            field(graph(
                serde_json::json!({"entities": [{"id": "", "type": "machine", "cloud": "aws", "name": "m"}]})
            )),
            "graph.entities[0].id"
        );
        assert_eq!(
            field(graph(serde_json::json!({"entities": [], "extra": 1}))),
            "graph.json"
        );
        assert_eq!(
            field(graph(
                serde_json::json!({"entities": [{"id": "x", "type": "printer", "cloud": "aws", "name": "p"}]})
            )),
            "graph.json"
        );
        assert_eq!(
            field(graph(
                serde_json::json!({"entities": [{"id": "m", "type": "machine", "cloud": "aws",
                "name": "m", "properties": {"ports": [22, {"n": u64::MAX}], "big": i64::MAX}}]})
            )),
            "graph.entities[0].properties.ports[1].n"
        );
    }

    #[test]
    fn a_graph_over_the_edge_cap_is_refused_by_count() {
        // Enough machines and identities to give every edge a different pair.
        let side = (MAX_GRAPH_EDGES as f64).sqrt() as usize + 1;
        let entity = |id: String, entity_type| GraphEntity {
            name: id.clone(),
            id,
            entity_type,
            cloud: "aws".into(),
            properties: Default::default(),
        };
        let mut graph = Graph::default();
        graph
            .entities
            .extend((0..side).map(|k| entity(format!("m{k}"), EntityType::Machine)));
        graph
            .entities
            .extend((0..side).map(|k| entity(format!("i{k}"), EntityType::Identity)));
        graph.edges = (0..side * side)
            .map(|k| GraphEdge {
                from: format!("m{}", k / side),
                to: format!("i{}", k % side),
                edge_type: EdgeType::RunsAs,
            })
            .take(MAX_GRAPH_EDGES)
            .collect();
        graph.validate().expect("a graph at the cap is valid");
        graph.edges.push(GraphEdge {
            from: format!("m{}", side - 1),
            to: format!("i{}", side - 1),
            edge_type: EdgeType::RunsAs,
        });
        match graph.validate() {
            Err(DomainError::Invalid { field, reason }) => {
                assert_eq!(field, "graph.edges");
                assert_eq!(
                    reason,
                    format!(
                        "{} edges; at most {MAX_GRAPH_EDGES} per sync",
                        MAX_GRAPH_EDGES + 1
                    )
                );
            }
            other => panic!("expected the edge cap to refuse it, got {other:?}"),
        }
    }
}
