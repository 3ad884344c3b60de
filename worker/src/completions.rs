//! Batches completions: while one `complete_many` is in flight, finished jobs queue up and go in
//! the next. Under load this turns many fenced writes into a few (on the stand, each is a scan of
//! the collection); when idle, a completion goes out alone at once. Nothing waits on a timer.

use sv0_queue::{Claimed, Commit, Queue, QueueError};
use tokio::sync::{mpsc, oneshot};

/// Large enough for a worker's whole claim-ahead room; the batch is one write either way.
const MAX_BATCH: usize = 512;

type Request = (Claimed, oneshot::Sender<Result<Commit, String>>);

#[derive(Debug, Clone)]
pub(crate) struct Completions {
    sender: mpsc::UnboundedSender<Request>,
}

impl Completions {
    /// Starts the batching task; it ends when every `Completions` clone is dropped.
    pub(crate) fn start(queue: Queue) -> Completions {
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(batch_loop(queue, receiver));
        Completions { sender }
    }

    /// Commits one job; resolves when its batch was written.
    pub(crate) async fn complete(&self, job: Claimed) -> Result<Commit, String> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((job, reply))
            .map_err(|_| "the completion batcher has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the completion batcher has stopped".to_string())?
    }
}

async fn batch_loop(queue: Queue, mut receiver: mpsc::UnboundedReceiver<Request>) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let jobs: Vec<&Claimed> = batch.iter().map(|(job, _)| job).collect();
        let result: Result<Vec<Commit>, QueueError> = queue.complete_many(&jobs).await;
        match result {
            Ok(commits) => {
                for ((_, reply), commit) in batch.drain(..).zip(commits) {
                    let _ = reply.send(Ok(commit));
                }
            }
            Err(error) => {
                let message = error.to_string();
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(message.clone()));
                }
            }
        }
    }
}
