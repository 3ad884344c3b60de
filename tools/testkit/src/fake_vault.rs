//! A fake Azure Key Vault for tests, following the service's REST API (secrets, data plane) as
//! the official SDK sees it. No Key Vault emulator can be installed on our machines (Lowkey
//! Vault's server is not on Maven Central), so this stands in.
//!
//! What it reproduces:
//! - HTTPS only, with a self-signed certificate made at start (`rcgen`) for `HOST`. In-process
//!   clients reach it through [`FakeVault::client_options`], whose transport trusts that
//!   certificate and resolves `HOST` to the loopback address (no DNS query leaves the machine).
//!   Another process reaches it as it would reach a real vault from behind an egress proxy:
//!   `HTTPS_PROXY` names [`FakeVault::proxy`], a `CONNECT` proxy that tunnels `HOST` to this
//!   server, and the certificate ([`FakeVault::ca_pem`]) is among the roots it trusts.
//! - The challenge flow: a request without a valid bearer token gets 401 with
//!   `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>",
//!   resource="<challenge resource>"`; the retried request with the token succeeds.
//! - `api-version` is required (400 `BadParameter` otherwise).
//! - `GET /secrets` paged by `maxresults` and the server's page size, continued by `nextLink`
//!   (`$skiptoken`); `GET /secrets/{name}[/]`, `GET /secrets/{name}/{version}`,
//!   `GET /secrets/{name}/versions`. Names are case-insensitive.
//! - Errors shaped `{"error": {"code", "message"}}`: `SecretNotFound` (404), `Forbidden` (403, for
//!   a forbidden or disabled secret), `Throttled` (429 with `Retry-After`), `ServiceUnavailable`
//!   (503); and a hang, for timeouts.

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use azure_core::http::{ClientOptions, Transport};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The vault's host name: under `vault.azure.net`, so the SDK's challenge-resource check (on by
/// default) passes for the real resource and fails for any other.
pub const HOST: &str = "fake.vault.azure.net";
pub const TOKEN: &str = "test-access-token";
pub const REAL_RESOURCE: &str = "https://vault.azure.net";
const API_VERSIONS: [&str; 4] = ["7.4", "7.5", "7.6", "2025-07-01"];

#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// 429 `Throttled` with `Retry-After: {0}` seconds.
    Throttle(u32),
    /// 503 `ServiceUnavailable`.
    Unavailable,
    /// Holds the request for a minute before answering.
    Hang,
    /// 404 `SecretNotFound`, as when a secret is deleted between a listing and a read.
    Deleted,
}

struct Version {
    id: String,
    value: String,
    enabled: bool,
}

struct Injected {
    path_contains: String,
    remaining: u32,
    fault: Fault,
}

struct VaultState {
    base: String,
    /// Lower-cased name → (name as created, versions oldest first).
    secrets: BTreeMap<String, (String, Vec<Version>)>,
    forbidden: Vec<String>,
    page_size: usize,
    challenge_resource: String,
    faults: Vec<Injected>,
    requests: Vec<String>,
    next_version: u64,
}

pub struct FakeVault {
    pub url: String,
    addr: SocketAddr,
    cert: CertificateDer<'static>,
    cert_pem: String,
    state: Arc<Mutex<VaultState>>,
    server: JoinHandle<()>,
}

impl Drop for FakeVault {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeVault {
    pub async fn start() -> FakeVault {
        let key = rcgen::generate_simple_self_signed(vec![HOST.to_owned()]).expect("test cert");
        let cert = key.cert.der().clone();
        let cert_pem = key.cert.pem();
        let private =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let tls = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("tls versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], private)
            .expect("tls config");
        let acceptor = TlsAcceptor::from(Arc::new(tls));

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let url = format!("https://{HOST}:{}", addr.port());
        let state = Arc::new(Mutex::new(VaultState {
            base: url.clone(),
            secrets: BTreeMap::new(),
            forbidden: Vec::new(),
            page_size: 25,
            challenge_resource: REAL_RESOURCE.to_owned(),
            faults: Vec::new(),
            requests: Vec::new(),
            next_version: 1,
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let server = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let service = TowerToHyperService::new(app.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        FakeVault {
            url,
            addr,
            cert,
            cert_pem,
            state,
            server,
        }
    }

    /// The vault's certificate as PEM: the root a client outside this process must trust.
    pub fn ca_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The loopback port the vault listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Starts a `CONNECT` proxy in front of this vault (see the module docs).
    pub async fn proxy(&self) -> VaultProxy {
        VaultProxy::start(format!("{HOST}:{}", self.addr.port()), self.addr).await
    }

    fn state(&self) -> MutexGuard<'_, VaultState> {
        self.state.lock().unwrap()
    }

    /// An HTTP client that trusts only this vault's certificate and reaches `HOST` on loopback.
    pub fn http_client(&self) -> reqwest::Client {
        let cert = reqwest::Certificate::from_der(&self.cert).expect("cert");
        reqwest::Client::builder()
            .tls_certs_only([cert])
            .resolve(HOST, self.addr)
            .build()
            .expect("reqwest client")
    }

    /// The SDK's client options with [`Self::http_client`] as transport: the only change to the
    /// official crates' defaults.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            transport: Some(Transport::new(Arc::new(self.http_client()))),
            ..Default::default()
        }
    }

    /// Adds a new current version of `name`.
    pub fn set_secret(&self, name: &str, value: &str) {
        let mut state = self.state();
        let version = format!("{:032x}", state.next_version);
        state.next_version += 1;
        let id = format!("{}/secrets/{name}/{version}", state.base);
        let entry = state
            .secrets
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| (name.to_owned(), Vec::new()));
        entry.1.push(Version {
            id,
            value: value.to_owned(),
            enabled: true,
        });
    }

    pub fn disable(&self, name: &str) {
        let mut state = self.state();
        let entry = state
            .secrets
            .get_mut(&name.to_ascii_lowercase())
            .expect("secret");
        entry.1.last_mut().expect("version").enabled = false;
    }

    /// The caller may list `name` but not read it (403 `Forbidden`).
    pub fn forbid(&self, name: &str) {
        self.state().forbidden.push(name.to_ascii_lowercase());
    }

    pub fn set_page_size(&self, size: usize) {
        self.state().page_size = size;
    }

    pub fn set_challenge_resource(&self, resource: &str) {
        self.state().challenge_resource = resource.to_owned();
    }

    /// The next `times` requests whose path and query contain `path_contains` get `fault`.
    pub fn inject(&self, path_contains: &str, times: u32, fault: Fault) {
        self.state().faults.push(Injected {
            path_contains: path_contains.to_owned(),
            remaining: times,
            fault,
        });
    }

    /// Every request seen, as `METHOD path?query [bearer|anonymous]`.
    pub fn requests(&self) -> Vec<String> {
        self.state().requests.clone()
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "error": { "code": code, "message": message } });
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn attributes(enabled: bool) -> Value {
    json!({
        "enabled": enabled,
        "created": 1_700_000_000,
        "updated": 1_700_000_000,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": 90
    })
}

async fn handle(State(state): State<Arc<Mutex<VaultState>>>, request: Request) -> Response {
    let (method, uri, headers) = (
        request.method().clone(),
        request.uri().clone(),
        request.headers().clone(),
    );
    let query: HashMap<String, String> = Query::try_from_uri(&uri)
        .map(|Query(q)| q)
        .unwrap_or_default();
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let authorized = bearer(&headers) == Some(TOKEN);

    let fault = {
        let mut s = state.lock().unwrap();
        let who = if authorized { "bearer" } else { "anonymous" };
        s.requests.push(format!("{method} {path_and_query} {who}"));
        if !authorized {
            let challenge = format!(
                r#"Bearer authorization="https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47", resource="{}""#,
                s.challenge_resource
            );
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "AKV10000: Request is missing a Bearer or PoP token.",
            );
            let value = HeaderValue::from_str(&challenge).expect("header");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
            return response;
        }
        let fault = s
            .faults
            .iter_mut()
            .find(|f| f.remaining > 0 && path_and_query.contains(&f.path_contains));
        fault.map(|f| {
            f.remaining -= 1;
            f.fault
        })
    };
    match fault {
        Some(Fault::Throttle(seconds)) => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "Throttled",
                "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
            return response;
        }
        Some(Fault::Unavailable) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The service is temporarily unavailable.",
            );
        }
        Some(Fault::Hang) => tokio::time::sleep(Duration::from_secs(60)).await,
        Some(Fault::Deleted) => return not_found(uri.path().trim_start_matches("/secrets/")),
        None => {}
    }
    if !query
        .get("api-version")
        .is_some_and(|v| API_VERSIONS.contains(&v.as_str()))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The request URI contains an invalid or missing api-version parameter.",
        );
    }
    if method != Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "BadParameter",
            "This fake serves reads only.",
        );
    }

    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let s = state.lock().unwrap();
    match segments.as_slice() {
        ["secrets"] => {
            let items: Vec<Value> = s
                .secrets
                .values()
                .map(|(name, versions)| {
                    let enabled = versions.last().is_some_and(|v| v.enabled);
                    json!({ "id": format!("{}/secrets/{name}", s.base), "attributes": attributes(enabled) })
                })
                .collect();
            page(&s, items, "/secrets", &query)
        }
        ["secrets", name, "versions"] => match s.secrets.get(&name.to_ascii_lowercase()) {
            None => not_found(name),
            Some((_, versions)) => {
                let items = versions
                    .iter()
                    .map(|v| json!({ "id": v.id, "attributes": attributes(v.enabled) }))
                    .collect();
                page(&s, items, &format!("/secrets/{name}/versions"), &query)
            }
        },
        ["secrets", name] | ["secrets", name, _] => {
            let lower = name.to_ascii_lowercase();
            let Some((_, versions)) = s.secrets.get(&lower) else {
                return not_found(name);
            };
            if s.forbidden.contains(&lower) {
                return error(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    "Caller is not authorized to perform action on resource. Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'",
                );
            }
            let version = match segments.get(2) {
                None => versions.last(),
                Some(wanted) => versions
                    .iter()
                    .find(|v| v.id.ends_with(&format!("/{wanted}"))),
            };
            match version {
                None => not_found(name),
                Some(v) if !v.enabled => error(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    "Operation get is not allowed on a disabled secret.",
                ),
                Some(v) => ok(json!({
                    "value": v.value,
                    "id": v.id,
                    "attributes": attributes(true),
                    "tags": {}
                })),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "No such route in this fake.",
        ),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn not_found(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "SecretNotFound",
        &format!("A secret with (name/id) {name} was not found in this key vault."),
    )
}

/// One page of `items`, sized by `maxresults` (≤ the server's page size), with a `nextLink` that
/// carries the offset as `$skiptoken` when more remain.
fn page(
    s: &VaultState,
    items: Vec<Value>,
    path: &str,
    query: &HashMap<String, String>,
) -> Response {
    let size = query
        .get("maxresults")
        .and_then(|m| m.parse::<usize>().ok())
        .map_or(s.page_size, |m| m.min(s.page_size))
        .max(1);
    let skip = query
        .get("$skiptoken")
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(0);
    let end = (skip + size).min(items.len());
    let value: Vec<Value> = items.get(skip..end).unwrap_or_default().to_vec();
    let next_link = (end < items.len()).then(|| {
        format!(
            "{}{path}?api-version=2025-07-01&$skiptoken={end}&maxresults={size}",
            s.base
        )
    });
    ok(json!({ "value": value, "nextLink": next_link }))
}

/// An HTTP proxy that answers `CONNECT {HOST}:{port}` by tunnelling to the vault, and any other
/// request 403: a process whose `HTTPS_PROXY` names it reaches the vault by its real host name and
/// checks its certificate end to end, as behind a real egress proxy.
pub struct VaultProxy {
    /// `http://127.0.0.1:{port}`, for `HTTPS_PROXY`.
    pub url: String,
    addr: SocketAddr,
    tunnels: Arc<Mutex<Vec<String>>>,
    server: JoinHandle<()>,
}

impl Drop for VaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl VaultProxy {
    async fn start(authority: String, vault: SocketAddr) -> VaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let url = format!("http://{addr}");
        let tunnels = Arc::new(Mutex::new(Vec::new()));
        let seen = tunnels.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (authority, seen) = (authority.clone(), seen.clone());
                tokio::spawn(async move {
                    let _ = tunnel(client, &authority, vault, &seen).await;
                });
            }
        });
        VaultProxy {
            url,
            addr,
            tunnels,
            server,
        }
    }

    /// The loopback port the proxy listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The request line of every request the proxy received, in order.
    pub fn requests(&self) -> Vec<String> {
        self.tunnels.lock().unwrap().clone()
    }
}

async fn tunnel(
    client: TcpStream,
    authority: &str,
    vault: SocketAddr,
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut client = BufReader::new(client);
    let mut request_line = String::new();
    client.read_line(&mut request_line).await?;
    // The client sends nothing after its head until it is answered.
    let mut header = String::new();
    while client.read_line(&mut header).await? > 2 {
        header.clear();
    }
    let request_line = request_line.trim_end().to_owned();
    seen.lock().unwrap().push(request_line.clone());
    if request_line != format!("CONNECT {authority} HTTP/1.1") {
        return client
            .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
            .await;
    }
    let mut upstream = TcpStream::connect(vault).await?;
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}
