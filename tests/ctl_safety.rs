//! `sv0 ctl` against what a shell, a network and a connector can do to it: the token never on its
//! command line, no token in clear to another host, ids that cannot reach another route, and
//! connector-written text that cannot drive the operator's terminal. Real `sv0 admin-api` and
//! `sv0 ctl` processes.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::bson::{DateTime, doc};
use serde_json::Value;
use support::pipeline::{DEMO_KIND, Fixture, token};
use support::sv0;

/// Written by a connector into its run: clear the screen, return to the line's start and
/// overwrite it, reverse what follows, an 8-bit CSI and a DEL.
const HOSTILE: &str = "scan failed\x1b[2J\rall good \u{202e}txt.exe\u{9b}31m\x7f";
const RAW: [char; 5] = ['\x1b', '\r', '\u{202e}', '\u{9b}', '\x7f'];

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `sv0 ctl ARGS…` with no token in its environment but what `env` gives.
fn ctl(url: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(sv0())
        .arg("ctl")
        .args(["--api-url", url])
        .args(args)
        .env_remove("SV0_API_TOKEN")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn ctl_takes_no_token_flag_encodes_ids_and_escapes_what_connectors_wrote() {
    let fixture = Fixture::new("ctl_hardening").await;
    let scope = fixture
        .provision(
            "acme",
            DEMO_KIND,
            doc! {"clouds": ["aws"], "size": 5, "seed": 1},
            120,
        )
        .await;
    let api = fixture.admin_api(&[]);
    let url = api.api_url();
    let operator = token(&fixture, "operator", "oncall");
    let env = [("SV0_API_TOKEN", operator.as_str())];

    // The token from the environment, and from a file's first line.
    let listed = ctl(&url, &env, &["runs", "list"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("  {operator}  \nnot the token\n")).unwrap();
    let file = file.to_str().unwrap();
    let from_file = ctl(&url, &[], &["--api-token-file", file, "runs", "list"]);
    assert!(from_file.status.success(), "{}", stderr(&from_file));
    let none = ctl(&url, &[], &["runs", "list"]);
    assert_eq!(none.status.code(), Some(1), "{}", stderr(&none));
    assert!(
        stderr(&none).contains("SV0_API_TOKEN") && stderr(&none).contains("--api-token-file"),
        "{}",
        stderr(&none)
    );
    // A token on the command line would be in `ps` and the shell's history: no such flag.
    let flag = ctl(&url, &[], &["--api-token", &operator, "runs", "list"]);
    assert!(!flag.status.success(), "--api-token was accepted");
    assert!(
        stderr(&flag).contains("--api-token-file"),
        "{}",
        stderr(&flag)
    );

    // `../tenants` stays one segment of a run id: a refusal from the runs route, never the
    // tenants list that `/scan-runs/../tenants` resolves to.
    let escaped_id = ctl(&url, &env, &["runs", "show", "../tenants"]);
    assert_eq!(
        escaped_id.status.code(),
        Some(1),
        "{}{}",
        stdout(&escaped_id),
        stderr(&escaped_id)
    );
    assert!(
        stderr(&escaped_id).contains("..%2Ftenants")
            && (stderr(&escaped_id).contains("400") || stderr(&escaped_id).contains("404")),
        "{}",
        stderr(&escaped_id)
    );
    let routes = |api: &support::Sv0Process| -> Vec<String> {
        api.events("request")
            .iter()
            .filter_map(|e| e["span"]["route"].as_str().map(String::from))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !routes(&api).iter().any(|r| r == "/api/v1/scan-runs/{id}") {
        assert!(Instant::now() < deadline, "{:?}", routes(&api));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !routes(&api).iter().any(|r| r == "/api/v1/tenants"),
        "{:?}",
        routes(&api)
    );
    let dots = ctl(&url, &env, &["runs", "show", ".."]);
    assert_eq!(dots.status.code(), Some(1), "{}", stdout(&dots));

    // A run whose driver cell and error carry terminal control sequences.
    let triggered = ctl(
        &url,
        &env,
        &["--json", "scopes", "trigger", "acme", &scope.id.to_hex()],
    );
    assert!(triggered.status.success(), "{}", stderr(&triggered));
    let run: Value = serde_json::from_slice(&triggered.stdout).unwrap();
    let run_id = run["id"].as_str().unwrap().to_string();
    let now = DateTime::now();
    fixture
        .db()
        .collection::<mongodb::bson::Document>("scan_runs")
        .update_one(
            doc! {"_id": mongodb::bson::oid::ObjectId::parse_str(&run_id).unwrap()},
            doc! {"$set": {
                "error": HOSTILE,
                "category_results.__driver__": {
                    "status": "failed",
                    "items_scanned": 0_i64,
                    "started_at": now,
                    "ended_at": now,
                    "errors": [HOSTILE],
                },
            }},
        )
        .await
        .unwrap();

    let shown = ctl(&url, &env, &["runs", "show", &run_id]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let listed = ctl(&url, &env, &["runs", "list", "--tenant", "acme"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    for output in [&shown, &listed] {
        let printed = stdout(output);
        for raw in RAW {
            assert!(!printed.contains(raw), "{raw:?} printed raw: {printed:?}");
        }
        for escape in ["\\u{1b}[2J", "\\r", "\\u{202e}", "\\u{9b}", "\\u{7f}"] {
            assert!(printed.contains(escape), "no {escape} in {printed:?}");
        }
    }
    assert!(stdout(&shown).contains("__driver__"), "{}", stdout(&shown));

    // `--json` escapes what serde_json leaves raw, and still parses to the same text.
    let json = ctl(&url, &env, &["--json", "runs", "show", &run_id]);
    assert!(json.status.success(), "{}", stderr(&json));
    let printed = stdout(&json);
    for raw in RAW {
        assert!(!printed.contains(raw), "{raw:?} printed raw: {printed:?}");
    }
    let parsed: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(parsed["error"], HOSTILE);
    assert_eq!(
        parsed["category_results"]["__driver__"]["errors"][0],
        HOSTILE
    );
}

/// Accepts connections on loopback as an HTTP proxy would, and answers each with a 502: every
/// request `sv0 ctl` makes ends here, whatever host its URL names.
fn proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = [0_u8; 4096];
            let read = stream.read(&mut head).unwrap_or(0);
            kept.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head[..read]).into_owned());
            let _ = stream.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
        }
    });
    (address, seen)
}

/// The remote host is never contacted: the client's proxy variables point at a listener on
/// loopback, so even a request the check let through would end there.
#[test]
fn plain_http_to_a_remote_host_is_refused_before_connecting() {
    let (address, seen) = proxy();
    let remote = |extra: &[&str]| {
        Command::new(sv0())
            .arg("ctl")
            .args(["--api-url", "http://10.1.2.3:1"])
            .args(extra)
            .args(["runs", "list"])
            .env("SV0_API_TOKEN", "sv0_not_a_real_token")
            .env("HTTP_PROXY", &address)
            .env("http_proxy", &address)
            .env("ALL_PROXY", &address)
            .env("all_proxy", &address)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output()
            .unwrap()
    };

    let refused = remote(&[]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("--insecure-http"),
        "{}",
        stderr(&refused)
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "a request left: {:?}",
        seen.lock().unwrap()
    );

    let insisted = remote(&["--insecure-http"]);
    assert_eq!(insisted.status.code(), Some(1), "{}", stderr(&insisted));
    assert!(stderr(&insisted).contains("502"), "{}", stderr(&insisted));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].starts_with("GET http://10.1.2.3:1/api/v1/scan-runs"),
        "{seen:?}"
    );
}
