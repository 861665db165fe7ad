//! Gives each integration test its own real Redis.
//!
//! Pantheon's tests never mock Redis: the behaviour under test (stream ids, MULTI/EXEC,
//! scripts, duplicate stream fields) is Redis's own. The machine's Redis on 6379 may be shared
//! with other people and services, so tests never use it. [`TestRedis::start`] picks, in order:
//!
//! 1. `PANTHEON_TEST_REDIS_URL`, if set: a Redis you chose for tests. It may be shared, so
//!    nothing is flushed; tests isolate themselves by putting [`TestRedis::namespace`] into
//!    every key (for Pantheon: use it as the cluster name).
//! 2. `redis-server` from `PATH`, started on a free port of 127.0.0.1 in a temporary
//!    directory, without persistence unless [`Options::aof`] asks for it; killed and reaped
//!    on drop. This is the usual case (`apt-get install redis-server`).
//! 3. A `redis:7.2` container through `testcontainers`, when a Docker engine answers.
//!
//! If none works, it panics with a message saying how to get one. It is a test helper: a
//! panic is the clearest way to fail the test that asked.
//!
//! The other deployments and helpers, for tests and benches:
//!
//! * [`auth`] — a Redis that requires a password (and the launchers' shared plumbing);
//! * [`tls`] — a Redis speaking TLS only, with certificates made at test time;
//! * [`redis_cluster`] — a Redis Cluster of three masters and three replicas;
//! * [`cluster_down`] — a one-node Redis Cluster that can be made to answer `CLUSTERDOWN`;
//! * [`sentinel`] — a master, a replica and a Sentinel, for failovers;
//! * [`process`] — the real service binaries as child processes: build, stop, CPU, memory;
//! * [`baseline`] — the raw pipelined `HSET` + `SADD` baselines of the distribution benches;
//! * [`prometheus`] — reading a `/metrics` scrape with a Prometheus text-format parser.
//!
//! ```no_run
//! # async fn example() {
//! use pantheon_test_support::TestRedis;
//!
//! let redis = TestRedis::start().await;
//! let mut con = redis.connection().await;
//! let log = format!("pantheon:{{{}}}:log", redis.namespace());
//! let _: String = redis::cmd("XADD").arg(&log).arg("*").arg("type").arg("leave")
//!     .arg("node").arg("n1").query_async(&mut con).await.unwrap();
//! # }
//! ```

pub mod auth;
pub mod baseline;
pub mod cluster_down;
pub mod process;
pub mod prometheus;
pub mod redis_cluster;
pub mod sentinel;
pub mod tls;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ImageExt};
use testcontainers_modules::redis::{REDIS_PORT, Redis};

/// Environment variable naming a Redis the tests may use instead of starting their own.
pub const URL_ENV: &str = "PANTHEON_TEST_REDIS_URL";

/// How long a started Redis has to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a Docker engine has to answer its ping before we decide there is none.
const DOCKER_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Image pulls can be slow; a container start gets longer than a local process.
const CONTAINER_START_TIMEOUT: Duration = Duration::from_secs(180);
/// Attempts at a free port: another process may take the port between probe and bind.
const PORT_ATTEMPTS: usize = 5;
const CONTAINER_TAG: &str = "7.2";
pub(crate) const PORT_TAKEN: &str = "port taken by another server";

/// How to start a Redis. Ignored for `PANTHEON_TEST_REDIS_URL`, which is used as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Turn on the append-only file (`appendfsync always`), so that data written before
    /// [`TestRedis::kill`] is there after [`TestRedis::restart`]. For crash tests.
    pub aof: bool,
}

/// A Redis for one test. Dropping it stops a Redis it started.
pub struct TestRedis {
    /// `redis://host:port[/db]` of this Redis.
    pub url: String,
    namespace: String,
    backend: Backend,
}

enum Backend {
    /// `PANTHEON_TEST_REDIS_URL`: not ours to stop or flush.
    External,
    Process(LocalServer),
    /// Held so the container lives as long as the test; removed on drop by testcontainers.
    Container {
        _container: Box<ContainerAsync<Redis>>,
    },
}

impl fmt::Debug for TestRedis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match &self.backend {
            Backend::External => "external",
            Backend::Process(_) => "redis-server",
            Backend::Container { .. } => "container",
        };
        f.debug_struct("TestRedis")
            .field("url", &self.url)
            .field("namespace", &self.namespace)
            .field("backend", &backend)
            .finish()
    }
}

impl TestRedis {
    /// A Redis for this test, with default [`Options`] (no persistence).
    ///
    /// # Panics
    /// When no Redis can be found or started; the message says how to get one.
    pub async fn start() -> TestRedis {
        Self::start_with(Options::default()).await
    }

    /// A Redis for this test, started with `options`.
    ///
    /// # Panics
    /// When no Redis can be found or started; the message says how to get one.
    pub async fn start_with(options: Options) -> TestRedis {
        let namespace = unique_namespace();
        if let Some(url) = std::env::var(URL_ENV).ok().filter(|u| !u.trim().is_empty()) {
            if let Err(e) = wait_for_ping(&url, READY_TIMEOUT, || Ok(())).await {
                panic!("{URL_ENV}={url} does not answer PING: {e}");
            }
            return TestRedis {
                url,
                namespace,
                backend: Backend::External,
            };
        }
        if let Some(binary) = find_on_path("redis-server") {
            match LocalServer::start(binary, options).await {
                Ok(server) => {
                    let url = server.url();
                    return TestRedis {
                        url,
                        namespace,
                        backend: Backend::Process(server),
                    };
                }
                // A broken local install is worth fixing, not hiding behind Docker.
                Err(e) => panic!("could not start redis-server for a test: {e}"),
            }
        }
        let docker = match docker_available().await {
            Ok(()) => match start_container(options).await {
                Ok((url, container)) => {
                    return TestRedis {
                        url,
                        namespace,
                        backend: Backend::Container {
                            _container: Box::new(container),
                        },
                    };
                }
                Err(e) => panic!(
                    "a Docker engine answered, but the redis:{CONTAINER_TAG} container did not start: {e}"
                ),
            },
            Err(e) => e,
        };
        panic!(
            "no Redis for tests: `redis-server` is not on PATH and no Docker engine answered \
             ({docker}). Any one of these fixes it:\n\
             \x20 * install Redis: `sudo apt-get install -y redis-server` (Debian/Ubuntu) or \
             `brew install redis` (macOS);\n\
             \x20 * set {URL_ENV}=redis://127.0.0.1:6380/0 to a Redis the tests may write to \
             (they use unique key namespaces and never flush it);\n\
             \x20 * start a Docker engine; the tests then run redis:{CONTAINER_TAG} through \
             testcontainers."
        );
    }

    /// A client for this Redis.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url.as_str())
            .unwrap_or_else(|e| panic!("bad test Redis URL {}: {e}", self.url))
    }

    /// A new multiplexed connection to this Redis.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        // A loaded 2-core CI machine running several Redis servers and projectors at once can
        // take longer than redis-rs's 500 ms default to answer a large HGETALL.
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(std::time::Duration::from_secs(15)));
        self.client()
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to test Redis {}: {e}", self.url))
    }

    /// The process id of this Redis server (`INFO server`), to freeze it with SIGSTOP or
    /// measure its CPU.
    ///
    /// # Panics
    /// When the server does not answer.
    pub async fn server_pid(&self) -> u32 {
        server_pid(&mut self.connection().await).await
    }

    /// A string unique to this `TestRedis` (`t<pid>-<counter>-<random>`), for key and cluster
    /// names. Always use it: on a shared `PANTHEON_TEST_REDIS_URL` it is the only isolation.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Whether [`kill`](Self::kill) and [`restart`](Self::restart) work: only for a
    /// `redis-server` this helper started. Crash tests skip themselves otherwise.
    pub fn can_restart(&self) -> bool {
        matches!(self.backend, Backend::Process(_))
    }

    /// Kills the server with SIGKILL (a crash: no shutdown save) and reaps it.
    ///
    /// # Panics
    /// When [`can_restart`](Self::can_restart) is false.
    pub fn kill(&mut self) {
        self.local_server().kill();
    }

    /// Starts the server again on the same port and directory (after [`kill`](Self::kill),
    /// or kills it first). With [`Options::aof`] the data comes back from the AOF.
    ///
    /// # Panics
    /// When [`can_restart`](Self::can_restart) is false or the server does not come back.
    pub async fn restart(&mut self) {
        let server = self.local_server();
        server.kill();
        if let Err(e) = server.spawn_and_wait().await {
            panic!("test redis-server did not restart: {e}");
        }
    }

    fn local_server(&mut self) -> &mut LocalServer {
        match &mut self.backend {
            Backend::Process(server) => server,
            _ => {
                panic!("kill/restart need a redis-server started by the test (check can_restart())")
            }
        }
    }
}

/// A `redis-server` child process in its own temp dir.
struct LocalServer {
    binary: PathBuf,
    options: Options,
    port: u16,
    child: Option<Child>,
    // Last field: dropped after the child is reaped.
    dir: TempDir,
}

impl LocalServer {
    async fn start(binary: PathBuf, options: Options) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("pantheon-redis-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let mut server = LocalServer {
            binary,
            options,
            port: 0,
            child: None,
            dir,
        };
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            server.port = free_port().map_err(|e| format!("cannot find a free port: {e}"))?;
            let _ = std::fs::remove_file(server.log_path());
            match server.spawn_and_wait().await {
                Ok(()) => return Ok(server),
                Err(e) => {
                    server.kill();
                    // Another process took the port between our probe and Redis's bind: retry.
                    // Anything else will not get better by trying again.
                    if !(e.contains("Address already in use") || e.contains(PORT_TAKEN)) {
                        return Err(e);
                    }
                    last_error = e;
                }
            }
        }
        Err(format!(
            "no free port after {PORT_ATTEMPTS} attempts; last error: {last_error}"
        ))
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn config(&self) -> String {
        let dir = self.dir.path().display();
        let persistence = if self.options.aof {
            "appendonly yes\nappendfsync always\n"
        } else {
            "appendonly no\n"
        };
        format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode yes\ndaemonize no\ndir \"{dir}\"\n\
             save \"\"\n{persistence}",
            port = self.port
        )
    }

    /// Starts the child and waits until it answers PING and proves to be our process.
    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        let config_path = self.dir.path().join("redis.conf");
        std::fs::write(&config_path, self.config())
            .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
        // Logs go to a file in the temp dir (appended across restarts), shown on failure.
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("cannot open the log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&self.binary)
            .arg(&config_path)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        let pid = child.id();
        self.child = Some(child);

        let url = self.url();
        let child = &mut self.child;
        let result = wait_for_ping(&url, READY_TIMEOUT, || {
            match child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Err(format!("redis-server exited early ({status})")),
                _ => Ok(()),
            }
        })
        .await;
        let result = match result {
            // A PING answered by some other test's server on a recycled port must not count.
            Ok(()) => check_pid(&url, pid).await,
            Err(e) => Err(e),
        };
        result.map_err(|e| {
            format!(
                "{e}\n--- {} (last lines) ---\n{}",
                self.log_path().display(),
                self.log_tail()
            )
        })
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_tail(&self) -> String {
        const TAIL: u64 = 2048;
        let Ok(mut file) = File::open(self.log_path()) else {
            return String::from("(no log)");
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(TAIL)));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        // SIGKILL and wait: no zombie, and the temp dir is removed after the process is gone.
        self.kill();
    }
}

/// Pings `url` until it answers or `timeout` passes; `alive` aborts early (e.g. child exited).
pub(crate) async fn wait_for_ping(
    url: &str,
    timeout: Duration,
    mut alive: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| format!("bad URL {url}: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        alive()?;
        let attempt = async {
            let mut con = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut con).await
        };
        match tokio::time::timeout(Duration::from_secs(1), attempt).await {
            Ok(Ok(_)) => return Ok(()),
            // While loading an AOF Redis answers -LOADING; that is "not yet", like refused.
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = String::from("PING timed out"),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(format!(
        "no answer to PING at {url} within {timeout:?} (last error: {last})"
    ))
}

/// Checks that the server on `url` is the process `pid`.
pub(crate) async fn check_pid(url: &str, pid: u32) -> Result<(), String> {
    let info: String = async {
        let client = redis::Client::open(url)?;
        let mut con = client.get_multiplexed_async_connection().await?;
        redis::cmd("INFO").arg("server").query_async(&mut con).await
    }
    .await
    .map_err(|e| format!("INFO server failed at {url}: {e}"))?;
    let found = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .map(str::trim)
        .unwrap_or("?");
    if found == pid.to_string() {
        Ok(())
    } else {
        Err(format!(
            "{PORT_TAKEN}: {url} is served by pid {found}, not our pid {pid}"
        ))
    }
}

/// A port that was free a moment ago (the listener is closed before Redis binds it).
pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_file(p))
}

fn is_file(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.is_file())
}

fn unique_namespace() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Not cryptographic, only different across runs that reuse a pid on a shared Redis.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "t{}-{n}-{:06x}",
        std::process::id(),
        (nanos as u64) & 0xff_ffff
    )
}

/// Ok when a Docker engine answers a ping quickly.
async fn docker_available() -> Result<(), String> {
    let probe = async {
        let docker = testcontainers::core::client::docker_client_instance()
            .await
            .map_err(|e| e.to_string())?;
        docker.ping().await.map(drop).map_err(|e| e.to_string())
    };
    match tokio::time::timeout(DOCKER_PROBE_TIMEOUT, probe).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {DOCKER_PROBE_TIMEOUT:?}")),
    }
}

async fn start_container(options: Options) -> Result<(String, ContainerAsync<Redis>), String> {
    let mut cmd = vec!["redis-server", "--save", ""];
    if options.aof {
        cmd.extend(["--appendonly", "yes", "--appendfsync", "always"]);
    } else {
        cmd.extend(["--appendonly", "no"]);
    }
    let image = Redis::default().with_tag(CONTAINER_TAG).with_cmd(cmd);
    let container = tokio::time::timeout(CONTAINER_START_TIMEOUT, image.start())
        .await
        .map_err(|_| format!("not started within {CONTAINER_START_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    let host = container.get_host().await.map_err(|e| e.to_string())?;
    let port = container
        .get_host_port_ipv4(REDIS_PORT)
        .await
        .map_err(|e| e.to_string())?;
    let url = format!("redis://{host}:{port}/");
    wait_for_ping(&url, READY_TIMEOUT, || Ok(())).await?;
    Ok((url, container))
}

/// The process id of the Redis server behind `con` (`INFO server`).
///
/// # Panics
/// When the server does not answer or `INFO` has no `process_id`.
pub async fn server_pid(con: &mut redis::aio::MultiplexedConnection) -> u32 {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(con)
        .await
        .unwrap_or_else(|e| panic!("INFO server: {e}"));
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no process_id in INFO server"))
}
