//! "Redis by default" for `pantheon up` and `pantheon demo`: when nothing answers at the
//! configured URL, the URL points at this machine, and `redis-server` is on `PATH`, start one.
//!
//! The server is a **child process** (`--daemonize no`) in its own process group, so the
//! terminal's Ctrl-C reaches only `pantheon`, which stops its projector and prober first and
//! then the server (`SHUTDOWN`, which flushes the AOF). Its directory (`local_redis.dir`,
//! default `./.pantheon/redis`) holds the append-only file (`--appendonly yes`) and
//! `redis.log`; the next start loads the data back. If `pantheon` is killed with SIGKILL the
//! server keeps running, and the next `pantheon up` simply finds it answering.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::config::{Settings, mask_url};
use crate::connect::{self, PingError};
use crate::error::CliError;

/// How long a started server has to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` this process started.
#[derive(Debug)]
pub struct LocalRedis {
    child: Child,
    url: String,
    pub dir: PathBuf,
    pub port: u16,
}

/// How to get a Redis, for the error when none can be had.
const HOW_TO: &str = "install redis-server (`sudo apt-get install -y redis-server` or \
                      `brew install redis`) and run this again, or start one with \
                      `docker compose up -d redis` and pass --redis-url redis://127.0.0.1:6380, \
                      or point --redis-url at yours";

/// Makes sure a Redis answers at the configured URL, starting one if allowed and possible.
/// Returns the started server (stop it with [`LocalRedis::stop`]), or `None` if one was
/// already there.
pub async fn ensure(settings: &Settings, allow_start: bool) -> anyhow::Result<Option<LocalRedis>> {
    let url = &settings.redis_url;
    let why = match connect::ping(settings, settings.connect_timeout()).await {
        Ok(()) => return Ok(None),
        Err(PingError::Refused(why)) => {
            return Err(CliError::failed(format!(
                "Redis at {} refused the connection: {why}",
                mask_url(url)
            ))
            .into());
        }
        Err(PingError::Unreachable(why)) => why,
    };
    // How to get a local Redis helps only when the URL points at one; for Sentinel, Cluster
    // or another machine it would send people the wrong way.
    let how_to = if local_port(url).is_some() {
        HOW_TO
    } else {
        "check that the Redis the URL names runs and that this machine can reach it"
    };
    let cannot = |reason: &str| -> anyhow::Error {
        CliError::failed(format!(
            "no Redis answers at {} ({why}) and {reason}; {how_to}",
            mask_url(url)
        ))
        .into()
    };
    if !allow_start || !settings.local_redis.start {
        return Err(cannot("starting a local one is switched off"));
    }
    let Some(port) = local_port(url) else {
        return Err(cannot(
            "it is not a password-less redis:// URL on this machine, so none is started",
        ));
    };
    let Some(binary) = find_on_path("redis-server") else {
        return Err(cannot("redis-server is not on PATH"));
    };
    let dir = absolute(Path::new(&settings.local_redis.dir))?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::failed(format!("cannot create {}: {e}", dir.display())))?;
    let mut child = Command::new(&binary)
        .current_dir(&dir)
        .args(["--port", &port.to_string()])
        // "-::1": IPv6 loopback if the machine has it (the dash makes it optional).
        .args(["--bind", "127.0.0.1", "-::1"])
        .args(["--dir", "."])
        .args(["--appendonly", "yes"])
        .args(["--daemonize", "no"])
        .args(["--logfile", "redis.log"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: the terminal's Ctrl-C must not stop Redis before the
        // projector has finished its last commit.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| CliError::failed(format!("cannot start {}: {e}", binary.display())))?;
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(CliError::failed(format!(
                "redis-server exited at start ({status}); see {}",
                dir.join("redis.log").display()
            ))
            .into());
        }
        if connect::ping(settings, Duration::from_millis(500))
            .await
            .is_ok()
        {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill().await;
            return Err(CliError::failed(format!(
                "redis-server did not answer within {}; see {}",
                crate::output::duration(READY_TIMEOUT),
                dir.join("redis.log").display()
            ))
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "pantheon: no Redis answered at {}, so I started redis-server (pid {}) with AOF on in {}; \
         it stops when pantheon exits and keeps its data for next time",
        mask_url(url),
        child.id().unwrap_or_default(),
        dir.display()
    );
    Ok(Some(LocalRedis {
        child,
        url: url.clone(),
        dir,
        port,
    }))
}

impl LocalRedis {
    /// Stops the server: `SHUTDOWN` (which writes the AOF out), then a kill if it lingers.
    pub async fn stop(mut self) {
        pantheon_store::server::shutdown(&self.url, Duration::from_secs(2)).await;
        match tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                let _ = self.child.kill().await;
            }
        }
    }
}

/// The port of a `redis://` URL on this machine without a password; `None` otherwise.
pub(crate) fn local_port(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("redis://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = match authority.rsplit_once('@') {
        Some((userinfo, hp)) => {
            if userinfo.contains(':') {
                return None;
            }
            hp
        }
        None => authority,
    };
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().ok()?),
        _ => (host_port, 6379),
    };
    matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "").then_some(port)
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_password_less_urls_get_a_server() {
        assert_eq!(local_port("redis://127.0.0.1:6379"), Some(6379));
        assert_eq!(local_port("redis://localhost:7000/2"), Some(7000));
        assert_eq!(local_port("redis://127.0.0.1"), Some(6379));
        assert_eq!(local_port("redis://[::1]:6390"), Some(6390));
        assert_eq!(local_port("redis://10.0.0.5:6379"), None);
        assert_eq!(local_port("redis://:secret@127.0.0.1:6379"), None);
        assert_eq!(local_port("rediss://127.0.0.1:6379"), None);
    }
}
