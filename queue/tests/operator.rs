//! Operator actions against the stand: listing and counting by filter, the payload search's bound,
//! retrying one job, cancelling or retrying every job a filter matches with their dry runs, and
//! the refusals that name their field.

mod support;

use std::time::Duration;

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, DateTime, Regex, doc};
use support::{claim_one, job, queue, request, stored_job};
use sv0_queue::{
    BulkOutcome, CancelOutcome, Commit, FailOutcome, Failure, JobDoc, JobFilter, JobStatus,
    LeaseDoc, LeaseRef, LeaseState, NewJob, Queue, QueueError, RetryOutcome, TenantKindCount,
};

const HOUR: Duration = Duration::from_secs(3600);
/// Every kind these tests enqueue, so that `job_in` can claim any of their jobs.
const KINDS: [&str; 3] = ["k", "a", "b"];
const ALL: [JobStatus; 6] = [
    JobStatus::Queued,
    JobStatus::Running,
    JobStatus::Succeeded,
    JobStatus::Failed,
    JobStatus::Dead,
    JobStatus::Cancelled,
];

/// Enqueues `new` and takes it to `status` through the queue's own calls.
async fn job_in(queue: &Queue, new: NewJob, status: JobStatus) -> ObjectId {
    let max_attempts = if status == JobStatus::Dead { 1 } else { 5 };
    let id = queue
        .enqueue(new.max_attempts(max_attempts))
        .await
        .unwrap()
        .id;
    let claim = || async {
        let mut claimed = queue
            .claim_candidates(&request("w", &KINDS, 1, HOUR), &[id])
            .await
            .unwrap();
        claimed.pop().expect("the job is claimed")
    };
    match status {
        JobStatus::Queued => {}
        JobStatus::Running => {
            claim().await;
        }
        JobStatus::Succeeded => {
            let claimed = claim().await;
            assert_eq!(queue.complete(&claimed).await.unwrap(), Commit::Committed);
        }
        JobStatus::Failed => {
            let claimed = claim().await;
            let failed = queue.fail(&claimed, "bad input", Failure::Permanent);
            assert_eq!(failed.await.unwrap(), FailOutcome::Failed);
        }
        JobStatus::Dead => {
            let claimed = claim().await;
            let failed = queue.fail(&claimed, "boom", Failure::Retryable);
            assert_eq!(failed.await.unwrap(), FailOutcome::Dead);
        }
        JobStatus::Cancelled => {
            assert_eq!(queue.cancel(id).await.unwrap(), CancelOutcome::Cancelled);
        }
    }
    assert_eq!(stored_job(queue, id).await.status, status);
    id
}

async fn listed(queue: &Queue, filter: &JobFilter) -> Vec<ObjectId> {
    let jobs = queue.list_jobs(filter, None, 1_000).await.unwrap();
    jobs.into_iter().map(|job| job.id).collect()
}

async fn all_jobs(queue: &Queue) -> Vec<JobDoc> {
    let every = JobFilter::default();
    queue.list_jobs(&every, None, 1_000).await.unwrap()
}

fn refused_field<T: std::fmt::Debug>(result: Result<T, QueueError>) -> String {
    match result {
        Err(QueueError::InvalidFilter { field, .. }) => field,
        other => panic!("expected a refusal naming a field, got {other:?}"),
    }
}

fn payload(path: &str, values: Vec<Bson>) -> JobFilter {
    JobFilter {
        payload: vec![(path.to_string(), values)],
        ..JobFilter::default()
    }
}

#[tokio::test]
async fn a_list_is_newest_first_and_pages_by_after_without_gaps_or_repeats() {
    let (_test, queue) = queue("operator_pages").await;
    let mut enqueued = Vec::new();
    for _ in 0..7 {
        enqueued.push(queue.enqueue(job("k")).await.unwrap().id);
    }
    enqueued.reverse();

    let every = JobFilter::default();
    let (mut seen, mut after, mut pages) = (Vec::new(), None, Vec::new());
    loop {
        let page = queue.list_jobs(&every, after, 3).await.unwrap();
        pages.push(page.len());
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        seen.extend(page.iter().map(|job| job.id));
    }
    assert_eq!(pages, [3, 3, 1, 0]);
    assert_eq!(seen, enqueued, "every job once, newest first");
}

#[tokio::test]
async fn each_filter_narrows_and_counts_agree_with_the_list() {
    let (_test, queue) = queue("operator_filters").await;
    let a1 = job("a").tenant_id("acme").group_id("g1");
    let a1 = job_in(&queue, a1, JobStatus::Queued).await;
    let a2 = job("a").tenant_id("acme").group_id("g2");
    let a2 = job_in(&queue, a2, JobStatus::Failed).await;
    let b1 = job("b").tenant_id("acme").group_id("g1");
    let b1 = job_in(&queue, b1, JobStatus::Running).await;
    let b2 = job_in(&queue, job("b").tenant_id("other"), JobStatus::Dead).await;
    let k = job_in(&queue, job("k"), JobStatus::Succeeded).await;

    let strings = |values: &[&str]| values.iter().map(|v| v.to_string()).collect();
    let cases = [
        (JobFilter::default(), vec![k, b2, b1, a2, a1]),
        (
            JobFilter {
                kinds: strings(&["a"]),
                ..JobFilter::default()
            },
            vec![a2, a1],
        ),
        (
            JobFilter {
                kinds: strings(&["a", "k"]),
                ..JobFilter::default()
            },
            vec![k, a2, a1],
        ),
        (
            JobFilter {
                statuses: vec![JobStatus::Failed, JobStatus::Dead],
                ..JobFilter::default()
            },
            vec![b2, a2],
        ),
        (
            JobFilter {
                tenant_id: Some("acme".into()),
                ..JobFilter::default()
            },
            vec![b1, a2, a1],
        ),
        (
            JobFilter {
                group_id: Some("g1".into()),
                ..JobFilter::default()
            },
            vec![b1, a1],
        ),
        (
            JobFilter {
                ids: vec![a1, b2, ObjectId::new()],
                ..JobFilter::default()
            },
            vec![b2, a1],
        ),
        (
            JobFilter {
                kinds: strings(&["b"]),
                tenant_id: Some("acme".into()),
                ..JobFilter::default()
            },
            vec![b1],
        ),
        (
            JobFilter {
                statuses: vec![JobStatus::Queued],
                group_id: Some("g2".into()),
                ..JobFilter::default()
            },
            vec![],
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(listed(&queue, &filter).await, expected, "{filter:?}");
        let count = queue.count_jobs(&filter).await.unwrap();
        assert_eq!(count, expected.len() as u64, "{filter:?}");
    }
}

#[tokio::test]
async fn a_created_range_includes_its_start_and_excludes_its_end() {
    let (_test, queue) = queue("operator_created").await;
    let start = DateTime::now().timestamp_millis() - 60_000;
    let at = |s: i64| DateTime::from_millis(start + s * 1_000);
    let mut ids = Vec::new();
    for second in 0..3 {
        let id = queue.enqueue(job("k")).await.unwrap().id;
        queue
            .collection()
            .update_one(doc! {"_id": id}, doc! {"$set": {"created_at": at(second)}})
            .await
            .unwrap();
        ids.push(id);
    }
    let range = |from: Option<i64>, until: Option<i64>| JobFilter {
        created_from: from.map(at),
        created_until: until.map(at),
        ..JobFilter::default()
    };
    assert_eq!(listed(&queue, &range(Some(1), Some(2))).await, [ids[1]]);
    assert_eq!(
        listed(&queue, &range(Some(1), None)).await,
        [ids[2], ids[1]]
    );
    assert_eq!(listed(&queue, &range(None, Some(1))).await, [ids[0]]);
    assert_eq!(queue.count_jobs(&range(Some(0), Some(2))).await.unwrap(), 2);
}

#[tokio::test]
async fn payload_filters_match_nested_paths_and_any_of_their_values() {
    let (_test, queue) = queue("operator_payload").await;
    let enqueue = |payload| {
        let queue = queue.clone();
        async move { queue.enqueue(NewJob::new("k", payload)).await.unwrap().id }
    };
    let a1 = enqueue(doc! {"scope": {"account": "a1"}, "n": 1}).await;
    let a2 = enqueue(doc! {"scope": {"account": "a2"}, "n": 2}).await;
    let a3 = enqueue(doc! {"scope": {"account": "a3"}, "n": 1}).await;
    enqueue(doc! {"n": 1}).await;

    let accounts = |values: &[&str]| values.iter().map(|&v| Bson::from(v)).collect();
    let any_of = payload("scope.account", accounts(&["a1", "a2"]));
    assert_eq!(listed(&queue, &any_of).await, [a2, a1]);
    assert_eq!(queue.count_jobs(&any_of).await.unwrap(), 2);

    let both = JobFilter {
        payload: vec![
            ("scope.account".into(), accounts(&["a1", "a3"])),
            ("n".into(), vec![Bson::Int32(1)]),
        ],
        ..JobFilter::default()
    };
    assert_eq!(listed(&queue, &both).await, [a3, a1], "payload filters AND");
    let none = payload("scope.account", accounts(&["a9"]));
    assert!(listed(&queue, &none).await.is_empty());
}

#[tokio::test]
async fn a_payload_search_past_the_scan_limit_is_refused_naming_payload() {
    let (_test, queue) = queue("operator_scan_limit").await;
    for kind in ["k", "k", "k", "a"] {
        queue.enqueue(job(kind)).await.unwrap();
    }
    let search = |kinds: &[&str]| JobFilter {
        kinds: kinds.iter().map(|k| k.to_string()).collect(),
        ..payload("n", vec![Bson::Int32(1)])
    };

    let error = queue
        .list_jobs_bounded(&search(&[]), None, 10, 3)
        .await
        .unwrap_err();
    let QueueError::InvalidFilter { field, reason } = error else {
        panic!("expected a refusal, got {error:?}");
    };
    assert_eq!(field, "payload");
    assert!(reason.contains("narrow it by kind"), "{reason}");

    let found = |filter: JobFilter, scan_limit: u64| {
        let queue = queue.clone();
        async move {
            let found = queue.list_jobs_bounded(&filter, None, 10, scan_limit);
            found.await.unwrap().len()
        }
    };
    assert_eq!(
        found(search(&["k"]), 3).await,
        3,
        "the limit itself is allowed"
    );
    assert_eq!(
        found(JobFilter::default(), 1).await,
        4,
        "no payload, no bound"
    );
    let default_bound = queue.list_jobs(&search(&[]), None, 10).await;
    assert_eq!(default_bound.unwrap().len(), 4);
}

#[tokio::test]
async fn retrying_a_failed_dead_or_cancelled_job_requeues_it_fresh_and_claimable() {
    let (_test, queue) = queue("operator_retry_job").await;
    for status in [JobStatus::Failed, JobStatus::Dead, JobStatus::Cancelled] {
        let new = job("k").dedup_key(format!("key-{}", status.as_str()));
        let id = job_in(&queue, new, status).await;
        let before = stored_job(&queue, id).await;
        let asked = DateTime::now();

        assert_eq!(queue.retry_job(id).await.unwrap(), RetryOutcome::Requeued);
        let after = stored_job(&queue, id).await;
        assert_eq!(after.status, JobStatus::Queued, "{status:?}");
        assert_eq!((after.attempts, after.claims), (0, 0), "{status:?}");
        assert!(after.run_at >= asked && after.run_at <= DateTime::now());
        assert!(after.updated_at >= asked);
        assert_eq!((after.started_at, after.finished_at), (None, None));
        assert!(!after.cancel_requested, "{status:?}");
        assert_eq!(
            after.lease,
            LeaseDoc {
                token: before.lease.token,
                ..LeaseDoc::default()
            },
            "the lease is a fresh one's but for the token, which never goes back"
        );
        assert_eq!(
            after.last_error, before.last_error,
            "the last error is kept"
        );
        assert_eq!(after.dedup_key, before.dedup_key);
        assert_eq!(after.created_at, before.created_at);

        let claimed = claim_one(&queue, "w2", HOUR).await;
        assert_eq!(claimed.lease.job_id, id);
        assert_eq!(claimed.attempt(), 1);
        assert!(claimed.lease.token > before.lease.token);
    }
}

#[tokio::test]
async fn an_earlier_holders_writes_do_not_land_on_a_retried_job() {
    let (_test, queue) = queue("operator_retry_fence").await;
    let id = queue.enqueue(job("k")).await.unwrap().id;
    let first = claim_one(&queue, "w", HOUR).await;
    let failed = queue.fail(&first, "bad input", Failure::Permanent).await;
    assert_eq!(failed.unwrap(), FailOutcome::Failed);
    assert_eq!(queue.retry_job(id).await.unwrap(), RetryOutcome::Requeued);

    let repeated = queue.fail(&first, "bad input", Failure::Permanent).await;
    assert_eq!(
        repeated.unwrap(),
        FailOutcome::LeaseLost,
        "a repeated failure (after a lost reply) is not mistaken for its own"
    );
    assert_eq!(stored_job(&queue, id).await.status, JobStatus::Queued);

    let second = claim_one(&queue, "w", HOUR).await;
    assert!(
        second.lease.token > first.lease.token,
        "the same worker never holds the same token twice"
    );
    assert_eq!(queue.complete(&first).await.unwrap(), Commit::LeaseLost);
    assert_eq!(stored_job(&queue, id).await.status, JobStatus::Running);
}

#[tokio::test]
async fn retrying_a_queued_running_or_succeeded_job_is_refused_and_changes_nothing() {
    let (_test, queue) = queue("operator_not_retryable").await;
    for status in [JobStatus::Queued, JobStatus::Running, JobStatus::Succeeded] {
        let id = job_in(&queue, job("k"), status).await;
        let before = stored_job(&queue, id).await;
        let outcome = queue.retry_job(id).await.unwrap();
        assert_eq!(outcome, RetryOutcome::NotRetryable(status));
        assert_eq!(stored_job(&queue, id).await, before);
    }
    let missing = queue.retry_job(ObjectId::new()).await.unwrap();
    assert_eq!(missing, RetryOutcome::NotFound);
}

#[tokio::test]
async fn cancelling_by_filter_cancels_queued_asks_running_to_stop_and_leaves_the_rest() {
    let (_test, queue) = queue("operator_cancel").await;
    let acme = || job("k").tenant_id("acme");
    let queued = job_in(&queue, acme(), JobStatus::Queued).await;
    let running = job_in(&queue, acme(), JobStatus::Running).await;
    for status in [
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ] {
        job_in(&queue, acme(), status).await;
    }
    let other_payload = NewJob::new("k", doc! {"n": 2}).tenant_id("acme");
    let other_payload = job_in(&queue, other_payload, JobStatus::Queued).await;
    let other_tenant = job_in(&queue, job("k").tenant_id("other"), JobStatus::Queued).await;
    // Marked by a canceller that stopped before its second write: the reaper's to finish.
    queue
        .collection()
        .update_many(
            doc! {"_id": {"$in": [other_payload, other_tenant]}},
            doc! {"$set": {"cancel_requested": true}},
        )
        .await
        .unwrap();
    let filter = JobFilter {
        tenant_id: Some("acme".into()),
        ..payload("n", vec![Bson::Int32(1)])
    };

    let before = all_jobs(&queue).await;
    assert_eq!(queue.count_cancellable(&filter).await.unwrap(), 2);
    assert_eq!(all_jobs(&queue).await, before, "a dry run writes nothing");

    let outcome = queue.cancel_matching(&filter).await.unwrap();
    assert_eq!(
        outcome,
        BulkOutcome {
            matched: 2,
            changed: 1,
            requested: 1,
        }
    );
    let cancelled = stored_job(&queue, queued).await;
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert!(cancelled.finished_at.is_some());
    let asked = stored_job(&queue, running).await;
    assert_eq!(
        (asked.status, asked.cancel_requested),
        (JobStatus::Running, true)
    );
    let lease = LeaseRef {
        job_id: running,
        owner: asked.lease.owner.clone().unwrap(),
        token: asked.lease.token,
    };
    assert_eq!(
        queue.heartbeat(&[&lease], HOUR).await.unwrap(),
        [LeaseState::Held {
            cancel_requested: true
        }],
        "its worker sees the request at its heartbeat"
    );
    for job in before {
        if job.id != queued && job.id != running {
            let after = stored_job(&queue, job.id).await;
            assert_eq!(
                after, job,
                "finished jobs and those not matching are untouched, even marked ones"
            );
        }
    }
}

#[tokio::test]
async fn retrying_by_filter_requeues_only_failed_dead_and_cancelled_matching_jobs() {
    let (_test, queue) = queue("operator_retry_matching").await;
    for status in ALL {
        job_in(&queue, job("k").group_id("g1"), status).await;
    }
    let other = job_in(&queue, job("k").group_id("g2"), JobStatus::Failed).await;
    let filter = JobFilter {
        group_id: Some("g1".into()),
        ..JobFilter::default()
    };

    let before = all_jobs(&queue).await;
    assert_eq!(queue.count_retryable(&filter).await.unwrap(), 3);
    assert_eq!(all_jobs(&queue).await, before, "a dry run writes nothing");

    let outcome = queue.retry_matching(&filter).await.unwrap();
    assert_eq!(
        outcome,
        BulkOutcome {
            matched: 3,
            changed: 3,
            requested: 0,
        }
    );
    for job in before {
        let after = stored_job(&queue, job.id).await;
        let retryable = matches!(
            job.status,
            JobStatus::Failed | JobStatus::Dead | JobStatus::Cancelled
        );
        if retryable && job.id != other {
            assert_eq!((after.status, after.attempts), (JobStatus::Queued, 0));
        } else {
            assert_eq!(
                after, job,
                "{:?} in {:?} is untouched",
                job.status, job.group_id
            );
        }
    }
    assert_eq!(queue.count_retryable(&filter).await.unwrap(), 0);
}

#[tokio::test]
async fn bulk_actions_apply_only_to_the_asked_statuses_they_allow() {
    let (_test, queue) = queue("operator_statuses").await;
    let queued = job_in(&queue, job("k"), JobStatus::Queued).await;
    let running = job_in(&queue, job("k"), JobStatus::Running).await;
    let failed = job_in(&queue, job("k"), JobStatus::Failed).await;
    let dead = job_in(&queue, job("k"), JobStatus::Dead).await;
    let asked = JobFilter {
        statuses: vec![JobStatus::Queued, JobStatus::Failed],
        ..JobFilter::default()
    };

    assert_eq!(queue.count_cancellable(&asked).await.unwrap(), 1);
    let cancel = queue.cancel_matching(&asked).await.unwrap();
    assert_eq!(
        (cancel.matched, cancel.changed, cancel.requested),
        (1, 1, 0)
    );
    assert_eq!(queue.count_retryable(&asked).await.unwrap(), 1);
    let retry = queue.retry_matching(&asked).await.unwrap();
    assert_eq!((retry.matched, retry.changed), (1, 1));

    let status = |id| {
        let queue = queue.clone();
        async move {
            let job = stored_job(&queue, id).await;
            (job.status, job.cancel_requested)
        }
    };
    assert_eq!(status(queued).await, (JobStatus::Cancelled, true));
    assert_eq!(status(running).await, (JobStatus::Running, false));
    assert_eq!(status(failed).await, (JobStatus::Queued, false));
    assert_eq!(status(dead).await.0, JobStatus::Dead);

    let succeeded = JobFilter {
        statuses: vec![JobStatus::Succeeded],
        ..JobFilter::default()
    };
    let nothing = BulkOutcome::default();
    assert_eq!(queue.cancel_matching(&succeeded).await.unwrap(), nothing);
    assert_eq!(queue.retry_matching(&succeeded).await.unwrap(), nothing);
}

#[tokio::test]
async fn invalid_filters_are_refused_naming_the_field_and_nothing_is_written() {
    let (_test, queue) = queue("operator_invalid").await;
    let id = queue.enqueue(job("k")).await.unwrap().id;
    let before = stored_job(&queue, id).await;
    let one = || vec![Bson::Int32(1)];
    let now = DateTime::now();
    let cases = [
        (
            JobFilter {
                ids: (0..1_001).map(|_| ObjectId::new()).collect(),
                ..JobFilter::default()
            },
            "ids",
        ),
        (
            JobFilter {
                kinds: vec!["k".to_string(); 1_001],
                ..JobFilter::default()
            },
            "kinds",
        ),
        (
            JobFilter {
                created_from: Some(now),
                created_until: Some(now),
                ..JobFilter::default()
            },
            "created_until",
        ),
        (payload("", one()), "payload."),
        (payload("a..b", one()), "payload.a..b"),
        (payload("a.", one()), "payload.a."),
        (payload("$where", one()), "payload.$where"),
        (payload("n.$gt", one()), "payload.n.$gt"),
        (payload("a b", one()), "payload.a b"),
        (
            payload("a.b.c.d.e.f.g.h.i", one()),
            "payload.a.b.c.d.e.f.g.h.i",
        ),
        (payload("n", vec![]), "payload.n"),
        (payload("n", vec![Bson::Int32(1); 1_001]), "payload.n"),
        (
            payload(
                "n",
                vec![Bson::RegularExpression(Regex {
                    pattern: ".*".into(),
                    options: String::new(),
                })],
            ),
            "payload.n",
        ),
        (
            payload("n", vec![Bson::Document(doc! {"$gt": 0})]),
            "payload.n",
        ),
        (
            JobFilter {
                payload: (0..9).map(|i| (format!("p{i}"), one())).collect(),
                ..JobFilter::default()
            },
            "payload",
        ),
        (
            JobFilter {
                payload: vec![("n".into(), one()), ("n".into(), one())],
                ..JobFilter::default()
            },
            "payload.n",
        ),
    ];
    for (filter, field) in &cases {
        let refusals = [
            refused_field(queue.list_jobs(filter, None, 10).await),
            refused_field(queue.count_jobs(filter).await),
            refused_field(queue.count_cancellable(filter).await),
            refused_field(queue.count_retryable(filter).await),
            refused_field(queue.cancel_matching(filter).await),
            refused_field(queue.retry_matching(filter).await),
        ];
        assert_eq!(refusals, [*field; 6].map(String::from), "{filter:?}");
    }
    for limit in [0, -1, 1_001] {
        let refused = queue.list_jobs(&JobFilter::default(), None, limit).await;
        assert_eq!(refused_field(refused), "limit");
    }
    assert_eq!(stored_job(&queue, id).await, before, "nothing was written");

    let at_the_bounds = [
        JobFilter {
            ids: (0..999).map(|_| ObjectId::new()).chain([id]).collect(),
            ..JobFilter::default()
        },
        payload("a-1.b_2.c.d.e.f.g.N", one()),
        JobFilter {
            payload: (0..8).map(|i| (format!("p{i}"), one())).collect(),
            ..JobFilter::default()
        },
    ];
    for filter in &at_the_bounds {
        let listed = queue.list_jobs(filter, None, 1_000).await;
        assert!(listed.is_ok(), "{filter:?}: {listed:?}");
    }
}

#[tokio::test]
async fn a_stored_job_that_does_not_read_back_is_named_by_the_list() {
    let (_test, queue) = queue("operator_malformed").await;
    let id = queue.enqueue(job("k")).await.unwrap().id;
    queue
        .collection()
        .update_one(doc! {"_id": id}, doc! {"$set": {"priority": 1.5}})
        .await
        .unwrap();
    let error = queue
        .list_jobs(&JobFilter::default(), None, 10)
        .await
        .unwrap_err();
    let QueueError::Malformed { id: named, reason } = &error else {
        panic!("expected a malformed job, got {error:?}");
    };
    assert!(named.contains(&id.to_hex()), "{named}");
    assert!(reason.contains("priority"), "{reason}");
}

#[tokio::test]
async fn bulk_counts_by_tenant_and_kind_sum_to_the_count_and_write_nothing() {
    let (_test, queue) = queue("operator_by_tenant_kind").await;
    for (tenant, kind, status) in [
        (Some("acme"), "a", JobStatus::Queued),
        (Some("acme"), "a", JobStatus::Running),
        (Some("acme"), "b", JobStatus::Failed),
        (Some("globex"), "a", JobStatus::Queued),
        (Some("globex"), "b", JobStatus::Dead),
        (None, "b", JobStatus::Queued),
        (Some("acme"), "a", JobStatus::Succeeded),
    ] {
        let new = match tenant {
            Some(tenant) => job(kind).tenant_id(tenant),
            None => job(kind),
        };
        job_in(&queue, new, status).await;
    }
    let count = |tenant: Option<&str>, kind: &str, jobs: u64| TenantKindCount {
        tenant_id: tenant.map(str::to_string),
        kind: kind.to_string(),
        jobs,
    };
    let everything = JobFilter {
        created_until: Some(DateTime::from_millis(i64::MAX / 2)),
        ..JobFilter::default()
    };

    let cancellable = queue
        .count_cancellable_by_tenant_kind(&everything)
        .await
        .unwrap();
    assert_eq!(
        cancellable,
        vec![
            count(Some("acme"), "a", 2),
            count(None, "b", 1),
            count(Some("globex"), "a", 1),
        ],
        "most first, then by tenant (none first) and kind"
    );
    let total: u64 = cancellable.iter().map(|c| c.jobs).sum();
    assert_eq!(total, queue.count_cancellable(&everything).await.unwrap());

    let retryable = queue
        .count_retryable_by_tenant_kind(&everything)
        .await
        .unwrap();
    assert_eq!(
        retryable,
        vec![count(Some("acme"), "b", 1), count(Some("globex"), "b", 1)]
    );
    let acme = JobFilter {
        tenant_id: Some("acme".to_string()),
        ..JobFilter::default()
    };
    assert_eq!(
        queue.count_cancellable_by_tenant_kind(&acme).await.unwrap(),
        vec![count(Some("acme"), "a", 2)]
    );
    assert_eq!(
        queue.count_jobs(&JobFilter::default()).await.unwrap(),
        7,
        "nothing written"
    );
    assert_eq!(
        queue
            .count_jobs(&JobFilter {
                statuses: vec![JobStatus::Queued],
                ..JobFilter::default()
            })
            .await
            .unwrap(),
        3
    );
}
