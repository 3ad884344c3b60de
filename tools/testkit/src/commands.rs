//! A client that records every command it sends, for tests of what goes over the wire (say,
//! the write concern a write carries), told `w=1` by its connection string so that whatever
//! asks for more must ask for it itself.

use std::sync::{Arc, Mutex};

use mongodb::Client;
use mongodb::bson::{Bson, Document};
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use mongodb::options::ClientOptions;

/// The write commands, by name.
pub const WRITES: [&str; 4] = ["insert", "update", "delete", "findAndModify"];

/// Commands sent so far: (name, the command as sent).
#[derive(Clone, Default)]
pub struct SentCommands(Arc<Mutex<Vec<(String, Document)>>>);

impl SentCommands {
    /// How many commands were sent so far, of any kind.
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The write commands sent so far.
    pub fn writes(&self) -> Vec<(String, Document)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(name, _)| WRITES.contains(&name.as_str()))
            .cloned()
            .collect()
    }

    /// The write commands sent so far that do not ask for a majority, with their names.
    pub fn writes_without_majority(&self) -> Vec<(String, Document)> {
        self.writes()
            .into_iter()
            .filter(|(_, command)| {
                command
                    .get_document("writeConcern")
                    .ok()
                    .and_then(|concern| concern.get("w"))
                    != Some(&Bson::String("majority".into()))
            })
            .collect()
    }
}

/// A client of `uri` with `w=1`, recording what it sends.
pub async fn recording_client(uri: &str) -> (Client, SentCommands) {
    let separator = if uri.contains('?') { '&' } else { '?' };
    let mut options = ClientOptions::parse(format!("{uri}{separator}w=1"))
        .await
        .expect("the stand's URI parses");
    let sent = SentCommands::default();
    let sink = sent.0.clone();
    options.command_event_handler = Some(EventHandler::callback(move |event| {
        if let CommandEvent::Started(started) = event {
            sink.lock()
                .unwrap()
                .push((started.command_name, started.command));
        }
    }));
    let client = Client::with_options(options).expect("a client of the stand");
    (client, sent)
}
