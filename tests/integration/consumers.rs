//! `pantheon events --group G --consumer C` never loses an event: an event is acked only
//! once delivered (written, flushed, and taken out of a pipe by its reader). A reader that
//! closes the pipe (`| head -n 5`) stops the CLI and leaves the rest pending; kill -9
//! mid-stream leaves at most the event in flight to be delivered again. The real CLI binary
//! as a child process, against a Redis of the test's own.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use pantheon_domain::{EntryId, Event, EventKind};
use pantheon_store::Layout;
use pantheon_test_support::TestRedis;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::cli::{command, pantheon};

const BIN: &str = env!("CARGO_BIN_EXE_pantheon-cli-under-test");

/// Appends `n` events to the cluster's events stream (as the projector would); their ids.
async fn add_events(redis: &TestRedis, layout: &Layout, n: u64) -> Vec<String> {
    let mut con = redis.connection().await;
    let mut ids = Vec::new();
    for i in 1..=n {
        let event = Event {
            cause: EntryId::new(1_700_000_000_000 + i, 0),
            kind: EventKind::Assigned { keys: i },
        };
        let mut cmd = redis::cmd("XADD");
        cmd.arg(layout.events()).arg("*");
        for (k, v) in event.encode() {
            cmd.arg(k).arg(v);
        }
        let id: String = cmd.query_async(&mut con).await.expect("XADD event");
        ids.push(id);
    }
    ids
}

fn ids_of(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
            v["id"].as_str().expect("id").to_owned()
        })
        .collect()
}

/// What a later run of the same consumer receives (its pending events first, then new
/// ones), until the group is idle.
async fn drain(dir: &std::path::Path, url: &str, cluster: &str) -> Vec<String> {
    let run = pantheon(
        dir,
        &[],
        &[
            "events",
            "--group",
            "h",
            "--consumer",
            "c",
            "--json",
            "--redis-url",
            url,
            "--cluster",
            cluster,
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    ids_of(&run.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_stops_the_consumer_and_leaves_the_rest_pending() {
    let redis = TestRedis::start().await;
    let cluster = format!("pipe-{}", redis.namespace());
    let layout = Layout::new("pantheon", &cluster);
    let all = add_events(&redis, &layout, 200).await;
    let dir = tempfile::tempdir().expect("temp dir");
    // The issue's own pipeline: a real shell, a real `head` that exits after 5 lines.
    let script = format!(
        "'{BIN}' events --group h --consumer c --from-beginning --follow --json \
         --redis-url '{}' --cluster '{cluster}' | head -n 5",
        redis.url
    );
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the CLI must stop once head has exited, not follow forever")
    .expect("run sh");
    let printed = ids_of(&String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(printed, all[..5], "{stderr}");
    assert!(stderr.contains("stdout closed"), "{stderr}");

    // Exactly the 5 printed were acked: the same consumer gets the other 195, each once.
    let rest = drain(dir.path(), &redis.url, &cluster).await;
    let rest_set: BTreeSet<&String> = rest.iter().collect();
    assert_eq!(rest.len(), rest_set.len(), "no event twice in one run");
    let expected: BTreeSet<&String> = all[5..].iter().collect();
    assert_eq!(rest_set, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_nothing() {
    let redis = TestRedis::start().await;
    let cluster = format!("kill-{}", redis.namespace());
    let layout = Layout::new("pantheon", &cluster);
    let all = add_events(&redis, &layout, 60).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = command(
        dir.path(),
        &[],
        &[
            "events",
            "--group",
            "h",
            "--consumer",
            "c",
            "--from-beginning",
            "--follow",
            "--json",
            "--redis-url",
            &redis.url,
            "--cluster",
            &cluster,
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn pantheon events");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut read = Vec::new();
    while read.len() < 10 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("an event within 10 s")
            .expect("read stdout")
            .expect("stdout open");
        read.push(line);
    }
    child.start_kill().expect("kill -9");
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    let first = ids_of(&read.join("\n"));
    assert_eq!(first, all[..10]);

    // Everything not acked comes back to the same consumer: nothing is lost. At most the
    // last event read may come again (killed between its delivery and its ack).
    let rest = drain(dir.path(), &redis.url, &cluster).await;
    let got: BTreeSet<&String> = first.iter().chain(rest.iter()).collect();
    assert_eq!(
        got,
        all.iter().collect::<BTreeSet<_>>(),
        "an event was lost"
    );
    let twice: Vec<&String> = rest.iter().filter(|id| first.contains(id)).collect();
    assert!(
        twice.len() <= 1 && twice.iter().all(|id| **id == all[9]),
        "{twice:?}"
    );
}
