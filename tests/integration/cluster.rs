//! `TestCluster`: a real Redis, a cluster namespace on it, helpers to write log entries and
//! read back read models and events, and projectors (in-process or as child processes).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pantheon_domain::entry::LogEntry;
use pantheon_domain::{EntryId, Event};
use pantheon_projector::ProjectorConfig;
use pantheon_store::{Layout, stream};
use pantheon_test_support::TestRedis;
use redis::aio::MultiplexedConnection;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct TestCluster {
    pub redis: TestRedis,
    pub name: String,
    pub layout: Layout,
    pub con: MultiplexedConnection,
}

/// An in-process projector; stopped (gracefully) on `stop`, aborted on drop.
pub struct InProcess {
    pub token: CancellationToken,
    pub handle: Option<JoinHandle<()>>,
}

impl InProcess {
    pub async fn stop(mut self) {
        self.token.cancel();
        if let Some(h) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

/// A projector child process (the real binary); killed on drop.
pub struct ChildProjector {
    pub child: Child,
}

impl ChildProjector {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{sig} failed");
        if sig == "STOP" {
            self.wait_stopped();
        }
    }

    /// `kill` returns once the signal is queued; on a loaded machine the process may still
    /// run a moment (and commit) before it stops. Wait until the kernel reports it stopped
    /// (`T` in /proc/<pid>/stat), at most 2 s.
    fn wait_stopped(&self) {
        let stat = format!("/proc/{}/stat", self.pid());
        for _ in 0..200 {
            let state = std::fs::read_to_string(&stat).unwrap_or_default();
            // The state follows the command name, which is in parentheses.
            if state
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('T'))
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("process {} did not stop within 2 s", self.pid());
    }
}

impl Drop for ChildProjector {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.pid().to_string())
            .status();
        self.kill9();
    }
}

impl TestCluster {
    pub async fn start() -> Self {
        Self::on(TestRedis::start().await).await
    }

    pub async fn on(redis: TestRedis) -> Self {
        let name = redis
            .namespace()
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-");
        Self::named(redis, &name).await
    }

    pub async fn named(redis: TestRedis, name: &str) -> Self {
        // In-process projectors log through this (RUST_LOG=info to see them).
        pantheon_service::init_logging("warn");
        let layout = Layout::new("pantheon", name);
        let con = redis.connection().await;
        Self {
            redis,
            name: name.to_owned(),
            layout,
            con,
        }
    }

    /// The deployment of this test's Redis.
    pub fn deployment(&self) -> pantheon_store::Deployment {
        pantheon_store::Deployment::from_url(&self.redis.url).expect("test redis url")
    }

    pub fn config(&self, instance: &str) -> ProjectorConfig {
        let mut c = ProjectorConfig::new(self.deployment(), self.name.clone());
        c.instance = instance.to_owned();
        c.lease_ttl = Duration::from_millis(1000);
        c.block = Duration::from_millis(100);
        // Off by default here: its log entries carry wall-clock ids, and most tests compare
        // two runs entry for entry. The prober tests switch it on.
        c.prober_watchdog = None;
        c
    }

    pub fn spawn(&self, config: ProjectorConfig) -> InProcess {
        let token = CancellationToken::new();
        let t = token.clone();
        let handle = tokio::spawn(async move {
            pantheon_projector::run(config, t)
                .await
                .expect("projector run");
        });
        InProcess {
            token,
            handle: Some(handle),
        }
    }

    /// A prober config tuned for tests: defaults for cadence and timeout (what users get), a
    /// short replica TTL so hand-over tests stay quick.
    pub fn prober_config(&self, id: &str) -> pantheon_prober::ProberConfig {
        let mut c = pantheon_prober::ProberConfig::new(self.deployment(), self.name.clone());
        c.id = id.to_owned();
        c.registration_ttl = Duration::from_millis(1000);
        c.grace = Duration::from_millis(500);
        c
    }

    pub fn spawn_prober(&self, config: pantheon_prober::ProberConfig) -> InProcess {
        let token = CancellationToken::new();
        let t = token.clone();
        let handle = tokio::spawn(async move {
            pantheon_prober::run(config, t).await.expect("prober run");
        });
        InProcess {
            token,
            handle: Some(handle),
        }
    }

    /// Log entries of one type, in order.
    pub async fn log_entries(&mut self, kind: &str) -> Vec<stream::RawEntry> {
        let v: redis::Value = redis::cmd("XRANGE")
            .arg(self.layout.log())
            .arg("-")
            .arg("+")
            .query_async(&mut self.con)
            .await
            .expect("XRANGE");
        stream::parse_entries(v)
            .expect("log")
            .into_iter()
            .filter(|e| e.get("type") == Some(kind))
            .collect()
    }

    /// Waits until an event matching `pred` appears (bounded); returns it and when it was seen.
    pub async fn wait_event(&mut self, within: Duration, pred: impl Fn(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(e) = self.events().await.into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no matching event within {within:?}; events: {:?}",
                self.events()
                    .await
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn spawn_projector(&self, instance: &str) -> InProcess {
        self.spawn(self.config(instance))
    }

    /// Starts the real `pantheon-projector` binary as a child process.
    pub fn spawn_child(&self, instance: &str, lease_ttl_ms: u64) -> ChildProjector {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pantheon-projector-under-test"));
        // It reads every `PANTHEON_*` variable as a setting: give it only these.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PANTHEON_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .env("PANTHEON_REDIS_URL", &self.redis.url)
            .env("PANTHEON_CLUSTER", &self.name)
            .env("PANTHEON_PROJECTOR__INSTANCE", instance)
            .env("PANTHEON_PROJECTOR__LEASE_TTL_MS", lease_ttl_ms.to_string())
            .env(
                "PANTHEON_PROJECTOR__BLOCK_MS",
                (lease_ttl_ms / 3).min(500).to_string(),
            )
            .env("PANTHEON_PROJECTOR__PROBER_WATCHDOG_MS", "0")
            .env(
                "RUST_LOG",
                std::env::var("TEST_PROJECTOR_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(if std::env::var("TEST_PROJECTOR_LOG").is_ok() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("spawn pantheon-projector");
        ChildProjector { child }
    }

    /// Appends `entry` as its writer would: a service-only entry (a probe, ...) through the
    /// service's attested append, as the prober does; anything else with a plain `XADD`.
    pub async fn xadd(&mut self, entry: &LogEntry) -> EntryId {
        if !entry.command.is_service_only() {
            return self.xadd_raw_at("*", &entry.encode()).await;
        }
        pantheon_store::log::append_service(&mut self.con, &self.layout, entry)
            .await
            .expect("attested append")
    }

    pub async fn xadd_raw_at<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        id: &str,
        pairs: &[(K, V)],
    ) -> EntryId {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.layout.log()).arg(id);
        for (k, v) in pairs {
            cmd.arg(k.as_ref()).arg(v.as_ref());
        }
        let id: String = cmd.query_async(&mut self.con).await.expect("XADD");
        id.parse().expect("entry id")
    }

    pub async fn checkpoint(&mut self) -> BTreeMap<String, String> {
        redis::cmd("HGETALL")
            .arg(self.layout.checkpoint())
            .query_async(&mut self.con)
            .await
            .expect("HGETALL")
    }

    pub async fn last_applied(&mut self) -> Option<EntryId> {
        self.checkpoint()
            .await
            .get("last_id")
            .and_then(|s| s.parse().ok())
    }

    /// Waits until the projector has committed `id` (bounded).
    pub async fn wait_applied(&mut self, id: EntryId, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.last_applied().await.is_some_and(|last| last >= id) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "entry {id} not applied within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn events(&mut self) -> Vec<Event> {
        events_of(&mut self.con, &self.layout).await
    }

    pub async fn rejected(&mut self) -> Vec<stream::RawEntry> {
        let v: redis::Value = redis::cmd("XRANGE")
            .arg(self.layout.rejected())
            .arg("-")
            .arg("+")
            .query_async(&mut self.con)
            .await
            .expect("XRANGE");
        stream::parse_entries(v).expect("rejected entries")
    }
}

pub async fn events_of(con: &mut MultiplexedConnection, layout: &Layout) -> Vec<Event> {
    let v: redis::Value = redis::cmd("XRANGE")
        .arg(layout.events())
        .arg("-")
        .arg("+")
        .query_async(con)
        .await
        .expect("XRANGE");
    stream::parse_entries(v)
        .expect("events")
        .into_iter()
        .map(|e| Event::decode(&e.fields).expect("event decodes"))
        .collect()
}

/// Everything a reader can see of a cluster's read models, for comparing two runs.
/// The checkpoint's `leader` field names the process and is left out.
pub async fn read_models(
    con: &mut MultiplexedConnection,
    layout: &Layout,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, key) in [
        ("nodes", layout.nodes()),
        ("ring", layout.ring()),
        ("keymap", layout.keymap()),
        ("cmds", layout.cmds()),
        ("checkpoint", layout.checkpoint()),
    ] {
        let map: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(con)
            .await
            .expect("HGETALL");
        for (k, v) in map {
            if name == "checkpoint" && k == "leader" {
                continue;
            }
            out.insert(format!("{name}/{k}"), v);
        }
    }
    let nodes: Vec<String> = redis::cmd("HKEYS")
        .arg(layout.nodes())
        .query_async(con)
        .await
        .expect("HKEYS");
    for n in nodes {
        let id = pantheon_domain::NodeId::new(&n).expect("node id");
        let mut members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(layout.node_keys(&id))
            .query_async(con)
            .await
            .expect("SMEMBERS");
        members.sort();
        out.insert(format!("set/{n}"), members.join(","));
    }
    let mut unowned: Vec<String> = redis::cmd("SMEMBERS")
        .arg(layout.unowned())
        .query_async(con)
        .await
        .expect("SMEMBERS");
    unowned.sort();
    out.insert("unowned".into(), unowned.join(","));
    out
}

/// Checks that the per-node sets are exactly the inverse of the keymap.
pub fn assert_sets_match_keymap(models: &BTreeMap<String, String>) {
    let mut from_sets: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in models {
        if let Some(node) = k.strip_prefix("set/") {
            for key in v.split(',').filter(|s| !s.is_empty()) {
                assert!(
                    from_sets.insert(key.to_owned(), node.to_owned()).is_none(),
                    "key {key} in two sets"
                );
            }
        }
    }
    let keymap: BTreeMap<String, String> = models
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("keymap/")
                .map(|key| (key.to_owned(), v.clone()))
        })
        .collect();
    assert_eq!(
        from_sets, keymap,
        "per-node sets are not the inverse of the keymap"
    );
}

/// Compares two read-model dumps and reports the first differences only (they can be huge).
#[track_caller]
pub fn assert_same_models(got: &BTreeMap<String, String>, want: &BTreeMap<String, String>) {
    let mut diffs = Vec::new();
    for k in got.keys().chain(want.keys()) {
        if got.get(k) != want.get(k) && !diffs.iter().any(|(d, _, _): &(String, _, _)| d == k) {
            let clip = |v: Option<&String>| v.map(|s| s.chars().take(200).collect::<String>());
            diffs.push((k.clone(), clip(got.get(k)), clip(want.get(k))));
        }
    }
    if !diffs.is_empty() {
        let shown: Vec<String> = diffs
            .iter()
            .take(8)
            .map(|(k, g, w)| format!("  {k}: got {g:?}, want {w:?}"))
            .collect();
        panic!(
            "read models differ in {} places:\n{}",
            diffs.len(),
            shown.join("\n")
        );
    }
}
