//! The stand-alone service binaries read the CLI's configuration, the same way: the real
//! `pantheon-projector` and `pantheon-prober` as child processes, configured by a file named
//! by `PANTHEON_CONFIG` or `--config`, and refusing a bad or unknown key with exit 64 and one
//! line naming it.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use pantheon_domain::NodeId;
use pantheon_domain::entry::{Command as Entry, LogEntry};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::cluster::TestCluster;

const PROJECTOR: &str = env!("CARGO_BIN_EXE_pantheon-projector-under-test");
const PROBER: &str = env!("CARGO_BIN_EXE_pantheon-prober-under-test");
const WAIT: Duration = Duration::from_secs(15);

/// A service binary in directory `dir` (so no stray `pantheon.toml` is read), with no
/// `PANTHEON_*` variable but those in `env`.
fn service(bin: &str, dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PANTHEON_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs a service that must refuse its configuration; returns its stderr.
async fn refused(bin: &str, env: &[(&str, &str)], args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        service(bin, dir.path(), env, args).output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{bin} {env:?} {args:?} did not exit"))
    .expect("run the service");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(64), "{env:?} {args:?}: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// Sends SIGTERM and waits for a graceful exit.
async fn terminate(child: &mut Child) -> ExitStatus {
    let pid = child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill -TERM {pid}");
    tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait")
}

async fn stderr_of(child: &mut Child) -> String {
    use tokio::io::AsyncReadExt;
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text).await;
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_binary_leads_the_cluster_its_config_file_names() {
    let mut c = TestCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Not the default file name: only PANTHEON_CONFIG can point at it.
    let file = dir.path().join("services.toml");
    std::fs::write(
        &file,
        format!(
            "redis_url = \"{}\"\ncluster = \"{}\"\n\n[projector]\ninstance = \"from-file\"\n\
             lease_ttl_ms = 1200\nblock_ms = 100\nprober_watchdog_ms = 0\n",
            c.redis.url, c.name
        ),
    )
    .unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let mut child = service(
        PROJECTOR,
        cwd.path(),
        &[("PANTHEON_CONFIG", file.to_str().unwrap())],
        &[],
    )
    .spawn()
    .expect("spawn pantheon-projector");

    // It takes the lease of that cluster, with the file's instance name and TTL.
    let lease = c.layout.lease();
    assert_eq!(lease, format!("pantheon:{{{}}}:lease", c.name));
    let deadline = Instant::now() + WAIT;
    let holder = loop {
        let holder: Option<String> = redis::cmd("GET")
            .arg(&lease)
            .query_async(&mut c.con)
            .await
            .unwrap();
        if let Some(holder) = holder {
            break holder;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("exited {status}: {}", stderr_of(&mut child).await);
        }
        assert!(
            Instant::now() < deadline,
            "no lease {lease} within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(holder.starts_with("from-file/"), "{holder}");
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&lease)
        .query_async(&mut c.con)
        .await
        .unwrap();
    assert!(
        0 < pttl && pttl <= 1200,
        "lease_ttl_ms from the file: PTTL {pttl}"
    );

    // And applies the cluster's log.
    let join = LogEntry::new(Entry::Join {
        node: NodeId::new("a").unwrap(),
        url: "http://127.0.0.1:9000/health".into(),
        weight: None,
        handoff: false,
    });
    let id = c.xadd(&join).await;
    c.wait_applied(id, WAIT).await;
    let leave = LogEntry::new(Entry::Leave {
        node: NodeId::new("a").unwrap(),
    });
    let id = c.xadd(&leave).await;
    c.wait_applied(id, WAIT).await;
    assert_eq!(c.checkpoint().await["leader"], "from-file");

    let status = terminate(&mut child).await;
    assert!(
        status.success(),
        "{status}: {}",
        stderr_of(&mut child).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prober_binary_registers_under_the_id_its_config_flag_gives() {
    let mut c = TestCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prober.toml");
    std::fs::write(
        &file,
        format!(
            "cluster = \"{}\"\n\n[prober]\nid = \"from-file\"\nregistration_ttl_ms = 1000\n\
             grace_ms = 300\n",
            c.name
        ),
    )
    .unwrap();
    // The layers merge: the Redis URL from the environment, the rest from the file.
    let mut child = service(
        PROBER,
        dir.path(),
        &[("PANTHEON_REDIS_URL", &c.redis.url)],
        &["--config", file.to_str().unwrap()],
    )
    .spawn()
    .expect("spawn pantheon-prober");

    let registry = c.layout.probers();
    let deadline = Instant::now() + WAIT;
    loop {
        let ids: Vec<String> = redis::cmd("HKEYS")
            .arg(&registry)
            .query_async(&mut c.con)
            .await
            .unwrap();
        if ids == ["from-file"] {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("exited {status}: {}", stderr_of(&mut child).await);
        }
        assert!(
            Instant::now() < deadline,
            "not registered in {registry}: {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let status = terminate(&mut child).await;
    assert!(
        status.success(),
        "{status}: {}",
        stderr_of(&mut child).await
    );
    let ids: Vec<String> = redis::cmd("HKEYS")
        .arg(&registry)
        .query_async(&mut c.con)
        .await
        .unwrap();
    assert!(ids.is_empty(), "deregistered on SIGTERM: {ids:?}");
}

#[tokio::test]
async fn a_bad_or_unknown_key_stops_a_service_with_exit_64_and_names_the_key() {
    let e = refused(
        PROJECTOR,
        &[("PANTHEON_PROJECTOR__LEASE_TTL_MS", "abc")],
        &[],
    )
    .await;
    assert!(
        e.starts_with("pantheon-projector: bad configuration: "),
        "{e}"
    );
    assert!(e.contains("PANTHEON_PROJECTOR__LEASE_TTL_MS"), "{e}");

    let e = refused(PROJECTOR, &[("PANTHEON_PROJECTOR__NOPE", "1")], &[]).await;
    assert!(e.contains("PANTHEON_PROJECTOR__NOPE"), "{e}");
    assert!(e.contains("unknown key"), "{e}");

    // The old flat names are refused, not silently ignored.
    let e = refused(PROJECTOR, &[("PANTHEON_LEASE_TTL_MS", "1000")], &[]).await;
    assert!(e.contains("PANTHEON_LEASE_TTL_MS"), "{e}");
    let e = refused(PROBER, &[("PANTHEON_PROBE_INTERVAL_MS", "500")], &[]).await;
    assert!(e.starts_with("pantheon-prober: "), "{e}");
    assert!(e.contains("PANTHEON_PROBE_INTERVAL_MS"), "{e}");

    // Every key is checked by both binaries, as by the CLI: a shared file fails everywhere.
    let e = refused(PROJECTOR, &[("PANTHEON_PROBER__JITTER", "0.9")], &[]).await;
    assert!(e.contains("jitter"), "{e}");
    let e = refused(PROBER, &[("PANTHEON_PROJECTOR__BLOCK_MS", "9000")], &[]).await;
    assert!(
        e.contains("block_ms must be shorter than lease_ttl_ms"),
        "{e}"
    );

    let e = refused(PROBER, &[], &["--config", "missing.toml"]).await;
    assert!(e.contains("missing.toml"), "{e}");
    let e = refused(PROJECTOR, &[("PANTHEON_CONFIG", "missing.toml")], &[]).await;
    assert!(e.contains("missing.toml"), "{e}");
    let e = refused(PROJECTOR, &[], &["--lease-ttl-ms", "5"]).await;
    assert!(e.contains("--lease-ttl-ms"), "{e}");
}
