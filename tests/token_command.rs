//! `sv0 token`: tokens limited to tenants and to a lifetime, listed with their last use, and
//! created and revoked under an audit entry written first — no entry, no token.

mod support;

use std::process::{Command, Output};

use futures::TryStreamExt;
use mongodb::IndexModel;
use mongodb::bson::{Document, doc};
use mongodb::options::IndexOptions;
use support::sv0;
use sv0_domain::{Domain, Tenant};
use sv0_testkit::TestDb;

fn token(tdb: &TestDb, args: &[&str]) -> Output {
    Command::new(sv0())
        .arg("token")
        .args(args)
        .args(["--mongodb-uri", tdb.uri(), "--database", tdb.name()])
        .env("USER", "oncall")
        .output()
        .expect("sv0 runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn all(tdb: &TestDb, collection: &str) -> Vec<Document> {
    tdb.db
        .collection::<Document>(collection)
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_limited_expiring_token_is_created_listed_and_revoked_under_audit() {
    let tdb = TestDb::new("token_cli").await;
    Domain::new(&tdb.db)
        .put_tenant(&Tenant::new("acme", "Acme").unwrap())
        .await
        .unwrap();

    let created = token(
        &tdb,
        &[
            "create",
            "--role",
            "ci",
            "--name",
            "deployer",
            "--tenant",
            "acme",
            "--expires-in",
            "30d",
        ],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let secret = String::from_utf8(created.stdout.clone()).unwrap();
    assert!(secret.trim().starts_with("sv0_"));
    assert!(stderr(&created).contains("acme") && stderr(&created).contains("expires"));

    let tokens = all(&tdb, "api_tokens").await;
    assert_eq!(tokens.len(), 1);
    let id = tokens[0].get_object_id("_id").unwrap().to_hex();
    assert_eq!(tokens[0].get_array("tenants").unwrap().len(), 1);
    let expires = tokens[0].get_datetime("expires_at").unwrap();
    let in_days = (expires.timestamp_millis() - mongodb::bson::DateTime::now().timestamp_millis())
        as f64
        / 86_400_000.0;
    assert!((29.9..=30.0).contains(&in_days), "{in_days} days");

    let listed = token(&tdb, &["list"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let listed = String::from_utf8(listed.stdout).unwrap();
    let row = listed.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.contains("acme") && row.contains("deployer"), "{row}");
    assert!(listed.lines().next().unwrap().contains("last used"));

    let revoked = token(&tdb, &["revoke", &id]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));

    let audit = all(&tdb, "audit_log").await;
    // Two processes wrote them: ids from different processes in one second are not ordered.
    let mut summary: Vec<(&str, &str, &str, &str)> = audit
        .iter()
        .map(|e| {
            (
                e.get_str("action").unwrap(),
                e.get_str("target_id").unwrap(),
                e.get_str("token_name").unwrap(),
                e.get_str("outcome").unwrap(),
            )
        })
        .collect();
    summary.sort();
    assert_eq!(
        summary,
        [
            ("token.create", id.as_str(), "local:oncall", "done"),
            ("token.revoke", id.as_str(), "local:oncall", "done"),
        ]
    );
    let everything = format!("{audit:?}");
    let secret_part = secret.trim().rsplit('_').next().unwrap();
    assert!(
        !everything.contains(secret_part),
        "the audit log holds the secret"
    );
}

#[tokio::test]
async fn bad_options_are_refused_naming_them_and_create_nothing() {
    let tdb = TestDb::new("token_cli_bad").await;
    for (args, named) in [
        (
            vec![
                "create", "--role", "ci", "--name", "x", "--tenant", "nobody",
            ],
            "--tenant",
        ),
        (
            vec![
                "create",
                "--role",
                "ci",
                "--name",
                "x",
                "--tenant",
                "Bad\u{202e}Id",
            ],
            "--tenant",
        ),
        (
            vec![
                "create",
                "--role",
                "ci",
                "--name",
                "x",
                "--expires-in",
                "0m",
            ],
            "--expires-in",
        ),
        (
            vec![
                "create",
                "--role",
                "ci",
                "--name",
                "x",
                "--expires-in",
                "30s",
            ],
            "--expires-in",
        ),
        (vec!["revoke", "not-an-id"], "id"),
    ] {
        let out = token(&tdb, &args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(named), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?} printed a token");
    }
    assert!(all(&tdb, "api_tokens").await.is_empty());
    assert!(all(&tdb, "audit_log").await.is_empty());
}

#[tokio::test]
async fn no_token_is_created_when_its_audit_entry_cannot_be_written() {
    let tdb = TestDb::new("token_cli_unaudited").await;
    // The next `token.create` entry fails to be written: a unique index on the action's name,
    // and an entry holding it already.
    let log = tdb.db.collection::<Document>("audit_log");
    log.create_index(
        IndexModel::builder()
            .keys(doc! {"action": 1})
            .options(IndexOptions::builder().unique(true).build())
            .build(),
    )
    .await
    .unwrap();
    log.insert_one(doc! {"action": "token.create"})
        .await
        .unwrap();
    let out = token(&tdb, &["create", "--role", "operator", "--name", "x"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("audit"), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "a token was printed");
    assert!(
        all(&tdb, "api_tokens").await.is_empty(),
        "a token was stored"
    );
}
