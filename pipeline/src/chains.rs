//! Chain assembly (`assemble_chains`) and stitching (`stitch_paths`): pure functions of a
//! tenant's live entities and chains, so a re-run on an unchanged graph produces the very same
//! chains and paths (and so the same content hashes: ADR-027 §c).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sv0_domain::{Chain, EdgeType, Entity, EntityType, Keyed, StitchedPath};

use crate::rules::targets;

/// Every path internet-exposed machine → identity it runs as → role of that identity → sensitive
/// storage the role can access, ordered.
pub fn assemble(entities: &[Entity]) -> Vec<Chain> {
    let by_id: HashMap<&str, &Entity> = entities
        .iter()
        .map(|e| (e.external_id.as_str(), e))
        .collect();
    let mut chains = Vec::new();
    let entries = entities
        .iter()
        .filter(|e| e.entity_type == EntityType::Machine && e.flag("internet_exposed"));
    for machine in entries {
        for identity in targets(machine, EdgeType::RunsAs, &by_id) {
            for role in targets(identity, EdgeType::HasRole, &by_id) {
                for storage in targets(role, EdgeType::CanAccess, &by_id) {
                    if storage.flag("sensitive") {
                        chains.push(Chain {
                            cloud: machine.cloud.clone(),
                            path: [machine, identity, role, storage]
                                .map(|e| e.external_id.clone())
                                .to_vec(),
                        });
                    }
                }
            }
        }
    }
    chains.sort_by(|a, b| a.path.cmp(&b.path));
    chains.dedup();
    chains
}

/// Joins chains of different clouds whose identities share a principal: the first chain up to
/// and including its identity, then the second from its identity on. Ordered by path.
pub fn stitch(chains: &[Keyed<Chain>], entities: &[Entity]) -> Vec<StitchedPath> {
    let principal_of: HashMap<&str, &str> = entities
        .iter()
        .filter(|e| e.entity_type == EntityType::Identity)
        .filter_map(|e| Some((e.external_id.as_str(), e.text("principal")?)))
        .collect();
    // The identity of a chain is its second element.
    let mut by_principal: HashMap<&str, Vec<&Keyed<Chain>>> = HashMap::new();
    for chain in chains {
        if let Some(principal) = chain
            .item
            .path
            .get(1)
            .and_then(|id| principal_of.get(id.as_str()))
        {
            by_principal.entry(principal).or_default().push(chain);
        }
    }
    // One path may come from several pairs of chains (two chains sharing the first one's
    // machine and identity give the same prefix): it is one stitched path, listing them all.
    let mut joined: BTreeMap<Vec<String>, (String, BTreeSet<String>)> = BTreeMap::new();
    for (principal, group) in &by_principal {
        for from in group {
            for to in group {
                if from.item.cloud == to.item.cloud {
                    continue;
                }
                let mut path = from.item.path[..2].to_vec();
                path.extend_from_slice(&to.item.path[1..]);
                let (_, chains) = joined
                    .entry(path)
                    .or_insert_with(|| (principal.to_string(), BTreeSet::new()));
                chains.extend([from.key.clone(), to.key.clone()]);
            }
        }
    }
    joined
        .into_iter()
        .map(|(path, (principal, chains))| StitchedPath {
            principal,
            path,
            chains: chains.into_iter().collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;
    use crate::rules::tests::entity;

    fn cloud(c: &str, principal: &str, exposed: bool, sensitive: bool) -> Vec<Entity> {
        let id = |t: &str| format!("{c}:{t}:1");
        vec![
            entity(
                &id("m"),
                EntityType::Machine,
                doc! {"internet_exposed": exposed},
                &[(&id("i"), EdgeType::RunsAs)],
            ),
            entity(
                &id("i"),
                EntityType::Identity,
                doc! {"principal": principal},
                &[(&id("r"), EdgeType::HasRole)],
            ),
            entity(
                &id("r"),
                EntityType::Role,
                doc! {},
                &[(&id("s"), EdgeType::CanAccess)],
            ),
            entity(
                &id("s"),
                EntityType::Storage,
                doc! {"sensitive": sensitive},
                &[],
            ),
        ]
    }

    fn keyed(chains: Vec<Chain>) -> Vec<Keyed<Chain>> {
        chains
            .into_iter()
            .enumerate()
            .map(|(i, item)| Keyed {
                key: format!("k{i}"),
                hash: format!("k{i}"),
                item,
            })
            .collect()
    }

    #[test]
    fn a_chain_needs_an_exposed_entry_and_a_sensitive_target() {
        assert_eq!(assemble(&cloud("aws", "p", true, true)).len(), 1);
        assert_eq!(
            assemble(&cloud("aws", "p", true, true))[0].path,
            vec!["aws:m:1", "aws:i:1", "aws:r:1", "aws:s:1"]
        );
        assert!(assemble(&cloud("aws", "p", false, true)).is_empty());
        assert!(assemble(&cloud("aws", "p", true, false)).is_empty());
    }

    #[test]
    fn stitching_joins_clouds_through_a_shared_principal_only() {
        let mut entities = cloud("aws", "alice", true, true);
        entities.extend(cloud("azure", "alice", true, true));
        entities.extend(cloud("gcp", "bob", true, true));
        let chains = keyed(assemble(&entities));
        assert_eq!(chains.len(), 3);
        let paths = stitch(&chains, &entities);
        let joined: Vec<Vec<String>> = paths.iter().map(|p| p.path.clone()).collect();
        assert_eq!(
            joined,
            vec![
                vec!["aws:m:1", "aws:i:1", "azure:i:1", "azure:r:1", "azure:s:1"],
                vec!["azure:m:1", "azure:i:1", "aws:i:1", "aws:r:1", "aws:s:1"],
            ]
        );
        assert!(paths.iter().all(|p| p.principal == "alice"));
        assert_eq!(
            stitch(&chains, &entities),
            paths,
            "the same input stitches the same way"
        );
    }
}
