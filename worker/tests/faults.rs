//! Worker processes that die or lose the database: nothing is lost, and a holder whose lease
//! was reaped never commits.

mod support;

use std::time::Duration;

use mongodb::bson::doc;
use nix::sys::signal::Signal;
use support::{Sv0Process, all, enqueue_ids, job, probes, setup, wait_count, wait_status};
use sv0_queue::NewJob;
use sv0_testkit::{FaultProxy, stand};

#[tokio::test(flavor = "multi_thread")]
async fn jobs_of_a_sigkilled_worker_are_reclaimed_after_the_lease_ttl_and_complete() {
    let (test, queue) = setup("worker_sigkill").await;
    let jobs: Vec<NewJob> = probes(6, 5_000_i64);
    let ids = enqueue_ids(&queue, jobs).await;

    let first = Sv0Process::worker(
        test.uri(),
        test.name(),
        &["--concurrency", "6", "--lease-ttl-ms", "1500"],
    );
    let first_id = first.id();
    wait_count(
        &test.db,
        "jobs",
        doc! {"status": "running", "lease.owner": &first_id},
        6,
        Duration::from_secs(20),
    )
    .await;
    wait_count(&test.db, "probe_runs", doc! {}, 6, Duration::from_secs(20)).await;
    // A first run records its start (spends its attempt) once it has run 100 ms.
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.signal(Signal::SIGKILL);

    let second = Sv0Process::worker(
        test.uri(),
        test.name(),
        &["--concurrency", "6", "--lease-ttl-ms", "1500"],
    );
    let second_id = second.id();
    wait_count(
        &test.db,
        "jobs",
        doc! {"status": "succeeded"},
        6,
        Duration::from_secs(40),
    )
    .await;
    for id in ids {
        let stored = job(&test.db, id).await;
        assert_eq!(
            stored
                .get_document("lease")
                .unwrap()
                .get_str("owner")
                .unwrap(),
            second_id
        );
        assert_eq!(
            stored.get_i32("attempts").unwrap(),
            2,
            "the killed run spent one attempt"
        );
        let runs = all(&test.db, "probe_runs", doc! {"job_id": id}).await;
        let workers: Vec<&str> = runs.iter().map(|r| r.get_str("worker").unwrap()).collect();
        assert_eq!(workers, vec![first_id.as_str(), second_id.as_str()]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partitioned_worker_is_fenced_out_and_the_second_workers_commit_stands() {
    let (test, queue) = setup("worker_partition").await;
    let id = queue
        .enqueue(NewJob::new("probe", doc! {"sleep_ms": 1_500_i64}))
        .await
        .unwrap()
        .id;

    let proxy = FaultProxy::start(stand().addr()).unwrap();
    let through_proxy = stand().uri_via(proxy.addr());
    // The handler (1.5 s) ends well inside the TTL less the self-fence margin (3 s − 0.6 s), so
    // it finishes during the partition instead of being stopped by its own worker.
    let ttl = ["--lease-ttl-ms", "3000"];
    let first = Sv0Process::worker(&through_proxy, test.name(), &ttl);
    let first_id = first.id();
    wait_count(
        &test.db,
        "jobs",
        doc! {"status": "running", "lease.owner": &first_id},
        1,
        Duration::from_secs(20),
    )
    .await;

    wait_count(&test.db, "probe_runs", doc! {}, 1, Duration::from_secs(20)).await;
    // The run is recorded; let its reply reach the worker, whose handler then sleeps 1.5 s (cut
    // off sooner, the handler itself would wait out the partition and be stopped unfinished).
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Cut the first worker off; its handler finishes during the partition, and its completion
    // and heartbeat writes are held in the black hole.
    proxy.black_hole();
    let second = Sv0Process::worker(test.uri(), test.name(), &ttl);
    let second_id = second.id();
    wait_count(
        &test.db,
        "jobs",
        doc! {"status": "succeeded", "lease.owner": &second_id},
        1,
        Duration::from_secs(30),
    )
    .await;
    let committed = job(&test.db, id).await;

    proxy.restore();
    let rejected = first.wait_for_event("lease lost", Duration::from_secs(30));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while first
        .events("lease lost")
        .iter()
        .all(|e| e["during"] != "complete")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the stale completion was never rejected: {:#?}",
            first.all_events()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        first.events("job committed").is_empty(),
        "the partitioned worker committed nothing: {rejected}"
    );
    assert!(
        first
            .events("lease lost")
            .iter()
            .any(|e| e["during"] == "heartbeat"),
        "its held heartbeat was rejected too"
    );
    assert_eq!(second.events("job committed").len(), 1);
    assert_eq!(
        job(&test.db, id).await,
        committed,
        "the second worker's commit stands unchanged"
    );
}

/// An outcome write that fails because the database is away for a moment is retried until it
/// lands, within the lease: the job succeeds on its one run instead of waiting out its lease and
/// running again. The database is an [`Outage`]'s, started again on the same port and data.
#[tokio::test(flavor = "multi_thread")]
async fn an_outcome_write_during_a_short_outage_is_retried_and_lands() {
    if sv0_testkit::on_real_mongodb() {
        return; // the outage is of a stand of the test's own
    }
    let outage = Outage::begin("outage", 2_000, "15000").await;
    // The handler ends while the database is away; its completion fails and is retried.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (second, client, db) = outage.end().await;
    wait_status(&db, outage.job, "succeeded", Duration::from_secs(30)).await;
    assert!(
        !outage
            .worker
            .events("outcome write failed; retrying")
            .is_empty(),
        "the completion met the outage: {:#?}",
        outage.worker.all_events()
    );
    assert_eq!(
        all(&db, "probe_runs", doc! {}).await.len(),
        1,
        "one run: the completion landed, the job did not run again"
    );
    drop(outage);
    client.shutdown().await;
    second.stop().unwrap();
}

/// An outcome write that cannot land within the lease gives up at the lease's end, says so, and
/// leaves the job to run again once its lease expires (a write retried forever would hold the
/// job's place and land, if ever, long after another worker could have taken it). The database
/// here is a devdb of the test's own, away for longer than the lease.
#[tokio::test(flavor = "multi_thread")]
async fn an_outcome_write_during_an_outage_longer_than_the_lease_gives_up_and_the_job_runs_again() {
    if sv0_testkit::on_real_mongodb() {
        return; // the outage is of a stand of the test's own
    }
    let outage = Outage::begin("long_outage", 500, "3000").await;
    // The handler ends while the database is away; its completion is retried for the lease's
    // life (3 s), then given up while the database is still away.
    let gave_up = outage.worker.wait_for_event(
        "outcome write failed; the lease will expire and the job run again",
        Duration::from_secs(15),
    );
    assert_eq!(gave_up["what"], "complete", "{gave_up:#?}");
    // Its retries backed off (100 ms doubling, capped at 2 s, each attempt failing after the
    // 300 ms server selection): about four within the lease. A backoff that shrank instead
    // retries twice as often, and at last in a loop hammering a database that is away.
    let retries = outage.worker.events("outcome write failed; retrying").len();
    assert!((1..=6).contains(&retries), "{retries} retries in 3 s");
    let (second, client, db) = outage.end().await;
    wait_status(&db, outage.job, "succeeded", Duration::from_secs(30)).await;
    assert_eq!(
        all(&db, "probe_runs", doc! {}).await.len(),
        2,
        "the job ran again after its lease expired"
    );
    drop(outage);
    client.shutdown().await;
    second.stop().unwrap();
}

/// A devdb of the test's own on a data file, with a probe job that sleeps `sleep_ms` queued on
/// it and a worker (leases of `lease_ttl_ms`) running that job, and the database stopped cleanly
/// while the handler runs: the handler ends while the database is away. The worker fails fast
/// while it is (a short server-selection timeout in its URI), as on a refused connection.
struct Outage {
    _dir: tempfile::TempDir,
    file: std::path::PathBuf,
    addr: std::net::SocketAddr,
    database: &'static str,
    job: mongodb::bson::oid::ObjectId,
    worker: Sv0Process,
}

impl Outage {
    async fn begin(database: &'static str, sleep_ms: i64, lease_ttl_ms: &str) -> Outage {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(format!("{database}.h2"));
        let first = sv0_devdb::DevDb::builder().data(&file).start().unwrap();
        let addr = first.addr();
        let client = mongodb::Client::with_uri_str(first.uri()).await.unwrap();
        let db = client.database(database);
        let queue = sv0_queue::Queue::new(&db);
        queue.ensure_indexes().await.unwrap();
        let job = queue
            .enqueue(NewJob::new("probe", doc! {"sleep_ms": sleep_ms}).max_attempts(3))
            .await
            .unwrap()
            .id;
        let uri = format!("mongodb://{addr}/?directConnection=true&serverSelectionTimeoutMS=300");
        let worker = Sv0Process::worker(&uri, database, &["--lease-ttl-ms", lease_ttl_ms]);
        wait_count(&db, "probe_runs", doc! {}, 1, Duration::from_secs(20)).await;
        client.shutdown().await;
        first.stop().expect("a clean stop");
        Outage {
            _dir: dir,
            file,
            addr,
            database,
            job,
            worker,
        }
    }

    /// The database back: devdb started again on the same port and data.
    async fn end(&self) -> (sv0_devdb::DevDb, mongodb::Client, mongodb::Database) {
        let second = sv0_devdb::DevDb::builder()
            .listen(self.addr)
            .data(&self.file)
            .start()
            .unwrap();
        let client = mongodb::Client::with_uri_str(second.uri()).await.unwrap();
        let db = client.database(self.database);
        (second, client, db)
    }
}
