//! The finding rules (`evaluate_findings`): a small, real rule set over a tenant's live
//! entities. Each rule fires on one entity; the same entities always give the same findings.

use std::collections::HashMap;

use sv0_domain::{EdgeType, Entity, EntityType, Finding, Severity};

pub const PUBLIC_STORAGE: &str = "public_storage";
pub const ADMIN_WITHOUT_MFA: &str = "admin_without_mfa";
pub const EXPOSED_PRIVILEGED_MACHINE: &str = "exposed_privileged_machine";

/// Every finding the rules make of `entities`, ordered by key.
pub fn evaluate(entities: &[Entity]) -> Vec<Finding> {
    let by_id: HashMap<&str, &Entity> = entities
        .iter()
        .map(|e| (e.external_id.as_str(), e))
        .collect();
    let mut findings = Vec::new();
    for entity in entities {
        match entity.entity_type {
            EntityType::Storage if entity.flag("public") => findings.push(Finding {
                rule: PUBLIC_STORAGE.into(),
                entity_id: entity.external_id.clone(),
                severity: if entity.flag("sensitive") {
                    Severity::Critical
                } else {
                    Severity::Medium
                },
                title: format!("storage {} is readable by anyone", entity.name),
            }),
            EntityType::Identity if entity.flag("admin") && !entity.flag("mfa") => {
                findings.push(Finding {
                    rule: ADMIN_WITHOUT_MFA.into(),
                    entity_id: entity.external_id.clone(),
                    severity: Severity::High,
                    title: format!("admin identity {} signs in without MFA", entity.name),
                })
            }
            EntityType::Machine if entity.flag("internet_exposed") => {
                // The first privileged role reachable through the identities it runs as.
                let privileged = targets(entity, EdgeType::RunsAs, &by_id).find_map(|identity| {
                    targets(identity, EdgeType::HasRole, &by_id)
                        .find(|role| role.flag("privileged"))
                        .map(|role| (identity, role))
                });
                if let Some((identity, role)) = privileged {
                    findings.push(Finding {
                        rule: EXPOSED_PRIVILEGED_MACHINE.into(),
                        entity_id: entity.external_id.clone(),
                        severity: Severity::High,
                        title: format!(
                            "internet-exposed machine {} runs as {} with privileged role {}",
                            entity.name, identity.name, role.name
                        ),
                    });
                }
            }
            _ => {}
        }
    }
    findings.sort_by_key(Finding::key);
    findings
}

/// The live entities `entity`'s edges of `edge_type` lead to, in edge order; an edge to an
/// entity that is gone leads nowhere.
pub(crate) fn targets<'a>(
    entity: &'a Entity,
    edge_type: EdgeType,
    by_id: &'a HashMap<&str, &'a Entity>,
) -> impl Iterator<Item = &'a Entity> + 'a {
    entity
        .edges
        .iter()
        .filter(move |edge| edge.edge_type == edge_type)
        .filter_map(|edge| by_id.get(edge.to.as_str()).copied())
}

#[cfg(test)]
pub(crate) mod tests {
    use mongodb::bson::{Document, doc};
    use sv0_domain::Edge;

    use super::*;

    pub fn entity(
        id: &str,
        entity_type: EntityType,
        properties: Document,
        edges: &[(&str, EdgeType)],
    ) -> Entity {
        Entity {
            external_id: id.into(),
            source: "src".into(),
            entity_type,
            cloud: id.split(':').next().unwrap_or("aws").into(),
            name: id.into(),
            properties,
            edges: edges
                .iter()
                .map(|(to, edge_type)| Edge {
                    to: (*to).into(),
                    edge_type: *edge_type,
                })
                .collect(),
        }
    }

    #[test]
    fn each_rule_fires_only_on_its_case() {
        let entities = vec![
            entity(
                "aws:s:open",
                EntityType::Storage,
                doc! {"public": true, "sensitive": true},
                &[],
            ),
            entity(
                "aws:s:closed",
                EntityType::Storage,
                doc! {"public": false},
                &[],
            ),
            entity(
                "aws:i:admin",
                EntityType::Identity,
                doc! {"admin": true, "mfa": false},
                &[("aws:r:priv", EdgeType::HasRole)],
            ),
            entity(
                "aws:i:admin-mfa",
                EntityType::Identity,
                doc! {"admin": true, "mfa": true},
                &[],
            ),
            entity(
                "aws:r:priv",
                EntityType::Role,
                doc! {"privileged": true},
                &[],
            ),
            entity(
                "aws:m:web",
                EntityType::Machine,
                doc! {"internet_exposed": true},
                &[("aws:i:admin", EdgeType::RunsAs)],
            ),
            entity(
                "aws:m:inside",
                EntityType::Machine,
                doc! {"internet_exposed": false},
                &[("aws:i:admin", EdgeType::RunsAs)],
            ),
            entity(
                "aws:m:web-plain",
                EntityType::Machine,
                doc! {"internet_exposed": true},
                &[("aws:i:admin-mfa", EdgeType::RunsAs)],
            ),
        ];
        let fired: Vec<(String, Severity)> = evaluate(&entities)
            .into_iter()
            .map(|f| (f.key(), f.severity))
            .collect();
        assert_eq!(
            fired,
            vec![
                ("admin_without_mfa:aws:i:admin".to_string(), Severity::High),
                (
                    "exposed_privileged_machine:aws:m:web".to_string(),
                    Severity::High
                ),
                ("public_storage:aws:s:open".to_string(), Severity::Critical),
            ]
        );
    }
}
