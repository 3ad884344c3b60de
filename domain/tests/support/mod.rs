//! What the fence tests share: a fresh database with the domain's indexes, tenant `acme`, and
//! one queued run of it.

use sv0_domain::{Budget, Domain, ScanRun, Tenant, Trigger};
use sv0_testkit::TestDb;

pub async fn acme_with_a_run(label: &str) -> (TestDb, Domain, ScanRun) {
    let tdb = TestDb::new(label).await;
    let domain = Domain::new(&tdb.db);
    domain.ensure_indexes().await.unwrap();
    domain
        .put_tenant(&Tenant::new("acme", "acme").unwrap())
        .await
        .unwrap();
    let run = ScanRun::new(
        "acme",
        Trigger::ManualApi { requested_by: None },
        Budget::default(),
    );
    domain.insert_run(&run).await.unwrap();
    (tdb, domain, run)
}
