//! The operator's window, proven on real parts: Debian's `prometheus` scrapes a demo stack (two
//! `sv0 worker`s, an `sv0 scheduler` and the `sv0 admin-api` on the stand) under a workload with
//! a failing stage, evaluates `ops/alerts/sv0.rules.yml`, and sends to a real `alertmanager`, which
//! delivers to a webhook receiver in this test. Then:
//! - every query of every panel of `ops/dashboards/*.json` parses and returns data, unless the
//!   panel's description says why it is empty while nothing is wrong ("Empty while …");
//! - every alert rule loads and evaluates without error;
//! - `Sv0StageFailing` fires and reaches the receiver through Alertmanager: the on-call path.
//!
//! The rules are the checked-in file with one change: every `for:` is cut to 0s, so that the test
//! does not wait out hold times (the expressions, which are what could be wrong, are unchanged).
//! With `SV0_RENDER_DASHBOARDS=DIR`, the dashboards are drawn from this Prometheus into DIR
//! (`scripts/render-dashboards`) before it stops: how the pictures in `docs/dashboards/` are made.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::bson::{DateTime, doc};
use serde_json::Value;
use support::Sv0Process;
use support::pipeline::{DEMO_KIND, Fixture, ctl, token};
use sv0_domain::Schedule;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A child process killed on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn binary(names: &[&str]) -> String {
    names
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|path| path.is_file())
            })
        })
        .unwrap_or_else(|| panic!("none of {names:?} on PATH: run scripts/setup"))
        .display()
        .to_string()
}

/// Percent-encodes a form value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `POST path` with a form body, HTTP/1.0: the status and the JSON body.
fn post_form(addr: &str, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    write!(
        socket,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn get_json(addr: &str, path: &str) -> Value {
    let (status, body) = support::http_get(addr, path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The alert notifications Alertmanager delivered, as the webhook's JSON bodies.
fn webhook_receiver() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok()
                && let Ok(value) = serde_json::from_slice(&body)
            {
                sink.lock().unwrap().push(value);
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    (port, received)
}

/// The rules file with every hold time cut to zero.
fn rules_without_hold_times(dir: &Path) -> PathBuf {
    let rules = std::fs::read_to_string(format!("{ROOT}/ops/alerts/sv0.rules.yml")).unwrap();
    let cut: String = rules
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("for:") {
                format!("{}for: 0s", &line[..line.len() - trimmed.len()])
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.join("sv0.rules.yml");
    std::fs::write(&path, cut).unwrap();
    path
}

/// Every (dashboard, panel title, panel description, expr) of the dashboards.
fn panel_queries() -> Vec<(String, String, String, String)> {
    let mut queries = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(format!("{ROOT}/ops/dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for file in files {
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    queries.push((
                        name.clone(),
                        panel["title"].as_str().unwrap_or("").to_string(),
                        panel["description"].as_str().unwrap_or("").to_string(),
                        expr.to_string(),
                    ));
                }
            }
        }
    }
    queries
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboards_and_alerts_work_on_a_real_prometheus_and_the_stage_alert_pages() {
    let prometheus = binary(&["prometheus"]);
    let alertmanager = binary(&["prometheus-alertmanager", "alertmanager"]);
    let dir = tempfile::tempdir().unwrap();

    // The demo stack: a scope that scans well and one whose connector fails, both every 5 s.
    let fixture = Fixture::new("observability").await;
    let scope_json = doc! {"clouds": ["aws", "azure"], "size": 30, "seed": 7};
    let failing = fixture.wrap_kind("exit");
    let good = fixture
        .provision("acme", DEMO_KIND, scope_json.clone(), 60)
        .await;
    let bad = fixture.provision("acme", &failing, scope_json, 60).await;
    for scope in [&good, &bad] {
        fixture
            .domain
            .set_schedule("acme", scope.id, Some(Schedule::every(5)), DateTime::now())
            .await
            .unwrap();
    }
    let workers = [
        fixture.worker(&["acme"], &[]),
        fixture.worker(&["acme"], &[]),
    ];
    let scheduler = Sv0Process::scheduler(fixture.tdb.uri(), fixture.tdb.name(), &[]);
    let api = fixture.admin_api(&[]);
    let api_url = api.api_url();
    let api_addr = api_url.trim_start_matches("http://").to_string();

    // The on-call path: Alertmanager to a webhook here.
    let (webhook_port, received) = webhook_receiver();
    let am_port = free_port();
    std::fs::write(
        dir.path().join("alertmanager.yml"),
        format!(
            "route:\n  receiver: oncall\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: oncall\n    webhook_configs:\n      - url: http://127.0.0.1:{webhook_port}/alerts\n"
        ),
    )
    .unwrap();
    let _alertmanager = Daemon(
        Command::new(&alertmanager)
            .arg(format!(
                "--config.file={}",
                dir.path().join("alertmanager.yml").display()
            ))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("alertmanager starts"),
    );

    let rules = rules_without_hold_times(dir.path());
    let target = |addr: String, job: &str| {
        format!("  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n")
    };
    let mut scrape = String::new();
    for (i, worker) in workers.iter().enumerate() {
        scrape += &target(worker.status_addr(), &format!("sv0-worker-{i}"));
    }
    scrape += &target(scheduler.status_addr(), "sv0-scheduler");
    scrape += &target(api_addr.clone(), "sv0-admin-api");
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\nscrape_configs:\n{scrape}",
            rules.display()
        ),
    )
    .unwrap();
    let prom_port = free_port();
    let prom = format!("127.0.0.1:{prom_port}");
    let _prometheus = Daemon(
        Command::new(&prometheus)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );
    let started = Instant::now();
    let start_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    // The rest of the workload, through the API as an operator and as CI would.
    let operator = token(&fixture, "operator", "oncall");
    let ci = token(&fixture, "ci", "ci");
    let triggered = ctl(
        &api_url,
        &operator,
        &["scopes", "trigger", "acme", &good.id.to_hex()],
    );
    assert!(triggered.status.success(), "{triggered:?}");
    let (status, _) = support::http_get(&api_addr, "/api/v1/scan-runs/not-an-id");
    assert_eq!(
        status, 401,
        "a request without a token is refused (an API error to count)"
    );
    support::eventually("a scan has succeeded", Duration::from_secs(90), || async {
        support::count(fixture.db(), "scan_runs", doc! {"status": "succeeded"}).await > 0
    })
    .await;
    let deploy = ctl(
        &api_url,
        &ci,
        &[
            "rematerialize",
            "--stages",
            "chains,stitched_paths",
            "--deploy-id",
            "obs-1",
            "--wait",
            "--timeout",
            "120",
        ],
    );
    assert!(deploy.status.success(), "{deploy:?}");
    for _ in 0..3 {
        // More refusals, a scrape apart: a series' first count is invisible to `increase()`.
        let (status, _) = support::http_get(&api_addr, "/api/v1/scan-runs/not-an-id");
        assert_eq!(status, 401);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }

    // The alert, end to end.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let delivered = received.lock().unwrap().iter().any(|notification| {
            notification["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|alert| {
                    alert["labels"]["alertname"] == "Sv0StageFailing"
                        && alert["status"] == "firing"
                        && alert["labels"]["stage"] == "execute_scan"
                })
        });
        if delivered {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Sv0StageFailing did not reach the webhook; Prometheus's alerts: {}",
            get_json(&prom, "/api/v1/alerts")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Long enough for the rate windows below to hold a few scrapes of everything.
    if let Some(rest) = Duration::from_secs(40).checked_sub(started.elapsed()) {
        tokio::time::sleep(rest).await;
    }

    // Every rule loaded and evaluates.
    let rules = get_json(&prom, "/api/v1/rules");
    let mut alert_names = Vec::new();
    for group in rules["data"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["name"].as_str().unwrap().to_string();
            assert_eq!(rule["health"], "ok", "rule {name}: {rule}");
            alert_names.push(name);
        }
    }
    assert!(alert_names.len() >= 9, "the rules loaded: {alert_names:?}");

    // Every panel's query parses and returns data, or says why it is empty.
    let mut problems = Vec::new();
    let queries = panel_queries();
    assert!(queries.len() > 40, "the dashboards were read");
    for (dashboard, title, description, expr) in &queries {
        let query = expr
            .replace("$__rate_interval", "20s")
            .replace("$__range", "5m");
        let (status, body) = post_form(&prom, "/api/v1/query", &[("query", &query)]);
        if status != 200 || body["status"] != "success" {
            problems.push(format!("{dashboard} / {title}: {expr} is refused: {body}"));
            continue;
        }
        let empty = body["data"]["result"]
            .as_array()
            .is_none_or(|r| r.is_empty());
        if empty && !description.contains("Empty while") {
            problems.push(format!("{dashboard} / {title}: {expr} returned no data"));
        }
    }
    if let Ok(out) = std::env::var("SV0_RENDER_DASHBOARDS") {
        let end = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let status = Command::new(format!("{ROOT}/scripts/render-dashboards"))
            .args(["--prometheus", &format!("http://{prom}")])
            .args([
                "--start",
                &start_unix.to_string(),
                "--end",
                &end.to_string(),
            ])
            .args(["--out", &out, "--step", "2"])
            .status()
            .unwrap();
        assert!(status.success(), "rendering the dashboards");
    }
    assert!(
        problems.is_empty(),
        "{} of {} panel queries failed:\n{}",
        problems.len(),
        queries.len(),
        problems.join("\n")
    );
}
