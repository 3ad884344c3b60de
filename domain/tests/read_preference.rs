//! The list pages read where the domain is told, and no other read does: with a secondary named
//! for them, the pages of runs, tenants, instances and scopes ask for a secondary, while a run
//! read by id stays on the primary. Sent to a fake replica set primary that records what it
//! receives: the stand is a standalone, to which no read preference is sent at all.

use mongodb::Client;
use mongodb::bson::oid::ObjectId;
use mongodb::options::ReadPreference;
use sv0_domain::{Domain, RunFilter, ScopeFilter};
use sv0_testkit::fake_primary::FakePrimary;

#[tokio::test]
async fn list_pages_read_where_told_and_a_run_by_id_reads_the_primary() {
    let primary = FakePrimary::start().await;
    let client = Client::with_uri_str(primary.uri()).await.unwrap();
    let domain = Domain::new(&client.database("fake")).lag_tolerant_reads(
        ReadPreference::SecondaryPreferred {
            options: Default::default(),
        },
    );

    domain
        .list_runs(&RunFilter::default(), None, 10)
        .await
        .unwrap();
    domain.list_tenants(None, 10).await.unwrap();
    domain.list_instances(None, None, 10).await.unwrap();
    domain
        .list_scopes(&ScopeFilter::default(), None, 10)
        .await
        .unwrap();
    domain.run_by_id(ObjectId::new()).await.unwrap_err();

    let secondary = Some("secondaryPreferred".to_string());
    for collection in ["tenants", "connector_instances", "scan_scopes"] {
        assert_eq!(
            primary.read_preferences("find", collection),
            vec![secondary.clone()],
            "{collection}"
        );
    }
    assert_eq!(
        primary.read_preferences("find", "scan_runs"),
        vec![secondary, Some("primaryPreferred".to_string())],
        "the page of runs, then the run read by id"
    );
}
