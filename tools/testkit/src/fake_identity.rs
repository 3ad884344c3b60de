//! A fake managed-identity endpoint, in both flavours the official `ManagedIdentityCredential`
//! picks between by its process's variables:
//! - the VM's Instance Metadata Service (IMDS), asked at
//!   `http://169.254.169.254/metadata/identity/oauth2/token` when no App Service variables are set;
//! - App Service's identity endpoint, asked at `IDENTITY_ENDPOINT` with the `IDENTITY_HEADER`
//!   secret in `X-IDENTITY-HEADER`: how another process (a real `sv0 worker`) is pointed here,
//!   through the platform's own variables ([`FakeIdentity::app_service_env`]).
//!
//! For IMDS the credential is the SDK's own, changed only through its public options: its
//! [`ClientOptions`] carry a transport that sends plain-HTTP requests through an HTTP proxy, and
//! the proxy is this server, which answers the absolute-form request itself. So the SDK builds its
//! real request, runs its real retry schedule (the one it fixes for IMDS) and wraps failures its
//! real way. What it answers:
//! - a token for the fake vault (`crate::fake_vault::TOKEN`), shaped as IMDS shapes it;
//! - or an error status with an IMDS-like JSON body that contains [`BODY_CANARY`], so a test can
//!   show that no response body reaches the broker's messages.
//!
//! The SDK fixes the IMDS retry schedule (six retries, 1.34 s growing to 72 s in all), so
//! [`fast_sdk_sleeps`] installs, through the SDK's public `set_async_runtime`, a runtime whose
//! sleeps last a thousandth of what the SDK asks: the same schedule, in milliseconds.
//!
//! A request that is not a token request of either flavour (wrong host or path, no
//! `Metadata: true` header, no `api-version` or `resource`, a missing or wrong identity header) is
//! recorded and answered 418; [`FakeIdentity::requests`] then fails the test, so a change in the
//! SDK's request cannot pass for an outage.

use crate::fake_vault::{REAL_RESOURCE, TOKEN};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use azure_core::async_runtime::{
    AbortableTask, AsyncRuntime, SpawnedTask, TaskFuture, set_async_runtime,
};
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions};
use serde_json::json;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Once};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Part of every error body the fake sends: it must never show in a broker error.
pub const BODY_CANARY: &str = "IMDS-BODY-CANARY-5d2e";

/// The App Service flavour's path, and the secret its caller must present (the platform hands it
/// to the app in `IDENTITY_HEADER`; it is as secret as a token).
pub const APP_SERVICE_PATH: &str = "/msi/token";
pub const IDENTITY_HEADER_SECRET: &str = "identity-header-canary-0c4e81";
const APP_SERVICE_API_VERSION: &str = "api-version=2019-08-01";

/// What the endpoint answers to a token request.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    Token,
    /// This HTTP status, with a JSON error body holding [`BODY_CANARY`].
    Status(u16),
}

struct IdentityState {
    answer: Answer,
    requests: usize,
    malformed: Vec<String>,
}

pub struct FakeIdentity {
    addr: SocketAddr,
    state: Arc<Mutex<IdentityState>>,
    server: JoinHandle<()>,
}

impl Drop for FakeIdentity {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeIdentity {
    /// Serves on a loopback port, answering [`Answer::Token`] until told otherwise.
    pub async fn start() -> FakeIdentity {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(IdentityState {
            answer: Answer::Token,
            requests: 0,
            malformed: Vec::new(),
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        FakeIdentity {
            addr,
            state,
            server,
        }
    }

    /// Every later token request gets `answer`.
    pub fn answer(&self, answer: Answer) {
        self.state.lock().unwrap().answer = answer;
    }

    /// Token requests seen so far (each of the credential's retries counts); fails the test if
    /// any of them was not a well-formed IMDS token request.
    pub fn requests(&self) -> usize {
        let state = self.state.lock().unwrap();
        assert!(state.malformed.is_empty(), "{:#?}", state.malformed);
        state.requests
    }

    /// The production credential (`ManagedIdentityCredential`, IMDS flavour), reaching this fake.
    pub fn credential(&self) -> Arc<ManagedIdentityCredential> {
        imds_credential(self.addr)
    }

    /// The loopback port the endpoint listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The variables App Service sets for an app with a managed identity, naming this endpoint:
    /// given to another process, its `ManagedIdentityCredential` asks here.
    pub fn app_service_env(&self) -> [(&'static str, String); 2] {
        [
            (
                "IDENTITY_ENDPOINT",
                format!("http://{}{APP_SERVICE_PATH}", self.addr),
            ),
            ("IDENTITY_HEADER", IDENTITY_HEADER_SECRET.to_owned()),
        ]
    }
}

/// A `ManagedIdentityCredential` whose IMDS requests go to `proxy` (see the module docs).
pub fn imds_credential(proxy: SocketAddr) -> Arc<ManagedIdentityCredential> {
    // These variables would switch the credential to App Service, Azure Arc or Cloud Shell, which
    // this fake does not model: say so rather than test something else.
    for var in ["IDENTITY_ENDPOINT", "MSI_ENDPOINT"] {
        assert!(
            std::env::var_os(var).is_none(),
            "unset {var}: these tests drive the IMDS managed identity"
        );
    }
    let http = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{proxy}")).expect("proxy URL"))
        .build()
        .expect("reqwest client");
    let options = ManagedIdentityCredentialOptions {
        client_options: ClientOptions {
            transport: Some(Transport::new(Arc::new(http))),
            ..Default::default()
        },
        ..Default::default()
    };
    ManagedIdentityCredential::new(Some(options)).expect("credential")
}

/// A `ManagedIdentityCredential` whose IMDS cannot be reached: its proxy's port refuses
/// connections (it was bound, then released).
pub async fn unreachable_imds_credential() -> Arc<ManagedIdentityCredential> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    imds_credential(addr)
}

async fn handle(State(state): State<Arc<Mutex<IdentityState>>>, request: Request) -> Response {
    let uri = request.uri();
    let query = uri.query().unwrap_or_default();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let imds = uri.host() == Some("169.254.169.254")
        && uri.path() == "/metadata/identity/oauth2/token"
        && query.contains("api-version=");
    // Origin-form: the caller connected here itself, as to App Service's local endpoint.
    let app_service = uri.host().is_none()
        && uri.path() == APP_SERVICE_PATH
        && query.contains(APP_SERVICE_API_VERSION)
        && header("x-identity-header").as_deref() == Some(IDENTITY_HEADER_SECRET);
    let well_formed = (imds || app_service)
        && query.contains("resource=")
        && header("metadata").as_deref() == Some("true");
    let answer = {
        let mut s = state.lock().unwrap();
        s.requests += 1;
        if !well_formed {
            s.malformed.push(format!("{} {uri}", request.method()));
            return StatusCode::IM_A_TEAPOT.into_response();
        }
        s.answer
    };
    match answer {
        Answer::Token => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            let expires_on = now.as_secs() + 3600;
            body(
                StatusCode::OK,
                json!({
                    "access_token": TOKEN,
                    "client_id": "00000000-0000-0000-0000-000000000001",
                    "expires_in": "3599",
                    "expires_on": expires_on.to_string(),
                    "ext_expires_in": "3599",
                    "not_before": now.as_secs().to_string(),
                    "resource": REAL_RESOURCE,
                    "token_type": "Bearer"
                }),
            )
        }
        Answer::Status(status) => body(
            StatusCode::from_u16(status).expect("status"),
            json!({ "error": "imds_error", "error_description": format!("fake IMDS failure {BODY_CANARY}") }),
        ),
    }
}

fn body(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// Installs the SDK runtime that cuts every SDK sleep a thousandfold (see the module docs). The
/// SDK takes its runtime once per process: call this first in every test of the binary, before
/// anything of the SDK runs.
pub fn fast_sdk_sleeps() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        set_async_runtime(Arc::new(FastSleeps)).expect("set before the SDK's first use");
    });
}

/// Tokio, as the SDK's own runtime, except that sleeps are a thousandfold shorter.
struct FastSleeps;

impl AsyncRuntime for FastSleeps {
    fn spawn(&self, f: TaskFuture) -> SpawnedTask {
        Box::pin(Task(tokio::spawn(f)))
    }

    fn sleep(&self, duration: azure_core::time::Duration) -> TaskFuture {
        let duration = std::time::Duration::try_from(duration).unwrap_or_default();
        Box::pin(tokio::time::sleep(duration / 1000))
    }

    fn yield_now(&self) -> TaskFuture {
        Box::pin(tokio::task::yield_now())
    }
}

struct Task(tokio::task::JoinHandle<()>);

impl Future for Task {
    type Output = Result<(), Box<dyn std::error::Error + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send>)
    }
}

impl AbortableTask for Task {
    fn abort(&self) {
        self.0.abort();
    }
}
