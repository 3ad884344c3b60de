//! Batches a holder's per-job writes (completions, recorded starts): while one batch write is in
//! flight, the next jobs queue up and go in the following one. Under load this turns many fenced
//! writes into a few (on the stand, each is a scan of the collection). When the batcher was idle,
//! it waits a short linger after the first job arrives, so that the first of a burst does not go
//! out alone and the rest in a second write.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sv0_queue::{Claimed, Commit, QueueError};
use tokio::sync::{mpsc, oneshot};

/// Large enough for a worker's whole claim-ahead room; the batch is one write either way.
const MAX_BATCH: usize = 512;

type Reply = oneshot::Sender<Result<Commit, String>>;

/// One batched write: the jobs in, one commit per job out.
type WriteFn = Arc<
    dyn Fn(Vec<Claimed>) -> futures::future::BoxFuture<'static, Result<Vec<Commit>, QueueError>>
        + Send
        + Sync,
>;

#[derive(Clone)]
pub(crate) struct Batcher {
    sender: mpsc::UnboundedSender<(Claimed, Option<Reply>)>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Batcher")
    }
}

impl Batcher {
    /// Starts the batching task; it ends when every clone is dropped.
    pub(crate) fn start<F, Fut>(linger: Duration, write: F) -> Batcher
    where
        F: Fn(Vec<Claimed>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Commit>, QueueError>> + Send + 'static,
    {
        let write: WriteFn = Arc::new(move |jobs| Box::pin(write(jobs)));
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(batch_loop(linger, write, receiver));
        Batcher { sender }
    }

    /// Writes for one job; resolves when its batch was written.
    pub(crate) async fn write(&self, job: Claimed) -> Result<Commit, String> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((job, Some(reply)))
            .map_err(|_| "the batcher has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the batcher has stopped".to_string())?
    }

    /// Writes for one job without waiting for the outcome.
    pub(crate) fn send(&self, job: Claimed) {
        let _ = self.sender.send((job, None));
    }
}

async fn batch_loop(
    linger: Duration,
    write: WriteFn,
    mut receiver: mpsc::UnboundedReceiver<(Claimed, Option<Reply>)>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if batch.len() == 1 && !linger.is_zero() {
            // Idle until now: the first job of a burst waits a moment for the others.
            tokio::time::sleep(linger).await;
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
        }
        let (jobs, replies): (Vec<Claimed>, Vec<Option<Reply>>) = batch.drain(..).unzip();
        match write(jobs).await {
            Ok(commits) => {
                for (reply, commit) in replies.into_iter().zip(commits) {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(commit));
                    }
                }
            }
            Err(error) => {
                let message = error.to_string();
                tracing::debug!(%message, "batched write failed");
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Err(message.clone()));
                }
            }
        }
    }
}
