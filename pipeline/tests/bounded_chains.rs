//! Chain assembly and stitching stay bounded on graphs whose paths multiply, keep the first paths
//! in path order when capped, and find exactly what an exhaustive join finds below the caps; a
//! run of such a graph goes through every stage on one worker and says what was capped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::Document;
use sv0_broker::CredentialBroker;
use sv0_domain::category::{CHAIN, EVAL, EVIDENCE, STITCH, SYNC};
use sv0_domain::{
    CellStatus, Chain, Domain, Edge, EdgeType, Entity, EntityType, Graph, GraphEdge, GraphEntity,
    Keyed, RunStatus, StitchedPath, Tenant,
};
use sv0_pipeline::Pipeline;
use sv0_pipeline::chains::{
    MAX_CHAINS, MAX_STITCHED_CHAIN_REFS, MAX_STITCHED_PATHS, assemble, assemble_at_most, stitch,
    stitch_at_most,
};
use sv0_queue::Queue;
use sv0_testkit::TestDb;
use sv0_worker::{Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

/// `n` machines, identities, roles and storages per cloud, each layer joined to the next in full:
/// every machine exposed, every storage sensitive, every identity of principal `p`.
fn layered(n: usize, clouds: &[&str]) -> Graph {
    let mut graph = Graph::default();
    for cloud in clouds {
        let id = |layer: &str, k: usize| format!("{cloud}:{layer}{k:03}");
        let layers = [
            ("m", EntityType::Machine, "internet_exposed"),
            ("i", EntityType::Identity, ""),
            ("r", EntityType::Role, ""),
            ("s", EntityType::Storage, "sensitive"),
        ];
        for (layer, entity_type, flag) in layers {
            for k in 0..n {
                let mut properties = serde_json::Map::new();
                if !flag.is_empty() {
                    properties.insert(flag.into(), true.into());
                }
                if entity_type == EntityType::Identity {
                    properties.insert("principal".into(), "p".into());
                }
                graph.entities.push(GraphEntity {
                    id: id(layer, k),
                    entity_type,
                    cloud: cloud.to_string(),
                    name: id(layer, k),
                    properties,
                });
            }
        }
        for (from, to, edge_type) in [
            ("m", "i", EdgeType::RunsAs),
            ("i", "r", EdgeType::HasRole),
            ("r", "s", EdgeType::CanAccess),
        ] {
            for a in 0..n {
                for b in 0..n {
                    graph.edges.push(GraphEdge {
                        from: id(from, a),
                        to: id(to, b),
                        edge_type,
                    });
                }
            }
        }
    }
    graph
}

/// [`layered`] ten per layer in `aws` and `azure`, of whose roles only the first three are kept.
fn two_clouds_of_three_roles() -> Graph {
    let mut graph = layered(10, &["aws", "azure"]);
    let roles: BTreeSet<String> = (3..10)
        .flat_map(|k| [format!("aws:r{k:03}"), format!("azure:r{k:03}")])
        .collect();
    graph
        .edges
        .retain(|e| !roles.contains(&e.to) && !roles.contains(&e.from));
    graph.entities.retain(|e| !roles.contains(&e.id));
    graph
}

/// The entities a sync of `graph` leaves live, as the stages read them back.
fn entities_of(graph: &Graph) -> Vec<Entity> {
    let mut edges: BTreeMap<&str, Vec<Edge>> = BTreeMap::new();
    for edge in &graph.edges {
        edges.entry(edge.from.as_str()).or_default().push(Edge {
            to: edge.to.clone(),
            edge_type: edge.edge_type,
        });
    }
    graph
        .entities
        .iter()
        .map(|e| Entity {
            external_id: e.id.clone(),
            source: format!("src-{}", e.cloud),
            entity_type: e.entity_type,
            cloud: e.cloud.clone(),
            name: e.name.clone(),
            properties: mongodb::bson::to_document(&e.properties).expect("plain JSON"),
            edges: edges.remove(e.id.as_str()).unwrap_or_default(),
        })
        .collect()
}

fn keyed(chains: &[Chain]) -> Vec<Keyed<Chain>> {
    chains
        .iter()
        .enumerate()
        .map(|(i, item)| Keyed {
            key: format!("k{i:05}"),
            hash: format!("k{i:05}"),
            item: item.clone(),
        })
        .collect()
}

fn paths<T>(items: &[T], path: impl Fn(&T) -> &Vec<String>) -> Vec<Vec<String>> {
    items.iter().map(|item| path(item).clone()).collect()
}

#[test]
fn the_fully_connected_graph_assembles_only_up_to_the_cap() {
    // 100 per layer: 30,000 edges and 10^8 chains, which took every worker's memory.
    let graph = layered(100, &["aws"]);
    assert_eq!(graph.edges.len(), 30_000);
    graph
        .validate()
        .expect("the graph is within the sync's limits");
    let entities = entities_of(&graph);

    let assembled = assemble(&entities);
    assert_eq!(assembled.items.len(), MAX_CHAINS);
    assert_eq!(
        assembled.capped.as_deref(),
        Some(
            "chains capped at 10000: the graph has more paths from entry points to sensitive \
             targets than are kept (the first 10000 in path order)"
        )
    );
    // The walk enters each step of a kept chain once, and one more chain to see there are more.
    assert!(
        assembled.explored <= 4 * (MAX_CHAINS as u64 + 1),
        "explored {} steps for {} chains",
        assembled.explored,
        MAX_CHAINS
    );
    // The first in path order: the first machine and identity, every role and storage.
    let kept = paths(&assembled.items, |c| &c.path);
    assert!(
        kept.windows(2).all(|w| w[0] < w[1]),
        "in path order, each once"
    );
    assert_eq!(kept[0], ["aws:m000", "aws:i000", "aws:r000", "aws:s000"]);
    assert_eq!(
        kept[MAX_CHAINS - 1],
        ["aws:m000", "aws:i000", "aws:r099", "aws:s099"]
    );

    // The same chains whatever order the entities and edges are read in.
    let mut shuffled = entities.clone();
    shuffled.reverse();
    for entity in &mut shuffled {
        entity.edges.reverse();
    }
    assert_eq!(assemble(&shuffled), assembled);
}

#[test]
fn stitching_chains_that_all_join_stops_at_its_cap() {
    // Two clouds, one principal: every first half of one cloud joins every second half of the
    // other, 60,000 paths listing 2.4 million chain keys; pairing the chains is 36 million pairs.
    let graph = two_clouds_of_three_roles();
    graph.validate().expect("a valid graph");
    let entities = entities_of(&graph);
    let assembled = assemble(&entities);
    assert_eq!(assembled.items.len(), 6_000);
    assert_eq!(assembled.capped, None);
    let chains = keyed(&assembled.items);

    let stitched = stitch(&chains, &entities);
    assert_eq!(stitched.items.len(), MAX_STITCHED_PATHS);
    assert_eq!(
        stitched.capped.as_deref(),
        Some(
            "stitched paths capped at 10000: the chains join across clouds into more paths than \
             are kept (the first in path order, at most 10000 paths listing at most 500000 chain \
             keys between them)"
        )
    );
    let refs: usize = stitched.items.iter().map(|p| p.chains.len()).sum();
    assert!(refs <= MAX_STITCHED_CHAIN_REFS);
    // Each half is visited once, each second half once more when skipped, and each key kept
    // (and those of the one path past the cap) gathered once.
    let bound = 3 * chains.len() + 2 * (MAX_STITCHED_PATHS + 1) + MAX_STITCHED_CHAIN_REFS;
    assert!(
        stitched.explored <= bound as u64,
        "explored {} steps, more than {bound}",
        stitched.explored
    );
    let kept = paths(&stitched.items, |p| &p.path);
    assert!(
        kept.windows(2).all(|w| w[0] < w[1]),
        "in path order, each once"
    );
    assert_eq!(
        kept[0],
        [
            "aws:m000",
            "aws:i000",
            "azure:i000",
            "azure:r000",
            "azure:s000"
        ]
    );
    // A path lists the first chain's 30 continuations and the 10 machines of the second.
    assert!(stitched.items.iter().all(|p| p.chains.len() == 40));

    let mut shuffled = chains.clone();
    shuffled.reverse();
    assert_eq!(stitch(&shuffled, &entities), stitched);
}

#[test]
fn stitching_stops_at_the_chain_keys_it_may_list() {
    let graph = layered(4, &["aws", "azure"]);
    let entities = entities_of(&graph);
    let chains = keyed(&assemble(&entities).items);
    let all = stitch(&chains, &entities);
    assert_eq!(all.capped, None);
    // 20 keys a path: the 16 chains of its first half and the 4 of its second.
    let per_path = all.items[0].chains.len();
    assert_eq!(per_path, 20);
    let capped = stitch_at_most(&chains, &entities, usize::MAX, 3 * per_path + 1);
    assert_eq!(capped.items, all.items[..3]);
    assert!(
        capped
            .capped
            .as_deref()
            .is_some_and(|why| why.starts_with("stitched paths capped at 3: "))
    );
}

/// A small pseudo-random graph: a few clouds, machines running as identities of other clouds
/// too, principals shared across clouds, some machines not exposed, some storages not sensitive,
/// some edges to entities that are not there.
fn scrambled(seed: u64) -> Vec<Entity> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move |below: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % below
    };
    let clouds = ["aws", "azure", "gcp"];
    let id = |layer: &str, k: u64| format!("{layer}{k}");
    let mut entities = Vec::new();
    let layers = [
        ("m", EntityType::Machine, Some(EdgeType::RunsAs), "i"),
        ("i", EntityType::Identity, Some(EdgeType::HasRole), "r"),
        ("r", EntityType::Role, Some(EdgeType::CanAccess), "s"),
        ("s", EntityType::Storage, None, ""),
    ];
    for (layer, entity_type, edge_type, to) in layers {
        for k in 0..6 {
            let mut properties = Document::new();
            match entity_type {
                EntityType::Machine => {
                    properties.insert("internet_exposed", next(4) != 0);
                }
                EntityType::Identity => {
                    properties.insert("principal", format!("p{}", next(2)));
                }
                EntityType::Storage => {
                    properties.insert("sensitive", next(4) != 0);
                }
                EntityType::Role => {}
            }
            let edges = edge_type
                .map(|edge_type| {
                    (0..next(4))
                        .map(|_| Edge {
                            to: id(to, next(7)),
                            edge_type,
                        })
                        .collect()
                })
                .unwrap_or_default();
            entities.push(Entity {
                external_id: id(layer, k),
                source: "src".into(),
                entity_type,
                cloud: clouds[next(3) as usize].into(),
                name: id(layer, k),
                properties,
                edges,
            });
        }
    }
    entities
}

/// Every chain, by trying every path.
fn every_chain(entities: &[Entity]) -> Vec<Chain> {
    let by_id: BTreeMap<&str, &Entity> = entities
        .iter()
        .map(|e| (e.external_id.as_str(), e))
        .collect();
    let to = |e: &Entity, t: EdgeType| -> Vec<&Entity> {
        e.edges
            .iter()
            .filter(|edge| edge.edge_type == t)
            .filter_map(|edge| by_id.get(edge.to.as_str()).copied())
            .collect()
    };
    let mut chains = Vec::new();
    for m in entities
        .iter()
        .filter(|e| e.entity_type == EntityType::Machine && e.flag("internet_exposed"))
    {
        for i in to(m, EdgeType::RunsAs) {
            for r in to(i, EdgeType::HasRole) {
                for s in to(r, EdgeType::CanAccess) {
                    if s.flag("sensitive") {
                        chains.push(Chain {
                            cloud: m.cloud.clone(),
                            path: [m, i, r, s].map(|e| e.external_id.clone()).to_vec(),
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

/// Every stitched path, by pairing every two chains.
fn every_stitched_path(chains: &[Keyed<Chain>], entities: &[Entity]) -> Vec<StitchedPath> {
    let principal_of: BTreeMap<&str, &str> = entities
        .iter()
        .filter(|e| e.entity_type == EntityType::Identity)
        .filter_map(|e| Some((e.external_id.as_str(), e.text("principal")?)))
        .collect();
    let mut joined: BTreeMap<Vec<String>, (String, BTreeSet<String>)> = BTreeMap::new();
    for from in chains {
        for to in chains {
            let (Some(a), Some(b)) = (
                principal_of.get(from.item.path[1].as_str()),
                principal_of.get(to.item.path[1].as_str()),
            ) else {
                continue;
            };
            if a != b || from.item.cloud == to.item.cloud {
                continue;
            }
            let mut path = from.item.path[..2].to_vec();
            path.extend_from_slice(&to.item.path[1..]);
            let (_, keys) = joined
                .entry(path)
                .or_insert_with(|| (a.to_string(), BTreeSet::new()));
            keys.extend([from.key.clone(), to.key.clone()]);
        }
    }
    joined
        .into_iter()
        .map(|(path, (principal, keys))| StitchedPath {
            principal,
            path,
            chains: keys.into_iter().collect(),
        })
        .collect()
}

#[test]
fn below_the_caps_the_walks_find_what_trying_everything_finds() {
    let mut stitched_some = 0;
    for seed in 0..300 {
        let entities = scrambled(seed);
        let assembled = assemble(&entities);
        assert_eq!(assembled.capped, None);
        assert_eq!(assembled.items, every_chain(&entities), "seed {seed}");

        let chains = keyed(&assembled.items);
        let stitched = stitch(&chains, &entities);
        assert_eq!(stitched.capped, None);
        assert_eq!(
            stitched.items,
            every_stitched_path(&chains, &entities),
            "seed {seed}"
        );
        stitched_some += usize::from(!stitched.items.is_empty());

        // A cap keeps a prefix of the full enumeration, and says so only when it left any out.
        for cap in [0, 1, 3] {
            let capped = assemble_at_most(&entities, cap);
            let kept = cap.min(assembled.items.len());
            assert_eq!(capped.items, assembled.items[..kept], "seed {seed}");
            assert_eq!(capped.capped.is_some(), kept < assembled.items.len());
            let capped = stitch_at_most(&chains, &entities, cap, usize::MAX);
            let kept = cap.min(stitched.items.len());
            assert_eq!(capped.items, stitched.items[..kept], "seed {seed}");
            assert_eq!(capped.capped.is_some(), kept < stitched.items.len());
        }
        let exact = assemble_at_most(&entities, assembled.items.len());
        assert_eq!(
            exact.capped, None,
            "a cap the chains just fill leaves none out"
        );
    }
    assert!(
        stitched_some > 30,
        "the graphs stitch often enough to test it: {stitched_some}"
    );
}

/// Ten per layer and three roles in each of two clouds, which stitch into 60,000 paths; then the
/// fully connected hundred per layer, which fills the chain cap.
fn too_many_paths() -> Graph {
    let mut graph = two_clouds_of_three_roles();
    let big = layered(100, &["gcp"]);
    graph.entities.extend(big.entities);
    graph.edges.extend(big.edges);
    graph
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_too_many_paths_succeeds_saying_what_was_capped() {
    let tdb = TestDb::new("bounded_stages").await;
    let domain = Domain::new(&tdb.db);
    domain.ensure_indexes().await.unwrap();
    let queue = Queue::new(&tdb.db);
    queue.ensure_indexes().await.unwrap();
    domain
        .put_tenant(&Tenant::new("acme", "acme").unwrap())
        .await
        .unwrap();
    let broker = CredentialBroker::unobserved();
    let pipeline = Arc::new(Pipeline::new(domain.clone(), queue.clone(), broker));
    let run = pipeline
        .ingest_graph("acme", "big", too_many_paths())
        .await
        .unwrap();

    let mut config = WorkerConfig::new(2);
    // The stand has no change streams; polling finds the next stage's job as well.
    config.change_streams = false;
    let worker = Worker::new(
        queue,
        tdb.db.clone(),
        sv0_pipeline::handlers(pipeline.clone()),
        config,
    );
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { worker.run(shutdown).await }
    });
    // Only a guard against a hang: what bounds the work is asserted on the counts below.
    let deadline = Instant::now() + Duration::from_secs(600);
    let run = loop {
        let run = domain.run("acme", run.id).await.unwrap();
        if run.status.is_finished() {
            break run;
        }
        assert!(
            Instant::now() < deadline,
            "the run never finished: {run:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    shutdown.cancel();
    serving.await.unwrap().unwrap();

    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    for name in [SYNC, EVAL, CHAIN, STITCH, EVIDENCE] {
        let cell = run.cell(name).unwrap();
        assert_eq!(cell.status, CellStatus::Succeeded, "{name}: {cell:?}");
        if name != CHAIN && name != STITCH {
            assert!(cell.errors.is_empty(), "{name}: {cell:?}");
        }
    }
    let chain = run.cell(CHAIN).unwrap();
    assert_eq!(chain.items_scanned, MAX_CHAINS as i64);
    assert_eq!(
        chain.errors,
        [format!(
            "chains capped at {MAX_CHAINS}: the graph has more paths from entry points to \
             sensitive targets than are kept (the first {MAX_CHAINS} in path order)"
        )]
    );
    let stitched = run.cell(STITCH).unwrap();
    assert_eq!(stitched.items_scanned, MAX_STITCHED_PATHS as i64);
    assert_eq!(stitched.errors.len(), 1);
    assert!(
        stitched.errors[0].starts_with(&format!("stitched paths capped at {MAX_STITCHED_PATHS}: ")),
        "{stitched:?}"
    );
    // The chains of the two small clouds come first in path order, then the big cloud's fill
    // the cap.
    let chains = domain.live_chains("acme").await.unwrap();
    assert_eq!(chains.len(), MAX_CHAINS);
    let clouds: BTreeMap<&str, usize> = chains.iter().fold(BTreeMap::new(), |mut n, c| {
        *n.entry(c.item.cloud.as_str()).or_default() += 1;
        n
    });
    assert_eq!(
        clouds,
        BTreeMap::from([("aws", 3_000), ("azure", 3_000), ("gcp", 4_000)])
    );
    let paths = domain.live_stitched_paths("acme").await.unwrap();
    assert_eq!(paths.len(), MAX_STITCHED_PATHS);
}
