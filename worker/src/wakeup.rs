//! Wake-ups for an idle worker: a change stream on the jobs collection where the server offers
//! one, treating any event as "look again" (never as data: on the devdb stand events are
//! incomplete, and `find_one_and_update` emits none). When there is no stream, or it breaks, the
//! claim loop's adaptive polling carries on alone; the stream is retried now and then.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use mongodb::Collection;
use mongodb::bson::{Document, doc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const REOPEN_AFTER: Duration = Duration::from_secs(30);

/// Watches `jobs` and notifies `wake` on every insert or update until `shutdown`.
pub(crate) async fn watch_jobs(
    jobs: Collection<Document>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    // Our own claims and heartbeats are updates too; filtering to inserts and updates that set
    // `status` keeps the herd small on MongoDB. The stand reports no update description, so
    // there only inserts get through; polling covers re-queued jobs.
    let pipeline = vec![doc! {"$match": {"$or": [
        {"operationType": "insert"},
        {"updateDescription.updatedFields.status": "queued"},
    ]}}];
    loop {
        match jobs.watch().pipeline(pipeline.clone()).await {
            Ok(mut stream) => {
                tracing::info!("waking on a change stream of new jobs");
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        event = stream.next() => match event {
                            Some(Ok(_)) => wake.notify_one(),
                            Some(Err(error)) => {
                                tracing::info!(%error, "change stream broke; polling only");
                                break;
                            }
                            None => break,
                        }
                    }
                }
            }
            Err(error) => {
                tracing::info!(%error, "no change stream on this server; polling only");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(REOPEN_AFTER) => {}
        }
    }
}
