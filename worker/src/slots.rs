//! Running slots, handed out in claim order.
//!
//! A worker may hold more jobs than it runs at once (see `claim_ahead`): each claimed job's task
//! waits here for one of `concurrency` slots. Tasks are polled in no fixed order, so a plain
//! semaphore would start them in no fixed order either; instead each job lines up when it is
//! claimed and asks for a slot only once the job claimed before it has one (or gave up waiting),
//! so jobs start in the order the claim returned them: priority first.
//!
//! It also counts the jobs in line or running. A job whose handler has returned only waits for
//! its outcome write, which needs no slot, so the worker may claim again meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};

#[derive(Debug)]
pub(crate) struct Slots {
    free: Arc<Semaphore>,
    /// Resolves once the job lined up last has its slot or gave up waiting.
    last_in_line: Mutex<Option<oneshot::Receiver<()>>>,
    occupancy: Arc<Occupancy>,
    /// Running jobs, as the `sv0_worker_slots_busy` gauge.
    busy: Gauge,
}

/// Jobs in line or running, and a notification each time one leaves.
#[derive(Debug, Default)]
struct Occupancy {
    jobs: AtomicUsize,
    left: Notify,
}

/// Counts one job in line or running until dropped.
#[derive(Debug)]
struct Occupant(Arc<Occupancy>);

impl Drop for Occupant {
    fn drop(&mut self) {
        self.0.jobs.fetch_sub(1, Ordering::AcqRel);
        self.0.left.notify_one();
    }
}

/// A claimed job's place in line.
#[derive(Debug)]
pub(crate) struct Place {
    free: Arc<Semaphore>,
    ahead: Option<oneshot::Receiver<()>>,
    /// Dropped once this job has its slot, or when it stops waiting: either lets the next go.
    _next: oneshot::Sender<()>,
    occupant: Occupant,
    busy: Gauge,
}

/// A running job's slot, free again when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    _occupant: Occupant,
    busy: Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.busy.dec();
    }
}

impl Slots {
    /// `concurrency` slots; `busy` counts the ones running a job.
    pub(crate) fn new(concurrency: usize, busy: Gauge) -> Slots {
        Slots {
            free: Arc::new(Semaphore::new(concurrency)),
            last_in_line: Mutex::new(None),
            occupancy: Arc::default(),
            busy,
        }
    }

    /// Jobs in line or running.
    pub(crate) fn occupied(&self) -> usize {
        self.occupancy.jobs.load(Ordering::Acquire)
    }

    /// Resolves when a job leaves the line or its slot (a notification may be one it missed).
    pub(crate) async fn one_left(&self) {
        self.occupancy.left.notified().await
    }

    /// Wakes [`Slots::one_left`] for a change it does not count: a held job's outcome written,
    /// which frees room under a per-kind limit.
    pub(crate) fn wake_claimer(&self) {
        self.occupancy.left.notify_one();
    }

    /// Takes the next place in line; call in claim order.
    pub(crate) fn line_up(&self) -> Place {
        self.occupancy.jobs.fetch_add(1, Ordering::AcqRel);
        let occupant = Occupant(self.occupancy.clone());
        let (next, behind) = oneshot::channel();
        let ahead = self
            .last_in_line
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .replace(behind);
        Place {
            free: self.free.clone(),
            ahead,
            _next: next,
            occupant,
            busy: self.busy.clone(),
        }
    }
}

impl Place {
    /// Waits for the jobs lined up before this one to get their slots, then for a slot.
    pub(crate) async fn slot(self) -> Slot {
        if let Some(ahead) = self.ahead {
            // An error only means the job ahead stopped waiting: this one's turn has come.
            let _ = ahead.await;
        }
        let permit = self
            .free
            .acquire_owned()
            .await
            .expect("the slots' semaphore is never closed");
        self.busy.inc();
        Slot {
            _permit: permit,
            _occupant: self.occupant,
            busy: self.busy,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_get_slots_in_the_order_they_lined_up() {
        let slots = Slots::new(1, Gauge::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = slots.free.clone().acquire_owned().await.unwrap();
        let mut tasks = Vec::new();
        for n in 0..20 {
            let place = slots.line_up();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                let _slot = place.slot().await;
                order.lock().unwrap().push(n);
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(first);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_job_that_stops_waiting_lets_the_next_one_go() {
        let busy = Gauge::default();
        let slots = Slots::new(1, busy.clone());
        let gone = slots.line_up();
        let next = slots.line_up();
        assert_eq!(slots.occupied(), 2);
        drop(gone);
        assert_eq!(
            slots.occupied(),
            1,
            "a job that left the line no longer counts"
        );
        let slot = tokio::time::timeout(Duration::from_secs(1), next.slot())
            .await
            .expect("the next job got its slot");
        assert_eq!(slots.occupied(), 1, "a running job counts");
        assert_eq!(busy.get(), 1, "a running job is a busy slot");
        drop(slot);
        assert_eq!(slots.occupied(), 0);
        assert_eq!(busy.get(), 0, "its slot is free again");
    }
}
