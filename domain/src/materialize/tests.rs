//! The protocol's steps interleaved by hand on the stand: a writer that a newer one took
//! over never makes anything visible, and a lost apply is finished by the next writer.

use std::collections::BTreeMap;

use super::*;
use crate::entities::ENTITIES;
use crate::findings::FINDINGS;
use sv0_testkit::TestDb;

async fn setup(label: &str) -> (TestDb, Domain) {
    let tdb = TestDb::new(label).await;
    let domain = Domain::new(&tdb.db);
    domain.ensure_indexes().await.unwrap();
    (tdb, domain)
}

fn items(picture: &[(&str, i32)]) -> Vec<Item> {
    picture
        .iter()
        .map(|(key, value)| Item {
            key: key.to_string(),
            data: doc! { "value": value },
        })
        .collect()
}

/// What readers see of tenant `t`'s findings: key → value.
async fn visible(domain: &Domain, tenant: &str) -> BTreeMap<String, i32> {
    FINDINGS
        .live(&domain.db, tenant, doc! {})
        .await
        .unwrap()
        .into_iter()
        .map(|d| {
            let key = d.get_str("key").unwrap().to_string();
            (
                key,
                d.get_document("data").unwrap().get_i32("value").unwrap(),
            )
        })
        .collect()
}

/// How many documents of tenant `t`'s findings hold `key`, whatever their state.
async fn stored(domain: &Domain, tenant: &str, key: &str) -> u64 {
    domain
        .db
        .collection::<Document>(FINDINGS.collection)
        .count_documents(doc! { "tenant_id": tenant, "key": key })
        .await
        .unwrap()
}

fn picture(p: &[(&str, i32)]) -> BTreeMap<String, i32> {
    p.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

async fn begin<'a>(domain: &'a Domain, tenant: &str) -> SetWrite<'a> {
    let by = ForRun::outside(ObjectId::new());
    SetWrite::begin(domain, &FINDINGS, tenant, doc! {}, by)
        .await
        .unwrap()
}

async fn write(domain: &Domain, tenant: &str, p: &[(&str, i32)]) -> Counts {
    let by = ForRun::outside(ObjectId::new());
    domain
        .write_set(&FINDINGS, tenant, doc! {}, by, items(p))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_writer_taken_over_before_its_commit_makes_nothing_visible() {
    let (_tdb, domain) = setup("set_taken_over").await;
    write(&domain, "t", &[("a", 1), ("b", 1)]).await;
    let older = begin(&domain, "t").await;
    let newer = begin(&domain, "t").await;
    let old_plan = older.plan(&items(&[("a", 2), ("c", 2)])).await.unwrap();
    assert!(older.stage(&old_plan).await.unwrap());
    assert_eq!(visible(&domain, "t").await, picture(&[("a", 1), ("b", 1)]));
    assert_eq!(stored(&domain, "t", "c").await, 1);

    let new_plan = newer.plan(&items(&[("a", 3)])).await.unwrap();
    assert!(newer.stage(&new_plan).await.unwrap());
    assert!(
        !older.commit().await.unwrap(),
        "the older take may not commit"
    );
    assert!(newer.commit().await.unwrap());
    assert_eq!(
        stored(&domain, "t", "c").await,
        1,
        "deleted only after the apply"
    );
    newer.apply(new_plan).await.unwrap();
    assert_eq!(visible(&domain, "t").await, picture(&[("a", 3)]));
    // `c`, which only the older writer staged, was never visible, and the newer writer, which
    // read it, deleted its document.
    assert_eq!(stored(&domain, "t", "c").await, 0, "abandoned documents go");
    assert_eq!(stored(&domain, "t", "b").await, 1, "retired ones stay");
    assert_eq!(
        write(&domain, "t", &[("a", 3)]).await,
        Counts {
            unchanged: 1,
            ..Counts::default()
        }
    );
    assert_eq!(visible(&domain, "t").await, picture(&[("a", 3)]));

    // A retired item that a taken-over writer staged back to life is not abandoned: the next
    // writer, which does not produce it either, leaves it retired and stored.
    let reviver = begin(&domain, "t").await;
    let revival = reviver.plan(&items(&[("a", 3), ("b", 4)])).await.unwrap();
    assert!(reviver.stage(&revival).await.unwrap());
    write(&domain, "t", &[("a", 3)]).await;
    assert_eq!(visible(&domain, "t").await, picture(&[("a", 3)]));
    assert_eq!(stored(&domain, "t", "b").await, 1, "retired ones stay");
}

#[tokio::test]
async fn a_late_staging_lands_on_nothing_a_newer_writer_staged() {
    let (_tdb, domain) = setup("set_late_staging").await;
    write(&domain, "t", &[("a", 1)]).await;
    let older = begin(&domain, "t").await;
    let old_plan = older.plan(&items(&[("a", 2), ("n", 2)])).await.unwrap();
    let newer = begin(&domain, "t").await;
    let new_plan = newer.plan(&items(&[("a", 3)])).await.unwrap();
    assert!(newer.stage(&new_plan).await.unwrap());
    assert!(newer.commit().await.unwrap());
    newer.apply(new_plan).await.unwrap();

    assert!(
        !older.stage(&old_plan).await.unwrap(),
        "the older staging of `a` matched nothing"
    );
    assert!(!older.commit().await.unwrap());
    assert_eq!(visible(&domain, "t").await, picture(&[("a", 3)]));
    // `n`, staged only by the older writer, stays invisible to the writers after it too, and
    // the next of them deletes its document.
    assert_eq!(stored(&domain, "t", "n").await, 1);
    assert_eq!(
        write(&domain, "t", &[("a", 3)]).await,
        Counts {
            unchanged: 1,
            ..Counts::default()
        }
    );
    assert_eq!(visible(&domain, "t").await, picture(&[("a", 3)]));
    assert_eq!(stored(&domain, "t", "n").await, 0, "abandoned documents go");
}

/// The older writer reads after the newer one staged: staging over the newer stagings
/// (whose `gen` it read) would land, and the newer writer's apply would then miss them.
#[tokio::test]
async fn an_older_writer_that_reads_a_newer_staging_stages_nothing() {
    let (_tdb, domain) = setup("set_reads_newer").await;
    write(&domain, "t", &[("a", 1), ("b", 1)]).await;
    let older = begin(&domain, "t").await;
    let newer = begin(&domain, "t").await;
    let new_plan = newer.plan(&items(&[("a", 3), ("b", 3)])).await.unwrap();
    assert!(newer.stage(&new_plan).await.unwrap());
    let old_plan = older.plan(&items(&[("a", 2), ("b", 2)])).await.unwrap();
    assert!(
        !older.stage(&old_plan).await.unwrap(),
        "the older writer saw the newer one's stagings"
    );
    assert!(newer.commit().await.unwrap());
    newer.apply(new_plan).await.unwrap();
    assert_eq!(visible(&domain, "t").await, picture(&[("a", 3), ("b", 3)]));
}

#[tokio::test]
async fn a_commit_whose_apply_was_lost_is_applied_by_the_next_writer() {
    let (_tdb, domain) = setup("set_lost_apply").await;
    write(&domain, "t", &[("a", 1), ("b", 1)]).await;
    let crashed = begin(&domain, "t").await;
    let plan = crashed.plan(&items(&[("a", 2), ("c", 2)])).await.unwrap();
    assert!(crashed.stage(&plan).await.unwrap());
    assert!(crashed.commit().await.unwrap());
    // Its writer died before applying: readers still see the picture before it.
    assert_eq!(visible(&domain, "t").await, picture(&[("a", 1), ("b", 1)]));

    // The next writer delivers the same picture: to it, the commit is already the state.
    assert_eq!(
        write(&domain, "t", &[("a", 2), ("c", 2)]).await,
        Counts {
            unchanged: 2,
            ..Counts::default()
        }
    );
    assert_eq!(visible(&domain, "t").await, picture(&[("a", 2), ("c", 2)]));
    let b = domain
        .db
        .collection::<Document>("findings")
        .find_one(doc! { "tenant_id": "t", "key": "b" })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.get_str("status").unwrap(), "resolved");
    assert!(b.get("next").is_none(), "applied: no staging left");
    let a = domain
        .db
        .collection::<Document>("findings")
        .find_one(doc! { "tenant_id": "t", "key": "a" })
        .await
        .unwrap()
        .unwrap();
    for field in ["next", "set", "live", "take"] {
        assert!(
            a.get(field).is_none(),
            "{field} is the staging's, not the item's"
        );
    }
}

/// An entity another source's writer moved (committed) but did not apply before it died: the
/// first source's next write, without the entity, applies the move instead of retiring it.
#[tokio::test]
async fn a_committed_move_to_another_source_is_applied_not_retired() {
    let (_tdb, domain) = setup("set_committed_move").await;
    let entity = |value: i32| Item {
        key: "x".into(),
        data: doc! { "value": value },
    };
    let by = || ForRun::outside(ObjectId::new());
    domain
        .write_set(
            &ENTITIES,
            "t",
            doc! { "source": "src-1" },
            by(),
            vec![entity(1)],
        )
        .await
        .unwrap();
    let mover = SetWrite::begin(&domain, &ENTITIES, "t", doc! { "source": "src-2" }, by())
        .await
        .unwrap();
    let plan = mover.plan(&[entity(2)]).await.unwrap();
    assert!(mover.stage(&plan).await.unwrap());
    assert!(mover.commit().await.unwrap());
    // Its writer died here. src-1 delivers its state without x.
    let counts = domain
        .write_set(&ENTITIES, "t", doc! { "source": "src-1" }, by(), vec![])
        .await
        .unwrap();
    assert_eq!(counts.retired, 0, "x is src-2's: not src-1's to retire");
    let x = domain
        .db
        .collection::<Document>("entities")
        .find_one(doc! { "tenant_id": "t", "external_id": "x" })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (x.get_str("source").unwrap(), x.get_str("status").unwrap()),
        ("src-2", "live")
    );
    assert_eq!(x.get_document("data").unwrap().get_i32("value").unwrap(), 2);
}

/// A document that src-1's taken-over writer created and another source's writer has since
/// staged (not yet committed) is that writer's: src-1's next writer leaves it alone.
#[tokio::test]
async fn an_abandoned_document_another_source_staged_is_not_deleted() {
    let (_tdb, domain) = setup("set_abandoned_elsewhere").await;
    let entity = |value: i32| Item {
        key: "x".into(),
        data: doc! { "value": value },
    };
    let by = || ForRun::outside(ObjectId::new());
    let src = |n: i32| doc! { "source": format!("src-{n}") };
    let abandoner = SetWrite::begin(&domain, &ENTITIES, "t", src(1), by())
        .await
        .unwrap();
    let plan = abandoner.plan(&[entity(1)]).await.unwrap();
    assert!(abandoner.stage(&plan).await.unwrap());
    // Taken over: a newer src-1 writer takes the head, then src-2's writer stages x.
    let taker = SetWrite::begin(&domain, &ENTITIES, "t", src(1), by())
        .await
        .unwrap();
    let mover = SetWrite::begin(&domain, &ENTITIES, "t", src(2), by())
        .await
        .unwrap();
    let moved = mover.plan(&[entity(2)]).await.unwrap();
    assert!(mover.stage(&moved).await.unwrap());
    let none = taker.plan(&[]).await.unwrap();
    assert!(taker.stage(&none).await.unwrap());
    assert!(taker.commit().await.unwrap());
    taker.apply(none).await.unwrap();
    assert!(mover.commit().await.unwrap());
    mover.apply(moved).await.unwrap();
    let x = domain
        .db
        .collection::<Document>("entities")
        .find_one(doc! { "tenant_id": "t", "external_id": "x" })
        .await
        .unwrap()
        .expect("x survives src-1's clean-up");
    assert_eq!(x.get_str("status").unwrap(), "live");
    assert_eq!(x.get_document("data").unwrap().get_i32("value").unwrap(), 2);
}

#[test]
fn counts_add_up_and_a_superseded_write_keeps_them() {
    let counts = Counts {
        created: 1,
        updated: 2,
        unchanged: 4,
        retired: 8,
        superseded: false,
    };
    assert_eq!(counts.current(), 7, "the retired are not current");
    let superseded = counts.superseded();
    assert!(superseded.superseded);
    assert_eq!(
        Counts {
            superseded: false,
            ..superseded
        },
        counts
    );
}

/// Four writers of one set at once, ten times over, each on its own connection: each
/// returns (committed, or superseded), and what readers see afterwards is exactly the
/// picture of the writer whose commit the head logged last.
#[tokio::test]
async fn concurrent_writers_leave_the_last_committed_picture() {
    let (tdb, domain) = setup("set_concurrent").await;
    let mut superseded = 0;
    for round in 0..10 {
        let mut tasks = Vec::new();
        let mut pictures = HashMap::new();
        for w in 0..4_i32 {
            let run_id = ObjectId::new();
            let value = round * 10 + w;
            let keys: Vec<String> = ["a", "b", "c", "d", "e", "f"]
                .iter()
                .enumerate()
                .filter(|(i, _)| !(i + w as usize + round as usize).is_multiple_of(3))
                .map(|(_, k)| k.to_string())
                .collect();
            pictures.insert(
                run_id,
                keys.iter()
                    .map(|k| (k.clone(), value))
                    .collect::<BTreeMap<_, _>>(),
            );
            let db = sv0_testkit::connect(tdb.uri()).await.database(tdb.name());
            tasks.push(tokio::spawn(async move {
                let domain = Domain::new(&db);
                let items = keys
                    .iter()
                    .map(|k| Item {
                        key: k.clone(),
                        data: doc! { "value": value },
                    })
                    .collect();
                domain
                    .write_set(&FINDINGS, "t", doc! {}, ForRun::outside(run_id), items)
                    .await
            }));
        }
        for task in tasks {
            if task.await.unwrap().unwrap().superseded {
                superseded += 1;
            }
        }
        let heads = domain.set_heads().await.unwrap();
        let last = heads[0].log.last().unwrap().run_id;
        assert_eq!(
            visible(&domain, "t").await,
            pictures[&last],
            "round {round}"
        );
    }
    println!("{superseded} of 40 writes superseded");
}

/// Writers interleaved at random (from a seed), some dying between steps: at every point,
/// every value readers see is the first picture's or that of a writer whose commit
/// succeeded; when the last writer to commit also applied, readers see exactly its picture;
/// a last writer on its own then leaves exactly its picture.
#[tokio::test]
async fn random_interleavings_show_only_committed_pictures() {
    let (_tdb, domain) = setup("set_interleavings").await;
    for seed in 1..=40_u64 {
        let tenant = format!("t{seed}");
        let mut rng = seed;
        let mut next = |n: u64| {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (rng >> 33) % n
        };
        write(&domain, &tenant, &[("a", 0), ("b", 0), ("c", 0)]).await;
        // Writer w's picture: some of the keys a..e, each with the value w.
        let pictures: Vec<Vec<(String, i32)>> = (1..=3)
            .map(|w| {
                ["a", "b", "c", "d", "e"]
                    .iter()
                    .filter(|_| next(3) > 0)
                    .map(|k| (k.to_string(), w))
                    .collect()
            })
            .collect();
        let mut writers: Vec<Option<SetWrite>> = (0..3).map(|_| None).collect();
        let mut plans: Vec<Option<Plan>> = (0..3).map(|_| None).collect();
        let mut step = [0_usize; 3];
        let mut committed = vec![0];
        let mut applied = Vec::new();
        while step.iter().any(|s| *s < 5) {
            let w = next(3) as usize;
            if step[w] >= 5 {
                continue;
            }
            if next(10) == 0 {
                step[w] = 5; // dies here
                continue;
            }
            let p: Vec<Item> = pictures[w]
                .iter()
                .map(|(k, v)| Item {
                    key: k.clone(),
                    data: doc! { "value": v },
                })
                .collect();
            match step[w] {
                0 => writers[w] = Some(begin(&domain, &tenant).await),
                1 => plans[w] = Some(writers[w].as_ref().unwrap().plan(&p).await.unwrap()),
                2 => {
                    let write = writers[w].as_ref().unwrap();
                    if !write.stage(plans[w].as_ref().unwrap()).await.unwrap() {
                        step[w] = 5;
                        continue;
                    }
                }
                3 => {
                    if writers[w].as_ref().unwrap().commit().await.unwrap() {
                        committed.push(w as i32 + 1);
                    } else {
                        step[w] = 5;
                        continue;
                    }
                }
                _ => {
                    let plan = plans[w].take().unwrap();
                    writers[w].as_ref().unwrap().apply(plan).await.unwrap();
                    applied.push(w as i32 + 1);
                }
            }
            step[w] += 1;
            for (key, value) in visible(&domain, &tenant).await {
                assert!(
                    committed.contains(&value),
                    "seed {seed}: {key} = {value}, but only {committed:?} committed"
                );
            }
        }
        // When the last writer to commit also applied, readers see exactly its picture.
        let last = *committed.last().unwrap();
        if last > 0 && applied.contains(&last) {
            let expected: BTreeMap<String, i32> =
                pictures[last as usize - 1].iter().cloned().collect();
            assert_eq!(visible(&domain, &tenant).await, expected, "seed {seed}");
        }
        write(&domain, &tenant, &[("b", 9), ("e", 9)]).await;
        assert_eq!(
            visible(&domain, &tenant).await,
            picture(&[("b", 9), ("e", 9)]),
            "seed {seed}"
        );
        let invisible = domain
            .db
            .collection::<Document>(FINDINGS.collection)
            .count_documents(doc! { "tenant_id": &tenant, "status": { "$exists": false } })
            .await
            .unwrap();
        assert_eq!(invisible, 0, "seed {seed}: abandoned documents left");
    }
}
