//! The admin API and `sv0 ctl` as CI and operators use them: real `sv0 admin-api`, `sv0 worker`,
//! `sv0 token` and `sv0 ctl` processes on the stand, the demo connector scanning with a canary
//! credential, and the canary and the tokens searched for everywhere afterwards.

mod support;

use std::process::Output;
use std::time::Duration;

use mongodb::bson::doc;
use serde_json::Value;
use support::pipeline::{DEMO_KIND, Fixture, canary, ctl, token};
use support::{count, http_get};

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The CI step after a deploy: `sv0 ctl rematerialize --wait` exits 0 once every deploy-gate run
/// succeeded, and the same step run again for the same deploy creates nothing new. A refused
/// request exits non-zero naming the field. Afterwards the tenant's canary credential and the
/// tokens' secrets appear nowhere: not in any process's logs, the database, `/metrics`, or what
/// `sv0 ctl` printed.
#[tokio::test(flavor = "multi_thread")]
async fn the_ci_step_rematerializes_once_per_deploy_and_nothing_leaks() {
    let fixture = Fixture::new("admin_ctl").await;
    let scope = fixture
        .provision(
            "acme",
            DEMO_KIND,
            doc! {"clouds": ["aws", "azure"], "size": 60, "seed": 5},
            120,
        )
        .await;
    let worker = fixture.worker(&["acme"], &[]);
    let api = fixture.admin_api(&[]);
    let url = api.api_url();
    let ci = token(&fixture, "ci", "ci-pipeline");
    let operator = token(&fixture, "operator", "oncall");
    let mut printed = String::new();

    // An operator scans the scope first, so that there is a graph to rematerialize.
    let triggered = ctl(
        &url,
        &operator,
        &["--json", "scopes", "trigger", "acme", &scope.id.to_hex()],
    );
    printed += &text(&triggered);
    assert!(triggered.status.success(), "{}", text(&triggered));
    let run: Value = serde_json::from_slice(&triggered.stdout).unwrap();
    let run_id = mongodb::bson::oid::ObjectId::parse_str(run["id"].as_str().unwrap()).unwrap();
    let scanned = fixture
        .finished("acme", run_id, Duration::from_secs(120))
        .await;
    assert_eq!(scanned.status.as_str(), "succeeded", "{scanned:#?}");

    let step = [
        "rematerialize",
        "--stages",
        "chains,stitched_paths",
        "--deploy-id",
        "deploy-2026-11-29.1",
        "--commit",
        "4f2a9e1",
        "--wait",
        "--timeout",
        "120",
    ];
    let first = ctl(&url, &ci, &step);
    printed += &text(&first);
    assert!(
        first.status.success(),
        "exit 0 when every run succeeded: {}",
        text(&first)
    );
    assert!(
        text(&first).contains("every run succeeded"),
        "{}",
        text(&first)
    );
    let deploy_runs =
        doc! {"trigger.type": "deploy_gate", "trigger.deploy_id": "deploy-2026-11-29.1"};
    assert_eq!(
        count(fixture.db(), "scan_runs", deploy_runs.clone()).await,
        1
    );

    let again = ctl(&url, &ci, &step);
    printed += &text(&again);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        count(fixture.db(), "scan_runs", deploy_runs).await,
        1,
        "nothing new for the same deploy"
    );
    assert_eq!(
        count(fixture.db(), "jobs", doc! {"kind": "rematerialize"}).await,
        1
    );

    let refused = ctl(
        &url,
        &ci,
        &["rematerialize", "--stages", "evidence", "--deploy-id", "d"],
    );
    printed += &text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("field `stages[0]`"),
        "{}",
        text(&refused)
    );
    let forbidden = ctl(&url, &ci, &["scopes", "pause", "acme", &scope.id.to_hex()]);
    printed += &text(&forbidden);
    assert_eq!(forbidden.status.code(), Some(1));
    assert!(text(&forbidden).contains("403"), "{}", text(&forbidden));

    let listed = ctl(&url, &operator, &["runs", "list", "--tenant", "acme"]);
    printed += &text(&listed);
    assert!(listed.status.success());
    assert!(
        text(&listed).contains("deploy_gate") && text(&listed).contains("manual_api"),
        "{}",
        text(&listed)
    );

    // Every API log line about a request carries its id.
    let requests = api.events("request");
    assert!(requests.len() >= 6, "{requests:#?}");
    assert!(
        requests.iter().all(|e| e["span"]["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())),
        "{requests:#?}"
    );

    let addr = url.trim_start_matches("http://");
    let (_, metrics) = http_get(addr, "/metrics");
    assert!(metrics.contains("sv0_api_requests_total"), "{metrics}");
    let (_, worker_metrics) = http_get(&worker.status_addr(), "/metrics");
    let everything = format!(
        "{printed}{metrics}{worker_metrics}{:?}{:?}{}",
        api.all_events(),
        worker.all_events(),
        support::pipeline::dump(fixture.db()).await
    );
    let secrets = [
        canary("acme"),
        ci.rsplit('_').next().unwrap().to_string(),
        operator.rsplit('_').next().unwrap().to_string(),
    ];
    for secret in secrets {
        assert_eq!(everything.matches(&secret).count(), 0, "{secret} leaked");
    }
    assert!(
        everything.contains("ci-pipeline"),
        "the search covered the audit log"
    );
}

/// `sv0 all`: one process serves the API, runs the scan a request starts (its worker) and ticks
/// the schedule (its scheduler), and stops cleanly on SIGTERM.
#[tokio::test(flavor = "multi_thread")]
async fn sv0_all_runs_every_role_in_one_process() {
    let fixture = Fixture::new("admin_all").await;
    let scope = fixture
        .provision(
            "acme",
            DEMO_KIND,
            doc! {"clouds": ["aws"], "size": 20, "seed": 1},
            120,
        )
        .await;
    let (variable, value) = support::pipeline::credential_var("acme");
    let mut all = fixture.all(&[(variable.as_str(), value.as_str())]);
    let url = all.api_url();
    let operator = token(&fixture, "operator", "oncall");
    let triggered = ctl(
        &url,
        &operator,
        &["--json", "scopes", "trigger", "acme", &scope.id.to_hex()],
    );
    assert!(triggered.status.success(), "{}", text(&triggered));
    let run: Value = serde_json::from_slice(&triggered.stdout).unwrap();
    let run_id = mongodb::bson::oid::ObjectId::parse_str(run["id"].as_str().unwrap()).unwrap();
    let done = fixture
        .finished("acme", run_id, Duration::from_secs(60))
        .await;
    assert_eq!(done.status.as_str(), "succeeded", "{done:#?}");
    // The worker and the scheduler in it serve their status each.
    all.wait_for_event("serving /metrics and /healthz", Duration::from_secs(5));
    assert!(
        all.all_events()
            .iter()
            .filter(|e| e["message"] == "serving /metrics and /healthz")
            .count()
            >= 2,
        "the worker's and the scheduler's status servers"
    );
    all.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(all.wait_exit(Duration::from_secs(30)).success());
}
