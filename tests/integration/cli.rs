//! The `pantheon` CLI end to end: the real binary as a child process against a Redis of the
//! test's own and real HTTP nodes. The seed's story through CLI commands with `pantheon up`
//! running; rejected writes; configuration errors; an unreachable Redis; masked secrets; the
//! demo; `up` starting a redis-server of its own.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use pantheon_test_support::TestRedis;
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::cluster::TestCluster;
use crate::nodes::TestNode;

const BIN: &str = env!("CARGO_BIN_EXE_pantheon-cli-under-test");
const WAIT: Duration = Duration::from_secs(15);

/// What one run of the CLI did.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    pub(crate) fn ok(self) -> Self {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }
}

/// The CLI with a clean environment (no `PANTHEON_*` from the caller) in directory `dir`
/// (so no stray `pantheon.toml` is read).
pub(crate) fn command(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("PANTHEON_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

pub(crate) async fn pantheon(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(60), command(dir, env, args).output())
        .await
        .unwrap_or_else(|_| panic!("pantheon {args:?} did not finish within 60 s"))
        .expect("run pantheon");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("RUST_BACKTRACE"),
        "pantheon {args:?} panicked: {run:?}"
    );
    run
}

/// Runs the CLI against one cluster of one Redis.
pub(crate) struct Ctl {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) url: String,
    pub(crate) cluster: String,
}

impl Ctl {
    pub(crate) fn new(url: &str, cluster: &str) -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            url: url.to_owned(),
            cluster: cluster.to_owned(),
        }
    }

    fn global<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = args.to_vec();
        all.extend(["--redis-url", &self.url, "--cluster", &self.cluster]);
        all
    }

    pub(crate) async fn run(&self, args: &[&str]) -> Run {
        pantheon(self.dir.path(), &[], &self.global(args)).await
    }

    /// `pantheon up` as a child process, its stderr in a file, with quick probe cadences set
    /// through the environment (which also exercises the `PANTHEON_<SECTION>__<KEY>` layer).
    pub(crate) fn up(&self) -> (Child, std::path::PathBuf) {
        self.up_with(&[])
    }

    /// [`Ctl::up`] with more settings in its environment.
    pub(crate) fn up_with(&self, more: &[(&str, &str)]) -> (Child, std::path::PathBuf) {
        let log = self.dir.path().join("up.log");
        let file = std::fs::File::create(&log).expect("log file");
        let mut env = vec![
            ("PANTHEON_PROBER__INTERVAL_MS", "200"),
            ("PANTHEON_PROBER__SUSPECT_INTERVAL_MS", "100"),
            ("PANTHEON_PROBER__DEAD_INTERVAL_MS", "200"),
            ("PANTHEON_PROBER__TIMEOUT_MS", "300"),
            ("PANTHEON_PROBER__GRACE_MS", "300"),
            ("PANTHEON_PROJECTOR__BLOCK_MS", "100"),
            ("PANTHEON_LOCAL_REDIS__START", "false"),
        ];
        env.extend_from_slice(more);
        let child = command(self.dir.path(), &env, &self.global(&["up"]))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn pantheon up");
        (child, log)
    }

    async fn nodes(&self) -> Value {
        self.run(&["nodes", "--json"]).await.ok().json()
    }

    /// Polls `nodes --json` until `node` is in `state`.
    pub(crate) async fn wait_state(&self, node: &str, state: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let nodes = self.nodes().await;
            if node_view(&nodes, node)["state"] == state {
                return nodes;
            }
            assert!(
                Instant::now() < deadline,
                "{node} not {state} within {WAIT:?}: {nodes}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn node_view<'a>(nodes: &'a Value, node: &str) -> &'a Value {
    nodes["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["node"] == node))
        .unwrap_or(&Value::Null)
}

fn keys_of(nodes: &Value, node: &str) -> u64 {
    node_view(nodes, node)["keys"].as_u64().unwrap_or(0)
}

/// Issue 21: the audit's times are UTC clock times under a date line, never raw entry ids as
/// times, and no word comes twice in a row ("died died:").
fn audit_reads_like_a_person_wrote_it(text: &str) {
    let is_clock = |s: &str| {
        s.len() == 12
            && s.chars().enumerate().all(|(i, c)| match i {
                2 | 5 => c == ':',
                8 => c == '.',
                _ => c.is_ascii_digit(),
            })
    };
    let is_date = |s: &str| {
        s.len() == 10
            && s.chars().enumerate().all(|(i, c)| match i {
                4 | 7 => c == '-',
                _ => c.is_ascii_digit(),
            })
    };
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].ends_with("times are UTC"), "{text}");
    assert!(is_date(lines[1]), "{text}");
    let events: Vec<&str> = lines[1..lines.len() - 1]
        .iter()
        .copied()
        .filter(|l| !l.starts_with(' ') && !is_date(l))
        .collect();
    assert!(events.len() >= 5, "{text}");
    for line in &events {
        assert!(line.get(..12).is_some_and(is_clock), "{line:?} in {text}");
    }
    let last = lines[lines.len() - 1];
    assert!(
        last.starts_with("latest event at ") && last.ends_with(" ago"),
        "{text}"
    );
    let words: Vec<&str> = text
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .collect();
    let doubled: Vec<String> = words
        .windows(2)
        .filter(|w| !w[0].is_empty() && w[0].chars().all(char::is_alphabetic))
        .filter(|w| w[0].eq_ignore_ascii_case(w[1]))
        .map(|w| w.join(" "))
        .collect();
    assert!(doubled.is_empty(), "doubled words {doubled:?} in {text}");
}

fn signal(child: &Child, sig: &str) {
    let pid = child.id().expect("child pid");
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
    assert!(status.is_ok_and(|s| s.success()), "kill -{sig} failed");
}

/// Waits for a child to exit (bounded) and returns its exit code.
async fn exit_code(child: &mut Child, within: Duration) -> i32 {
    let status = tokio::time::timeout(within, child.wait())
        .await
        .unwrap_or_else(|_| panic!("child did not exit within {within:?}"))
        .expect("wait");
    status.code().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_story_through_the_cli_with_up_running() {
    let redis = TestRedis::start().await;
    let ctl = Ctl::new(&redis.url, redis.namespace());
    let (mut up, up_log) = ctl.up();

    let a = TestNode::start().await;
    let mut b = TestNode::start().await;
    let c = TestNode::start().await;
    // The seed's JoinOp shape, and the URL shape.
    let port = a.addr.port().to_string();
    let joined = ctl
        .run(&[
            "join",
            "a",
            "--address",
            "http://127.0.0.1",
            "--port",
            &port,
            "--path",
            "health",
        ])
        .await
        .ok();
    assert!(joined.stdout.contains("a joined"), "{joined:?}");
    ctl.run(&["join", "b", "--url", &b.url()]).await.ok();
    ctl.run(&["join", "c", "--url", &c.url(), "--weight", "2", "--json"])
        .await
        .ok();
    // Each owns keys once its health endpoint has answered (joining → alive).
    for n in ["a", "b", "c"] {
        ctl.wait_state(n, "alive").await;
    }

    let keys: Vec<String> = (0..300).map(|i| format!("user:{i}")).collect();
    let file = ctl.dir.path().join("keys.txt");
    std::fs::write(&file, keys.join("\n")).unwrap();
    let distributed = ctl
        .run(&["distribute", "--file", file.to_str().unwrap()])
        .await
        .ok();
    assert!(
        distributed.stdout.contains("distributed 300 keys"),
        "{distributed:?}"
    );

    let nodes = ctl.nodes().await;
    assert_eq!(nodes["owned_keys"], 300, "{nodes}");
    for n in ["a", "b", "c"] {
        assert_eq!(node_view(&nodes, n)["state"], "alive", "{nodes}");
    }
    let b_keys = keys_of(&nodes, "b");
    assert!(b_keys > 0, "b owns no keys: {nodes}");

    // locate and keys agree with nodes.
    let listed = ctl.run(&["keys", "b"]).await.ok();
    let b_list: Vec<&str> = listed.stdout.lines().collect();
    assert_eq!(b_list.len() as u64, b_keys);
    let located = ctl.run(&["locate", b_list[0], "--json"]).await.ok().json();
    assert_eq!(located["node"], "b");
    assert_eq!(located["assigned"], true);

    // b stops: suspect, then dead; its keys move to a and c.
    b.stop().await;
    let nodes = ctl.wait_state("b", "dead").await;
    assert_eq!(keys_of(&nodes, "b"), 0, "{nodes}");
    assert_eq!(keys_of(&nodes, "a") + keys_of(&nodes, "c"), 300, "{nodes}");
    let moved_to = ctl.run(&["locate", b_list[0]]).await.ok();
    assert!(!moved_to.stdout.contains("→ b "), "{moved_to:?}");
    assert_eq!(
        ctl.run(&["keys", "b", "--json"]).await.ok().json()["count"],
        0
    );

    // b restarts: revived, and exactly its keys come back.
    b.restart().await;
    let nodes = ctl.wait_state("b", "alive").await;
    assert_eq!(keys_of(&nodes, "b"), b_keys, "{nodes}");
    let back = ctl.run(&["keys", "b"]).await.ok();
    assert_eq!(back.stdout.lines().collect::<Vec<_>>(), b_list);

    // The audit tells the story, with the probes that caused each step and the key moves.
    let audit = ctl.run(&["audit", "--node", "b"]).await.ok();
    for needle in [
        "joined",
        "suspect",
        "died",
        "revived",
        "refused",
        "keys moved",
    ] {
        assert!(audit.stdout.contains(needle), "{needle} missing: {audit:?}");
    }
    audit_reads_like_a_person_wrote_it(&audit.stdout);
    let items = ctl
        .run(&["audit", "--node", "b", "--json"])
        .await
        .ok()
        .json();
    let items = items.as_array().unwrap();
    let kinds: Vec<&str> = items.iter().filter_map(|i| i["type"].as_str()).collect();
    assert_eq!(
        kinds,
        ["joined", "ready", "suspect", "died", "revived"],
        "{items:?}"
    );
    let died = &items[3];
    assert_eq!(died["moved"]["total"], b_keys, "{died}");
    assert_eq!(died["probes"].as_array().unwrap().len(), 3, "{died}");
    assert!(
        died["probes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["ok"] == false)
    );
    assert_eq!(items[3]["moved"]["total"], b_keys, "{}", items[3]);

    // Events, a consumer group, the rebuild check and migrate, against the same cluster.
    let events = ctl.run(&["events", "--json", "--limit", "5"]).await.ok();
    assert_eq!(events.stdout.lines().count(), 5, "{events:?}");
    for line in events.stdout.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(v["type"].is_string(), "{v}");
    }
    let grouped = ctl
        .run(&[
            "events",
            "--group",
            "g",
            "--consumer",
            "c1",
            "--from-beginning",
        ])
        .await
        .ok();
    assert!(grouped.stdout.contains("died"), "{grouped:?}");
    let again = ctl
        .run(&["events", "--group", "g", "--consumer", "c1"])
        .await
        .ok();
    assert!(
        !again.stdout.contains("died"),
        "acked events came back: {again:?}"
    );
    let verified = ctl.run(&["rebuild", "--verify"]).await.ok();
    assert!(verified.stdout.contains("OK"), "{verified:?}");
    let migrated = ctl.run(&["migrate"]).await.ok();
    assert!(migrated.stdout.contains("nothing to do"), "{migrated:?}");

    // SIGTERM: up stops its prober and projector gracefully and exits 0.
    signal(&up, "TERM");
    let code = exit_code(&mut up, Duration::from_secs(15)).await;
    let log = std::fs::read_to_string(&up_log).unwrap();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("pantheon up: stopped"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_write_prints_the_reason_and_exits_2() {
    let c = TestCluster::start().await;
    let _projector = c.spawn_projector("p");
    let ctl = Ctl::new(&c.redis.url, &c.name);

    let rejected = ctl.run(&["leave", "ghost"]).await;
    assert_eq!(rejected.code, 2, "{rejected:?}");
    assert!(
        rejected.stderr.contains("rejected") && rejected.stderr.contains("unknown node"),
        "{rejected:?}"
    );
    assert_eq!(rejected.stderr.trim().lines().count(), 1, "{rejected:?}");

    let as_json = ctl.run(&["drain", "ghost", "--json"]).await;
    assert_eq!(as_json.code, 2, "{as_json:?}");
    assert!(
        as_json.json()["rejected"]
            .as_str()
            .unwrap()
            .contains("unknown node")
    );

    // --no-wait: the entry is written, nobody waits for the verdict.
    let queued = ctl.run(&["leave", "ghost", "--no-wait"]).await.ok();
    assert!(queued.stdout.contains("not waiting"), "{queued:?}");

    // Refused before anything is sent: a usage error.
    let invalid = ctl.run(&["weight", "n1", "0"]).await;
    assert_eq!(invalid.code, 64, "{invalid:?}");
    assert!(invalid.stderr.contains("weight"), "{invalid:?}");

    // rebuild --verify passes on the real state and fails (exit 1) on a tampered checkpoint.
    let queued_id = queued.stdout.split_whitespace().nth(4).unwrap().to_owned();
    let mut con = c.redis.connection().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let last: Option<String> = redis::cmd("HGET")
            .arg(c.layout.checkpoint())
            .arg("last_id")
            .query_async(&mut con)
            .await
            .unwrap();
        if last.as_deref() == Some(queued_id.as_str()) {
            break;
        }
        assert!(Instant::now() < deadline, "{queued_id} never applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ctl.run(&["rebuild", "--verify"]).await.ok();
    let () = redis::cmd("HSET")
        .arg(c.layout.checkpoint())
        .arg("checksum")
        .arg("00000000deadbeef")
        .query_async(&mut con)
        .await
        .unwrap();
    let mismatch = ctl.run(&["rebuild", "--verify", "--json"]).await;
    assert_eq!(mismatch.code, 1, "{mismatch:?}");
    assert_eq!(mismatch.json()["matches"], false);
    assert!(mismatch.stderr.contains("mismatch"), "{mismatch:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_without_a_projector_times_out_with_exit_3() {
    let redis = TestRedis::start().await;
    let ctl = Ctl::new(&redis.url, redis.namespace());
    let run = ctl
        .run(&[
            "join",
            "n1",
            "--url",
            "http://127.0.0.1:9/health",
            "--timeout-ms",
            "300",
        ])
        .await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("is a projector running"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_exit_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pantheon.toml"),
        "cluster = \"c1\"\n[prober]\nintervl_ms = 5\n",
    )
    .unwrap();
    let run = pantheon(dir.path(), &[], &["nodes"]).await;
    assert_eq!(run.code, 64, "{run:?}");
    assert!(run.stderr.contains("prober.intervl_ms"), "{run:?}");
    assert_eq!(run.stderr.trim().lines().count(), 1, "{run:?}");

    let empty = tempfile::tempdir().unwrap();
    let run = pantheon(
        empty.path(),
        &[("PANTHEON_PROBER__INTERVAL_MS", "fast")],
        &["config"],
    )
    .await;
    assert_eq!(run.code, 64, "{run:?}");
    assert!(
        run.stderr.contains("PANTHEON_PROBER__INTERVAL_MS"),
        "{run:?}"
    );

    let run = pantheon(empty.path(), &[("PANTHEON_CLUSTR", "x")], &["config"]).await;
    assert_eq!(run.code, 64, "{run:?}");
    assert!(run.stderr.contains("PANTHEON_CLUSTR"), "{run:?}");

    let run = pantheon(
        empty.path(),
        &[("PANTHEON_PROBER__JITTER", "0.9")],
        &["config"],
    )
    .await;
    assert_eq!(run.code, 64, "{run:?}");
    assert!(run.stderr.contains("jitter"), "{run:?}");

    let run = pantheon(empty.path(), &[], &["config", "--config", "missing.toml"]).await;
    assert_eq!(run.code, 64, "{run:?}");
    assert!(run.stderr.contains("missing.toml"), "{run:?}");

    // File < environment < flags.
    std::fs::write(
        dir.path().join("pantheon.toml"),
        "cluster = \"from-file\"\nprefix = \"from-file\"\n[prober]\ninterval_ms = 700\n",
    )
    .unwrap();
    let run = pantheon(
        dir.path(),
        &[
            ("PANTHEON_PREFIX", "from-env"),
            ("PANTHEON_PROBER__TIMEOUT_MS", "123"),
        ],
        &["config", "--json", "--cluster", "from-flag"],
    )
    .await
    .ok();
    let cfg = run.json();
    assert_eq!(cfg["cluster"], "from-flag");
    assert_eq!(cfg["prefix"], "from-env");
    assert_eq!(cfg["prober"]["interval_ms"], 700);
    assert_eq!(cfg["prober"]["timeout_ms"], 123);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["nodes", "--bogus"],
        vec!["frobnicate"],
        vec!["join", "n1"],
        vec!["events", "--group", "g"],
    ] {
        let run = pantheon(dir.path(), &[], &args).await;
        assert_eq!(run.code, 64, "{args:?}: {run:?}");
    }
    assert_eq!(pantheon(dir.path(), &[], &["--help"]).await.code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_one_clear_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redis://127.0.0.1:{port}");
    for args in [vec!["nodes"], vec!["leave", "n1"], vec!["audit"]] {
        let mut all = args.clone();
        all.extend(["--redis-url", &url]);
        let started = Instant::now();
        let run = pantheon(dir.path(), &[], &all).await;
        assert_eq!(run.code, 1, "{run:?}");
        assert_eq!(run.stderr.trim().lines().count(), 1, "{run:?}");
        assert!(run.stderr.contains("cannot reach Redis"), "{run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_prints_toml_with_the_password_masked() {
    let dir = tempfile::tempdir().unwrap();
    let run = pantheon(
        dir.path(),
        &[],
        &[
            "config",
            "--redis-url",
            "redis://admin:hunter2@127.0.0.1:6390/0",
        ],
    )
    .await
    .ok();
    assert!(!run.stdout.contains("hunter2"), "{run:?}");
    assert!(
        run.stdout
            .contains("redis_url = \"redis://admin:****@127.0.0.1:6390/0\""),
        "{run:?}"
    );
    assert!(run.stdout.contains("[prober]") && run.stdout.contains("interval_ms = 1000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_completes_and_cleans_up() {
    let redis = TestRedis::start().await;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let run = pantheon(
        dir.path(),
        &[],
        &[
            "demo",
            "--redis-url",
            &redis.url,
            "--pace-ms",
            "0",
            "--no-local-redis",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(started.elapsed() < Duration::from_secs(60));
    for needle in [
        "is suspect",
        "died",
        "keys moved off node-2",
        "revived",
        "keys moved back",
        "Exactly as before",
        "Cleaned up",
    ] {
        assert!(
            run.stdout.contains(needle),
            "{needle} missing: {}",
            run.stdout
        );
    }
    // Its own cluster, named in the first line: `... a cluster of its own, "demo-<pid>" ...`.
    let cluster = run
        .stdout
        .split('"')
        .find(|s| s.starts_with("demo-"))
        .unwrap_or_else(|| panic!("no demo cluster named: {}", run.stdout));
    let mut con = redis.connection().await;
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*{{{cluster}}}*"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(left.is_empty(), "the demo left keys behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_starts_a_redis_server_with_aof_when_none_answers() {
    if std::env::var_os("PATH")
        .is_none_or(|p| !std::env::split_paths(&p).any(|d| d.join("redis-server").is_file()))
    {
        eprintln!("skipped: redis-server is not on PATH");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let ctl = Ctl::new(&url, "local");
    let log = ctl.dir.path().join("up.log");
    let mut up = command(ctl.dir.path(), &[], &ctl.global(&["up"]))
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("pantheon up: projector")
    {
        assert!(
            Instant::now() < deadline,
            "up did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("started redis-server"), "{said}");
    assert!(
        ctl.dir
            .path()
            .join(".pantheon/redis/appendonlydir")
            .is_dir()
    );
    // It serves: the CLI talks to the cluster through it.
    ctl.run(&["nodes"]).await.ok();

    signal(&up, "INT");
    let code = exit_code(&mut up, Duration::from_secs(15)).await;
    assert_eq!(code, 0, "{}", std::fs::read_to_string(&log).unwrap());
    // ... and its Redis stopped with it.
    let gone = std::net::TcpStream::connect(("127.0.0.1", port));
    assert!(gone.is_err(), "the started redis-server still runs");
}
