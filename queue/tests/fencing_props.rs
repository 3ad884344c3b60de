//! A property of the job state machine: whatever sequence of claim, heartbeat, complete, fail,
//! release, reap and cancel calls several holders make, a write by a holder whose holding is not
//! the current one never changes the job, and a write by the current holder always lands.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use mongodb::bson::doc;
use proptest::prelude::*;
use sv0_queue::{
    ClaimRequest, Claimed, Commit, FailOutcome, Failure, JobDoc, JobStatus, LeaseState, NewJob,
    Queue, RetryPolicy,
};
use sv0_testkit::TestDb;
use tokio::runtime::Runtime;

#[derive(Debug, Clone)]
enum Op {
    /// A holder claims; `expired` leases are born expired, so the next reap takes them.
    Claim {
        holder: usize,
        expired: bool,
    },
    Heartbeat(usize),
    Complete(usize),
    Fail {
        lease: usize,
        permanent: bool,
    },
    Release(usize),
    Reap,
    Cancel,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3usize, any::<bool>()).prop_map(|(holder, expired)| Op::Claim { holder, expired }),
        2 => (0..8usize).prop_map(Op::Heartbeat),
        2 => (0..8usize).prop_map(Op::Complete),
        2 => (0..8usize, any::<bool>()).prop_map(|(lease, permanent)| Op::Fail { lease, permanent }),
        1 => (0..8usize).prop_map(Op::Release),
        2 => Just(Op::Reap),
        1 => Just(Op::Cancel),
    ]
}

fn stand() -> &'static (Runtime, TestDb) {
    static STAND: OnceLock<(Runtime, TestDb)> = OnceLock::new();
    STAND.get_or_init(|| {
        let runtime = Runtime::new().unwrap();
        let test = runtime.block_on(TestDb::new("fencing_props"));
        (runtime, test)
    })
}

/// True when `lease` is the holding stored now.
fn is_current(job: &JobDoc, claimed: &Claimed) -> bool {
    job.status == JobStatus::Running
        && job.lease.owner.as_deref() == Some(claimed.lease.owner.as_str())
        && job.lease.token == claimed.lease.token
}

async fn run(ops: Vec<Op>) {
    static CASE: AtomicU32 = AtomicU32::new(0);
    let (_, test) = stand();
    let name = format!("jobs_{}", CASE.fetch_add(1, Ordering::SeqCst));
    let queue = Queue::in_collection(&test.db, &name).with_retry_policy(RetryPolicy {
        base: Duration::ZERO,
        cap: Duration::ZERO,
    });
    let id = queue
        .enqueue(NewJob::new("k", doc! {}).max_attempts(4))
        .await
        .unwrap()
        .id;
    let mut leases: Vec<Claimed> = Vec::new();
    for op in ops {
        let before = queue.get(id).await.unwrap().unwrap();
        let pick = |i: usize| (!leases.is_empty()).then(|| leases[i % leases.len()].clone());
        match op {
            Op::Claim { holder, expired } => {
                let ttl = if expired {
                    Duration::ZERO
                } else {
                    Duration::from_secs(3600)
                };
                let request = ClaimRequest {
                    owner: format!("holder-{holder}"),
                    kinds: vec!["k".into()],
                    limit: 1,
                    lease_ttl: ttl,
                };
                let claimed = queue.claim(&request).await.unwrap();
                let due = before.status == JobStatus::Queued;
                assert_eq!(
                    claimed.len(),
                    usize::from(due),
                    "a queued job is claimed, only then"
                );
                leases.extend(claimed);
            }
            Op::Reap => {
                queue.reap_expired().await.unwrap();
            }
            Op::Cancel => {
                queue.cancel(id).await.unwrap();
            }
            Op::Heartbeat(i) | Op::Complete(i) | Op::Release(i) | Op::Fail { lease: i, .. } => {
                let Some(claimed) = pick(i) else { continue };
                let current = is_current(&before, &claimed);
                let landed = match op {
                    Op::Heartbeat(_) => matches!(
                        queue
                            .heartbeat(&[&claimed.lease], Duration::from_secs(3600))
                            .await
                            .unwrap()[0],
                        LeaseState::Held { .. }
                    ),
                    Op::Complete(_) => queue.complete(&claimed).await.unwrap() == Commit::Committed,
                    Op::Release(_) => queue.release(&[&claimed.lease]).await.unwrap() == 1,
                    Op::Fail { permanent, .. } => {
                        let failure = if permanent {
                            Failure::Permanent
                        } else {
                            Failure::Retryable
                        };
                        queue.fail(&claimed, "x", failure).await.unwrap() != FailOutcome::LeaseLost
                    }
                    _ => unreachable!(),
                };
                let after = queue.get(id).await.unwrap().unwrap();
                if current {
                    assert!(landed, "the current holder's {op:?} must land");
                } else {
                    // A stale holder changes nothing. (Repeating its own landed commit is
                    // answered `Committed`, idempotently, and changes nothing either.)
                    assert_eq!(after, before, "a stale holder's {op:?} changed the job");
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn no_stale_holder_write_ever_lands(ops in proptest::collection::vec(op(), 1..40)) {
        stand().0.block_on(run(ops));
    }
}
