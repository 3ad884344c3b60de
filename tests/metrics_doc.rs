//! `docs/metrics.md` is the metrics' contract: every process's `/metrics`, scraped from real
//! `sv0 worker`, `sv0 scheduler` and `sv0 admin-api` processes after a scan that succeeds and one
//! that fails, must list exactly the documented names with their types, and every series must
//! carry exactly the documented labels. And the run and stage series count what happened.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mongodb::bson::doc;
use support::Sv0Process;
use support::http_get;
use support::pipeline::{DEMO_KIND, Fixture};
use sv0_domain::RunStatus;

const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// One row of the document's table.
#[derive(Debug)]
struct Documented {
    kind: String,
    labels: BTreeSet<String>,
    processes: BTreeSet<char>,
}

/// The table of `docs/metrics.md`, by exposed name (`sv0_…_total` for a counter).
fn documented() -> BTreeMap<String, Documented> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md"))
        .expect("docs/metrics.md");
    let mut rows = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `sv0_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_string();
        let labels = cells[3]
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_string())
            .filter(|l| !l.is_empty())
            .collect();
        let processes = cells[4].chars().filter(|c| !c.is_whitespace()).collect();
        let row = Documented {
            kind: cells[2].to_string(),
            labels,
            processes,
        };
        assert!(
            rows.insert(name.clone(), row).is_none(),
            "{name} is listed twice"
        );
    }
    assert!(rows.len() > 30, "the table was read: {} rows", rows.len());
    rows
}

/// A scrape: each family's exposed name and type, and each sample's name and label names.
struct Scrape {
    families: BTreeMap<String, String>,
    samples: Vec<(String, BTreeSet<String>)>,
}

fn scrape(addr: &str) -> Scrape {
    let (status, text) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "/metrics on {addr}");
    let mut families = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            let exposed = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            families.insert(exposed, kind.to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            let name_end = line.find(['{', ' ']).unwrap();
            let name = line[..name_end].to_string();
            let labels = line[name_end..]
                .strip_prefix('{')
                .and_then(|rest| rest.split_once('}'))
                .map(|(labels, _)| {
                    labels
                        .split(',')
                        .filter_map(|pair| pair.split_once('=').map(|(k, _)| k.to_string()))
                        .filter(|k| k != "le")
                        .collect()
                })
                .unwrap_or_default();
            samples.push((name, labels));
        }
    }
    Scrape { families, samples }
}

/// The documented name a sample belongs to (a histogram's `_bucket`, `_sum`, `_count`).
fn family_of<'a>(sample: &str, docs: &'a BTreeMap<String, Documented>) -> Option<&'a str> {
    let sample = sample.strip_suffix("_created").unwrap_or(sample);
    [sample]
        .into_iter()
        .chain(
            ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|suffix| sample.strip_suffix(suffix)),
        )
        .find_map(|name| docs.get_key_value(name).map(|(k, _)| k.as_str()))
}

/// What `process` serves must be documented for it, with the documented type and labels. (A
/// family with no series yet is not served at all, so the other direction is checked over
/// every process together, in [`undocumented_or_unregistered`].)
fn check(process: char, scrape: &Scrape, docs: &BTreeMap<String, Documented>) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, served) in &scrape.families {
        match docs.get(name) {
            Some(doc) if !doc.processes.contains(&process) => problems.push(format!(
                "{process}: {name} is served but documented only for {:?}",
                doc.processes
            )),
            Some(doc) if &doc.kind != served => problems.push(format!(
                "{process}: {name} is a {served}, documented as a {}",
                doc.kind
            )),
            Some(_) => {}
            None => problems.push(format!("{process}: {name} is served but not documented")),
        }
    }
    for (sample, labels) in &scrape.samples {
        let Some(family) = family_of(sample, docs) else {
            problems.push(format!(
                "{process}: sample {sample} has no documented family"
            ));
            continue;
        };
        if labels != &docs[family].labels {
            problems.push(format!(
                "{process}: {sample} has labels {labels:?}, documented {:?}",
                docs[family].labels
            ));
        }
    }
    problems
}

/// Documented metrics that no process served in this test (they move only on trouble: panics,
/// reaps, lost claims…) must at least be registered under their name somewhere in the sources:
/// a documented metric that no longer exists is a defect of the document.
fn undocumented_or_unregistered(
    served: &BTreeSet<String>,
    docs: &BTreeMap<String, Documented>,
) -> Vec<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut sources = String::new();
    for dir in [
        "src",
        "queue/src",
        "worker/src",
        "scheduler/src",
        "broker/src",
        "pipeline/src",
        "admin-api/src",
    ] {
        for entry in std::fs::read_dir(format!("{root}/{dir}")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                sources.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
    }
    docs.keys()
        .filter(|name| !served.contains(*name))
        .filter(|name| {
            let short = name.strip_prefix("sv0_").unwrap();
            let short = short.strip_suffix("_total").unwrap_or(short);
            let without_component = short.split_once('_').map_or(short, |(_, rest)| rest);
            let registered = |n: &str| {
                sources.contains(&format!("\"{n}\"")) || sources.contains(&format!("\"sv0_{n}\""))
            };
            !registered(short) && !registered(without_component)
        })
        .map(|name| format!("{name} is documented but registered nowhere"))
        .collect()
}

/// The value of the sample `series` (name and labels as printed) in a scrape of `addr`.
fn value(addr: &str, series: &str) -> f64 {
    let (_, text) = http_get(addr, "/metrics");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_process_serves_exactly_the_documented_metrics_and_the_run_series_count() {
    let docs = documented();
    let fixture = Fixture::new("metrics_doc").await;
    let failing = fixture.wrap_kind("exit");
    let good = fixture
        .provision(
            "acme",
            DEMO_KIND,
            doc! {"clouds": ["aws"], "size": 20, "seed": 1},
            60,
        )
        .await;
    let bad = fixture
        .provision(
            "acme",
            &failing,
            doc! {"clouds": ["aws"], "size": 20, "seed": 1},
            60,
        )
        .await;
    let worker = fixture.worker(&["acme"], &["--concurrency", "3"]);
    let scheduler = Sv0Process::scheduler(fixture.tdb.uri(), fixture.tdb.name(), &[]);
    let api = fixture.admin_api(&[]);

    // Each job settles after its handler has counted what it did.
    let run = fixture.scan(&good).await;
    let run = fixture.finished("acme", run.id, RUN_TIMEOUT).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    fixture.settled_jobs(run.id, RUN_TIMEOUT).await;
    let run = fixture.scan(&bad).await;
    let run = fixture.finished("acme", run.id, RUN_TIMEOUT).await;
    assert_eq!(run.status, RunStatus::Failed, "{run:#?}");
    fixture.settled_jobs(run.id, RUN_TIMEOUT).await;

    let w = worker.status_addr();
    for stage in [
        "execute_scan",
        "sync_ingestion",
        "evaluate_findings",
        "assemble_chains",
        "stitch_paths",
        "build_evidence_pack",
    ] {
        assert_eq!(
            value(
                &w,
                &format!("sv0_stage_cells_total{{stage=\"{stage}\",status=\"succeeded\"}}")
            ),
            1.0,
            "{stage} succeeded once"
        );
        assert_eq!(
            value(
                &w,
                &format!("sv0_stage_duration_seconds_count{{stage=\"{stage}\"}}")
            ),
            if stage == "execute_scan" { 2.0 } else { 1.0 },
            "{stage}'s duration observed once per final state"
        );
    }
    assert_eq!(
        value(
            &w,
            "sv0_stage_cells_total{stage=\"execute_scan\",status=\"failed\"}"
        ),
        1.0,
        "the failing connector's stage"
    );
    for status in ["succeeded", "failed"] {
        assert_eq!(
            value(
                &w,
                &format!("sv0_runs_finished_total{{trigger=\"manual_api\",status=\"{status}\"}}")
            ),
            1.0,
            "one run {status}"
        );
    }
    assert_eq!(
        value(&w, "sv0_run_duration_seconds_count{trigger=\"manual_api\"}"),
        2.0
    );
    assert_eq!(value(&w, "sv0_worker_slots_capacity"), 3.0);
    support::eventually("the worker counts itself live", RUN_TIMEOUT, || {
        let w = w.clone();
        async move { value(&w, "sv0_worker_live_workers") == 1.0 }
    })
    .await;

    // The API's request series exist once it has answered.
    let api_url = api.api_url();
    let api_addr = api_url.strip_prefix("http://").unwrap().to_string();
    let (status, _) = http_get(&api_addr, "/healthz");
    assert_eq!(status, 200);

    let mut problems = Vec::new();
    let mut served = BTreeSet::new();
    for (process, addr) in [
        ('W', w.clone()),
        ('S', scheduler.status_addr()),
        ('A', api_addr.clone()),
    ] {
        let scrape = scrape(&addr);
        problems.extend(check(process, &scrape, &docs));
        served.extend(scrape.families.keys().cloned());
    }
    // The run above exercises most of them: a regression that stops serving them shows here.
    assert!(
        served.len() >= 20,
        "only {} families served: {served:?}",
        served.len()
    );
    problems.extend(undocumented_or_unregistered(&served, &docs));
    assert!(
        problems.is_empty(),
        "docs/metrics.md and the processes disagree:\n{}",
        problems.join("\n")
    );
}
