//! Hand-offs of planned moves (docs/adr/0016) with real worker processes
//! (`pantheon-worker-under-test`), `pantheon up`, real HTTP health endpoints and the CLI: a
//! drain hands every key over with its state before the new owner acquires it; a worker that
//! never releases is forced after the policy's `handoff_timeout`, its token stale; SIGTERM
//! drains, hands off and leaves, and a restart under the same id gets its share back with
//! state.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use pantheon_store::Layout;
use pantheon_test_support::TestRedis;
use serde_json::Value;

use crate::cli::Ctl;
use crate::worker::{
    Call, Lines, folded, free_port, keys_of, until_folds_to_keys, worker, worker_with,
};

/// Every value a worker received as handed-over state: key → value.
fn received(w: &Lines) -> BTreeMap<String, String> {
    w.values()
        .iter()
        .filter(|v| v["op"] == "state")
        .flat_map(|v| {
            v["values"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect()
}

fn asked(w: &Lines) -> BTreeSet<String> {
    w.values()
        .iter()
        .filter(|v| v["op"] == "handoff")
        .flat_map(|v| {
            v["keys"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|k| k.as_str().map(str::to_owned))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect()
}

async fn distribute(ctl: &Ctl, n: usize) -> Vec<String> {
    let keys: Vec<String> = (0..n).map(|i| format!("user:{i}")).collect();
    let file = ctl.dir.path().join("keys.txt");
    std::fs::write(&file, keys.join("\n")).unwrap();
    ctl.run(&["distribute", "--file", file.to_str().unwrap()])
        .await
        .ok();
    keys
}

pub(crate) async fn event_types(ctl: &Ctl) -> Vec<String> {
    let run = ctl.run(&["events", "--json", "--limit", "1000"]).await.ok();
    let text = run.stdout.clone();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["type"].as_str().map(str::to_owned))
        .collect()
}

pub(crate) async fn set_policy(redis: &TestRedis, fields: &[(&str, &str)]) {
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let mut cmd = redis::cmd("XADD");
    cmd.arg(Layout::new("pantheon", redis.namespace()).log())
        .arg("*")
        .arg("type")
        .arg("policy");
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    let _: String = cmd.query_async(&mut con).await.unwrap();
}

/// How many keys `node` is asked to hand off, as `pantheon nodes --json` says.
async fn handing(ctl: &Ctl, node: &str) -> u64 {
    let nodes = ctl.run(&["nodes", "--json"]).await.ok().json();
    let record = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == node)
        .unwrap_or_else(|| panic!("{node} in {nodes}"))
        .clone();
    record["handing"]
        .as_u64()
        .unwrap_or_else(|| panic!("{record}"))
}

async fn until(what: &str, within: Duration, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_hands_every_key_over_with_its_state_before_the_new_owner_acquires_it() {
    let redis = TestRedis::start().await;
    let ctl = Ctl::new(&redis.url, redis.namespace());
    let (_up, _log) = ctl.up();
    let dir = ctl.dir.path();
    let w1 = worker(&redis, "w1", &dir.join("w1.state"), free_port());
    let w2 = worker(&redis, "w2", &dir.join("w2.state"), free_port());
    ctl.wait_state("w1", "alive").await;
    ctl.wait_state("w2", "alive").await;
    distribute(&ctl, 300).await;
    until_folds_to_keys(&ctl, "w1", || w1.calls()).await;
    until_folds_to_keys(&ctl, "w2", || w2.calls()).await;
    let had = keys_of(&ctl, "w1").await;
    assert!(!had.is_empty(), "w1 owns some of 300 keys");
    let w1_token = w1.calls().last().unwrap().token;

    ctl.run(&["drain", "w1"]).await.ok();
    until("w1 owns nothing", Duration::from_secs(15), async || {
        keys_of(&ctl, "w1").await.is_empty()
    })
    .await;
    until_folds_to_keys(&ctl, "w2", || w2.calls()).await;
    until_folds_to_keys(&ctl, "w1", || w1.calls()).await;

    // w1 was asked for exactly its keys, and w2 got each one's state from w1 before it
    // acquired the key.
    assert_eq!(asked(&w1), had);
    let state = received(&w2);
    let expected: BTreeMap<String, String> = had
        .iter()
        .map(|k| (k.clone(), format!("state-of-{k}@w1")))
        .collect();
    assert_eq!(state, expected);
    let values = w2.values();
    let state_at = values.iter().position(|v| v["op"] == "state").unwrap();
    let acquired_at = values
        .iter()
        .position(|v| v["op"] == "acquire" && v["peer"] == "w1")
        .unwrap();
    assert!(
        state_at < acquired_at,
        "state comes before on_acquire: {values:?}"
    );
    let acquire = Call::parse(&values[acquired_at]).unwrap();
    assert!(acquire.token > w1_token, "{} > {w1_token}", acquire.token);
    // w1's release names w2, with w2's (larger) token.
    let release = w1
        .calls()
        .into_iter()
        .find(|c| c.op == "release" && c.peer.as_deref() == Some("w2"))
        .expect("w1 released to w2");
    assert_eq!(release.keys, had);
    assert!(release.token > w1_token);
    // explain tells the same story from the log, with the token w2 acquired it with: a
    // release raises the token floor, which only the whole state's fold can see.
    let key = had.iter().next().unwrap();
    let explained = ctl.run(&["explain", key, "--json"]).await.ok().json();
    let history = explained["history"].as_array().unwrap();
    let last = &history[history.len() - 1];
    assert_eq!(last["node"], "w2", "{explained}");
    assert_eq!(last["token"], acquire.token, "{explained}");
    assert_eq!(history[history.len() - 2]["node"], "w1", "{explained}");
    let why = last["why"].as_str().unwrap();
    assert!(why.starts_with("w1 handed it over"), "{explained}");
    // The audit trail says so, and the values were taken (deleted) by the new owner.
    let types = event_types(&ctl).await;
    for t in ["handoff_started", "handed_off"] {
        assert!(types.iter().any(|x| x == t), "{t} in {types:?}");
    }
    assert!(!types.iter().any(|x| x == "handoff_forced"), "{types:?}");
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let hash = Layout::new("pantheon", redis.namespace())
        .node_handoff(&pantheon_client::NodeId::new("w1").unwrap());
    until(
        "w2 deleted the values it took",
        Duration::from_secs(5),
        async || {
            let n: u64 = redis::cmd("HLEN")
                .arg(&hash)
                .query_async(&mut con)
                .await
                .unwrap();
            n == 0
        },
    )
    .await;
    assert_eq!(folded(&w1.calls()), BTreeSet::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_never_releases_is_forced_after_the_timeout_and_its_token_is_stale() {
    let redis = TestRedis::start().await;
    let ctl = Ctl::new(&redis.url, redis.namespace());
    let (_up, _log) = ctl.up();
    set_policy(&redis, &[("handoff_timeout", "1500")]).await;
    let dir = ctl.dir.path();
    let w1 = worker_with(
        &redis,
        "w1",
        &dir.join("w1.state"),
        free_port(),
        &[("WORKER_NEVER_RELEASES", "1")],
    );
    let w2 = worker(&redis, "w2", &dir.join("w2.state"), free_port());
    ctl.wait_state("w1", "alive").await;
    ctl.wait_state("w2", "alive").await;
    distribute(&ctl, 200).await;
    until_folds_to_keys(&ctl, "w1", || w1.calls()).await;
    let had = keys_of(&ctl, "w1").await;
    let w1_token = w1.calls().last().unwrap().token;
    let drained = Instant::now();
    ctl.run(&["drain", "w1"]).await.ok();
    // It is asked, never answers; the keys stay with it until the timeout, then move.
    until("w1 is asked", Duration::from_secs(5), async || {
        !asked(&w1).is_empty()
    })
    .await;
    assert_eq!(
        keys_of(&ctl, "w1").await,
        had,
        "still w1's while it hands off"
    );
    let key = had.iter().next().unwrap().clone();
    let located = ctl.run(&["locate", &key, "--json"]).await.ok().json();
    assert_eq!(
        located["node"], "w1",
        "locate answers the old owner until the release"
    );
    // `nodes` counts what w1 still has to hand off, and the read models agree with the fold.
    assert_eq!(handing(&ctl, "w1").await, had.len() as u64);
    assert_eq!(handing(&ctl, "w2").await, 0);
    let text = ctl.run(&["nodes"]).await.ok().stdout;
    assert!(
        text.contains(&format!("({} handing off)", had.len())),
        "{text}"
    );
    ctl.run(&["rebuild", "--verify"]).await.ok();
    until(
        "the leader forces the move",
        Duration::from_secs(15),
        async || keys_of(&ctl, "w1").await.is_empty(),
    )
    .await;
    let waited = drained.elapsed();
    assert_eq!(handing(&ctl, "w1").await, 0, "nothing left to hand off");
    assert!(
        waited >= Duration::from_millis(1500),
        "forced after the timeout: {waited:?}"
    );
    until_folds_to_keys(&ctl, "w2", || w2.calls()).await;
    assert!(received(&w2).is_empty(), "a forced move carries no state");
    let types = event_types(&ctl).await;
    assert!(types.iter().any(|x| x == "handoff_forced"), "{types:?}");
    // The new owner's token is larger than the one the stuck worker still holds: a write
    // carrying w1's token is refused by anyone comparing with `<`.
    let located = ctl.run(&["locate", &key, "--json"]).await.ok().json();
    assert_eq!(located["node"], "w2");
    assert!(located["token"].as_u64().unwrap() > w1_token, "{located}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_off_and_leaves_and_a_restart_gets_its_share_back_with_state() {
    let redis = TestRedis::start().await;
    let ctl = Ctl::new(&redis.url, redis.namespace());
    let (_up, _log) = ctl.up();
    let dir = ctl.dir.path();
    let (port1, state1) = (free_port(), dir.join("w1.state"));
    let mut w1 = worker(&redis, "w1", &state1, port1);
    let w2 = worker(&redis, "w2", &dir.join("w2.state"), free_port());
    ctl.wait_state("w1", "alive").await;
    ctl.wait_state("w2", "alive").await;
    distribute(&ctl, 200).await;
    until_folds_to_keys(&ctl, "w1", || w1.calls()).await;
    let had = keys_of(&ctl, "w1").await;

    let status = w1.terminate(Duration::from_secs(25)).await;
    assert!(status.success(), "graceful shutdown exits 0: {status}");
    assert!(w1.values().iter().any(|v| v["stopped"] == "graceful"));
    let nodes = ctl.run(&["nodes", "--json"]).await.ok().json();
    assert!(!nodes.to_string().contains("\"w1\""), "w1 left: {nodes}");
    until_folds_to_keys(&ctl, "w2", || w2.calls()).await;
    let state = received(&w2);
    for k in &had {
        assert_eq!(
            state.get(k).map(String::as_str),
            Some(format!("state-of-{k}@w1").as_str())
        );
    }

    // Started again under the same id, it rejoins and gets a share back from w2, with state.
    let w1 = worker(&redis, "w1", &state1, port1);
    ctl.wait_state("w1", "alive").await;
    until("w1 owns keys again", Duration::from_secs(15), async || {
        !keys_of(&ctl, "w1").await.is_empty()
    })
    .await;
    until_folds_to_keys(&ctl, "w1", || w1.calls()).await;
    let back = keys_of(&ctl, "w1").await;
    let state = received(&w1);
    for k in &back {
        assert_eq!(
            state.get(k).map(String::as_str),
            Some(format!("state-of-{k}@w2").as_str())
        );
    }
}

/// Whether `node` is no longer in `nodes` (it left, so it owns nothing).
async fn has_left(ctl: &Ctl, node: &str) -> bool {
    let nodes = ctl.run(&["nodes", "--json"]).await.ok().json();
    !nodes.to_string().contains(&format!("\"{node}\""))
}

/// Every `acquire` from a peer came with that peer's state for each of its keys (the
/// `state` line just before it), in one worker process's output.
fn every_move_carried_state(w: &Lines) -> usize {
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    let mut moved = 0;
    for v in w.values() {
        if v["op"] == "state" {
            for (k, val) in v["values"].as_object().unwrap() {
                last.insert(k.clone(), val.as_str().unwrap().to_owned());
            }
        } else if let Some(call) = Call::parse(&v)
            && call.op == "acquire"
            && let Some(peer) = &call.peer
        {
            for k in &call.keys {
                assert_eq!(
                    last.get(k).map(String::as_str),
                    Some(format!("state-of-{k}@{peer}").as_str()),
                    "{k} came from {peer} without its state"
                );
                moved += 1;
            }
        }
    }
    moved
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_hand_off_finishes_it_then_hands_off_the_rest_and_leaves() {
    let redis = TestRedis::start().await;
    let ctl = Ctl::new(&redis.url, redis.namespace());
    let (_up, _log) = ctl.up();
    let dir = ctl.dir.path();
    let mut w1 = worker_with(
        &redis,
        "w1",
        &dir.join("w1.state"),
        free_port(),
        &[("WORKER_HANDOFF_DELAY_MS", "800")],
    );
    let w2 = worker(&redis, "w2", &dir.join("w2.state"), free_port());
    ctl.wait_state("w1", "alive").await;
    ctl.wait_state("w2", "alive").await;
    distribute(&ctl, 300).await;
    until_folds_to_keys(&ctl, "w1", || w1.calls()).await;
    let had = keys_of(&ctl, "w1").await;

    // w3 joins: w1 is asked to hand it a share, and is in the middle of it (800 ms) when
    // SIGTERM arrives.
    let w3 = worker(&redis, "w3", &dir.join("w3.state"), free_port());
    until(
        "w1 is handing off to w3",
        Duration::from_secs(15),
        async || !asked(&w1).is_empty(),
    )
    .await;
    let status = w1.terminate(Duration::from_secs(25)).await;
    assert!(status.success(), "graceful shutdown exits 0: {status}");
    assert!(w1.values().iter().any(|v| v["stopped"] == "graceful"));
    assert!(has_left(&ctl, "w1").await);
    until_folds_to_keys(&ctl, "w2", || w2.calls()).await;
    until_folds_to_keys(&ctl, "w3", || w3.calls()).await;
    // Every key w1 had went to w2 or w3 with w1's state: the interrupted hand-off finished,
    // the rest was handed off by the drain, nothing was forced.
    let mut got = received(&w2);
    got.extend(received(&w3));
    for k in &had {
        assert_eq!(
            got.get(k).map(String::as_str),
            Some(format!("state-of-{k}@w1").as_str()),
            "{k}"
        );
    }
    every_move_carried_state(&w2);
    every_move_carried_state(&w3);
    let types = event_types(&ctl).await;
    assert!(!types.iter().any(|x| x == "handoff_forced"), "{types:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_moves_each_key_at_most_twice_and_every_move_carries_its_state() {
    let redis = TestRedis::start().await;
    let ctl = Ctl::new(&redis.url, redis.namespace());
    let (_up, _log) = ctl.up();
    let dir = ctl.dir.path();
    let names = ["w1", "w2", "w3"];
    let slots: Vec<(u16, std::path::PathBuf)> = names
        .iter()
        .map(|n| (free_port(), dir.join(format!("{n}.state"))))
        .collect();
    let mut running: Vec<Lines> = names
        .iter()
        .zip(&slots)
        .map(|(n, (port, state))| worker(&redis, n, state, *port))
        .collect();
    for n in names {
        ctl.wait_state(n, "alive").await;
    }
    let keys = distribute(&ctl, 300).await;
    for (n, w) in names.iter().zip(&running) {
        until_folds_to_keys(&ctl, n, || w.calls()).await;
    }
    let mut finished: Vec<Lines> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let mut old = running.remove(i);
        let status = old.terminate(Duration::from_secs(25)).await;
        assert!(status.success(), "{n}: {status}");
        assert!(has_left(&ctl, n).await, "{n} left");
        finished.push(old);
        let (port, state) = &slots[i];
        running.insert(i, worker(&redis, n, state, *port));
        ctl.wait_state(n, "alive").await;
        until(
            &format!("{n} owns keys again"),
            Duration::from_secs(15),
            async || !keys_of(&ctl, n).await.is_empty(),
        )
        .await;
        for (m, w) in names.iter().zip(&running) {
            until_folds_to_keys(&ctl, m, || w.calls()).await;
        }
    }
    // Nothing lost: every key has an owner whose callbacks say so; every move carried its
    // state; no key moved more than twice (away from its restarting owner, and back).
    let mut owned = BTreeSet::new();
    for (n, w) in names.iter().zip(&running) {
        let mine = keys_of(&ctl, n).await;
        assert_eq!(mine, folded(&w.calls()));
        owned.extend(mine);
    }
    assert_eq!(owned, keys.iter().cloned().collect::<BTreeSet<_>>());
    let mut moves: BTreeMap<String, usize> = BTreeMap::new();
    for w in finished.iter().chain(&running) {
        every_move_carried_state(w);
        for c in w.calls() {
            if c.op == "acquire" && c.peer.is_some() {
                for k in c.keys {
                    *moves.entry(k).or_default() += 1;
                }
            }
        }
    }
    assert!(!moves.is_empty(), "the restarts moved keys");
    let most = moves.values().max().copied().unwrap_or(0);
    assert!(most <= 2, "a key moved {most} times: {moves:?}");
    let types = event_types(&ctl).await;
    assert!(!types.iter().any(|x| x == "handoff_forced"), "{types:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handed_over_state_is_bounded_and_expires_within_an_hour() {
    use pantheon_client::handoff::{HANDOFF_TTL_MS, MAX_HANDOFF_BYTES, MAX_HANDOFF_VALUE_BYTES};
    let redis = TestRedis::start().await;
    let client = pantheon_client::Pantheon::connect(&redis.url, redis.namespace())
        .await
        .unwrap();
    client
        .put_handoff_state("w1", &[("k".to_owned(), b"v".to_vec())])
        .await
        .unwrap();
    let hash = Layout::new("pantheon", redis.namespace())
        .node_handoff(&pantheon_client::NodeId::new("w1").unwrap());
    let raw = redis::Client::open(redis.url.as_str()).unwrap();
    let mut con = raw.get_multiplexed_async_connection().await.unwrap();
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&hash)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        pttl > 0 && pttl as u64 <= HANDOFF_TTL_MS && HANDOFF_TTL_MS - (pttl as u64) < 60_000,
        "PTTL {pttl}"
    );
    assert_eq!(HANDOFF_TTL_MS, 3_600_000);
    // Over the limits: refused before anything is written, naming the limit.
    let big = vec![0u8; MAX_HANDOFF_VALUE_BYTES + 1];
    let e = client
        .put_handoff_state("w1", &[("big".to_owned(), big)])
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains(&MAX_HANDOFF_VALUE_BYTES.to_string()),
        "{e}"
    );
    let many: Vec<(String, Vec<u8>)> = (0..=MAX_HANDOFF_BYTES / MAX_HANDOFF_VALUE_BYTES)
        .map(|i| (format!("k{i}"), vec![0u8; MAX_HANDOFF_VALUE_BYTES]))
        .collect();
    let e = client.put_handoff_state("w1", &many).await.unwrap_err();
    assert!(
        e.to_string().contains(&MAX_HANDOFF_BYTES.to_string()),
        "{e}"
    );
    let n: u64 = redis::cmd("HLEN")
        .arg(&hash)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(n, 1, "nothing of the refused calls was written");
}
