//! The worker library (`pantheon-worker`) in a real process, `pantheon-worker-under-test`,
//! against `pantheon up`, real HTTP nodes and the real CLI: it joins, becomes alive, and its
//! callbacks fold to exactly `keys NODE` through a distribute, a join and a death; killed
//! with SIGKILL at random points 20 times, every restart resumes with the owned set its
//! callbacks had reached, and the callbacks, folded, miss and repeat nothing the feed (read
//! directly with `pantheon watch NODE --json`) holds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pantheon_client::Pantheon;
use pantheon_test_support::TestRedis;
use rand::Rng;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::cli::{Ctl, command};
use crate::nodes::TestNode;

const BIN: &str = env!("CARGO_BIN_EXE_pantheon-worker-under-test");

/// One callback as the worker process printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    pub(crate) op: String,
    pub(crate) keys: BTreeSet<String>,
    pub(crate) token: u64,
    pub(crate) peer: Option<String>,
}

impl Call {
    pub(crate) fn parse(v: &Value) -> Option<Self> {
        let op = v["op"].as_str()?;
        if op != "acquire" && op != "release" {
            return None;
        }
        Some(Self {
            op: op.to_owned(),
            keys: v["keys"]
                .as_array()?
                .iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect(),
            token: v["token"].as_u64()?,
            peer: v["peer"].as_str().map(str::to_owned),
        })
    }
}

/// A child process whose stdout lines are collected as they come.
pub(crate) struct Lines {
    pub(crate) child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: JoinHandle<()>,
}

impl Lines {
    pub(crate) fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn");
        let out = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = tokio::spawn(async move {
            let mut out = BufReader::new(out).lines();
            while let Ok(Some(line)) = out.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            lines,
            reader,
        }
    }

    pub(crate) fn values(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    pub(crate) fn calls(&self) -> Vec<Call> {
        self.values().iter().filter_map(Call::parse).collect()
    }

    /// Waits (up to `within`) for the process to exit and for its last lines to be read.
    pub(crate) async fn exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .expect("exits in time")
            .expect("wait");
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.reader).await;
        status
    }

    /// SIGTERM, then [`Lines::exit`].
    pub(crate) async fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().expect("still running").to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        self.exit(within).await
    }

    /// SIGKILL, then every line it wrote before dying.
    pub(crate) async fn kill9(mut self) -> Vec<Call> {
        self.child.start_kill().expect("kill -9");
        let _ = self.child.wait().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.reader).await;
        self.calls()
    }
}

pub(crate) fn worker(redis: &TestRedis, node: &str, state: &Path, port: u16) -> Lines {
    worker_with(redis, node, state, port, &[])
}

/// [`worker`] with extra environment (`WORKER_NEVER_RELEASES`, `WORKER_HANDOFF_DELAY_MS`).
pub(crate) fn worker_with(
    redis: &TestRedis,
    node: &str,
    state: &Path,
    port: u16,
    env: &[(&str, &str)],
) -> Lines {
    let mut cmd = Command::new(BIN);
    cmd.args([
        &redis.url,
        redis.namespace(),
        node,
        state.to_str().unwrap(),
        &port.to_string(),
    ])
    .env("RUST_LOG", "warn")
    .envs(env.iter().copied());
    Lines::spawn(cmd)
}

pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub(crate) fn fold(set: &mut BTreeSet<String>, call: &Call) {
    if call.op == "acquire" {
        set.extend(call.keys.iter().cloned());
    } else {
        for k in &call.keys {
            set.remove(k);
        }
    }
}

pub(crate) fn folded(calls: &[Call]) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for c in calls {
        fold(&mut set, c);
    }
    set
}

pub(crate) async fn keys_of(ctl: &Ctl, node: &str) -> BTreeSet<String> {
    let run = ctl.run(&["keys", node, "--json"]).await.ok();
    run.json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect()
}

/// Polls until the callbacks fold to `keys NODE` (and that holds on a second look).
pub(crate) async fn until_folds_to_keys(ctl: &Ctl, node: &str, calls: impl Fn() -> Vec<Call>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let keys = keys_of(ctl, node).await;
        let mine = folded(&calls());
        if mine == keys {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{node}: callbacks fold to {mine:?}, keys are {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The owned keys and position the worker saved: its snapshot file with the records of its
/// journal (`<path>.journal`, one JSON line per delivered feed line) folded in.
pub(crate) fn saved(path: &Path) -> (BTreeMap<String, u64>, Option<String>) {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut owned: BTreeMap<String, u64> = v["owned"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, t)| (k.clone(), t.as_u64().unwrap()))
        .collect();
    let mut position = v["position"].as_str().map(str::to_owned);
    let mut seq = v["seq"].as_u64().unwrap_or(0);
    let mut journal = path.as_os_str().to_owned();
    journal.push(".journal");
    let journal = std::fs::read_to_string(journal).unwrap_or_default();
    // Complete lines only (a kill -9 may tear the last append).
    let complete = journal.rsplit_once('\n').map_or("", |(lines, _)| lines);
    for line in complete.lines() {
        let Ok(r) = serde_json::from_str::<Value>(line) else {
            break;
        };
        let n = r["seq"].as_u64().unwrap();
        if n <= seq {
            continue;
        }
        assert_eq!(n, seq + 1, "journal records follow each other: {line}");
        seq = n;
        let keys = r["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_owned());
        let token = r["token"].as_u64().unwrap();
        match r["op"].as_str().unwrap() {
            "snapshot" => owned = keys.map(|k| (k, token)).collect(),
            "acquire" => owned.extend(keys.map(|k| (k, token))),
            _ => keys.for_each(|k| {
                owned.remove(&k);
            }),
        }
        position = r["position"].as_str().map(str::to_owned);
    }
    (owned, position)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_process_joins_becomes_alive_and_its_callbacks_fold_to_its_keys() {
    let redis = TestRedis::start().await;
    let ctl = Ctl::new(&redis.url, redis.namespace());
    let (_up, _log) = ctl.up();
    let state: PathBuf = ctl.dir.path().join("w.state");
    let w = worker(&redis, "w", &state, free_port());
    // It joins by itself and its health endpoint makes it alive.
    ctl.wait_state("w", "alive").await;
    let a = TestNode::start().await;
    ctl.run(&["join", "a", "--url", &a.url()]).await.ok();
    ctl.wait_state("a", "alive").await;
    let keys: Vec<String> = (0..200).map(|i| format!("user:{i}")).collect();
    let file = ctl.dir.path().join("keys.txt");
    std::fs::write(&file, keys.join("\n")).unwrap();
    ctl.run(&["distribute", "--file", file.to_str().unwrap()])
        .await
        .ok();
    until_folds_to_keys(&ctl, "w", || w.calls()).await;
    let calls = w.calls();
    assert!(
        calls.iter().all(|c| c.op == "acquire" && c.peer.is_none()),
        "new keys come from nobody: {calls:?}"
    );
    assert!(!folded(&calls).is_empty(), "w owns some of 200 keys");
    // Another node joins: w releases some keys to it, and still folds to `keys w`.
    let b = TestNode::start().await;
    ctl.run(&["join", "b", "--url", &b.url()]).await.ok();
    ctl.wait_state("b", "alive").await;
    until_folds_to_keys(&ctl, "w", || w.calls()).await;
    assert!(
        w.calls()
            .iter()
            .any(|c| c.op == "release" && c.peer.as_deref() == Some("b")),
        "{:?}",
        w.calls()
    );
    // A node dies: w acquires some of its keys, from it.
    let mut a = a;
    a.stop().await;
    ctl.wait_state("a", "dead").await;
    until_folds_to_keys(&ctl, "w", || w.calls()).await;
    assert!(
        w.calls()
            .iter()
            .any(|c| c.op == "acquire" && c.peer.as_deref() == Some("a")),
        "{:?}",
        w.calls()
    );
    // The state file holds what it owns, each key with a token the cluster agrees with.
    let (owned, position) = saved(&state);
    assert_eq!(
        owned.keys().cloned().collect::<BTreeSet<_>>(),
        folded(&w.calls())
    );
    assert!(position.is_some());
    let key = owned.keys().next().unwrap();
    let located = ctl.run(&["locate", key, "--json"]).await.ok().json();
    assert_eq!(located["node"], "w");
    assert!(
        located["token"].as_u64().unwrap() >= owned[key],
        "{located}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_9_twenty_times_resumes_exactly_and_misses_or_repeats_nothing() {
    let started = Instant::now();
    let redis = TestRedis::start().await;
    let ctl = Ctl::new(&redis.url, redis.namespace());
    let (_up, _log) = ctl.up();
    let a = TestNode::start().await;
    ctl.run(&["join", "a", "--url", &a.url()]).await.ok();
    let state = ctl.dir.path().join("w.state");
    let port = free_port();
    let first = worker(&redis, "w", &state, port);
    ctl.wait_state("w", "alive").await;
    ctl.wait_state("a", "alive").await;
    // The feed, read directly, from before any key exists.
    let mut watch = command(
        ctl.dir.path(),
        &[],
        &[
            "watch",
            "w",
            "--json",
            "--redis-url",
            &redis.url,
            "--cluster",
            redis.namespace(),
        ],
    );
    watch.kill_on_drop(true);
    let feed = Lines::spawn(watch);
    // A stream of changes while the worker is killed and restarted: new keys, and keys
    // taken away again.
    let client = Pantheon::connect(&redis.url, redis.namespace())
        .await
        .unwrap();
    let writer = tokio::spawn(async move {
        for i in 0u32.. {
            client.distribute([format!("k{i}")]).await.unwrap();
            if i % 3 == 2 {
                client.unassign([format!("k{}", i - 2)]).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });

    let mut rounds: Vec<Vec<Call>> = Vec::new();
    let mut running = first;
    for round in 0..20 {
        let pause = rand::rng().random_range(50..400);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let calls = running.kill9().await;
        let before = rounds.iter().flatten().cloned().collect::<Vec<_>>();
        rounds.push(calls);
        // The state the next run resumes from is what the callbacks reached: all of them,
        // or all but the last (killed after a callback, before saving: at least once).
        let all: Vec<Call> = rounds.iter().flatten().cloned().collect();
        let (owned, _) = saved(&state);
        let owned: BTreeSet<String> = owned.into_keys().collect();
        let but_last = folded(&all[..all.len().saturating_sub(1)]);
        assert!(
            owned == folded(&all) || owned == but_last,
            "round {round}: resumes with {owned:?}, callbacks reached {:?} (before this run: {:?})",
            folded(&all),
            folded(&before)
        );
        running = worker(&redis, "w", &state, port);
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "round {round}: too slow"
        );
    }
    writer.abort();
    let _ = writer.await;
    // Let the last run catch up; its callbacks then fold to `keys w`.
    let done_before: Vec<Call> = rounds.iter().flatten().cloned().collect();
    until_folds_to_keys(&ctl, "w", || {
        let mut all = done_before.clone();
        all.extend(running.calls());
        all
    })
    .await;
    rounds.push(running.kill9().await);

    // Across all runs: drop a redelivery at a restart (the last callback of a killed run
    // repeated first by the next), then every change is new: an acquire names only keys not
    // held, a release only keys held.
    let mut calls: Vec<Call> = Vec::new();
    for run in &rounds {
        let mut run = run.as_slice();
        if calls.last().is_some() && calls.last() == run.first() {
            run = &run[1..];
        }
        calls.extend(run.iter().cloned());
    }
    let mut held = BTreeSet::new();
    for (i, c) in calls.iter().enumerate() {
        for k in &c.keys {
            assert_eq!(
                c.op == "acquire",
                !held.contains(k),
                "callback {i} {c:?} repeats or misses a change of {k}"
            );
        }
        fold(&mut held, c);
    }
    // And they are the feed's lines, in order: those after the direct reader's snapshot
    // are the tail of the worker's.
    until_folds_to_keys(&ctl, "w", || feed.calls()).await;
    let lines = feed.values();
    assert_eq!(lines[0]["op"], "snapshot", "{lines:?}");
    let direct: Vec<Call> = lines.iter().filter_map(Call::parse).collect();
    assert!(
        direct.len() > 20,
        "the writer made changes: {}",
        direct.len()
    );
    let start = calls
        .iter()
        .position(|c| Some(c) == direct.first())
        .expect("the worker saw the feed's first change");
    assert_eq!(&calls[start..], direct.as_slice());
    assert!(
        started.elapsed() < Duration::from_secs(55),
        "{:?}",
        started.elapsed()
    );
}
