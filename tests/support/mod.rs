//! What the root package's end-to-end suites share: real `sv0` processes and the polling helpers
//! (from the test kit), and the pipeline fixture in [`pipeline`].
#![allow(dead_code, unused_imports)] // each test file uses a different part of this

pub mod pipeline;

pub use sv0_testkit::{Sv0Process, all, count, eventually, http_get, sv0, wait_count};
