//! Test support shared by the broker's integration tests (the fake vault and identity endpoint
//! they run against are `sv0_testkit`'s, shared with the end-to-end tests).

#![allow(dead_code)] // each test binary uses its own part of this module

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use std::io::Write;
use std::sync::{Arc, Mutex};
use sv0_testkit::fake_vault;

/// A `TokenCredential` that hands out [`fake_vault::TOKEN`] and records the scopes it was asked for.
#[derive(Debug, Default)]
pub struct TestCredential {
    scopes: Mutex<Vec<String>>,
}

impl TestCredential {
    pub fn scopes(&self) -> Vec<String> {
        self.scopes.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl TokenCredential for TestCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let mut seen = self.scopes.lock().unwrap();
        seen.extend(scopes.iter().map(|s| s.to_string()));
        Ok(AccessToken::new(
            Secret::new(fake_vault::TOKEN),
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

/// Everything written through tracing while a [`capture_tracing`] guard lives.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures every event and span, at every level, from every crate (the Azure SDK's too), on the
/// current thread until the guard drops: use it in a current-thread `#[tokio::test]`.
pub fn capture_tracing() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}
