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

#[derive(Clone, Debug)]
pub(crate) struct Batcher {
    sender: mpsc::UnboundedSender<(Claimed, Option<Reply>)>,
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use mongodb::bson::oid::ObjectId;
    use mongodb::bson::{DateTime, doc};
    use sv0_queue::{JobDoc, JobStatus, LeaseDoc, LeaseRef};

    use super::*;

    fn claimed() -> Claimed {
        let now = DateTime::now();
        let id = ObjectId::new();
        Claimed {
            lease: LeaseRef {
                job_id: id,
                owner: "w".into(),
                token: 1,
            },
            job: JobDoc {
                id,
                kind: "k".into(),
                tenant_id: None,
                group_id: None,
                payload: doc! {},
                status: JobStatus::Running,
                priority: 0,
                run_at: now,
                attempts: 0,
                max_attempts: 1,
                claims: 1,
                timeout_ms: None,
                lease: LeaseDoc::default(),
                dedup_key: None,
                last_error: None,
                cancel_requested: false,
                created_at: now,
                updated_at: now,
                started_at: None,
                finished_at: None,
            },
            claimed_at: std::time::Instant::now(),
        }
    }

    /// The sizes of the batches written when five jobs arrive a moment apart, the first alone.
    async fn batch_sizes(linger: Duration) -> Vec<usize> {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let recorded = sizes.clone();
        let batcher = Batcher::start(linger, move |jobs: Vec<Claimed>| {
            recorded.lock().unwrap().push(jobs.len());
            async move { Ok(vec![Commit::Committed; jobs.len()]) }
        });
        let first = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.write(claimed()).await }
        });
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_micros(200)).await;
        let rest: Vec<_> = (0..4)
            .map(|_| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.write(claimed()).await })
            })
            .collect();
        first.await.unwrap().unwrap();
        for write in rest {
            write.await.unwrap().unwrap();
        }
        sizes.lock().unwrap().clone()
    }

    /// The first completion of a burst used to go out alone (one fenced write, on the stand a scan
    /// of the collection, for one job), the rest in a second write. Now an idle batcher waits a
    /// short linger for the others.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_first_job_of_a_burst_waits_for_the_others() {
        assert_eq!(batch_sizes(Duration::from_millis(20)).await, vec![5]);
        let unlingered = batch_sizes(Duration::ZERO).await;
        assert!(
            unlingered[0] == 1 && unlingered.len() > 1,
            "without a linger the first goes alone: {unlingered:?}"
        );
    }

    fn recording(sizes: &Arc<Mutex<Vec<(usize, tokio::time::Instant)>>>) -> WriteFn {
        let sizes = sizes.clone();
        Arc::new(move |jobs: Vec<Claimed>| {
            sizes
                .lock()
                .unwrap()
                .push((jobs.len(), tokio::time::Instant::now()));
            Box::pin(async move { Ok(vec![Commit::Committed; jobs.len()]) })
        })
    }

    /// The loop ends once every sender is gone (the worker stopped), rather than spinning on a
    /// closed channel.
    #[test]
    fn the_loop_ends_when_every_sender_is_gone() {
        let (sender, receiver) = mpsc::unbounded_channel();
        drop(sender);
        let write = recording(&Arc::new(Mutex::new(Vec::new())));
        let (done, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap()
                .block_on(batch_loop(Duration::from_millis(5), write, receiver));
            let _ = done.send(());
        });
        ended
            .recv_timeout(Duration::from_secs(10))
            .expect("the batch loop ended");
    }

    /// Jobs that arrived together go out at once: the linger is for a job that arrived alone.
    #[tokio::test(start_paused = true)]
    async fn a_batch_that_arrived_together_does_not_linger() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let (sender, receiver) = mpsc::unbounded_channel();
        let linger = Duration::from_secs(1);
        let started = tokio::time::Instant::now();
        for _ in 0..3 {
            sender.send((claimed(), None)).unwrap();
        }
        let task = tokio::spawn(batch_loop(linger, recording(&sizes), receiver));
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(sender);
        task.await.unwrap();
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.len(), 1);
        assert_eq!(sizes[0].0, 3);
        assert!(
            sizes[0].1 - started < linger,
            "written after {:?}",
            sizes[0].1 - started
        );
    }

    /// A lingering batch takes in what arrives meanwhile, up to the batch size and no more.
    #[tokio::test(start_paused = true)]
    async fn a_lingering_batch_holds_at_most_the_batch_size() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let (sender, receiver) = mpsc::unbounded_channel();
        sender.send((claimed(), None)).unwrap();
        let task = tokio::spawn(batch_loop(
            Duration::from_secs(1),
            recording(&sizes),
            receiver,
        ));
        // The loop has the first job and lingers; a flood arrives meanwhile.
        tokio::time::sleep(Duration::from_millis(10)).await;
        for _ in 0..MAX_BATCH + 5 {
            sender.send((claimed(), None)).unwrap();
        }
        drop(sender);
        task.await.unwrap();
        let sizes: Vec<usize> = sizes.lock().unwrap().iter().map(|(n, _)| *n).collect();
        assert_eq!(sizes, [MAX_BATCH, 6]);
    }
}
