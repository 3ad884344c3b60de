//! An admin API served in the test's process over real HTTP, on a database of the test's own on
//! the stand, with a token of every role, and the plumbing the tests share.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use mongodb::bson::{Document, doc};
use prometheus_client::registry::Registry;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sv0_admin_api::{AdminApi, ApiMetrics, NewToken, Role, Tokens};
use sv0_broker::{BrokerMetrics, CredentialBroker};
use sv0_domain::{ConnectorInstance, Domain, ScanScope, TenantSetup};
use sv0_pipeline::{ConnectorKind, ConnectorRegistry, Pipeline};
use sv0_queue::Queue;
use sv0_scheduler::controls::Controls;
use sv0_scheduler::{SchedulerMetrics, SlotLog};
use sv0_testkit::TestDb;

pub struct Api {
    pub tdb: TestDb,
    pub base: String,
    pub domain: Domain,
    pub queue: Queue,
    pub tokens: HashMap<Role, String>,
    pub client: reqwest::Client,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub request_id: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// The field a 4xx body names.
    pub fn field(&self) -> &str {
        self.body["error"]["field"].as_str().unwrap_or("")
    }

    /// The `WWW-Authenticate` challenge, if any.
    pub fn challenge(&self) -> Option<&str> {
        self.headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap())
    }

    /// A refusal of bad input: a 400 whose field holds `field`. `sent` names the request in a
    /// failure's message, as loops over many requests need.
    pub fn assert_invalid(&self, field: &str, sent: impl std::fmt::Display) {
        assert_eq!(
            self.status,
            StatusCode::BAD_REQUEST,
            "{sent}: {:?}",
            self.body
        );
        assert!(
            self.field().contains(field),
            "{sent} names {field}: {:?}",
            self.body
        );
    }
}

impl Api {
    pub async fn start(label: &str) -> Api {
        let tdb = TestDb::new(label).await;
        let domain = Domain::new(&tdb.db);
        domain.ensure_indexes().await.unwrap();
        let queue = Queue::new(&tdb.db);
        queue.ensure_indexes().await.unwrap();
        let slot_log = SlotLog::new(&tdb.db);
        slot_log.ensure_indexes().await.unwrap();
        let mut registry = Registry::with_prefix("sv0");
        let broker = CredentialBroker::new(BrokerMetrics::new(&mut registry));
        let pipeline = Arc::new(
            Pipeline::new(domain.clone(), queue.clone(), broker)
                .with_connectors(registry_of(&KINDS)),
        );
        let controls = Controls {
            pipeline,
            slot_log,
            metrics: SchedulerMetrics::default(),
        };
        let metrics = ApiMetrics::default();
        metrics.register(&mut registry);
        let api = AdminApi::new(&tdb.db, controls, metrics, Arc::new(registry));
        api.ensure_indexes().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, api.router()).await });
        let store = Tokens::new(&tdb.db);
        let mut tokens = HashMap::new();
        for role in Role::ALL {
            let issued = store
                .create(&NewToken::new(format!("test-{}", role.as_str()), role))
                .await
                .unwrap();
            tokens.insert(role, issued.token);
        }
        Api {
            tdb,
            base,
            domain,
            queue,
            tokens,
            client: reqwest::Client::new(),
        }
    }

    pub async fn call(&self, role: Role, method: Method, path: &str, body: Option<Value>) -> Reply {
        let token = self.tokens[&role].clone();
        self.call_with(Some(&token), method, path, body).await
    }

    pub async fn call_with(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let authorization = token.map(|token| format!("Bearer {token}"));
        self.call_authorized(authorization.as_deref(), method, path, body)
            .await
    }

    /// A request whose `Authorization` header is exactly `authorization`.
    pub async fn call_authorized(
        &self,
        authorization: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let request_id = response
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            body,
            request_id,
            headers,
        }
    }

    pub async fn get(&self, role: Role, path: &str) -> Reply {
        self.call(role, Method::GET, path, None).await
    }

    pub async fn post(&self, role: Role, path: &str, body: Value) -> Reply {
        self.call(role, Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, role: Role, path: &str, body: Value) -> Reply {
        self.call(role, Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, role: Role, path: &str, body: Value) -> Reply {
        self.call(role, Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, role: Role, path: &str) -> Reply {
        self.call(role, Method::DELETE, path, None).await
    }

    /// Creates a tenant, as `super_admin`.
    pub async fn create_tenant(&self, id: &str, name: &str) -> Reply {
        let body = json!({"id": id, "name": name});
        self.post(Role::SuperAdmin, "/api/v1/tenants", body).await
    }

    /// Suspends or reactivates a tenant (`status` is `suspended` or `active`), as `super_admin`.
    pub async fn set_tenant_status(&self, tenant: &str, status: &str) -> Reply {
        let path = format!("/api/v1/tenants/{tenant}");
        self.patch(Role::SuperAdmin, &path, json!({ "status": status }))
            .await
    }

    /// Pauses the scope at `path` with `note`, as `operator`.
    pub async fn pause_scope(&self, path: &str, note: &str) -> Reply {
        let body = json!({ "note": note });
        self.post(Role::Operator, &format!("{path}/pause"), body)
            .await
    }

    /// Starts a run of the scope at `path` now, as `operator`.
    pub async fn trigger_scope(&self, path: &str) -> Reply {
        self.post(Role::Operator, &format!("{path}/trigger"), json!(null))
            .await
    }

    /// Creates a `manual_api` run of `scope`, as `role`.
    pub async fn run_now(&self, role: Role, scope: &ScanScope) -> Reply {
        let body = manual_run(&scope.tenant_id, &scope.id.to_hex());
        self.post(role, "/api/v1/scan-runs", body).await
    }

    /// A tenant with one demo instance and one scope (no schedule).
    pub async fn tenant_with_scope(&self, tenant: &str) -> (ConnectorInstance, ScanScope) {
        let set_up = self
            .domain
            .set_up_tenant(&TenantSetup::new(tenant))
            .await
            .unwrap();
        let scope = set_up.scope().clone();
        (set_up.instance, scope)
    }

    /// The metrics in Prometheus' text format (the route takes no token).
    pub async fn metrics(&self) -> String {
        let url = format!("{}/metrics", self.base);
        let response = self.client.get(url).send().await.unwrap();
        response.text().await.unwrap()
    }

    /// The audit entries, oldest first.
    pub async fn audit(&self) -> Vec<Document> {
        use futures::TryStreamExt;
        self.tdb
            .db
            .collection::<Document>("audit_log")
            .find(doc! {})
            .sort(doc! {"_id": 1})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    }

    pub async fn count(&self, collection: &str, filter: Document) -> u64 {
        self.tdb
            .db
            .collection::<Document>(collection)
            .count_documents(filter)
            .await
            .unwrap()
    }
}

/// The kinds the API's connector registry has. The API only checks instances against it and
/// never runs a connector, so any absolute path will do.
pub const KINDS: [&str; 2] = ["aws", "demo"];

pub fn registry_of(kinds: &[&str]) -> ConnectorRegistry {
    ConnectorRegistry::from_kinds(
        kinds
            .iter()
            .map(|kind| {
                (
                    kind.to_string(),
                    ConnectorKind::new("/usr/bin/true", Vec::new()),
                )
            })
            .collect(),
    )
    .unwrap()
}

/// A token of `role` limited to `tenants`.
pub async fn scoped_token(api: &Api, role: Role, tenants: &[&str]) -> String {
    Tokens::new(&api.tdb.db)
        .create(
            &NewToken::new(format!("scoped-{}", role.as_str()), role)
                .tenants(tenants.iter().copied()),
        )
        .await
        .unwrap()
        .token
}

/// Which roles a route admits, written out from the roles' rules, not from the code under test.
#[derive(Clone, Copy, Debug)]
pub enum Admits {
    /// Reading: every role but `ci`.
    Readers,
    /// Runs: every role (`ci` reads deploy-gate runs).
    Everyone,
    /// Rematerialize: `super_admin`, `operator`, `ci`.
    Deployers,
    /// Acting on runs, scopes, instances, jobs: `super_admin`, `operator`.
    Operators,
    /// Tenants, tokens, the audit log: `super_admin`.
    SuperAdmin,
}

impl Admits {
    pub fn admits(self, role: Role) -> bool {
        use Role::*;
        match self {
            Admits::Readers => matches!(role, SuperAdmin | Operator | ReadOnly),
            Admits::Everyone => true,
            Admits::Deployers => matches!(role, SuperAdmin | Operator | Ci),
            Admits::Operators => matches!(role, SuperAdmin | Operator),
            Admits::SuperAdmin => matches!(role, SuperAdmin),
        }
    }
}

/// A scope's route, which its actions' routes extend.
pub fn scope_path(scope: &ScanScope) -> String {
    format!(
        "/api/v1/tenants/{}/scopes/{}",
        scope.tenant_id,
        scope.id.to_hex()
    )
}

pub fn manual_run(tenant: &str, scope_id: &str) -> Value {
    json!({"tenant_id": tenant, "scope_id": scope_id, "trigger": {"type": "manual_api"}})
}
