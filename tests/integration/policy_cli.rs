//! `pantheon policy` end to end: the real CLI binary against a Redis of the test's own and an
//! in-process projector. It prints the defaults, `policy set` changes fields through one
//! `policy` log entry and says what changed, `policy --json` reads the change back, and a bad
//! field or value is a usage error that writes nothing.

use serde_json::{Value, json};

use crate::cli::{Ctl, Run};
use crate::cluster::TestCluster;

async fn log_len(c: &mut TestCluster) -> u64 {
    redis::cmd("XLEN")
        .arg(c.layout.log())
        .query_async(&mut c.con)
        .await
        .unwrap()
}

fn fails_with_usage(run: &Run, says: &[&str]) {
    assert_eq!(run.code, 64, "{run:?}");
    for s in says {
        assert!(run.stderr.contains(s), "stderr lacks {s:?}: {run:?}");
    }
    assert!(run.stderr.contains("nothing was written"), "{run:?}");
    assert_eq!(run.stderr.trim().lines().count(), 1, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_set_changes_fields_and_policy_reads_them_back() {
    let mut c = TestCluster::start().await;
    let _projector = c.spawn_projector("p");
    let ctl = Ctl::new(&c.redis.url, &c.name);

    // Before any policy entry: the defaults, none marked.
    let fresh = ctl.run(&["policy", "--json"]).await.ok().json();
    assert_eq!(fresh["cluster"], c.name.as_str());
    assert_eq!(fresh["policy"], fresh["defaults"], "{fresh}");
    assert_eq!(fresh["policy"]["load_epsilon"], 0);
    assert_eq!(fresh["policy"]["panic"], 50);
    assert_eq!(fresh["policy"]["strategy"], "ring");
    assert_eq!(fresh["non_default"], json!([]));
    let fields: Vec<&String> = fresh["policy"].as_object().unwrap().keys().collect();
    assert_eq!(fields.len(), 12, "every field: {fields:?}");

    let set = ctl
        .run(&["policy", "set", "load_epsilon=10", "panic=40"])
        .await
        .ok();
    assert!(
        set.stdout.contains("load_epsilon 0 → 10") && set.stdout.contains("panic 50 → 40"),
        "{set:?}"
    );

    // One `policy` entry with exactly those fields, applied as a `policy_changed` event.
    let entries = c.log_entries("policy").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].get("load_epsilon"), Some("10"));
    assert_eq!(entries[0].get("panic"), Some("40"));
    assert_eq!(entries[0].get("vnodes"), None);
    assert!(c.events().await.iter().any(|e| matches!(
        &e.kind,
        pantheon_domain::EventKind::PolicyChanged { policy }
            if policy.load_epsilon == 10 && policy.panic == 40
    )));

    let read = ctl.run(&["policy", "--json"]).await.ok().json();
    assert_eq!(read["policy"]["load_epsilon"], 10, "{read}");
    assert_eq!(read["policy"]["panic"], 40, "{read}");
    assert_eq!(read["policy"]["fall"], read["defaults"]["fall"]);
    assert_eq!(read["defaults"]["load_epsilon"], 0);
    assert_eq!(read["non_default"], json!(["panic", "load_epsilon"]));

    let text = ctl.run(&["policy"]).await.ok().stdout;
    let line = |field: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(field))
            .unwrap_or_else(|| panic!("no {field} line: {text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        line("load_epsilon"),
        ["load_epsilon", "10", "*", "0"],
        "{text}"
    );
    assert_eq!(line("panic"), ["panic", "40", "*", "50"], "{text}");
    assert_eq!(line("fall"), ["fall", "3", "3"], "{text}");
    assert!(
        text.contains("differs from the default: panic, load_epsilon"),
        "{text}"
    );

    // The same values again: applied, nothing changes.
    let again = ctl.run(&["policy", "set", "load_epsilon=10"]).await.ok();
    assert!(again.stdout.contains("policy unchanged"), "{again:?}");

    // --json: what changed, and the whole new policy.
    let json = ctl
        .run(&[
            "policy",
            "set",
            "load_epsilon=20",
            "damp_half_life=60",
            "--json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(json["applied"], true, "{json}");
    assert_eq!(json["events"], json!(["policy_changed"]), "{json}");
    assert_eq!(
        json["changed"],
        json!([
            { "field": "damp_half_life", "from": 30, "to": 60 },
            { "field": "load_epsilon", "from": 10, "to": 20 },
        ])
    );
    assert_eq!(json["policy"]["load_epsilon"], 20);
    assert_eq!(json["policy"]["damp_half_life"], 60);
    assert_eq!(json["policy"]["panic"], 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_policy_field_or_value_is_a_usage_error_and_writes_nothing() {
    let mut c = TestCluster::start().await;
    let _projector = c.spawn_projector("p");
    let ctl = Ctl::new(&c.redis.url, &c.name);
    // Something in the log first, so "nothing written" is not just an empty log.
    ctl.run(&["policy", "set", "fall=4"]).await.ok();
    let before = log_len(&mut c).await;
    assert!(before > 0);

    let cases: [(&[&str], &[&str]); 5] = [
        (&["vnodes=0"], &["\"vnodes\" is 0, outside 1..=4096"]),
        (&["bogus=1"], &["unknown field \"bogus\""]),
        // One bad field spoils the whole change: the good one is not written either.
        (
            &["load_epsilon=10", "load_epsilon=10"],
            &["\"load_epsilon\" appears more than once"],
        ),
        (
            &["load_epsilon=101"],
            &["\"load_epsilon\" is 101, outside 0..=100"],
        ),
        (
            &["strategy=maglev"],
            &["unknown placement strategy \"maglev\""],
        ),
    ];
    for (args, says) in cases {
        let mut all = vec!["policy", "set"];
        all.extend_from_slice(args);
        let run = ctl.run(&all).await;
        fails_with_usage(&run, says);
    }
    let mixed = ctl
        .run(&["policy", "set", "load_epsilon=10", "bogus=1"])
        .await;
    fails_with_usage(&mixed, &["bogus"]);

    // Malformed arguments are clap's usage errors, also exit 64.
    for args in [&["policy", "set"][..], &["policy", "set", "load_epsilon"]] {
        let run = ctl.run(args).await;
        assert_eq!(run.code, 64, "{args:?}: {run:?}");
    }

    assert_eq!(
        log_len(&mut c).await,
        before,
        "a refused change wrote to the log"
    );
    let read: Value = ctl.run(&["policy", "--json"]).await.ok().json();
    assert_eq!(read["policy"]["fall"], 4);
    assert_eq!(read["policy"]["load_epsilon"], 0);
    assert_eq!(read["non_default"], json!(["fall"]));

    // A rule that depends on the cluster's policy is the fold's: the entry is written, the
    // projector rejects it (exit 2, its reason), and the policy stays as it was.
    let rejected = ctl.run(&["policy", "set", "damp_reuse=2000"]).await;
    assert_eq!(rejected.code, 2, "{rejected:?}");
    assert!(
        rejected
            .stderr
            .contains("damp_reuse (2000) must be below damp_suppress (1500)"),
        "{rejected:?}"
    );
    assert_eq!(log_len(&mut c).await, before + 1);
    let read: Value = ctl.run(&["policy", "--json"]).await.ok().json();
    assert_eq!(read["policy"]["damp_reuse"], 500);
}
