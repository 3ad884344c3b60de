//! The stand: the MongoDB-wire server a test process talks to, and a database per test on it.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use mongodb::options::ClientOptions;
use mongodb::{Client, Database};
use sv0_devdb::DevDb;

/// Set to a MongoDB connection string to run every test against that server instead of devdb.
pub const REAL_MONGODB_ENV: &str = "SV0_MONGODB_URI";

/// A server tests can connect to: a devdb this process started, or the one `SV0_MONGODB_URI` names.
#[derive(Debug)]
pub struct Stand {
    uri: String,
    /// Kept alive for the process's lifetime; devdb stops by itself when the process exits,
    /// because statics are never dropped.
    devdb: Option<DevDb>,
}

impl Stand {
    fn start(oplog: bool) -> Stand {
        if let Some(uri) = real_mongodb_uri() {
            return Stand { uri, devdb: None };
        }
        let devdb = DevDb::builder()
            .oplog(oplog)
            .start()
            .unwrap_or_else(|e| panic!("could not start the devdb stand: {e}"));
        Stand {
            uri: devdb.uri(),
            devdb: Some(devdb),
        }
    }

    /// The connection string for this stand.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The address of the server (the first host of the URI on a real MongoDB), for a
    /// [`crate::FaultProxy`] to forward to.
    pub fn addr(&self) -> SocketAddr {
        if let Some(devdb) = &self.devdb {
            return devdb.addr();
        }
        let hosts = self
            .uri
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(['/', '?']).next())
            .unwrap_or_default();
        let first = hosts.split(',').next().unwrap_or_default();
        let host = first.rsplit('@').next().unwrap_or_default();
        let with_port = if host.contains(':') {
            host.to_string()
        } else {
            format!("{host}:27017")
        };
        with_port
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .unwrap_or_else(|| panic!("cannot resolve the host of {REAL_MONGODB_ENV}: {host}"))
    }

    /// A connection string that reaches this stand through `proxy` instead.
    pub fn uri_via(&self, proxy: SocketAddr) -> String {
        format!("mongodb://{proxy}/?directConnection=true")
    }
}

static STAND: OnceLock<Stand> = OnceLock::new();
static OPLOG_STAND: OnceLock<Stand> = OnceLock::new();

/// The stand shared by every test in this process, started on first use. The oplog is off.
pub fn stand() -> &'static Stand {
    STAND.get_or_init(|| Stand::start(false))
}

/// A second stand with the oplog on, for change-stream tests only: on devdb an idle change
/// stream busy-polls a server core, so the shared stand keeps it off. On a real MongoDB (a
/// replica set) this is the same server as [`stand()`].
pub fn oplog_stand() -> &'static Stand {
    OPLOG_STAND.get_or_init(|| Stand::start(true))
}

fn real_mongodb_uri() -> Option<String> {
    std::env::var(REAL_MONGODB_ENV)
        .ok()
        .filter(|uri| !uri.is_empty())
}

/// True when the suite runs against a real MongoDB. Tests that pin devdb's own behaviour (its
/// gaps, its restart) return early then.
pub fn on_real_mongodb() -> bool {
    real_mongodb_uri().is_some()
}

/// A fresh database for one test, on a stand, with its own client.
///
/// Each test gets its own client because a client belongs to the tokio runtime that created it,
/// and every `#[tokio::test]` has a runtime of its own.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub client: Client,
    pub db: Database,
    uri: String,
}

impl TestDb {
    /// A new database on the shared [`stand()`], named after `label` (the test's name).
    pub async fn new(label: &str) -> TestDb {
        TestDb::on(stand(), label).await
    }

    /// A new database on the given stand.
    pub async fn on(stand: &Stand, label: &str) -> TestDb {
        let client = connect(stand.uri()).await;
        let db = client.database(&database_name(label));
        TestDb {
            client,
            db,
            uri: stand.uri().to_string(),
        }
    }

    /// The database's name, for handing to another process.
    pub fn name(&self) -> &str {
        self.db.name()
    }

    /// The stand's connection string, for handing to another process.
    pub fn uri(&self) -> &str {
        &self.uri
    }
}

/// A client with short timeouts, so that a stand that is down fails a test in seconds.
pub async fn connect(uri: &str) -> Client {
    let mut options = ClientOptions::parse(uri)
        .await
        .unwrap_or_else(|e| panic!("bad connection string {uri}: {e}"));
    options.server_selection_timeout = Some(Duration::from_secs(10));
    options.connect_timeout = Some(Duration::from_secs(5));
    options.app_name = Some("sv0-tests".into());
    Client::with_options(options).expect("a client from valid options")
}

/// `sv0t_<label>_<pid>_<n>`: unique across the processes and tests of one run, and within
/// MongoDB's 63-byte limit on database names.
fn database_name(label: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let label: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(32)
        .collect();
    format!("sv0t_{label}_{}_{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::database_name;

    #[test]
    fn database_names_are_unique_and_short_enough() {
        let long = "a".repeat(200);
        let first = database_name(&long);
        let second = database_name(&long);
        assert_ne!(first, second);
        assert!(first.len() <= 63, "{first} is {} bytes", first.len());
        assert!(database_name("x/y.z$").starts_with("sv0t_x_y_z__"));
    }
}
