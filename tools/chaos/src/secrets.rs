//! The canary check across everything: the credential planted for each tenant in the workers'
//! environment must appear nowhere the run left a trace: not in any process's log, not in a dump
//! of any collection, not on any `/metrics` page, not in any API response.

use std::path::Path;

use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::Document;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::faults::Cluster;
use crate::workload::{TENANTS, canary};

/// Where the canaries were found, and how much was searched.
#[derive(Debug, Default)]
pub struct Sightings {
    pub in_logs: usize,
    pub in_collections: usize,
    pub on_metrics_pages: usize,
    pub in_api_responses: usize,
    pub logs_searched: usize,
    pub documents_searched: usize,
    pub pages_searched: usize,
    pub responses_searched: usize,
}

impl Sightings {
    pub fn total(&self) -> usize {
        self.in_logs + self.in_collections + self.on_metrics_pages + self.in_api_responses
    }
}

fn count(text: &str) -> usize {
    TENANTS
        .iter()
        .map(|tenant| text.matches(&canary(tenant)).count())
        .sum()
}

/// Searches the run's directory (logs, and the API responses the actions saved), the database,
/// and each running process's `/metrics`.
pub async fn search(dir: &Path, db: &Database, cluster: &Cluster) -> anyhow::Result<Sightings> {
    let mut found = Sightings::default();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let text = match path.extension().and_then(|e| e.to_str()) {
            Some("log") => std::fs::read_to_string(&path)?,
            _ => continue,
        };
        if path
            .file_name()
            .is_some_and(|n| n == crate::workload::RESPONSES)
        {
            found.in_api_responses += count(&text);
            found.responses_searched += text.lines().count();
        } else {
            found.in_logs += count(&text);
            found.logs_searched += 1;
        }
    }
    for name in db.list_collection_names().await? {
        let mut documents = db
            .collection::<Document>(&name)
            .find(Default::default())
            .await?;
        while let Some(document) = documents.try_next().await? {
            found.in_collections += count(&format!("{document:?}"));
            found.documents_searched += 1;
        }
    }
    for process in &cluster.processes {
        let Some(addr) = crate::workload::status_addr(process.log_path()) else {
            continue;
        };
        let page = http_get(&addr, "/metrics").await?;
        found.on_metrics_pages += count(&page);
        found.pages_searched += 1;
    }
    Ok(found)
}

/// `GET path` over plain HTTP/1.0; the whole response, headers included.
async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    let mut socket = tokio::net::TcpStream::connect(addr).await?;
    socket
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    socket.read_to_string(&mut response).await?;
    Ok(response)
}
