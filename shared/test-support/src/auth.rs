//! A Redis that requires a password, and the process plumbing the other launchers
//! ([`crate::redis_cluster`], [`crate::sentinel`], [`crate::tls`]) share.
//!
//! [`TestRedis`](crate::TestRedis) has no password option, and production Redis services
//! nearly always have one: [`TestRedisWithPassword`] lets a test check that the password in
//! the URL is used, and drop Redis (kill) and bring it back (restart, same port and password)
//! while a service runs.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a started server has to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at a free port: another test may take the port between probe and bind.
const PORT_ATTEMPTS: usize = 5;
/// Bound on one administrative command (connect + reply), so a hung node cannot hang a test.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// A Redis on 127.0.0.1 with `requirepass`, killed and reaped on drop.
pub struct TestRedisWithPassword {
    password: String,
    server: Server,
}

impl fmt::Debug for TestRedisWithPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password is a test value, but keep it out of logs like the service does.
        f.debug_struct("TestRedisWithPassword")
            .field("addr", &self.server.addr())
            .finish_non_exhaustive()
    }
}

impl TestRedisWithPassword {
    /// Starts `redis-server` with `requirepass <password>` on a free port, without persistence.
    ///
    /// # Panics
    /// When the server does not start (the message has its log).
    pub async fn start(password: &str) -> TestRedisWithPassword {
        let quoted = quote(password);
        let server = Server::start(
            "redis-server with requirepass",
            Probe::Plain {
                password: Some(password.to_owned()),
            },
            crate::free_port,
            &[],
            |port| {
                format!(
                    "port {port}\nsave \"\"\nappendonly no\nrequirepass {quoted}\nmasterauth {quoted}\n"
                )
            },
        )
        .await;
        TestRedisWithPassword {
            password: password.to_owned(),
            server,
        }
    }

    /// `redis://:<password>@127.0.0.1:<port>/`, the password percent-encoded.
    pub fn url(&self) -> String {
        url_with_password(&self.server.addr(), Some(&self.password))
    }

    /// `redis://127.0.0.1:<port>/`: for tests that a client without the password is refused.
    pub fn url_without_password(&self) -> String {
        url_with_password(&self.server.addr(), None)
    }

    /// The password the server requires.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The server's port; it stays the same across [`restart`](Self::restart).
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// A new multiplexed connection, authenticated.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        connect(&self.server.addr(), Some(&self.password))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Kills the server with SIGKILL (a crash) and reaps it. Data is lost: no persistence.
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// Starts the server again on the same port with the same password (killing it first if
    /// it runs), and waits until it answers.
    ///
    /// # Panics
    /// When it does not come back (the message has its log).
    pub async fn restart(&mut self) {
        self.server.restart().await;
    }
}

/// How to tell that a started server is up and is the process we started.
#[derive(Debug, Clone)]
pub(crate) enum Probe {
    /// PING over plain TCP with the `redis` crate, authenticating when a password is given.
    Plain { password: Option<String> },
    /// PING through `redis-cli` with these arguments (TLS flags and `-h`); `-p` is added.
    Cli { args: Vec<String> },
}

/// One `redis-server` child process with its config file and log in its own temp dir.
///
/// The config file is written once, at the first start; [`restart`](Self::restart) reuses it,
/// so what Redis wrote into it (Sentinel's and `CONFIG REWRITE`'s changes) survives, as on a
/// real host. The cluster's `nodes.conf` lives in the same dir. Dropping it kills (SIGKILL)
/// and reaps the process, then removes the dir.
#[derive(Debug)]
pub(crate) struct Server {
    role: &'static str,
    port: u16,
    args: Vec<String>,
    probe: Probe,
    child: Option<Child>,
    // Last field: removed after the child is reaped.
    dir: TempDir,
}

impl Server {
    /// Starts a server whose config (all but `bind`, `dir` and `daemonize`) is `config(port)`
    /// on a port from `pick_port`, retrying with another port when that one is taken.
    ///
    /// # Panics
    /// When the server does not start; the message has the log tail.
    pub(crate) async fn start(
        role: &'static str,
        probe: Probe,
        pick_port: fn() -> std::io::Result<u16>,
        args: &[&str],
        config: impl Fn(u16) -> String,
    ) -> Server {
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = pick_port().unwrap_or_else(|e| panic!("no free port for {role}: {e}"));
            // A fresh dir per attempt: a failed start may leave a nodes.conf naming the port.
            let dir = tempfile::Builder::new()
                .prefix("pantheon-redis-")
                .tempdir()
                .unwrap_or_else(|e| panic!("cannot create a temp dir for {role}: {e}"));
            let mut server = Server {
                role,
                port,
                args: args.iter().map(|a| (*a).to_owned()).collect(),
                probe: probe.clone(),
                child: None,
                dir,
            };
            let body = format!(
                "bind 127.0.0.1\nprotected-mode yes\ndaemonize no\ndir {}\n{}",
                quote(&server.dir.path().display().to_string()),
                config(port)
            );
            let config_path = server.config_path();
            std::fs::write(&config_path, body)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", config_path.display()));
            match server.spawn_and_wait().await {
                Ok(()) => return server,
                Err(e) => {
                    server.kill();
                    // Another process took the port between our probe and Redis's bind:
                    // retry. Anything else will not get better by trying again.
                    if !(e.contains("Address already in use") || e.contains(crate::PORT_TAKEN)) {
                        panic!("{role} did not start: {e}");
                    }
                    last_error = e;
                }
            }
        }
        panic!("{role} did not start on a free port after {PORT_ATTEMPTS} attempts: {last_error}");
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, the form Redis Cluster and Sentinel use for addresses.
    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Whether the process was started and not killed since. (One that crashed on its own
    /// still counts: commands to it fail, and the waits show its log.)
    pub(crate) fn is_alive(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL (a crash: no shutdown save, no goodbye to replicas or the cluster) and reap.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again with its config file and dir (killing it first if it runs).
    ///
    /// # Panics
    /// When it does not answer; the message has the log tail.
    pub(crate) async fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.spawn_and_wait().await {
            self.kill();
            panic!("{} did not restart: {e}", self.role);
        }
    }

    /// The last lines of the server's log (stdout and stderr: config errors go to stderr).
    pub(crate) fn log_tail(&self) -> String {
        const TAIL: u64 = 3000;
        let Ok(mut file) = File::open(self.log_path()) else {
            return String::from("(no log)");
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(TAIL)));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// "role addr" and the log tail, for panic messages.
    pub(crate) fn describe(&self) -> String {
        format!(
            "--- {} {} log ({}), last lines ---\n{}",
            self.role,
            self.addr(),
            self.log_path().display(),
            self.log_tail()
        )
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("redis.conf")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        // Appended across restarts, shown on failure.
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("cannot open the log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new("redis-server")
            .arg(self.config_path())
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot run redis-server (is it on PATH?): {e}"))?;
        let pid = child.id();
        self.child = Some(child);
        let result = self.wait_ready(pid).await;
        result.map_err(|e| {
            format!(
                "{e}\n--- {} (last lines) ---\n{}",
                self.log_path().display(),
                self.log_tail()
            )
        })
    }

    async fn wait_ready(&mut self, pid: u32) -> Result<(), String> {
        let port = self.port;
        let child = &mut self.child;
        let alive = move || match child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => Err(format!("redis-server exited early ({status})")),
            _ => Ok(()),
        };
        match &self.probe {
            Probe::Plain { password } => {
                let url = url_with_password(&format!("127.0.0.1:{port}"), password.as_deref());
                crate::wait_for_ping(&url, READY_TIMEOUT, alive).await?;
                // A PING answered by another test's server on a recycled port must not count.
                crate::check_pid(&url, pid).await
            }
            Probe::Cli { args } => {
                let mut alive = alive;
                let mut cli = args.clone();
                cli.extend(["-p".to_owned(), port.to_string()]);
                let deadline = Instant::now() + READY_TIMEOUT;
                loop {
                    alive()?;
                    let last = match redis_cli(&cli, &["PING"]).await {
                        Ok(out) if out == "PONG" => break,
                        Ok(out) => out,
                        Err(e) => e,
                    };
                    if Instant::now() > deadline {
                        return Err(format!(
                            "no PONG from redis-cli {} within {READY_TIMEOUT:?} (last: {last})",
                            cli.join(" ")
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let info = redis_cli(&cli, &["INFO", "server"]).await?;
                let found = info_field(&info, "process_id").unwrap_or_default();
                if found == pid.to_string() {
                    Ok(())
                } else {
                    Err(format!(
                        "{}: port {port} is served by pid {found}, not our pid {pid}",
                        crate::PORT_TAKEN
                    ))
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL and wait: no zombie, and the dir is removed after the process is gone.
        self.kill();
    }
}

/// Runs `redis-cli <args> <command>` (bounded) and returns its trimmed stdout, or an error
/// with stderr. redis-cli exits 0 even for a Redis error reply, which it prints on stdout.
pub(crate) async fn redis_cli(args: &[String], command: &[&str]) -> Result<String, String> {
    let run = tokio::process::Command::new("redis-cli")
        .args(args)
        .args(command)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(COMMAND_TIMEOUT, run)
        .await
        .map_err(|_| format!("redis-cli timed out after {COMMAND_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot run redis-cli (is it on PATH?): {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "redis-cli failed ({}): {} {}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// A connection to `addr` (`host:port`) with bounded connect and reply times.
pub(crate) async fn connect(
    addr: &str,
    password: Option<&str>,
) -> Result<redis::aio::MultiplexedConnection, String> {
    let url = url_with_password(addr, password);
    let client =
        redis::Client::open(url.as_str()).map_err(|e| format!("bad address {addr}: {e}"))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(COMMAND_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))
}

/// Runs one command on `addr` over a new connection; errors name the address and command.
pub(crate) async fn query<T: redis::FromRedisValue>(
    addr: &str,
    password: Option<&str>,
    cmd: &redis::Cmd,
) -> Result<T, String> {
    let name = cmd
        .args_iter()
        .take(2)
        .map(|a| match a {
            redis::Arg::Simple(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            _ => String::from("<arg>"),
        })
        .collect::<Vec<_>>()
        .join(" ");
    let attempt = async {
        let mut con = connect(addr, password).await?;
        cmd.query_async::<T>(&mut con)
            .await
            .map_err(|e| format!("{name} on {addr}: {e}"))
    };
    tokio::time::timeout(COMMAND_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "{name} on {addr}: no reply within {COMMAND_TIMEOUT:?}"
            ))
        })
}

/// Calls `check` every 50 ms until it returns `Ok` or `timeout` passes; then the last error.
pub(crate) async fn poll<T, F, Fut>(timeout: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(format!("not within {timeout:?}; last: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of `field` in an INFO reply.
pub(crate) fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|line| {
        line.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
    })
}

/// `redis://[:password@]addr/`, the password percent-encoded (RFC 3986 userinfo).
/// `text` with every byte but RFC 3986's unreserved ones percent-encoded, for a URL.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

pub(crate) fn url_with_password(addr: &str, password: Option<&str>) -> String {
    match password {
        Some(password) => format!("redis://:{}@{addr}/", percent_encode(password)),
        None => format!("redis://{addr}/"),
    }
}

/// A string as a redis.conf argument: double-quoted, with `\` and `"` escaped.
pub(crate) fn quote(value: &str) -> String {
    let mut quoted = String::from("\"");
    for c in value.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}
