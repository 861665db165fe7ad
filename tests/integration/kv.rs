//! `pantheon-kv` end to end: real `pantheon-kv worker` and `router` processes
//! (`pantheon-kv-under-test`) against `pantheon up` (projector and prober) on a Redis of the
//! test's own, over real HTTP. Values go in and come out through the router across three
//! workers; a never-assigned key is 404 without a worker; a worker refuses a key it does not
//! own (421) or an older token, with its node and token headers; values over the limit are
//! 413; after a kill -9 its keys move within detection time, their values are gone (a cache
//! without replicas) and the router keeps answering; a SIGTERMed worker hands its values over, leaves and exits 0;
//! with no worker left the router answers 503 after its retry time; bad flags exit 64; a
//! worker paused (SIGSTOP) past its death, or through a forced hand-off, refuses late requests
//! for the moved key once resumed (421), whatever token they carry, and the new owner refuses
//! the old token.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use pantheon_client::Pantheon;
use pantheon_test_support::TestRedis;
use reqwest::StatusCode;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::cli::Ctl;

const BIN: &str = env!("CARGO_BIN_EXE_pantheon-kv-under-test");
/// Every wait of these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(20);

/// `pantheon-kv` with a clean environment (no `PANTHEON_*` from the caller).
fn kv(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("PANTHEON_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir)
        .env("RUST_LOG", "info")
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A running `pantheon-kv` process, its stderr in a file.
struct Proc {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Proc {
    fn spawn(ctl: &Ctl, name: &str, args: &[&str]) -> Self {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let log = ctl.dir.path().join(format!("{name}.log"));
        let mut all = args.to_vec();
        all.extend([
            "--listen",
            &listen,
            "--redis-url",
            &ctl.url,
            "--cluster",
            &ctl.cluster,
        ]);
        let child = kv(ctl.dir.path(), &all)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("spawn pantheon-kv");
        Self {
            child,
            url: format!("http://{listen}"),
            log,
        }
    }

    fn worker(ctl: &Ctl, node: &str) -> Self {
        let state = ctl.dir.path().join(format!("{node}.state"));
        Self::spawn(
            ctl,
            node,
            &[
                "worker",
                "--node",
                node,
                "--state-file",
                state.to_str().unwrap(),
            ],
        )
    }

    fn router(ctl: &Ctl) -> Self {
        Self::spawn(ctl, "router", &["router"])
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("pid");
        let status = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{sig} failed");
    }

    async fn exit_code(&mut self) -> i32 {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("did not exit within {WAIT:?}: {}", self.log()))
            .expect("wait");
        status.code().unwrap_or(-1)
    }

    /// Polls `/health` until it answers 200.
    async fn ready(&self, http: &reqwest::Client) {
        let deadline = Instant::now() + WAIT;
        loop {
            let ok = http
                .get(format!("{}/health", self.url))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK);
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not serving within {WAIT:?}: {}",
                self.url,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One answer: status, `X-Pantheon-Node`, `X-Pantheon-Token`, body.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    node: Option<String>,
    token: Option<u64>,
    /// A read replica's answer names the owner its copy came from.
    replica_of: Option<String>,
    body: String,
}

async fn call(req: reqwest::RequestBuilder) -> Answer {
    let resp = tokio::time::timeout(WAIT, req.send())
        .await
        .expect("an answer within the wait")
        .expect("the request");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let node = header("x-pantheon-node");
    let token = header("x-pantheon-token").map(|t| t.parse().expect("a numeric token"));
    let replica_of = header("x-pantheon-replica-of");
    Answer {
        status: resp.status(),
        node,
        token,
        replica_of,
        body: resp.text().await.unwrap(),
    }
}

async fn put(http: &reqwest::Client, base: &str, key: &str, value: &str) -> Answer {
    call(http.put(format!("{base}/kv/{key}")).body(value.to_owned())).await
}

async fn get(http: &reqwest::Client, base: &str, key: &str) -> Answer {
    call(http.get(format!("{base}/kv/{key}"))).await
}

/// `pantheon up`, `workers` started and alive, a router serving: the whole set-up.
struct Setup {
    redis: TestRedis,
    /// Holds the directory of the logs and state files.
    ctl: Ctl,
    _up: Child,
    client: Pantheon,
    http: reqwest::Client,
    workers: BTreeMap<String, Proc>,
    router: Proc,
    /// `pantheon up`'s HTTP endpoint (`/metrics`).
    up_url: String,
}

async fn setup(workers: &[&str]) -> Setup {
    let redis = TestRedis::start().await;
    let ctl = Ctl::new(&redis.url, redis.namespace());
    let listen = format!("127.0.0.1:{}", free_port());
    let (up, _log) = ctl.up_with(&[("PANTHEON_HTTP__LISTEN", &listen)]);
    let client = Pantheon::connect(&redis.url, redis.namespace())
        .await
        .unwrap();
    let http = reqwest::Client::builder().timeout(WAIT).build().unwrap();
    let mut procs = BTreeMap::new();
    for w in workers {
        procs.insert((*w).to_owned(), Proc::worker(&ctl, w));
    }
    for (w, p) in &procs {
        p.ready(&http).await;
        ctl.wait_state(w, "alive").await;
    }
    let router = Proc::router(&ctl);
    router.ready(&http).await;
    Setup {
        redis,
        ctl,
        _up: up,
        client,
        http,
        workers: procs,
        router,
        up_url: format!("http://{listen}"),
    }
}

impl Setup {
    /// PUTs `keys` through the router (each answered 204 by a worker) and returns their owners
    /// as the answers named them.
    async fn fill(&self, keys: &[String]) -> BTreeMap<String, String> {
        let mut owners = BTreeMap::new();
        for k in keys {
            let a = put(&self.http, &self.router.url, k, &format!("value of {k}")).await;
            assert_eq!(a.status, StatusCode::NO_CONTENT, "PUT {k}: {a:?}");
            owners.insert(k.clone(), a.node.expect("the worker's node header"));
        }
        owners
    }

    /// Polls until no key is owned by `node` in the key map.
    async fn until_none_owned_by(&self, node: &str, keys: &[String]) {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut left = Vec::new();
            for k in keys {
                let owner = self.client.key_node(k).await.unwrap();
                if owner.as_ref().is_none_or(|o| o.as_str() == node) {
                    left.push(k.clone());
                }
            }
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "keys still on {node} (or unowned) after {WAIT:?}: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// GETs `key` through the router until it answers `status` (a move may still be reaching
    /// the new owner's feed; the router retries 421s itself, so this loops only on a 503).
    async fn get_until(&self, key: &str, status: StatusCode) -> Answer {
        let deadline = Instant::now() + WAIT;
        loop {
            let a = get(&self.http, &self.router.url, key).await;
            if a.status == status {
                return a;
            }
            assert!(
                a.status == StatusCode::SERVICE_UNAVAILABLE && Instant::now() < deadline,
                "GET {key}: wanted {status}, got {a:?}; router log: {}",
                self.router.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user:{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_puts_and_gets_through_the_router_and_workers_refuse_what_they_do_not_own() {
    let s = setup(&["w1", "w2", "w3"]).await;
    let keys = keys(30);
    let owners = s.fill(&keys).await;

    // Every value comes back through the router from the owner the key map names, with its
    // node and token headers.
    for k in &keys {
        let a = get(&s.http, &s.router.url, k).await;
        assert_eq!(a.status, StatusCode::OK, "GET {k}: {a:?}");
        assert_eq!(a.body, format!("value of {k}"));
        let owner = s.client.key_node(k).await.unwrap().unwrap();
        assert_eq!(a.node.as_deref(), Some(owner.as_str()), "{k}");
        assert!(a.token.unwrap() > 0, "{k}: {a:?}");
        assert_eq!(owners[k], owner.as_str());
    }
    let used: BTreeSet<&String> = owners.values().collect();
    assert!(used.len() >= 2, "30 keys on one worker only: {owners:?}");

    // A key never assigned: 404 from the router itself (no worker headers), still unassigned.
    let a = get(&s.http, &s.router.url, "never:1").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{a:?}");
    assert_eq!(a.node, None, "a worker was asked: {a:?}");
    assert_eq!(s.client.key_node("never:1").await.unwrap(), None);
    assert!(!s.client.is_unowned("never:1").await.unwrap());

    // Directly to a worker that does not own the key: 421 with its node and token 0, for a
    // GET and a PUT; the value at the owner is untouched.
    let k = &keys[0];
    let owner = &owners[k];
    let other = s.workers.keys().find(|w| *w != owner).unwrap();
    let other_url = &s.workers[other].url;
    for a in [
        get(&s.http, other_url, k).await,
        put(&s.http, other_url, k, "misdirected").await,
    ] {
        assert_eq!(a.status, StatusCode::MISDIRECTED_REQUEST, "{a:?}");
        assert_eq!(a.node.as_deref(), Some(other.as_str()));
        assert_eq!(a.token, Some(0));
    }
    // The owner itself: served with the token it owns the key with; a request carrying an
    // older token (a router behind) is refused.
    let owner_url = &s.workers[owner].url;
    let direct = get(&s.http, owner_url, k).await;
    assert_eq!(direct.status, StatusCode::OK, "{direct:?}");
    assert_eq!(direct.body, format!("value of {k}"));
    let mine = direct.token.unwrap();
    let with = |t: u64| {
        s.http
            .get(format!("{owner_url}/kv/{k}"))
            .header("x-pantheon-token", t)
    };
    assert_eq!(call(with(mine)).await.status, StatusCode::OK);
    let older = call(with(mine - 1)).await;
    assert_eq!(older.status, StatusCode::MISDIRECTED_REQUEST, "{older:?}");
    assert_eq!(older.token, Some(mine));

    // Values above the limit (1 MiB): 413 from the router and from a worker.
    let big = "x".repeat(1024 * 1024 + 1);
    assert_eq!(
        put(&s.http, &s.router.url, "big:1", &big).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        put(&s.http, owner_url, k, &big).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // A key that needs percent-encoding in the path, and an overwrite.
    let odd = "dir%2Ffile%20name";
    assert_eq!(
        put(&s.http, &s.router.url, odd, "1").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        put(&s.http, &s.router.url, odd, "2").await.status,
        StatusCode::NO_CONTENT
    );
    let a = get(&s.http, &s.router.url, odd).await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "2"));
    assert!(s.client.key_node("dir/file name").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_a_killed_worker_loses_its_values_the_router_keeps_answering_and_sigterm_leaves() {
    let mut s = setup(&["w1", "w2", "w3"]).await;
    let keys = keys(30);
    let owners = s.fill(&keys).await;
    let on = |w: &str| -> Vec<String> {
        owners
            .iter()
            .filter(|(_, o)| o.as_str() == w)
            .map(|(k, _)| k.clone())
            .collect()
    };
    let (w1, w2) = (on("w1"), on("w2"));
    assert!(!w1.is_empty() && !w2.is_empty(), "{owners:?}");

    // kill -9 w1: within detection time its keys belong to the others.
    let started = Instant::now();
    let mut victim = s.workers.remove("w1").unwrap();
    victim.child.start_kill().unwrap();
    let _ = victim.exit_code().await;
    s.until_none_owned_by("w1", &keys).await;
    eprintln!("w1's keys moved {:?} after its kill -9", started.elapsed());

    // Its values are gone (no replicas): 404 from their new owners, which the router names.
    // Every other value is still served, through the token floor's rise that the death caused.
    for k in &keys {
        if w1.contains(k) {
            let a = s.get_until(k, StatusCode::NOT_FOUND).await;
            assert_ne!(a.node.as_deref(), Some("w1"));
            assert!(
                a.node.is_some(),
                "the router, not a worker, answered: {a:?}"
            );
        } else {
            let a = s.get_until(k, StatusCode::OK).await;
            assert_eq!(a.body, format!("value of {k}"));
        }
    }
    // The death raised the token floor: the router now sends w3 a larger token than the one
    // w3 took its own keys with, and w3 serves them (rule 4 of the crate docs: only the floor
    // rose, w3 did not become a member again).
    let w3 = pantheon_client::NodeId::new("w3").unwrap();
    let routed = s.client.member_token(&w3).await.unwrap().unwrap();
    let kept = on("w3");
    assert!(!kept.is_empty(), "{owners:?}");
    let a = s.get_until(&kept[0], StatusCode::OK).await;
    assert!(a.token.unwrap() < routed, "{a:?}, routed with {routed}");

    // Written again, a lost key is served again.
    let k = &w1[0];
    assert_eq!(
        put(&s.http, &s.router.url, k, "again").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.get_until(k, StatusCode::OK).await.body, "again");

    // SIGTERM w2: it hands its keys over with their values and leaves, exits 0; the router
    // keeps answering.
    let mut leaver = s.workers.remove("w2").unwrap();
    leaver.signal("TERM");
    assert_eq!(leaver.exit_code().await, 0, "{}", leaver.log());
    assert!(
        s.client.node_health("w2").await.unwrap().is_none(),
        "w2 did not leave"
    );
    s.until_none_owned_by("w2", &keys).await;
    for k in &keys {
        assert_eq!(s.client.key_node(k).await.unwrap().unwrap().as_str(), "w3");
    }
    // The hand-off (docs/adr/0016) carried every value: w3 serves them.
    for k in &w2 {
        let a = s.get_until(k, StatusCode::OK).await;
        assert_eq!(a.body, format!("value of {k}"));
        assert_eq!(a.node.as_deref(), Some("w3"));
    }
    for k in on("w3") {
        let a = s.get_until(&k, StatusCode::OK).await;
        assert_eq!(a.node.as_deref(), Some("w3"));
    }

    // The last worker leaves too: the router retries for its 2 s, then answers 503 saying why.
    let mut last = s.workers.remove("w3").unwrap();
    last.signal("TERM");
    assert_eq!(last.exit_code().await, 0, "{}", last.log());
    let asked = Instant::now();
    let a = get(&s.http, &s.router.url, &keys[0]).await;
    let took = asked.elapsed();
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{a:?}");
    assert!(a.body.contains("no node can own the key"), "{a:?}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "503 after {took:?}"
    );
}

#[tokio::test]
async fn kv_bad_flags_and_settings_exit_64_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &[(&str, &str)], &str); 6] = [
        (
            &["worker", "--node", "w", "--listen", "nonsense"],
            &[],
            "--listen",
        ),
        (&["worker", "--listen", "127.0.0.1:0"], &[], "--node"),
        (
            &["router", "--listen", "127.0.0.1:0", "--bogus"],
            &[],
            "--bogus",
        ),
        (
            &["worker", "--node", "bad id", "--listen", "127.0.0.1:0"],
            &[],
            "--node",
        ),
        (
            &[
                "router",
                "--listen",
                "127.0.0.1:0",
                "--max-value-bytes",
                "0",
            ],
            &[],
            "--max-value-bytes",
        ),
        (
            &["router", "--listen", "127.0.0.1:0"],
            &[("PANTHEON_NO_SUCH_KEY", "1")],
            "NO_SUCH_KEY",
        ),
    ];
    for (args, env, says) in cases {
        let out = tokio::time::timeout(
            WAIT,
            kv(dir.path(), args)
                .envs(env.iter().copied())
                .env("PANTHEON_REDIS_URL", "redis://127.0.0.1:1")
                .output(),
        )
        .await
        .expect("exits within the wait")
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// The first of `keys` that `node` owns, as the answers to the PUTs said.
fn owned_by(owners: &BTreeMap<String, String>, node: &str) -> String {
    owners
        .iter()
        .find(|(_, o)| o.as_str() == node)
        .map(|(k, _)| k.clone())
        .unwrap_or_else(|| panic!("{node} owns none of the keys: {owners:?}"))
}

/// A request straight to a worker, carrying `token` as the router would.
fn direct(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    token: u64,
    put: Option<&str>,
) -> reqwest::RequestBuilder {
    let url = format!("{base}/kv/{key}");
    let req = match put {
        Some(body) => http.put(url).body(body.to_owned()),
        None => http.get(url),
    };
    req.header("x-pantheon-token", token)
}

/// A 421 from `node`, whatever the worker has read of its feed by then: still holding the key
/// with `old` (its feed not read yet) it must say that it is a stale owner (rule 4) or that
/// its feed is behind (rule 5); having read it, it no longer owns the key (token 0).
fn refused_by_a_former_owner(a: &Answer, node: &str, old: u64) {
    assert_eq!(a.status, StatusCode::MISDIRECTED_REQUEST, "{a:?}");
    assert_eq!(a.node.as_deref(), Some(node), "{a:?}");
    match a.token {
        Some(t) if t == old => assert!(
            a.body.contains("stale owner") || a.body.contains("feed behind"),
            "{a:?}"
        ),
        Some(0) => assert!(a.body.contains("does not own"), "{a:?}"),
        _ => panic!("neither its old token {old} nor 0: {a:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_a_worker_paused_past_its_death_refuses_the_new_token_and_the_new_owner_the_old() {
    let s = setup(&["w1", "w2", "w3"]).await;
    let keys = keys(30);
    let owners = s.fill(&keys).await;
    let k = owned_by(&owners, "w1");
    let w1 = &s.workers["w1"];

    // Before the pause w1 owns k, with the token it answers with.
    let before = get(&s.http, &w1.url, &k).await;
    assert_eq!(before.status, StatusCode::OK, "{before:?}");
    assert_eq!(before.body, format!("value of {k}"));
    let old = before.token.unwrap();
    assert!(old > 0);
    let (owner, _) = s.client.key_node_with_token(&k).await.unwrap().unwrap();
    assert_eq!(owner.as_str(), "w1");

    // Paused: the prober declares it dead and its keys move.
    w1.signal("STOP");
    s.ctl.wait_state("w1", "dead").await;
    s.until_none_owned_by("w1", &keys).await;
    let (owner, new) = s.client.key_node_with_token(&k).await.unwrap().unwrap();
    let new = new.unwrap();
    assert!(new > old, "a new owner holds a larger token: {new} > {old}");
    let nw = &s.workers[owner.as_str()];

    // The new owner serves k with the new token once written again (w1's value died with it)
    // and refuses the old token, naming its own.
    let a = put(&s.http, &s.router.url, &k, "after").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{a:?}");
    assert_eq!(a.node.as_deref(), Some(owner.as_str()));
    let a = call(direct(&s.http, &nw.url, &k, new, None)).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::OK, "after"),
        "{a:?}"
    );
    assert_eq!(a.token, Some(new));
    for req in [
        direct(&s.http, &nw.url, &k, old, None),
        direct(&s.http, &nw.url, &k, old, Some("late")),
    ] {
        let a = call(req).await;
        assert_eq!(a.status, StatusCode::MISDIRECTED_REQUEST, "{a:?}");
        assert_eq!(a.token, Some(new), "{a:?}");
    }

    // Requests carrying the new owner's token reach w1 while it is still stopped (they wait
    // in its accept queue) and are answered once it resumes, before or after its feed
    // reader catches up: refused either way.
    let pending = [
        tokio::spawn(call(direct(&s.http, &w1.url, &k, new, None))),
        tokio::spawn(call(direct(&s.http, &w1.url, &k, new, Some("late")))),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    w1.signal("CONT");
    for p in pending {
        let a = p.await.unwrap();
        eprintln!("w1 after SIGCONT: {a:?}");
        refused_by_a_former_owner(&a, "w1", old);
    }
    // The late write landed nowhere that serves: the value is the new owner's.
    let a = s.get_until(&k, StatusCode::OK).await;
    assert_eq!(a.body, "after", "{a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_a_forced_hand_off_moves_the_key_without_its_value_and_the_old_owner_refuses_a_late_write()
 {
    let s = setup(&["w1", "w2", "w3"]).await;
    // A short hand-off timeout; a high fall threshold, so that the stopped worker is forced
    // out by the timeout long before the prober could declare it dead.
    crate::handoff::set_policy(&s.redis, &[("handoff_timeout", "300"), ("fall", "30")]).await;
    let keys = keys(30);
    let owners = s.fill(&keys).await;
    let k = owned_by(&owners, "w1");
    let w1 = &s.workers["w1"];
    let before = get(&s.http, &w1.url, &k).await;
    assert_eq!(before.status, StatusCode::OK, "{before:?}");
    let old = before.token.unwrap();

    // Stopped before its drain, it cannot release: the hand-off can only be forced.
    w1.signal("STOP");
    s.ctl.run(&["drain", "w1"]).await.ok();
    s.until_none_owned_by("w1", &keys).await;
    let types = crate::handoff::event_types(&s.ctl).await;
    assert!(types.iter().any(|t| t == "handoff_forced"), "{types:?}");
    assert!(!types.iter().any(|t| t == "died"), "{types:?}");
    let (owner, new) = s.client.key_node_with_token(&k).await.unwrap().unwrap();
    let new = new.unwrap();
    assert!(new > old, "{new} > {old}");
    let nw = &s.workers[owner.as_str()];

    // Moved without its value: the new owner has none, until it is written again.
    let a = call(direct(&s.http, &nw.url, &k, new, None)).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{a:?}");
    assert_eq!(a.token, Some(new));
    let a = put(&s.http, &s.router.url, &k, "new").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{a:?}");
    assert_eq!(a.node.as_deref(), Some(owner.as_str()));

    // A late write and read carrying w1's old token reach it while it is stopped and are
    // answered once it resumes, before or after its feed reader catches up: refused.
    let pending = [
        tokio::spawn(call(direct(&s.http, &w1.url, &k, old, Some("late")))),
        tokio::spawn(call(direct(&s.http, &w1.url, &k, old, None))),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    w1.signal("CONT");
    for p in pending {
        let a = p.await.unwrap();
        eprintln!("w1 after SIGCONT: {a:?}");
        refused_by_a_former_owner(&a, "w1", old);
    }
    // The new owner has the key with its larger token and the value written to it.
    let a = call(direct(&s.http, &nw.url, &k, new, None)).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::OK, "new"),
        "{a:?}"
    );
    assert_eq!(a.token, Some(new));
    assert_eq!(s.get_until(&k, StatusCode::OK).await.body, "new");
}

/// Load-aware placement end to end (docs/adr/0018): real kv workers count their requests,
/// send their rate in `X-Pantheon-Load` (the prober writes it to the log) and their hottest
/// keys as `key_loads`; with `load_epsilon` set, a key taking all the reads gets read
/// replicas on the other workers. Prints how long that took (target: ≤ 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_load_reports_reach_the_log_and_a_hot_key_gets_read_replicas() {
    let s = setup(&["w1", "w2", "w3"]).await;
    let keys = keys(30);
    let owners = s.fill(&keys).await;
    crate::handoff::set_policy(&s.redis, &[("load_epsilon", "10")]).await;
    let hot = &keys[7];
    let owner = owners[hot].clone();
    let layout = pantheon_store::Layout::new("pantheon", s.redis.namespace());
    let redis = redis::Client::open(s.redis.url.as_str()).unwrap();
    let mut con = redis.get_multiplexed_async_connection().await.unwrap();

    // The load shifts: a fifth of all reads go to one key, the rest spread over the others.
    // Read through the router, as fast as it answers, until more than one node serves the
    // hot key's reads (bounded by WAIT).
    let started = Instant::now();
    let mut reads = 0u64;
    let cold: Vec<&String> = keys.iter().filter(|k| *k != hot).collect();
    let served_by = loop {
        let mut served_by = BTreeSet::new();
        for i in 0..20 {
            let c = cold[(reads as usize + i) % cold.len()];
            let a = get(&s.http, &s.router.url, c).await;
            assert_eq!(a.status, StatusCode::OK, "{a:?}");
        }
        for _ in 0..5 {
            let a = get(&s.http, &s.router.url, hot).await;
            assert_eq!(a.status, StatusCode::OK, "{a:?}");
            assert_eq!(a.body, format!("value of {hot}"), "{a:?}");
            let node = a.node.clone().expect("the worker's node header");
            if node != owner {
                assert_eq!(a.replica_of.as_deref(), Some(owner.as_str()), "{a:?}");
            }
            served_by.insert(node);
            reads += 1;
        }
        if served_by.len() >= 2 {
            break served_by;
        }
        if started.elapsed() >= WAIT {
            let all: BTreeMap<String, String> = redis::cmd("HGETALL")
                .arg(layout.loads())
                .query_async(&mut con)
                .await
                .unwrap();
            let nodes = s.ctl.run(&["nodes", "--json"]).await.stdout;
            let events = s.ctl.run(&["events", "--json"]).await.stdout;
            panic!(
                "{hot} (on {owner}) still served by {served_by:?} only after {WAIT:?} and {reads} reads; loads: {all:?}; nodes: {nodes}; events: {events}"
            );
        }
    };
    let took = started.elapsed();
    println!(
        "{hot} (a fifth of all reads) served by {served_by:?} {took:?} after the shift ({reads} reads of it)"
    );
    let plan: Option<String> = redis::cmd("HGET")
        .arg(layout.loads())
        .arg(format!("p:{hot}"))
        .query_async(&mut con)
        .await
        .unwrap();
    let plan: serde_json::Value = serde_json::from_str(&plan.expect("a plan")).unwrap();
    let replicas: BTreeSet<&str> = plan["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(!replicas.is_empty(), "{plan}");
    assert!(
        !replicas.contains(owner.as_str()),
        "the owner is no replica: {plan}"
    );
    assert!(
        plan["to"].is_null(),
        "a replica was enough, the owner stayed: {plan}"
    );

    // Every way to ask names the same replicas: the client, `locate` and `explain`.
    let from_client: BTreeSet<String> = s
        .client
        .replicas(hot)
        .await
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    let named = |v: &serde_json::Value| -> BTreeSet<String> {
        v["replicas"]
            .as_array()
            .unwrap_or_else(|| panic!("no replicas in {v}"))
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect()
    };
    let located = s.ctl.run(&["locate", hot, "--json"]).await.ok().json();
    let explained = s.ctl.run(&["explain", hot, "--json"]).await.ok().json();
    // The plan may have changed between the reads: compare the ones read last with a fresh
    // plan if they differ.
    let now = s.client.replicas(hot).await.unwrap();
    let now: BTreeSet<String> = now.iter().map(ToString::to_string).collect();
    assert!(!now.is_empty());
    assert_eq!(named(&located), now, "{located}");
    assert_eq!(named(&explained), now, "{explained}");
    assert!(!from_client.is_empty());
    let text = s.ctl.run(&["locate", hot]).await.ok().stdout;
    assert!(text.contains("read replicas: "), "{text}");

    // A write goes to the owner; the replicas' copies follow within about a second.
    let a = put(&s.http, &s.router.url, hot, "new value").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{a:?}");
    assert_eq!(a.node.as_deref(), Some(owner.as_str()), "{a:?}");
    let written = Instant::now();
    loop {
        let mut old = Vec::new();
        for _ in 0..12 {
            let a = get(&s.http, &s.router.url, hot).await;
            assert_eq!(a.status, StatusCode::OK, "{a:?}");
            if a.body != "new value" {
                old.push(a);
            }
        }
        if old.is_empty() {
            break;
        }
        assert!(
            written.elapsed() < Duration::from_secs(3),
            "replicas still answer the old value 3 s after the write: {old:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "all holders answer the new value {:?} after the write",
        written.elapsed()
    );

    // `/metrics` exports the nodes' loads and counts the replica changes.
    let text = s
        .http
        .get(format!("{}/metrics", s.up_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let sample = |name: &str, labels: &[(&str, &str)]| {
        pantheon_test_support::prometheus::sample(&scrape, name, labels)
    };
    assert!(
        sample("pantheon_node_load", &[("node", owner.as_str())]).is_some_and(|l| l > 0.0),
        "{text}"
    );
    assert!(
        sample("pantheon_moves_total", &[("cause", "load_replica")]).is_some_and(|n| n >= 1.0),
        "{text}"
    );

    // A node that is no replica of a key refuses a replica read of it (421).
    let cold = &keys[0];
    let (other, proc) = s.workers.iter().find(|(w, _)| **w != owners[cold]).unwrap();
    let a = call(
        s.http
            .get(format!("{}/kv/{cold}", proc.url))
            .header("x-pantheon-read", "replica"),
    )
    .await;
    assert_eq!(a.status, StatusCode::MISDIRECTED_REQUEST, "{other}: {a:?}");
    assert!(a.body.contains("is not a read replica"), "{a:?}");

    // The owner's load and its hot key are on record: the node record (from the prober's
    // `loads` entry) and the `loads` hash (from the worker's `key_loads` entry).
    let nodes = s.ctl.run(&["nodes", "--json"]).await.ok().json();
    let records = nodes["nodes"].as_array().unwrap();
    let load_of = |n: &str| {
        records
            .iter()
            .find(|r| r["node"] == n)
            .map(|r| r["load"].clone())
    };
    assert!(
        load_of(&owner).is_some_and(|l| l.as_u64().is_some_and(|l| l > 0)),
        "{nodes}"
    );
    // When a key gains a holder its reported shares are dropped until the next report
    // (ADR 0018): keep reading it, and wait (bounded) for the owner's next one.
    let started = tokio::time::Instant::now();
    let reported = loop {
        let reported: Option<String> = redis::cmd("HGET")
            .arg(layout.loads())
            .arg(format!("k:{owner}"))
            .query_async(&mut con)
            .await
            .unwrap();
        if let Some(r) = reported.filter(|r| r.contains(hot.as_str())) {
            break r;
        }
        assert!(
            started.elapsed() < WAIT,
            "the owner's hot keys never named {hot} again"
        );
        for _ in 0..20 {
            let a = get(&s.http, &s.router.url, hot).await;
            assert_eq!(a.status, StatusCode::OK, "{a:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(reported.contains(hot.as_str()), "{reported}");
    // The text table shows the load column.
    let table = s.ctl.run(&["nodes"]).await.ok().stdout;
    assert!(
        table.contains("LOAD") && table.contains("× mean"),
        "{table}"
    );
}
