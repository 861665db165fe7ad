//! Migrations against a real Redis: applied in order once, idempotent, recorded, refused when
//! the cluster is newer than the binary, and run by the projector when it takes the lead.

use std::time::Duration;

use pantheon_store::migrate::{self, MigrateError, SCHEMA_VERSION};

use crate::cluster::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_in_order_and_are_idempotent() {
    let mut c = TestCluster::start().await;
    assert_eq!(migrate::current(&mut c.con, &c.layout).await.unwrap(), 0);
    let first = migrate::run(&mut c.con, &c.layout).await.unwrap();
    assert_eq!((first.from, first.to), (0, SCHEMA_VERSION));
    assert_eq!(
        first.applied,
        [
            "0001_log_and_projector_group",
            "0002_schema_metadata",
            "0003_attested_service_entries",
            "0004_chunked_snapshots",
            "0005_node_loads_apart"
        ]
    );
    // A cluster no earlier release ran on has no entries written under the old rules.
    assert_eq!(
        pantheon_store::attest::legacy_until(&mut c.con, &c.layout)
            .await
            .unwrap(),
        None
    );
    let groups: redis::Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(c.layout.log())
        .query_async(&mut c.con)
        .await
        .unwrap();
    assert!(format!("{groups:?}").contains("projector"));
    let meta: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(c.layout.meta())
        .query_async(&mut c.con)
        .await
        .unwrap();
    assert_eq!(meta.get("wire_version").map(String::as_str), Some("1"));
    assert_eq!(meta.get("snapshot_format").map(String::as_str), Some("2"));
    let again = migrate::run(&mut c.con, &c.layout).await.unwrap();
    assert!(again.applied.is_empty());
    // Re-running a step on a migrated cluster changes nothing either (each step is idempotent).
    let _: () = redis::cmd("SET")
        .arg(c.layout.schema())
        .arg("0")
        .query_async(&mut c.con)
        .await
        .unwrap();
    let rerun = migrate::run(&mut c.con, &c.layout).await.unwrap();
    assert_eq!(rerun.applied.len(), migrate::MIGRATIONS.len());
    let meta_again: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(c.layout.meta())
        .query_async(&mut c.con)
        .await
        .unwrap();
    assert_eq!(meta, meta_again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_and_a_held_lock_is_reported() {
    let mut c = TestCluster::start().await;
    let _: () = redis::cmd("SET")
        .arg(c.layout.schema())
        .arg(SCHEMA_VERSION + 1)
        .query_async(&mut c.con)
        .await
        .unwrap();
    let err = migrate::run(&mut c.con, &c.layout).await.unwrap_err();
    assert!(matches!(err, MigrateError::TooNew { .. }), "{err}");
    assert!(err.to_string().contains("newer than this binary knows"));
    // The projector refuses to run against it rather than retrying forever.
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        pantheon_projector::run(c.config("p"), Default::default()),
    )
    .await;
    let err = result.expect("the projector stops").unwrap_err();
    assert!(
        err.to_string().contains("newer than this binary knows"),
        "{err}"
    );

    let mut d = TestCluster::start().await;
    let _: () = redis::cmd("SET")
        .arg(d.layout.migrate_lock())
        .arg("someone")
        .query_async(&mut d.con)
        .await
        .unwrap();
    assert!(matches!(
        migrate::run(&mut d.con, &d.layout).await,
        Err(MigrateError::Locked(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_migrates_when_it_takes_the_lead() {
    let mut c = TestCluster::start().await;
    let p = c.spawn_projector("p");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while migrate::current(&mut c.con, &c.layout).await.unwrap() != SCHEMA_VERSION {
        assert!(tokio::time::Instant::now() < deadline, "not migrated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_a_cluster_an_earlier_release_ran_on_marks_its_log_as_legacy() {
    let mut c = TestCluster::start().await;
    // What the previous release left: schema 2 and a log with entries.
    let () = redis::cmd("SET")
        .arg(c.layout.schema())
        .arg("2")
        .query_async(&mut c.con)
        .await
        .unwrap();
    let old = c
        .xadd_raw_at("*", &[("type", "leave"), ("node", "n1")])
        .await;
    let report = migrate::run(&mut c.con, &c.layout).await.unwrap();
    assert_eq!(
        report.applied,
        [
            "0003_attested_service_entries",
            "0004_chunked_snapshots",
            "0005_node_loads_apart"
        ]
    );
    assert_eq!(
        pantheon_store::attest::legacy_until(&mut c.con, &c.layout)
            .await
            .unwrap(),
        Some(old)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_moves_node_loads_out_of_the_node_records() {
    let mut c = TestCluster::start().await;
    // What the previous release left: schema 4, loads inside the node records.
    let () = redis::cmd("SET")
        .arg(c.layout.schema())
        .arg("4")
        .query_async(&mut c.con)
        .await
        .unwrap();
    let with = r#"{"node":"a","state":"alive","token":3,"handoff":false,"handing":0,"load":12500}"#;
    let without = r#"{"node":"b","state":"alive","token":4,"handoff":false,"handing":0}"#;
    let () = redis::cmd("HSET")
        .arg(c.layout.nodes())
        .arg("a")
        .arg(with)
        .arg("b")
        .arg(without)
        .query_async(&mut c.con)
        .await
        .unwrap();
    let report = migrate::run(&mut c.con, &c.layout).await.unwrap();
    assert_eq!(report.applied, ["0005_node_loads_apart"]);
    let records: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(c.layout.nodes())
        .query_async(&mut c.con)
        .await
        .unwrap();
    assert_eq!(
        records["a"],
        r#"{"node":"a","state":"alive","token":3,"handoff":false,"handing":0}"#
    );
    assert_eq!(records["b"], without);
    let loads: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(c.layout.node_loads())
        .query_async(&mut c.con)
        .await
        .unwrap();
    assert_eq!(loads, [("a".to_owned(), "12500".to_owned())].into());
    // Again: nothing changes (a newer load already in `node_loads` is kept too).
    let () = redis::cmd("SET")
        .arg(c.layout.schema())
        .arg("4")
        .query_async(&mut c.con)
        .await
        .unwrap();
    migrate::run(&mut c.con, &c.layout).await.unwrap();
    let again: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(c.layout.nodes())
        .query_async(&mut c.con)
        .await
        .unwrap();
    assert_eq!(again, records);
}
