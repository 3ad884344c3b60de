//! Test support for sv0's suites: the stand every test talks to, a database of its own per test,
//! a fault-injecting TCP proxy, and fakes of Azure Key Vault and of a managed-identity endpoint.
//!
//! This crate owns test plumbing only. It must not contain product logic, and product crates must
//! not depend on it outside `[dev-dependencies]`.
//!
//! - [`stand()`] starts one devdb per test process on a free port (another, with the oplog on, from
//!   [`oplog_stand()`]); it stops when the process exits. With `SV0_MONGODB_URI` set nothing is
//!   started and every test runs against that server instead.
//! - [`TestDb`] hands each test a fresh database on the stand, so tests run in parallel.
//! - [`commands::recording_client`] records the commands a client sends (their write concern).
//! - [`FaultProxy`] sits between a process and the server: latency, cut connections, black hole.
//! - [`StagedConnectors`] copies connector executables where an unprivileged connector user can
//!   run them.
//! - [`Sv0Process`] runs the `sv0` binary as a worker, scheduler or admin API with test-friendly
//!   flags and collects its JSON log lines; [`poll`] waits on conditions and counts documents.
//! - [`fake_primary`] is a replica set primary of a few lines that records the commands it gets
//!   (where a read is sent).
//! - [`fake_vault`] and [`fake_identity`] stand in for Azure Key Vault and a managed-identity
//!   endpoint, for the broker in-process and for real `sv0 worker` processes alike.

pub mod commands;
pub mod connectors;
pub mod fake_identity;
pub mod fake_primary;
pub mod fake_vault;
pub mod fault_proxy;
pub mod poll;
pub mod process;
mod stand;

pub use connectors::StagedConnectors;
pub use fault_proxy::FaultProxy;
pub use poll::{all, count, eventually, wait_count};
pub use process::{Sv0Process, http_get, sv0};
pub use stand::{REAL_MONGODB_ENV, Stand, TestDb, connect, on_real_mongodb, oplog_stand, stand};
