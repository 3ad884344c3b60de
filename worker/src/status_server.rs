//! The worker's status server: `/metrics` (Prometheus text) and `/healthz`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// How long the main loop (a worker's claim loop, a scheduler's tick) may go without a beat
/// before `/healthz` reports it stuck. Longer than any wait inside the loop (at most
/// `poll_max`, a tick period, or a claim on a slow database).
const STALE_AFTER: Duration = Duration::from_secs(60);

/// The main loop's liveness, as `/healthz` reports it.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Mutex<(&'static str, Instant)>>,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            inner: Arc::new(Mutex::new(("starting", Instant::now()))),
        }
    }
}

impl Health {
    /// The process's loop went round: `/healthz` reports it stuck if this stops.
    pub fn beat(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *inner = ("running", Instant::now());
    }

    /// `starting` and `running` are healthy; any other state (`draining`, …) is not.
    pub fn set_state(&self, state: &'static str) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).0 = state;
    }

    /// `starting`, `running`, `draining` or `stopped`.
    pub fn state(&self) -> &'static str {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    fn report(&self) -> (StatusCode, String) {
        let (state, last) = *self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match state {
            "running" if last.elapsed() > STALE_AFTER => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("stuck: the main loop last ran {:?} ago\n", last.elapsed()),
            ),
            "running" | "starting" => (StatusCode::OK, format!("{state}\n")),
            _ => (StatusCode::SERVICE_UNAVAILABLE, format!("{state}\n")),
        }
    }
}

#[derive(Clone)]
struct Status {
    registry: Arc<Registry>,
    health: Health,
}

/// Serves `/metrics` and `/healthz` on `addr` until `shutdown`; returns the bound address.
pub async fn serve_status(
    addr: SocketAddr,
    registry: Arc<Registry>,
    health: Health,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(Status { registry, health });
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "status server failed");
        }
    });
    Ok(bound)
}

async fn metrics(State(status): State<Status>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &status.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("could not encode metrics: {error}\n"),
        ),
    }
}

async fn healthz(State(status): State<Status>) -> impl IntoResponse {
    status.health.report()
}
