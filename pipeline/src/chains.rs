//! Chain assembly (`assemble_chains`) and stitching (`stitch_paths`): pure functions of a tenant's
//! live entities and chains, so a re-run on an unchanged graph produces the very same chains and
//! paths (and so the same content hashes).
//!
//! Both are bounded. Paths multiply layer by layer: 100 machines, identities, roles and storages
//! fully connected are 30,000 edges and 10^8 chains. So each walks its paths lazily, in path
//! order, never into a step that leads to no path, and stops at its cap: the work and the memory
//! follow what is kept, not what the graph holds. Path order keeps a capped set the same from one
//! run to the next, so the content-hash keyed sets do not churn.

use std::collections::{BTreeMap, HashMap};

use sv0_domain::{Chain, EdgeType, Entity, EntityType, Keyed, StitchedPath};

/// The most chains one assembly keeps: 25 times the 386 of the benchmark's scan of 10,000
/// entities (docs/benchmarks.md). The evidence pack lists every chain and stitched path in one
/// document, about 165 bytes each, so 10,000 of each stay far below its 16 MiB.
pub const MAX_CHAINS: usize = 10_000;
/// The most stitched paths one stitching keeps (the benchmark's scan has 21), for the same
/// reasons as [`MAX_CHAINS`].
pub const MAX_STITCHED_PATHS: usize = 10_000;
/// The most chain keys the stitched paths kept may list between them. A path lists every chain
/// that gives it, which can be thousands when paths fan in, so the path count alone does not
/// bound the memory: 500,000 keys are about 45 MB, an average of 50 per path at the path cap.
pub const MAX_STITCHED_CHAIN_REFS: usize = 500_000;

/// What a bounded enumeration kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounded<T> {
    /// In path order.
    pub items: Vec<T>,
    /// Why items are missing, when the enumeration stopped at a cap; a stage puts it in its cell.
    pub capped: Option<String>,
    /// The steps the enumeration took (partial paths entered, keys gathered): the work it did,
    /// which the caps keep proportional to what is kept.
    pub explored: u64,
}

/// The paths internet-exposed machine → identity it runs as → role of that identity → sensitive
/// storage the role can access, in path order, at most [`MAX_CHAINS`] of them.
pub fn assemble(entities: &[Entity]) -> Bounded<Chain> {
    assemble_at_most(entities, MAX_CHAINS)
}

/// [`assemble`] with a cap of `cap` chains.
pub fn assemble_at_most(entities: &[Entity], cap: usize) -> Bounded<Chain> {
    let by_id: HashMap<&str, &Entity> = entities
        .iter()
        .map(|e| (e.external_id.as_str(), e))
        .collect();
    // Built backwards from the targets, so that every step kept leads on to at least one chain:
    // the walk below never enters a dead end, and a graph whose paths mostly lead nowhere costs
    // no more than its edges.
    let to_storage = steps(entities, &by_id, EdgeType::CanAccess, |s| {
        s.flag("sensitive")
    });
    let to_role = steps(entities, &by_id, EdgeType::HasRole, |r| {
        to_storage.contains_key(r.external_id.as_str())
    });
    let to_identity = steps(entities, &by_id, EdgeType::RunsAs, |i| {
        to_role.contains_key(i.external_id.as_str())
    });
    let mut entries: Vec<&Entity> = entities
        .iter()
        .filter(|e| e.entity_type == EntityType::Machine && e.flag("internet_exposed"))
        .filter(|e| to_identity.contains_key(e.external_id.as_str()))
        .collect();
    sort_by_id(&mut entries);

    let mut chains = Vec::new();
    let mut explored = 0u64;
    let mut capped = None;
    'walk: for machine in entries {
        explored += 1;
        for identity in &to_identity[machine.external_id.as_str()] {
            explored += 1;
            for role in &to_role[identity.external_id.as_str()] {
                explored += 1;
                for storage in &to_storage[role.external_id.as_str()] {
                    explored += 1;
                    if chains.len() == cap {
                        capped = Some(format!(
                            "chains capped at {cap}: the graph has more paths from entry points \
                             to sensitive targets than are kept (the first {cap} in path order)"
                        ));
                        break 'walk;
                    }
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
    Bounded {
        items: chains,
        capped,
        explored,
    }
}

/// For each entity with edges of `edge_type`, the entities those lead to that `keep` accepts,
/// ordered by id and each once, so that walking them in order walks the paths in path order.
/// An edge to an entity that is gone leads nowhere.
fn steps<'a>(
    entities: &'a [Entity],
    by_id: &HashMap<&str, &'a Entity>,
    edge_type: EdgeType,
    keep: impl Fn(&Entity) -> bool,
) -> HashMap<&'a str, Vec<&'a Entity>> {
    let mut steps = HashMap::new();
    for entity in entities {
        let mut next: Vec<&Entity> = entity
            .edges
            .iter()
            .filter(|edge| edge.edge_type == edge_type)
            .filter_map(|edge| by_id.get(edge.to.as_str()).copied())
            .filter(|e| keep(e))
            .collect();
        if !next.is_empty() {
            sort_by_id(&mut next);
            steps.insert(entity.external_id.as_str(), next);
        }
    }
    steps
}

fn sort_by_id(entities: &mut Vec<&Entity>) {
    entities.sort_by(|a, b| a.external_id.cmp(&b.external_id));
    entities.dedup_by(|a, b| a.external_id == b.external_id);
}

/// Joins chains of different clouds whose identities share a principal: the first chain up to
/// and including its identity, then the second from its identity on. In path order, at most
/// [`MAX_STITCHED_PATHS`] listing at most [`MAX_STITCHED_CHAIN_REFS`] chain keys between them.
pub fn stitch(chains: &[Keyed<Chain>], entities: &[Entity]) -> Bounded<StitchedPath> {
    stitch_at_most(
        chains,
        entities,
        MAX_STITCHED_PATHS,
        MAX_STITCHED_CHAIN_REFS,
    )
}

/// One half of a stitched path (a chain's machine and identity, or its identity on) with the
/// keys of the chains that have it, by their cloud.
struct Half<'a> {
    part: &'a [String],
    by_cloud: BTreeMap<&'a str, Vec<&'a str>>,
}

impl<'a> Half<'a> {
    fn only_cloud(&self) -> Option<&'a str> {
        match self.by_cloud.len() {
            1 => self.by_cloud.keys().next().copied(),
            _ => None,
        }
    }

    /// The keys of its chains that have a partner of another cloud on the other half, whose
    /// chains are all of `other_only` if that is given, and of several clouds if not.
    fn partnered(&self, other_only: Option<&'a str>) -> impl Iterator<Item = &'a str> + '_ {
        self.by_cloud
            .iter()
            .filter(move |(cloud, _)| Some(**cloud) != other_only)
            .flat_map(|(_, keys)| keys.iter().copied())
    }
}

/// The second halves of one principal, in path order, with where each run of halves that are
/// all of one same cloud ends: a first half of that cloud joins none of them, and skips the run
/// in one step.
struct Tails<'a> {
    halves: Vec<Half<'a>>,
    run_end: Vec<usize>,
}

/// [`stitch`] with caps of `max_paths` paths and `max_refs` chain keys listed.
pub fn stitch_at_most(
    chains: &[Keyed<Chain>],
    entities: &[Entity],
    max_paths: usize,
    max_refs: usize,
) -> Bounded<StitchedPath> {
    let principal_of: HashMap<&str, &str> = entities
        .iter()
        .filter(|e| e.entity_type == EntityType::Identity)
        .filter_map(|e| Some((e.external_id.as_str(), e.text("principal")?)))
        .collect();
    // The identity of a chain is its second element. A stitched path is a first half and a
    // second half of one principal: walking the first halves in order, and for each the second
    // halves in order, walks the stitched paths in path order, each once. Pairing chains
    // instead would cost chains × chains before anything is kept.
    let mut heads: BTreeMap<&[String], Half> = BTreeMap::new();
    let mut tails: HashMap<&str, BTreeMap<&[String], Half>> = HashMap::new();
    for chain in chains {
        let path = &chain.item.path;
        let Some(principal) = path.get(1).and_then(|id| principal_of.get(id.as_str())) else {
            continue;
        };
        let (cloud, key) = (chain.item.cloud.as_str(), chain.key.as_str());
        for (halves, part) in [
            (&mut heads, &path[..2]),
            (tails.entry(principal).or_default(), &path[1..]),
        ] {
            halves
                .entry(part)
                .or_insert_with(|| Half {
                    part,
                    by_cloud: BTreeMap::new(),
                })
                .by_cloud
                .entry(cloud)
                .or_default()
                .push(key);
        }
    }
    let tails: HashMap<&str, Tails> = tails
        .into_iter()
        .map(|(principal, halves)| {
            let halves: Vec<Half> = halves.into_values().collect();
            let mut run_end = vec![0; halves.len()];
            for j in (0..halves.len()).rev() {
                let same = halves[j].only_cloud().is_some()
                    && halves.get(j + 1).and_then(Half::only_cloud) == halves[j].only_cloud();
                run_end[j] = if same { run_end[j + 1] } else { j + 1 };
            }
            (principal, Tails { halves, run_end })
        })
        .collect();

    let mut paths = Vec::new();
    let mut refs = 0;
    let mut explored = 0u64;
    let mut capped = None;
    'walk: for head in heads.values() {
        explored += 1;
        let principal = principal_of[head.part[1].as_str()];
        let Some(Tails { halves, run_end }) = tails.get(principal) else {
            continue;
        };
        let head_cloud = head.only_cloud();
        let mut j = 0;
        while let Some(tail) = halves.get(j) {
            explored += 1;
            let tail_cloud = tail.only_cloud();
            if head_cloud.is_some() && head_cloud == tail_cloud {
                j = run_end[j];
                continue;
            }
            j += 1;
            // One path may come from several pairs of chains (two chains sharing the first
            // one's machine and identity give the same prefix): it lists them all.
            let mut keys: Vec<&str> = head
                .partnered(tail_cloud)
                .chain(tail.partnered(head_cloud))
                .collect();
            explored += keys.len() as u64;
            keys.sort_unstable();
            keys.dedup();
            if paths.len() == max_paths || refs + keys.len() > max_refs {
                capped = Some(format!(
                    "stitched paths capped at {}: the chains join across clouds into more paths \
                     than are kept (the first in path order, at most {max_paths} paths listing \
                     at most {max_refs} chain keys between them)",
                    paths.len()
                ));
                break 'walk;
            }
            refs += keys.len();
            let mut path = head.part.to_vec();
            path.extend_from_slice(tail.part);
            paths.push(StitchedPath {
                principal: principal.to_string(),
                path,
                chains: keys.into_iter().map(str::to_string).collect(),
            });
        }
    }
    Bounded {
        items: paths,
        capped,
        explored,
    }
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
        assert_eq!(assemble(&cloud("aws", "p", true, true)).items.len(), 1);
        assert_eq!(
            assemble(&cloud("aws", "p", true, true)).items[0].path,
            vec!["aws:m:1", "aws:i:1", "aws:r:1", "aws:s:1"]
        );
        assert!(assemble(&cloud("aws", "p", false, true)).items.is_empty());
        assert!(assemble(&cloud("aws", "p", true, false)).items.is_empty());
    }

    #[test]
    fn stitching_joins_clouds_through_a_shared_principal_only() {
        let mut entities = cloud("aws", "alice", true, true);
        entities.extend(cloud("azure", "alice", true, true));
        entities.extend(cloud("gcp", "bob", true, true));
        let chains = keyed(assemble(&entities).items);
        assert_eq!(chains.len(), 3);
        let paths = stitch(&chains, &entities).items;
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
            stitch(&chains, &entities).items,
            paths,
            "the same input stitches the same way"
        );
    }
}
