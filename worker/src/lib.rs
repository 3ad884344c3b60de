//! The worker runtime: it serves a chosen set of job kinds from a [`sv0_queue::Queue`].
//!
//! This crate owns how a job runs in a worker process: the handler trait and registry, the claim
//! loop with its concurrency limits (overall and per kind), lease heartbeats, self-fencing and
//! cancellation, time bounds, panics as failed attempts, the `with_retry` helper, wake-ups (a
//! change stream where the server has one, adaptive polling always), graceful drain, the
//! live-worker registry (`workers` collection) with its clock-skew check, the choice of the one
//! worker that leads the fleet-wide duties, and the status server
//! (`/metrics`, `/healthz`). It must not write the `jobs` collection except through the queue's
//! API, and it knows nothing of what a handler does.

mod batcher;
mod candidates;
mod claim_ahead;
mod clock;
mod config;
pub mod diagnostics;
mod handler;
mod heartbeat;
mod job_task;
mod leader;
mod metrics;
mod registry;
mod retry;
mod runtime;
mod slots;
mod state;
mod status_server;
mod wakeup;
mod watchdog;

pub use config::{MAX_CONCURRENCY, WorkerConfig};
pub use handler::{HandlerError, HandlerSet, JobContext, JobHandler, TransientError};
pub use leader::{Leadership, while_leading};
pub use metrics::WorkerMetrics;
pub use registry::{WorkerRecord, ensure_registry_indexes, live_workers};
pub use retry::{RETRY_DELAYS, with_retry};
pub use runtime::Worker;
pub use status_server::{Health, serve_status};
