//! The per-node feeds through the paths `watch.rs` does not take (issue 21): a panic hold and
//! its end, flap damping and its end, and a clock-recovery generation. Each test runs
//! `pantheon up` (projector and prober) against a Redis of its own and real HTTP nodes, follows
//! every node's feed with [`Pantheon::watch`] from a snapshot, and after each step checks that
//!
//! - folding each feed gives exactly `pantheon keys NODE`, with no second snapshot (nothing
//!   was trimmed, so a feed that needed one would be hiding a gap);
//! - every release names where the keys went, and that node's feed acquired exactly those
//!   keys from it for the same log entry (and the other way round);
//! - every key that changed owner (a line with a peer) did so with a token larger than any
//!   token seen before the step;
//!
//! and then what the step itself must show: a held node keeps its keys until the hold ends
//! and then releases them all; a damped node owns nothing while its probes succeed and gets
//! keys back once undamped; the feeds carry on across `pantheon recover-clock` with tokens
//! still growing although the new generation's log ids are far lower.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use pantheon_client::{EntryId, Pantheon, Watch, WatchLine, WatchOp};
use pantheon_store::readmodel::NodeRecord;
use pantheon_test_support::TestRedis;
use tokio::time::Instant;

use crate::cli::Ctl;
use crate::nodes::TestNode;
use crate::watch::fold;

/// Longest wait for any one thing to happen.
const WAIT: Duration = Duration::from_secs(30);
/// A feed is read until it has been quiet this long.
const QUIET: Duration = Duration::from_secs(1);
/// `XADD log 99999999999999-0 ...`: a producer that used its own clock (see `clock.rs`).
const POISON: &str = "99999999999999-0";

/// One node's feed, followed from its snapshot, and the key set its lines fold to.
struct Follower {
    node: String,
    watch: Watch,
    keys: BTreeSet<String>,
    lines: Vec<WatchLine>,
}

impl Follower {
    /// Every line until the feed has been quiet for [`QUIET`] (a `None` from `next_within`
    /// only says that its wait ended), bounded by [`WAIT`].
    async fn read_quiet(&mut self) -> Vec<WatchLine> {
        let mut lines = Vec::new();
        let deadline = Instant::now() + WAIT;
        let mut last = Instant::now();
        while Instant::now() < deadline {
            match self.watch.next_within(QUIET).await.unwrap() {
                Some(line) => {
                    lines.push(line);
                    last = Instant::now();
                }
                None if last.elapsed() >= QUIET => break,
                None => {}
            }
        }
        lines
    }
}

/// The lines each node's feed gained in one step.
type Step = BTreeMap<String, Vec<WatchLine>>;

/// Followers of every node of a cluster.
struct Feeds {
    followers: Vec<Follower>,
}

impl Feeds {
    /// Starts following `nodes`: each first line is a snapshot, taken now.
    async fn follow(client: &Pantheon, nodes: &[&str]) -> Self {
        let mut followers = Vec::new();
        for node in nodes {
            let mut watch = client.watch(node, None).unwrap();
            let first = watch.next().await.unwrap();
            assert_eq!(first.op, WatchOp::Snapshot, "{node}: {first:?}");
            let mut keys = BTreeSet::new();
            fold(&mut keys, &first);
            followers.push(Follower {
                node: (*node).to_owned(),
                watch,
                keys,
                lines: vec![first],
            });
        }
        Self { followers }
    }

    fn keys(&self, node: &str) -> &BTreeSet<String> {
        &self.follower(node).keys
    }

    fn follower(&self, node: &str) -> &Follower {
        self.followers.iter().find(|f| f.node == node).unwrap()
    }

    /// The largest token any line read so far carries.
    fn max_token(&self) -> u64 {
        self.followers
            .iter()
            .flat_map(|f| f.lines.iter().map(|l| l.token))
            .max()
            .unwrap_or(0)
    }

    /// Reads every feed on until all are quiet, folds the new lines and checks them (see the
    /// module's list). A commit may land between the reads and `keys`: then the sets differ
    /// until the next read, so it reads again, up to [`WAIT`]; a wrong feed stays wrong.
    async fn check(&mut self, ctl: &Ctl, step: &str) -> Step {
        let before = self.max_token();
        let mut new: Step = BTreeMap::new();
        let deadline = Instant::now() + WAIT;
        loop {
            let read =
                futures_util::future::join_all(self.followers.iter_mut().map(|f| f.read_quiet()))
                    .await;
            for (f, lines) in self.followers.iter_mut().zip(read) {
                for line in &lines {
                    assert_ne!(
                        line.op,
                        WatchOp::Snapshot,
                        "{step}: {} started again from a snapshot: {line:?}",
                        f.node
                    );
                    fold(&mut f.keys, line);
                }
                f.lines.extend(lines.iter().cloned());
                new.entry(f.node.clone()).or_default().extend(lines);
            }
            let mut differ = Vec::new();
            for f in &self.followers {
                let listed = keys_of(ctl, &f.node).await;
                if listed != f.keys {
                    let missing: Vec<_> = listed.difference(&f.keys).collect();
                    let extra: Vec<_> = f.keys.difference(&listed).collect();
                    differ.push(format!(
                        "{}: the feed lacks {missing:?} and has {extra:?} more than `keys`",
                        f.node
                    ));
                }
            }
            if differ.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{step}: the feeds do not fold to `keys`: {differ:?}"
            );
        }
        check_pairs(&new, step);
        // A key that changed owner (a line with a peer; new keys come from nobody and keep
        // their owner's token) did so with a token above every one before.
        for (node, lines) in &new {
            for line in lines.iter().filter(|l| l.peer.is_some()) {
                assert!(
                    line.token > before,
                    "{step}: {node}'s {:?} of {:?} carries token {}, not above {before}, the \
                     largest before the step",
                    line.op,
                    line.keys,
                    line.token
                );
            }
        }
        new
    }
}

/// Every release names a peer whose feed acquired exactly those keys from the releasing node
/// for the same log entry, and every acquire from a peer is such a release's other half.
fn check_pairs(step: &Step, what: &str) {
    // (cause, from, to) → keys, as the releasing side and as the acquiring side tell it.
    type Flows = BTreeMap<(Option<EntryId>, String, String), BTreeSet<String>>;
    let (mut released, mut acquired) = (Flows::new(), Flows::new());
    for (node, lines) in step {
        for line in lines {
            let Some(peer) = &line.peer else { continue };
            let (flows, key) = match line.op {
                WatchOp::Release => (&mut released, (line.cause, node.clone(), peer.to_string())),
                WatchOp::Acquire => (&mut acquired, (line.cause, peer.to_string(), node.clone())),
                WatchOp::Snapshot | WatchOp::Handoff => continue,
            };
            flows
                .entry(key)
                .or_default()
                .extend(line.keys.iter().cloned());
        }
    }
    assert_eq!(
        released, acquired,
        "{what}: the releases and the acquires do not pair up"
    );
}

/// What `pantheon keys NODE --json` lists.
async fn keys_of(ctl: &Ctl, node: &str) -> BTreeSet<String> {
    let run = ctl.run(&["keys", node, "--json"]).await.ok();
    run.json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect()
}

/// Keys released in a step's lines of one node, with their peers.
fn released(lines: &[WatchLine]) -> BTreeMap<String, Option<String>> {
    lines
        .iter()
        .filter(|l| l.op == WatchOp::Release)
        .flat_map(|l| {
            l.keys
                .iter()
                .map(|k| (k.clone(), l.peer.as_ref().map(ToString::to_string)))
        })
        .collect()
}

fn acquired(lines: &[WatchLine]) -> BTreeSet<String> {
    lines
        .iter()
        .filter(|l| l.op == WatchOp::Acquire)
        .flat_map(|l| l.keys.iter().cloned())
        .collect()
}

/// `pantheon up` with nodes joined, answering, and 300 keys distributed.
struct Cluster {
    redis: TestRedis,
    ctl: Ctl,
    _up: (tokio::process::Child, std::path::PathBuf),
    client: Pantheon,
    nodes: BTreeMap<String, TestNode>,
}

impl Cluster {
    /// `policy` (field/value pairs of a `policy` entry) is applied before the nodes join.
    async fn start(names: &[&str], policy: &[(&str, &str)]) -> Self {
        let redis = TestRedis::start().await;
        let ctl = Ctl::new(&redis.url, redis.namespace());
        let up = ctl.up();
        let client = Pantheon::connect(&redis.url, redis.namespace())
            .await
            .unwrap();
        let mut cluster = Self {
            redis,
            ctl,
            _up: up,
            client,
            nodes: BTreeMap::new(),
        };
        if !policy.is_empty() {
            let mut fields = vec![("type", "policy")];
            fields.extend_from_slice(policy);
            let id = cluster.xadd("*", &fields).await;
            cluster.client.wait_applied(id, WAIT).await.unwrap();
            assert_eq!(cluster.client.rejection(id).await.unwrap(), None);
        }
        for name in names {
            let node = TestNode::start().await;
            cluster
                .ctl
                .run(&["join", name, "--url", &node.url()])
                .await
                .ok();
            cluster.nodes.insert((*name).to_owned(), node);
        }
        for name in names {
            cluster.ctl.wait_state(name, "alive").await;
        }
        let ids = cluster
            .client
            .distribute((0..300).map(|i| format!("user:{i}")))
            .await
            .unwrap();
        cluster
            .client
            .wait_applied(*ids.last().unwrap(), WAIT)
            .await
            .unwrap();
        cluster
    }

    /// XADDs `fields` to the log with id `id` (`*` for Redis's clock), as `redis-cli` would.
    async fn xadd(&self, id: &str, fields: &[(&str, &str)]) -> EntryId {
        let layout = pantheon_store::Layout::new("pantheon", self.redis.namespace());
        let mut con = self.redis.connection().await;
        let mut cmd = redis::cmd("XADD");
        cmd.arg(layout.log()).arg(id);
        for (k, v) in fields {
            cmd.arg(k).arg(v);
        }
        let id: String = cmd.query_async(&mut con).await.unwrap();
        id.parse().unwrap()
    }

    async fn stop(&mut self, name: &str) {
        self.nodes.get_mut(name).unwrap().stop().await;
    }

    async fn restart(&mut self, name: &str) {
        self.nodes.get_mut(name).unwrap().restart().await;
    }

    async fn record(&self, name: &str) -> NodeRecord {
        self.client.node_health(name).await.unwrap().unwrap()
    }

    /// Polls the node's record until `want` holds (bounded by [`WAIT`]).
    async fn wait_record(&self, name: &str, what: &str, want: impl Fn(&NodeRecord) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let r = self.record(name).await;
            if want(&r) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} not {what} within {WAIT:?}: {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_show_a_panic_hold_keeping_the_keys_and_its_end_moving_them() {
    let names = ["a", "b", "c", "d"];
    let mut c = Cluster::start(&names, &[]).await;
    let mut feeds = Feeds::follow(&c.client, &names).await;
    for n in &names {
        assert!(!feeds.keys(n).is_empty(), "{n} owns keys");
    }

    // Three of four stop at once. The default panic threshold (50%) lets placement take out
    // two of the four: the third to die is held and keeps its keys.
    for n in ["b", "c", "d"] {
        c.stop(n).await;
    }
    for n in ["b", "c", "d"] {
        c.ctl.wait_state(n, "dead").await;
    }
    let mut held = Vec::new();
    let mut out = Vec::new();
    for n in ["b", "c", "d"] {
        if c.record(n).await.held {
            held.push(n);
        } else {
            out.push(n);
        }
    }
    assert_eq!(held.len(), 1, "held {held:?}, out {out:?}");
    let held = held[0];
    let step = feeds.check(&c.ctl, "three of four died").await;
    // The two taken out released every key they had (perhaps first to the other one, if it
    // died later), and those keys are now a's or the held node's; the held node released
    // nothing and owns what it owned (and maybe some of theirs).
    for n in &out {
        assert!(feeds.keys(n).is_empty(), "{n} still owns keys");
        let gone = released(&step[*n]);
        assert!(!gone.is_empty(), "{n} released nothing: {:?}", step[*n]);
        for key in gone.keys() {
            assert!(
                feeds.keys("a").contains(key) || feeds.keys(held).contains(key),
                "{n} released {key}, and it is neither a's nor {held}'s"
            );
        }
    }
    assert!(
        released(&step[held]).is_empty(),
        "the held node {held} released keys: {:?}",
        step[held]
    );
    let snapshot: BTreeSet<String> = feeds.follower(held).lines[0].keys.iter().cloned().collect();
    assert!(
        feeds.keys(held).is_superset(&snapshot),
        "{held} kept its keys"
    );
    let kept = feeds.keys(held).clone();
    assert!(!kept.is_empty());

    // One of the two comes back: there is room again, the held node is let go (the hold
    // ends) and every key it kept moves to a live node.
    let back = out[0];
    c.restart(back).await;
    c.ctl.wait_state(back, "alive").await;
    c.wait_record(held, "let go", |r| !r.held && r.state == "dead")
        .await;
    let step = feeds.check(&c.ctl, "the hold ended").await;
    assert!(feeds.keys(held).is_empty(), "{held} still owns keys");
    let gone = released(&step[held]);
    assert_eq!(
        gone.keys().cloned().collect::<BTreeSet<_>>(),
        kept,
        "{held} released exactly the keys it kept"
    );
    for (key, to) in &gone {
        let to = to.as_deref().unwrap_or("nobody");
        assert!(["a", back].contains(&to), "{held} released {key} to {to}");
    }
    assert!(acquired(&step[held]).is_empty(), "{:?}", step[held]);
    assert!(!acquired(&step[back]).is_empty(), "{back} got nothing back");
    assert!(feeds.keys(out[1]).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_show_a_flapping_node_damped_and_undamped() {
    // One failed probe kills, one success revives. A death adds 1,400 to the penalty: one
    // alone stays under 1,500 (no damping), two within 15 s go above it. The penalty halves
    // every 4 s: two deaths a second or two apart (about 2,500) keep the node out for about
    // 9 s after the second, and no stable node stays out longer than 12 s.
    let names = ["a", "b", "c"];
    let policy = [
        ("fall", "1"),
        ("rise", "1"),
        ("damp_penalty", "1400"),
        ("damp_half_life", "4"),
        ("damp_max_suppress", "12"),
    ];
    let mut c = Cluster::start(&names, &policy).await;
    let mut feeds = Feeds::follow(&c.client, &names).await;
    let owned = feeds.keys("b").clone();
    assert!(!owned.is_empty());

    // b dies once: its keys move away; it comes back, not damped, and gets them back.
    c.stop("b").await;
    c.ctl.wait_state("b", "dead").await;
    let step = feeds.check(&c.ctl, "b died").await;
    assert!(feeds.keys("b").is_empty());
    assert_eq!(
        released(&step["b"])
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>(),
        owned
    );
    c.restart("b").await;
    c.ctl.wait_state("b", "alive").await;
    assert!(!c.record("b").await.damped, "one death does not damp");
    feeds.check(&c.ctl, "b came back").await;
    assert_eq!(feeds.keys("b"), &owned, "b got its keys back");

    // It dies again within seconds: now it is damped, and stays out of placement although
    // its probes succeed again.
    c.stop("b").await;
    c.ctl.wait_state("b", "dead").await;
    c.restart("b").await;
    c.wait_record("b", "alive and damped", |r| r.state == "alive" && r.damped)
        .await;
    let listed = keys_of(&c.ctl, "b").await;
    // Still damped after `keys` was read (undamping comes once, seconds later), so that was
    // read while b was alive and damped: it owned nothing.
    let still = c.record("b").await;
    assert!(still.damped, "undamped too soon for this test: {still:?}");
    assert!(listed.is_empty(), "a damped node owns {listed:?}");
    let step = feeds.check(&c.ctl, "b flapped and is damped").await;
    let still = c.record("b").await;
    assert!(still.damped, "undamped too soon for this test: {still:?}");
    assert_eq!(
        released(&step["b"])
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>(),
        owned,
        "b released everything when it died again"
    );
    assert!(feeds.keys("b").is_empty(), "{:?}", feeds.keys("b"));
    assert!(acquired(&step["b"]).is_empty(), "{:?}", step["b"]);

    // Once the penalty has decayed (the leader's tick carries log time there on a quiet
    // cluster), b is undamped and gets its keys back from a and c.
    c.wait_record("b", "undamped", |r| !r.damped).await;
    let deadline = Instant::now() + WAIT;
    while c.client.node_keys("b").await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "b got no keys back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let step = feeds.check(&c.ctl, "b is undamped").await;
    assert_eq!(feeds.keys("b"), &owned, "b got its keys back");
    let peers: BTreeSet<String> = step["b"]
        .iter()
        .filter(|l| l.op == WatchOp::Acquire)
        .filter_map(|l| l.peer.as_ref().map(ToString::to_string))
        .collect();
    assert!(
        peers.iter().all(|p| p == "a" || p == "c") && !peers.is_empty(),
        "{peers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_carry_on_across_a_clock_recovery_generation_with_tokens_growing() {
    let names = ["a", "b", "c"];
    let mut c = Cluster::start(&names, &[]).await;
    let mut feeds = Feeds::follow(&c.client, &names).await;
    let poison_ms: u64 = POISON.split('-').next().unwrap().parse().unwrap();

    // A producer poisons the log's clock: every later id is stuck at its ms, and so tokens
    // jump there.
    let poisoned = c
        .xadd(POISON, &[("type", "assign"), ("key", "late:1")])
        .await;
    c.client.wait_applied(poisoned, WAIT).await.unwrap();
    feeds.check(&c.ctl, "a poisoned assign").await;
    // b dies while the clock is stuck: its keys move, with tokens at the poisoned time.
    let owned_b = feeds.keys("b").clone();
    c.stop("b").await;
    c.ctl.wait_state("b", "dead").await;
    let step = feeds.check(&c.ctl, "b died on a poisoned clock").await;
    assert!(feeds.keys("b").is_empty());
    assert_eq!(
        released(&step["b"])
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>(),
        owned_b
    );
    for line in step.values().flatten() {
        assert!(line.token >= poison_ms, "{line:?}");
        assert_eq!(line.cause.map(|c| c.ms), Some(poison_ms), "{line:?}");
    }
    let before_recovery = feeds.max_token();

    // The operator moves the log to a new generation: ids follow Redis's clock again, far
    // below the poisoned ones. Nothing moves, and every feed carries on (no snapshot).
    let run = c.ctl.run(&["recover-clock"]).await.ok();
    assert!(run.stdout.contains("new generation"), "{run:?}");
    let after = c.client.distribute(["after:1"]).await.unwrap();
    let after = after[0];
    assert!(after.ms < poison_ms, "{after}");
    c.client.wait_applied(after, WAIT).await.unwrap();
    let step = feeds.check(&c.ctl, "the new generation").await;
    let lines: Vec<&WatchLine> = step.values().flatten().collect();
    assert!(
        lines.len() == 1
            && lines[0].op == WatchOp::Acquire
            && lines[0].keys == ["after:1"]
            && lines[0].peer.is_none(),
        "only after:1 was acquired: {step:?}"
    );

    // b comes back in the new generation: its keys return with tokens above every token of
    // the poisoned generation (the token clock never goes back), caused by entries whose ids
    // are lower.
    c.restart("b").await;
    c.ctl.wait_state("b", "alive").await;
    let step = feeds
        .check(&c.ctl, "b came back in the new generation")
        .await;
    let back = acquired(&step["b"]);
    assert!(
        back.is_superset(&owned_b),
        "b got its keys back: {back:?} ⊉ {owned_b:?}"
    );
    for line in step.values().flatten() {
        assert!(line.peer.is_some(), "{line:?}");
        assert!(line.token > before_recovery, "{line:?}");
        assert!(line.cause.is_some_and(|c| c.ms < poison_ms), "{line:?}");
    }
    // The key's owner now holds a larger token than its owner in the poisoned generation.
    let key = owned_b.iter().next().unwrap();
    let located = c.ctl.run(&["locate", key, "--json"]).await.ok().json();
    assert_eq!(located["node"], "b", "{located}");
    assert!(
        located["token"].as_u64().unwrap() > before_recovery,
        "{located} vs {before_recovery}"
    );

    // A death in the new generation moves keys with larger tokens again.
    c.stop("c").await;
    c.ctl.wait_state("c", "dead").await;
    feeds.check(&c.ctl, "c died in the new generation").await;
    assert!(feeds.keys("c").is_empty());
}
