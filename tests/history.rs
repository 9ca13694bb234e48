//! `b2m history`: every published version, newest first, from the parent chain.

mod common;

use common::*;

both_backends!(history_lists_every_published_version_newest_first, |backend| {
    let bucket = Bucket::new(backend);
    let (dev, server) = published_pair(&bucket, 1);
    dev.insert("ipm-db-v1.db", "second");
    dev.b2m(&["upload", "ipm-db"]).ok();
    dev.insert_row("ipm-db-v2.db", "CREATE TABLE extra(x)");
    dev.b2m(&["upload", "ipm-db"]).ok();
    // An upload that never committed leaves an orphan: not history.
    let orphan = format!("dbs/ipm-db/ipm-db-v4.{}.db", "ab".repeat(32));
    std::fs::write(bucket.object_path(&orphan), b"half").expect("orphan");
    let run = server.b2m(&["history", "ipm-db", "--json"]);
    run.ok();
    let history: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let versions: Vec<u64> = history["versions"].as_array().expect("versions").iter().filter_map(|v| v["version"].as_u64()).collect();
    assert_eq!(versions, vec![3, 2, 1]);
    assert_eq!(history["versions"][0]["current"], true);
    assert_eq!(history["versions"][0]["schema_changed"], true, "{history}");
    assert_eq!(history["versions"][1]["schema_changed"], false);
    assert_eq!(history["versions"][0]["parent"], 2);
    assert_eq!(history["versions"][2]["parent"], serde_json::Value::Null);
    assert_eq!(history["orphans"], 1);
    assert_eq!(history["complete"], true);
    let table = server.b2m(&["history", "ipmdb"]);
    table.ok();
    assert!(table.stdout.contains("v3 *") && table.stdout.contains("schema changed"), "{}", table.stdout);
    server.b2m(&["history", "nope"]).fails(2, "unknown database");
});
