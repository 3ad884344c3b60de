//! A MongoDB-wire server of a few lines that says it is a replica set's primary and records
//! every command it receives, as received: for tests of where a read is sent. The stand is a
//! standalone server, to which a driver sends no read preference at all; to a replica set member
//! it sends the one the read asks for (`primaryPreferred` for a primary read over a direct
//! connection), so a test can tell a read sent to a secondary from one kept on the primary.
//!
//! Every `find` and `aggregate` answers an empty cursor, every other command `ok` with nothing
//! written: enough for reads that return nothing, not for a test of what they return.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use mongodb::bson::{Document, doc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The fake primary: its address, and the commands it received.
pub struct FakePrimary {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Document>>>,
    server: tokio::task::JoinHandle<()>,
}

impl FakePrimary {
    pub async fn start() -> FakePrimary {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, addr, sink.clone()));
            }
        });
        FakePrimary {
            addr,
            received,
            server,
        }
    }

    /// A connection string for one client of it, connected directly.
    pub fn uri(&self) -> String {
        format!(
            "mongodb://{}/?directConnection=true&serverSelectionTimeoutMS=5000",
            self.addr
        )
    }

    /// The read preference mode each command named `name` on `collection` was sent with, in
    /// order; `None` for one sent without any.
    pub fn read_preferences(&self, name: &str, collection: &str) -> Vec<Option<String>> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|command| command.get_str(name).ok() == Some(collection))
            .map(|command| {
                command
                    .get_document("$readPreference")
                    .ok()
                    .and_then(|preference| preference.get_str("mode").ok())
                    .map(str::to_string)
            })
            .collect()
    }
}

impl Drop for FakePrimary {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(mut stream: TcpStream, addr: SocketAddr, received: Arc<Mutex<Vec<Document>>>) {
    const OP_MSG: i32 = 2013;
    let int = |b: &[u8]| i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    loop {
        let mut header = [0u8; 16];
        if stream.read_exact(&mut header).await.is_err() {
            return;
        }
        let mut message = vec![0u8; int(&header[0..4]) as usize - 16];
        if stream.read_exact(&mut message).await.is_err() {
            return;
        }
        assert_eq!(
            int(&header[12..16]),
            OP_MSG,
            "the driver speaks OP_MSG only"
        );
        // Flags, then sections: kind 0 is the command, kind 1 a document sequence.
        let mut at = 4;
        let mut command = Document::new();
        while at < message.len() {
            let size = int(&message[at + 1..]) as usize;
            if message[at] == 0 {
                command = Document::from_reader(&message[at + 1..at + 1 + size]).unwrap();
            }
            at += 1 + size;
        }
        let name = command.keys().next().cloned().unwrap_or_default();
        let reply = match name.as_str() {
            "hello" | "isMaster" | "ismaster" => doc! {
                "ismaster": true, "isWritablePrimary": true, "helloOk": true,
                "setName": "sv0-fake", "hosts": [addr.to_string()], "me": addr.to_string(),
                "setVersion": 1, "electionId": mongodb::bson::oid::ObjectId::new(),
                "maxWireVersion": 21, "minWireVersion": 0, "maxBsonObjectSize": 16_777_216,
                "maxMessageSizeBytes": 48_000_000, "maxWriteBatchSize": 100_000,
                "lastWrite": { "lastWriteDate": mongodb::bson::DateTime::now() },
                "ok": 1.0,
            },
            "find" | "aggregate" => {
                let collection = command.get_str(&name).unwrap_or_default();
                doc! {
                    "cursor": { "firstBatch": [], "id": 0_i64, "ns": format!("fake.{collection}") },
                    "ok": 1.0,
                }
            }
            _ => doc! { "n": 0, "ok": 1.0 },
        };
        received.lock().unwrap().push(command);
        let mut body = Vec::new();
        reply.to_writer(&mut body).unwrap();
        let mut out = Vec::with_capacity(21 + body.len());
        out.extend_from_slice(&(21 + body.len() as i32).to_le_bytes());
        out.extend_from_slice(&0_i32.to_le_bytes()); // request id
        out.extend_from_slice(&header[4..8]); // in reply to
        out.extend_from_slice(&OP_MSG.to_le_bytes());
        out.extend_from_slice(&0_u32.to_le_bytes()); // flags
        out.push(0); // a kind 0 section: the reply
        out.extend_from_slice(&body);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}
