//! `sv0-demo-connector`: a synthetic connector for the demo and the tests.
//!
//! It keeps the connector contract (docs/connector-contract.md) like any real connector: it reads
//! `--scope-json`, writes `--category-results-out` and `--graph-json`, and exits 0. But it scans
//! nothing: it draws a graph of identities, roles, machines and storage for each cloud of its scope
//! from a seeded RNG. Its graph is deterministic: the same scope gives a byte-identical
//! `graph.json` on every run and every platform; another seed gives another graph.
//!
//! Whatever the seed, for every size ≥ 8 each cloud holds at least one chain (an internet-exposed
//! machine that runs as an identity with a role, privileged, that can access sensitive storage),
//! one admin identity without MFA and one public storage, so the chain stage and every finding
//! rule have something to find. The first half of each cloud's identities are the same people in
//! every cloud (`user{i}@example.com`), so stitching has something to join.
//!
//! Like a real connector it needs a credential: it refuses to run without `DEMO_CLOUD_TOKEN` (the
//! credential broker provides it). What it must not do: print that credential anywhere (it only
//! checks that it is there), or reach any network (it opens no socket; it reads and writes only
//! the three files it is given).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const NAME: &str = "sv0-demo-connector";
/// The credential this connector wants. Checked for, never printed.
const TOKEN_VAR: &str = "DEMO_CLOUD_TOKEN";
const MIN_SIZE: u64 = 8;
/// Four clouds of this many fit the 50,000 entities one sync may carry (`sv0_domain::graph`).
const MAX_SIZE: u64 = 12_500;
const MAX_CLOUDS: usize = 4;

/// Exit code of a run refused before it started: no credential, an invalid scope.
const EXIT_REFUSED: u8 = 2;
/// Exit code of a run that could not write its output.
const EXIT_FAILED: u8 = 1;

/// The three arguments of the connector contract, all required.
#[derive(Debug, Parser)]
#[command(name = NAME, version, about = "A synthetic connector: a deterministic demo graph")]
struct Args {
    /// The scan scope's `scope` document: `{"clouds": [..], "size": N, "seed": N}`.
    #[arg(long, value_name = "PATH")]
    scope_json: PathBuf,
    /// Where to write `category_results.json`.
    #[arg(long, value_name = "PATH")]
    category_results_out: PathBuf,
    /// Where to write `graph.json`.
    #[arg(long, value_name = "PATH")]
    graph_json: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if std::env::var_os(TOKEN_VAR).is_none_or(|token| token.is_empty()) {
        eprintln!(
            "{NAME}: {TOKEN_VAR} is not set: the demo cloud needs a credential (the credential broker provides it)"
        );
        return ExitCode::from(EXIT_REFUSED);
    }
    let scope = match std::fs::read(&args.scope_json) {
        Err(e) => {
            eprintln!(
                "{NAME}: cannot read the scope {}: {e}",
                args.scope_json.display()
            );
            return ExitCode::from(EXIT_REFUSED);
        }
        Ok(bytes) => match Scope::from_json(&bytes) {
            Err(e) => {
                eprintln!("{NAME}: invalid scope: {e}");
                return ExitCode::from(EXIT_REFUSED);
            }
            Ok(scope) => scope,
        },
    };
    match run(&args, &scope) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{NAME}: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Draws the graph, writes both files, and returns the summary line.
fn run(args: &Args, scope: &Scope) -> anyhow::Result<String> {
    let started_at = now()?;
    let graph = Graph::generate(scope);
    let graph_bytes = graph.to_json();
    let ended_at = now()?;
    let results: BTreeMap<&str, CategoryResult> = EntityType::ALL
        .iter()
        .map(|&kind| {
            let result = CategoryResult {
                status: "succeeded",
                items_scanned: graph.count(kind),
                started_at: started_at.clone(),
                ended_at: ended_at.clone(),
                errors: Vec::new(),
            };
            (kind.category(), result)
        })
        .collect();
    let mut results_bytes = serde_json::to_vec(&results)?;
    results_bytes.push(b'\n');
    // The graph first: the category results are the last thing a run writes.
    write_file(&args.graph_json, &graph_bytes)?;
    write_file(&args.category_results_out, &results_bytes)?;
    let clouds = scope.clouds.len();
    Ok(format!(
        "demo connector: {clouds} {}, {} entities, {} edges",
        if clouds == 1 { "cloud" } else { "clouds" },
        graph.entities.len(),
        graph.edges.len()
    ))
}

/// Now, UTC, RFC 3339, to the second.
fn now() -> anyhow::Result<String> {
    let now = OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    Ok(now.format(&Rfc3339)?)
}

/// Writes a sibling temporary file, then renames it over `path`: a reader sees the whole file or
/// none.
fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let file_name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

#[derive(Debug, Serialize)]
struct CategoryResult {
    status: &'static str,
    items_scanned: usize,
    started_at: String,
    ended_at: String,
    errors: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// The scope

/// `scope.json` as written; [`Scope`] once checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeDoc {
    #[serde(default = "default_clouds")]
    clouds: Vec<String>,
    #[serde(default = "default_size")]
    size: u64,
    #[serde(default = "default_seed")]
    seed: u64,
}

fn default_clouds() -> Vec<String> {
    vec!["aws".to_string(), "azure".to_string()]
}

fn default_size() -> u64 {
    200
}

fn default_seed() -> u64 {
    1
}

/// What to draw: `size` entities in each of `clouds`, from `seed`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Scope {
    clouds: Vec<String>,
    size: usize,
    seed: u64,
}

/// A scope that does not read, naming its field.
#[derive(Debug, PartialEq, Eq)]
struct ScopeError {
    /// `size`, `clouds[1]`, an unknown field's own name, …; `None` for the document as a whole
    /// (not JSON, not an object).
    field: Option<String>,
    message: String,
}

impl std::fmt::Display for ScopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl ScopeError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> ScopeError {
        ScopeError {
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl Scope {
    fn from_json(bytes: &[u8]) -> Result<Scope, ScopeError> {
        let whole = |message: String| ScopeError {
            field: None,
            message,
        };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| whole(format!("not JSON: {e}")))?;
        // Serde would also read a struct from an array (`[["aws"], 200, 1]`); a scope is an object.
        if !value.is_object() {
            return Err(whole(format!("must be a JSON object, not {value}")));
        }
        let doc: ScopeDoc = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            ScopeError {
                field: (path != ".").then_some(path),
                message: e.into_inner().to_string(),
            }
        })?;
        if doc.clouds.is_empty() || doc.clouds.len() > MAX_CLOUDS {
            return Err(ScopeError::new(
                "clouds",
                format!(
                    "must list 1 to {MAX_CLOUDS} clouds, got {}",
                    doc.clouds.len()
                ),
            ));
        }
        for (i, cloud) in doc.clouds.iter().enumerate() {
            if !is_cloud_name(cloud) {
                return Err(ScopeError::new(
                    format!("clouds[{i}]"),
                    format!("{cloud:?} must match [a-z][a-z0-9]*"),
                ));
            }
            if doc.clouds[..i].contains(cloud) {
                return Err(ScopeError::new(
                    format!("clouds[{i}]"),
                    format!("{cloud:?} appears more than once"),
                ));
            }
        }
        if !(MIN_SIZE..=MAX_SIZE).contains(&doc.size) {
            return Err(ScopeError::new(
                "size",
                format!(
                    "must be {MIN_SIZE} to {MAX_SIZE} entities per cloud, got {}",
                    doc.size
                ),
            ));
        }
        Ok(Scope {
            clouds: doc.clouds,
            size: usize::try_from(doc.size).expect("at most MAX_SIZE"),
            seed: doc.seed,
        })
    }
}

fn is_cloud_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

// ---------------------------------------------------------------------------------------------
// The graph

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum EntityType {
    Identity,
    Role,
    Machine,
    Storage,
}

impl EntityType {
    const ALL: [EntityType; 4] = [
        EntityType::Identity,
        EntityType::Role,
        EntityType::Machine,
        EntityType::Storage,
    ];

    /// The middle part of an id: `aws:machine:12`.
    fn as_str(self) -> &'static str {
        match self {
            EntityType::Identity => "identity",
            EntityType::Role => "role",
            EntityType::Machine => "machine",
            EntityType::Storage => "storage",
        }
    }

    /// The category of `category_results.json` that counts this type.
    fn category(self) -> &'static str {
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
enum EdgeType {
    RunsAs,
    HasRole,
    CanAccess,
}

/// The properties the rules and chains read, per entity type.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Properties {
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
struct Entity {
    id: String,
    #[serde(rename = "type")]
    entity_type: EntityType,
    cloud: String,
    name: String,
    properties: Properties,
}

#[derive(Debug, Serialize)]
struct Edge {
    from: String,
    to: String,
    #[serde(rename = "type")]
    edge_type: EdgeType,
}

#[derive(Debug, Serialize)]
struct Graph {
    entities: Vec<Entity>,
    edges: Vec<Edge>,
}

/// How a cloud's `size` entities split: 30% identities, 10% roles, 30% machines, the rest (30%)
/// storage; at least one of each for every size ≥ 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    identities: usize,
    roles: usize,
    machines: usize,
    storage: usize,
}

impl Counts {
    fn of(size: usize) -> Counts {
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
struct CloudDraw {
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
    fn draw(cloud: &str, size: usize, seed: u64) -> CloudDraw {
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
    fn guarantee(&mut self) {
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
fn pick_distinct(rng: &mut ChaCha8Rng, n: usize, k: usize) -> Vec<usize> {
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

/// FNV-1a, 64 bits: a cloud name to a ChaCha stream number, the same on every platform.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Graph {
    fn generate(scope: &Scope) -> Graph {
        let mut graph = Graph {
            entities: Vec::with_capacity(scope.size * scope.clouds.len()),
            edges: Vec::new(),
        };
        for cloud in &scope.clouds {
            graph.add_cloud(cloud, &CloudDraw::draw(cloud, scope.size, scope.seed));
        }
        graph
    }

    fn add_cloud(&mut self, cloud: &str, draw: &CloudDraw) {
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

    fn count(&self, kind: EntityType) -> usize {
        self.entities
            .iter()
            .filter(|e| e.entity_type == kind)
            .count()
    }

    /// `graph.json`'s bytes: compact, one trailing newline.
    fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(self).expect("a graph always serializes");
        bytes.push(b'\n');
        bytes
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use serde_json::Value;

    use super::*;

    fn scope(json: &str) -> Result<Scope, ScopeError> {
        Scope::from_json(json.as_bytes())
    }

    fn field(json: &str) -> (String, String) {
        let e = scope(json).expect_err("the scope is invalid");
        let message = e.to_string();
        (e.field.unwrap_or_default(), message)
    }

    fn graph(clouds: &[&str], size: usize, seed: u64) -> Value {
        let scope = Scope {
            clouds: clouds.iter().map(|c| c.to_string()).collect(),
            size,
            seed,
        };
        serde_json::from_slice(&Graph::generate(&scope).to_json()).unwrap()
    }

    #[test]
    fn an_empty_scope_reads_as_the_defaults() {
        assert_eq!(
            scope("{}").unwrap(),
            Scope {
                clouds: vec!["aws".into(), "azure".into()],
                size: 200,
                seed: 1
            }
        );
        assert_eq!(
            scope(r#"{"clouds": ["gcp"], "size": 8, "seed": 18446744073709551615}"#).unwrap(),
            Scope {
                clouds: vec!["gcp".into()],
                size: 8,
                seed: u64::MAX
            }
        );
        assert_eq!(scope(r#"{"size": 12500}"#).unwrap().size, 12_500);
    }

    #[test]
    fn an_invalid_scope_names_its_field() {
        assert_eq!(field(r#"{"size": 3}"#).0, "size");
        assert_eq!(field(r#"{"size": 200001}"#).0, "size");
        assert_eq!(field(r#"{"size": "big"}"#).0, "size");
        assert_eq!(field(r#"{"size": -1}"#).0, "size");
        assert_eq!(field(r#"{"seed": -1}"#).0, "seed");
        assert_eq!(field(r#"{"seed": 1.5}"#).0, "seed");
        assert_eq!(field(r#"{"clouds": []}"#).0, "clouds");
        assert_eq!(field(r#"{"clouds": "aws"}"#).0, "clouds");
        assert_eq!(
            field(r#"{"clouds": ["a", "b", "c", "d", "e"]}"#).0,
            "clouds"
        );
        assert_eq!(field(r#"{"clouds": ["aws", "AWS"]}"#).0, "clouds[1]");
        assert_eq!(field(r#"{"clouds": ["1aws"]}"#).0, "clouds[0]");
        assert_eq!(field(r#"{"clouds": [""]}"#).0, "clouds[0]");
        assert_eq!(field(r#"{"clouds": ["aws", "gcp", "aws"]}"#).0, "clouds[2]");
        assert_eq!(field(r#"{"clouds": [7]}"#).0, "clouds[0]");
        let (field, message) = field(r#"{"size": 10, "colour": "blue"}"#);
        assert_eq!(field, "colour");
        assert!(
            message.starts_with("colour: unknown field `colour`"),
            "{message}"
        );
        assert!(scope("[]").is_err());
        assert!(scope("not json").is_err());
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
