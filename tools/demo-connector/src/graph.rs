//! The graph drawn for a scope: identities, roles, machines and storage per cloud, from a seeded
//! RNG, byte-identical for the same scope on every run and platform, with at least one chain,
//! one admin without MFA and one public storage per cloud, and the same people across clouds.
//! A scope's drift then renames some of those entities, keeping their ids, edges and properties.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::scope::{Drift, Scope};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EntityType {
    Identity,
    Role,
    Machine,
    Storage,
}

impl EntityType {
    pub(crate) const ALL: [EntityType; 4] = [
        EntityType::Identity,
        EntityType::Role,
        EntityType::Machine,
        EntityType::Storage,
    ];

    /// The middle part of an id: `aws:machine:12`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EntityType::Identity => "identity",
            EntityType::Role => "role",
            EntityType::Machine => "machine",
            EntityType::Storage => "storage",
        }
    }

    /// The category of `category_results.json` that counts this type.
    pub(crate) fn category(self) -> &'static str {
        match self {
            EntityType::Identity => "identities",
            EntityType::Role => "roles",
            EntityType::Machine => "machines",
            EntityType::Storage => "storage",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EdgeType {
    RunsAs,
    HasRole,
    CanAccess,
}

/// The properties the rules and chains read, per entity type.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Properties {
    Identity {
        principal: String,
        admin: bool,
        mfa: bool,
    },
    Role {
        privileged: bool,
    },
    Machine {
        internet_exposed: bool,
    },
    Storage {
        public: bool,
        sensitive: bool,
    },
}

#[derive(Debug, Serialize)]
pub(crate) struct Entity {
    id: String,
    #[serde(rename = "type")]
    entity_type: EntityType,
    cloud: String,
    name: String,
    properties: Properties,
}

#[derive(Debug, Serialize)]
pub(crate) struct Edge {
    from: String,
    to: String,
    #[serde(rename = "type")]
    edge_type: EdgeType,
}

#[derive(Debug, Serialize)]
pub(crate) struct Graph {
    pub(crate) entities: Vec<Entity>,
    pub(crate) edges: Vec<Edge>,
}

/// How a cloud's `size` entities split: 30% identities, 10% roles, 30% machines, the rest (30%)
/// storage; at least one of each for every size ≥ 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    identities: usize,
    roles: usize,
    machines: usize,
    storage: usize,
}

impl Counts {
    pub(crate) fn of(size: usize) -> Counts {
        let identities = (size * 3 / 10).max(1);
        let roles = (size / 10).max(1);
        let machines = (size * 3 / 10).max(1);
        let storage = size.saturating_sub(identities + roles + machines).max(1);
        Counts {
            identities,
            roles,
            machines,
            storage,
        }
    }
}

/// One cloud's graph as indices, before it becomes ids: what the RNG draws, and what the
/// guarantees then adjust.
pub(crate) struct CloudDraw {
    /// (admin, mfa)
    identities: Vec<(bool, bool)>,
    /// privileged
    roles: Vec<bool>,
    /// internet_exposed
    machines: Vec<bool>,
    /// (public, sensitive)
    storage: Vec<(bool, bool)>,
    /// machine → identity
    runs_as: Vec<usize>,
    /// identity → roles, sorted
    has_role: Vec<Vec<usize>>,
    /// role → storages, sorted
    can_access: Vec<Vec<usize>>,
}

impl CloudDraw {
    /// Each cloud draws from its own ChaCha8 stream of the seed, so a cloud's graph depends on
    /// the seed and its name only, not on which other clouds the scope lists.
    pub(crate) fn draw(cloud: &str, size: usize, seed: u64) -> CloudDraw {
        let n = Counts::of(size);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(fnv1a(cloud.as_bytes()));
        let identities = (0..n.identities)
            .map(|_| (rng.random_bool(0.1), rng.random_bool(0.7)))
            .collect();
        let roles = (0..n.roles).map(|_| rng.random_bool(0.2)).collect();
        let machines = (0..n.machines).map(|_| rng.random_bool(0.2)).collect();
        let storage = (0..n.storage)
            .map(|_| (rng.random_bool(0.1), rng.random_bool(0.2)))
            .collect();
        let runs_as = (0..n.machines)
            .map(|_| rng.random_range(0..n.identities))
            .collect();
        let has_role = (0..n.identities)
            .map(|_| {
                let k = rng.random_range(1..=2);
                pick_distinct(&mut rng, n.roles, k)
            })
            .collect();
        let can_access = (0..n.roles)
            .map(|_| {
                let k = rng.random_range(1..=3);
                pick_distinct(&mut rng, n.storage, k)
            })
            .collect();
        let mut draw = CloudDraw {
            identities,
            roles,
            machines,
            storage,
            runs_as,
            has_role,
            can_access,
        };
        draw.guarantee();
        draw
    }

    /// Plants what every demo graph must hold, whatever the seed:
    /// - a chain: machine 1 is internet-exposed and runs as identity 1, which has role 1
    ///   (privileged), which can access storage 1 (sensitive);
    /// - an admin identity without MFA (the last identity, if the draw made none);
    /// - a public storage (the last storage, if the draw made none).
    pub(crate) fn guarantee(&mut self) {
        self.machines[0] = true;
        self.runs_as[0] = 0;
        self.roles[0] = true;
        self.storage[0].1 = true;
        // Sorted and without 0: putting 0 first keeps them sorted and distinct.
        if !self.has_role[0].contains(&0) {
            self.has_role[0][0] = 0;
        }
        if !self.can_access[0].contains(&0) {
            self.can_access[0][0] = 0;
        }
        if !self.identities.iter().any(|&(admin, mfa)| admin && !mfa) {
            *self.identities.last_mut().expect("at least one identity") = (true, false);
        }
        if !self.storage.iter().any(|&(public, _)| public) {
            self.storage.last_mut().expect("at least one storage").0 = true;
        }
    }
}

/// `k` distinct numbers below `n` (fewer if `n < k`), sorted.
pub(crate) fn pick_distinct(rng: &mut ChaCha8Rng, n: usize, k: usize) -> Vec<usize> {
    let k = k.min(n);
    let mut picked = Vec::with_capacity(k);
    while picked.len() < k {
        let i = rng.random_range(0..n);
        if !picked.contains(&i) {
            picked.push(i);
        }
    }
    picked.sort_unstable();
    picked
}

/// Which of a cloud's `size` entities (by position) drift: `percent` % of them, rounded down,
/// in a seeded shuffle's order. The shuffle has a ChaCha stream of its own, so drifting leaves
/// the graph's draw as it is; a larger `percent` takes more of the same order, so it drifts
/// every entity a smaller one does.
pub(crate) fn drifting(cloud: &str, size: usize, seed: u64, percent: usize) -> Vec<usize> {
    let count = size * percent / 100;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(fnv1a(format!("{cloud}/drift").as_bytes()));
    let mut order: Vec<usize> = (0..size).collect();
    for i in 0..count {
        let j = rng.random_range(i..size);
        order.swap(i, j);
    }
    order.truncate(count);
    order
}

/// FNV-1a, 64 bits: a cloud name to a ChaCha stream number, the same on every platform.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Graph {
    pub(crate) fn generate(scope: &Scope) -> Graph {
        let mut graph = Graph {
            entities: Vec::with_capacity(scope.size * scope.clouds.len()),
            edges: Vec::new(),
        };
        for cloud in &scope.clouds {
            let first = graph.entities.len();
            graph.add_cloud(cloud, &CloudDraw::draw(cloud, scope.size, scope.seed));
            if let Some(drift) = scope.drift {
                graph.drift(first, cloud, scope.seed, drift);
            }
        }
        graph
    }

    /// Renames the drifting entities of `cloud`, whose entities start at `first`: `web-12` is
    /// `web-12-r3` in round 3. A name is stored content that a re-scan sees changed (it is in the
    /// entity's hash) and that findings show, while the ids, edges and properties, and with them
    /// the chains, stitched paths and which rules fire, stay as drawn.
    fn drift(&mut self, first: usize, cloud: &str, seed: u64, drift: Drift) {
        if drift.round == 0 {
            return;
        }
        let entities = &mut self.entities[first..];
        for i in drifting(cloud, entities.len(), seed, drift.percent) {
            let entity = &mut entities[i];
            entity.name = format!("{}-r{}", entity.name, drift.round);
        }
    }

    pub(crate) fn add_cloud(&mut self, cloud: &str, draw: &CloudDraw) {
        // Ids and names count from 1: `aws:machine:1` is `web-1`.
        let id = |kind: EntityType, i: usize| format!("{cloud}:{}:{}", kind.as_str(), i + 1);
        let shared = draw.identities.len().div_ceil(2);
        let mut entity = |kind: EntityType, i: usize, name: String, properties: Properties| {
            self.entities.push(Entity {
                id: id(kind, i),
                entity_type: kind,
                cloud: cloud.to_string(),
                name,
                properties,
            });
        };
        for (i, &(admin, mfa)) in draw.identities.iter().enumerate() {
            let n = i + 1;
            // The first half are the same people in every cloud: what stitching joins on.
            let (name, principal) = if i < shared {
                (format!("user{n}"), format!("user{n}@example.com"))
            } else {
                (format!("svc-{n}"), format!("svc-{cloud}-{n}@example.com"))
            };
            let properties = Properties::Identity {
                principal,
                admin,
                mfa,
            };
            entity(EntityType::Identity, i, name, properties);
        }
        for (i, &privileged) in draw.roles.iter().enumerate() {
            let properties = Properties::Role { privileged };
            entity(EntityType::Role, i, format!("role-{}", i + 1), properties);
        }
        for (i, &internet_exposed) in draw.machines.iter().enumerate() {
            let properties = Properties::Machine { internet_exposed };
            entity(EntityType::Machine, i, format!("web-{}", i + 1), properties);
        }
        for (i, &(public, sensitive)) in draw.storage.iter().enumerate() {
            let properties = Properties::Storage { public, sensitive };
            entity(
                EntityType::Storage,
                i,
                format!("bucket-{}", i + 1),
                properties,
            );
        }
        let mut edge = |from: String, to: String, edge_type: EdgeType| {
            self.edges.push(Edge {
                from,
                to,
                edge_type,
            });
        };
        for (machine, &identity) in draw.runs_as.iter().enumerate() {
            edge(
                id(EntityType::Machine, machine),
                id(EntityType::Identity, identity),
                EdgeType::RunsAs,
            );
        }
        for (identity, roles) in draw.has_role.iter().enumerate() {
            for &role in roles {
                edge(
                    id(EntityType::Identity, identity),
                    id(EntityType::Role, role),
                    EdgeType::HasRole,
                );
            }
        }
        for (role, storages) in draw.can_access.iter().enumerate() {
            for &storage in storages {
                edge(
                    id(EntityType::Role, role),
                    id(EntityType::Storage, storage),
                    EdgeType::CanAccess,
                );
            }
        }
    }

    pub(crate) fn count(&self, kind: EntityType) -> usize {
        self.entities
            .iter()
            .filter(|e| e.entity_type == kind)
            .count()
    }

    /// `graph.json`'s bytes: compact, one trailing newline.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(self).expect("a graph always serializes");
        bytes.push(b'\n');
        bytes
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap, HashSet};

    use serde_json::Value;

    use super::*;

    fn graph(clouds: &[&str], size: usize, seed: u64) -> Value {
        let scope = Scope {
            clouds: clouds.iter().map(|c| c.to_string()).collect(),
            size,
            seed,
            drift: None,
        };
        serde_json::from_slice(&Graph::generate(&scope).to_json()).unwrap()
    }

    #[test]
    fn the_split_adds_up_with_one_of_each() {
        for size in (8..=1000).chain([12_499, 12_500]) {
            let n = Counts::of(size);
            assert_eq!(n.identities + n.roles + n.machines + n.storage, size);
            assert!(n.identities >= 2 && n.roles >= 1 && n.machines >= 1 && n.storage >= 1);
        }
        assert_eq!(
            Counts::of(200),
            Counts {
                identities: 60,
                roles: 20,
                machines: 60,
                storage: 60
            }
        );
    }

    #[test]
    fn the_same_scope_gives_the_same_bytes_and_another_seed_another_graph() {
        let scope = |seed| Scope {
            clouds: vec!["aws".into(), "azure".into()],
            size: 200,
            seed,
            drift: None,
        };
        let a = Graph::generate(&scope(7)).to_json();
        assert_eq!(a, Graph::generate(&scope(7)).to_json());
        assert_ne!(a, Graph::generate(&scope(8)).to_json());
    }

    #[test]
    fn a_clouds_graph_depends_on_its_name_and_the_seed_only() {
        let alone = graph(&["aws"], 50, 3);
        let both = graph(&["azure", "aws"], 50, 3);
        let aws: Vec<&Value> = both["entities"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["cloud"] == "aws")
            .collect();
        assert_eq!(
            aws,
            alone["entities"]
                .as_array()
                .unwrap()
                .iter()
                .collect::<Vec<_>>()
        );
        // Two clouds of one graph are not copies of each other.
        let props = |cloud: &str| -> Vec<Value> {
            both["entities"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["cloud"] == cloud)
                .map(|e| e["properties"].clone())
                .collect()
        };
        assert_ne!(props("aws"), props("azure"));
    }

    /// Checks a graph against the contract and the demo's promises; returns, per cloud, the
    /// number of chain-shaped paths (exposed machine → identity → role → sensitive storage).
    fn check(graph: &Value, clouds: &[&str], size: usize) -> BTreeMap<String, usize> {
        let entities = graph["entities"].as_array().unwrap();
        let edges = graph["edges"].as_array().unwrap();
        assert_eq!(entities.len(), size * clouds.len());
        let mut by_id: HashMap<&str, &Value> = HashMap::new();
        for e in entities {
            let id = e["id"].as_str().unwrap();
            assert!(by_id.insert(id, e).is_none(), "{id} twice");
            let cloud = e["cloud"].as_str().unwrap();
            let kind = e["type"].as_str().unwrap();
            assert!(id.starts_with(&format!("{cloud}:{kind}:")), "{id}");
            assert!(clouds.contains(&cloud));
        }
        let mut seen = HashSet::new();
        let mut out: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
        for edge in edges {
            let (from, to, kind) = (
                edge["from"].as_str().unwrap(),
                edge["to"].as_str().unwrap(),
                edge["type"].as_str().unwrap(),
            );
            assert!(seen.insert((from, to, kind)), "edge {from} → {to} twice");
            let wanted = match kind {
                "runs_as" => ("machine", "identity"),
                "has_role" => ("identity", "role"),
                "can_access" => ("role", "storage"),
                other => panic!("edge type {other}"),
            };
            let (f, t) = (by_id[from], by_id[to]);
            assert_eq!(
                (f["type"].as_str().unwrap(), t["type"].as_str().unwrap()),
                wanted
            );
            assert_eq!(f["cloud"], t["cloud"], "{from} → {to} crosses clouds");
            out.entry((from, kind)).or_default().push(to);
        }
        let flag = |e: &Value, name: &str| e["properties"][name].as_bool().unwrap();
        let targets = |from: &str, kind: &str| out.get(&(from, kind)).cloned().unwrap_or_default();
        let mut chains = BTreeMap::new();
        for cloud in clouds {
            let of = |kind: &str| -> Vec<&Value> {
                entities
                    .iter()
                    .filter(|e| e["cloud"] == *cloud && e["type"] == kind)
                    .collect()
            };
            for m in of("machine") {
                assert_eq!(targets(m["id"].as_str().unwrap(), "runs_as").len(), 1);
            }
            for i in of("identity") {
                let n = targets(i["id"].as_str().unwrap(), "has_role").len();
                assert!((1..=2).contains(&n), "{n} roles");
                assert!(
                    i["properties"]["principal"]
                        .as_str()
                        .unwrap()
                        .ends_with("@example.com")
                );
            }
            for r in of("role") {
                let n = targets(r["id"].as_str().unwrap(), "can_access").len();
                assert!((1..=3).contains(&n), "{n} storages");
            }
            assert!(
                of("identity")
                    .iter()
                    .any(|i| flag(i, "admin") && !flag(i, "mfa")),
                "no admin without MFA in {cloud}"
            );
            assert!(
                of("storage").iter().any(|s| flag(s, "public")),
                "no public storage in {cloud}"
            );
            let mut n = 0;
            for m in of("machine")
                .into_iter()
                .filter(|m| flag(m, "internet_exposed"))
            {
                for i in targets(m["id"].as_str().unwrap(), "runs_as") {
                    for r in targets(i, "has_role") {
                        n += targets(r, "can_access")
                            .into_iter()
                            .filter(|s| flag(by_id[s], "sensitive"))
                            .count();
                    }
                }
            }
            assert!(n >= 1, "no chain in {cloud}");
            chains.insert(cloud.to_string(), n);
        }
        chains
    }

    #[test]
    fn every_graph_keeps_its_promises() {
        for size in [8, 9, 10, 11, 50, 200] {
            for seed in 1..=20 {
                check(
                    &graph(&["aws", "azure"], size, seed),
                    &["aws", "azure"],
                    size,
                );
            }
        }
        check(&graph(&["gcp"], 8, 0), &["gcp"], 8);
        check(
            &graph(&["a", "b", "c", "d"], 1000, u64::MAX),
            &["a", "b", "c", "d"],
            1000,
        );
    }

    #[test]
    fn the_first_half_of_the_identities_are_the_same_people_in_every_cloud() {
        let g = graph(&["aws", "azure"], 200, 1);
        let principals = |cloud: &str| -> HashSet<String> {
            g["entities"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["cloud"] == cloud && e["type"] == "identity")
                .map(|e| e["properties"]["principal"].as_str().unwrap().to_string())
                .collect()
        };
        let shared: Vec<String> = principals("aws")
            .intersection(&principals("azure"))
            .cloned()
            .collect();
        assert_eq!(shared.len(), 30);
        assert!(shared.contains(&"user1@example.com".to_string()));
        assert!(principals("aws").contains("svc-aws-60@example.com"));
        assert!(principals("azure").contains("svc-azure-31@example.com"));
    }

    fn drifted(clouds: &[&str], size: usize, seed: u64, percent: usize, round: u64) -> Value {
        let scope = Scope {
            clouds: clouds.iter().map(|c| c.to_string()).collect(),
            size,
            seed,
            drift: Some(Drift { percent, round }),
        };
        serde_json::from_slice(&Graph::generate(&scope).to_json()).unwrap()
    }

    /// The ids of the entities of `b` that differ from `a`'s, once `a` and `b` are checked to
    /// hold the same ids in the same order and the same edges.
    fn changed(a: &Value, b: &Value) -> Vec<String> {
        assert_eq!(a["edges"], b["edges"]);
        let (a, b) = (
            a["entities"].as_array().unwrap(),
            b["entities"].as_array().unwrap(),
        );
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .filter(|(x, y)| {
                assert_eq!(x["id"], y["id"]);
                x != y
            })
            .map(|(_, y)| y["id"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn the_same_drift_gives_the_same_bytes() {
        let scope = |round| Scope {
            clouds: vec!["aws".into(), "azure".into()],
            size: 200,
            seed: 7,
            drift: Some(Drift { percent: 5, round }),
        };
        let a = Graph::generate(&scope(1)).to_json();
        assert_eq!(a, Graph::generate(&scope(1)).to_json());
        assert_ne!(a, Graph::generate(&scope(2)).to_json());
        // Round 0, like a drift of 0 %, is the graph as drawn.
        let drawn = Scope {
            drift: None,
            ..scope(0)
        };
        let drawn = Graph::generate(&drawn).to_json();
        assert_eq!(Graph::generate(&scope(0)).to_json(), drawn);
        let none = Scope {
            drift: Some(Drift {
                percent: 0,
                round: 4,
            }),
            ..scope(0)
        };
        assert_eq!(Graph::generate(&none).to_json(), drawn);
    }

    #[test]
    fn a_drift_renames_its_percentage_of_each_cloud_and_nothing_else() {
        let clouds = ["aws", "azure"];
        let drawn = graph(&clouds, 5_000, 1);
        for percent in [1, 5, 33, 100] {
            let round_1 = drifted(&clouds, 5_000, 1, percent, 1);
            let ids = changed(&drawn, &round_1);
            for cloud in clouds {
                let of_cloud = ids
                    .iter()
                    .filter(|id| id.starts_with(&format!("{cloud}:")))
                    .count();
                assert_eq!(of_cloud, 5_000 * percent / 100, "{percent} % of {cloud}");
            }
            let by_id = |g: &Value| -> HashMap<String, Value> {
                g["entities"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| (e["id"].as_str().unwrap().to_string(), e.clone()))
                    .collect()
            };
            let (before, after) = (by_id(&drawn), by_id(&round_1));
            for id in &ids {
                let (mut was, is) = (before[id].clone(), &after[id]);
                assert_eq!(
                    is["name"].as_str().unwrap(),
                    format!("{}-r1", was["name"].as_str().unwrap())
                );
                was["name"] = is["name"].clone();
                assert_eq!(&was, is, "{id}: more than its name changed");
            }
            // Every round changes the same entities.
            assert_eq!(
                changed(&round_1, &drifted(&clouds, 5_000, 1, percent, 2)),
                ids
            );
            assert_eq!(
                changed(&drawn, &drifted(&clouds, 5_000, 1, percent, 9)),
                ids
            );
        }
    }

    #[test]
    fn a_larger_drift_takes_in_a_smaller_one() {
        let drawn = graph(&["aws"], 1_000, 3);
        let five: HashSet<String> = changed(&drawn, &drifted(&["aws"], 1_000, 3, 5, 1))
            .into_iter()
            .collect();
        let ten: HashSet<String> = changed(&drawn, &drifted(&["aws"], 1_000, 3, 10, 1))
            .into_iter()
            .collect();
        assert_eq!((five.len(), ten.len()), (50, 100));
        assert!(five.is_subset(&ten));
        // Another seed drifts other entities.
        let other = changed(
            &graph(&["aws"], 1_000, 4),
            &drifted(&["aws"], 1_000, 4, 5, 1),
        );
        assert_ne!(other.into_iter().collect::<HashSet<_>>(), five);
    }

    #[test]
    fn a_drifted_graph_keeps_its_promises() {
        for size in [8, 9, 50, 200] {
            for seed in 1..=10 {
                for percent in [5, 50, 100] {
                    check(
                        &drifted(&["aws", "azure"], size, seed, percent, 3),
                        &["aws", "azure"],
                        size,
                    );
                }
            }
        }
    }

    #[test]
    fn the_proportions_are_roughly_as_drawn() {
        let g = graph(&["aws", "azure", "gcp", "oci"], 20_000, 5);
        let share = |kind: &str, name: &str| {
            let of: Vec<&Value> = g["entities"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["type"] == kind)
                .collect();
            let n = of.iter().filter(|e| e["properties"][name] == true).count();
            n as f64 / of.len() as f64
        };
        for (kind, name, p) in [
            ("machine", "internet_exposed", 0.2),
            ("identity", "admin", 0.1),
            ("identity", "mfa", 0.7),
            ("role", "privileged", 0.2),
            ("storage", "public", 0.1),
            ("storage", "sensitive", 0.2),
        ] {
            let got = share(kind, name);
            assert!(
                (got - p).abs() < 0.02,
                "{kind}.{name}: {got}, wanted about {p}"
            );
        }
    }
}
