//! Riding out Redis trouble without a restart: `up` started before Redis waits for it; a
//! projector finds its own lease after a Redis restart and leads again at once; shutdown has
//! a deadline while Redis hangs.

use std::process::Stdio;
use std::time::Duration;

use pantheon_domain::entry::{Command, LogEntry};
use pantheon_test_support::{Options, TestRedis};
use tokio::time::Instant;

use crate::cli::{command, pantheon};
use crate::cluster::TestCluster;

fn leave(node: &str) -> LogEntry {
    LogEntry::new(Command::Leave {
        node: node.parse().expect("node id"),
    })
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_started_before_redis_waits_for_it_and_then_serves() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("up.log");
    let mut up = command(
        dir.path(),
        &[
            ("PANTHEON_LOCAL_REDIS__START", "false"),
            ("PANTHEON_PROJECTOR__BLOCK_MS", "100"),
        ],
        &["up", "--redis-url", &url, "--cluster", "early"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::from(std::fs::File::create(&log).expect("log")))
    .spawn()
    .expect("spawn up");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        up.try_wait().expect("try_wait").is_none(),
        "up exited without Redis: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let said = std::fs::read_to_string(&log).expect("log");
    assert!(said.contains("waiting for it"), "{said}");

    let redis_dir = tempfile::tempdir().expect("temp dir");
    let mut server = tokio::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .current_dir(redis_dir.path())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run = pantheon(
            dir.path(),
            &[],
            &[
                "join",
                "n1",
                "--url",
                "http://127.0.0.1:9/health",
                "--redis-url",
                &url,
                "--cluster",
                "early",
            ],
        )
        .await;
        if run.code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "up never served: {run:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let _ = up.start_kill();
    let _ = up.wait().await;
    let _ = server.start_kill();
    let _ = server.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_restart_the_projector_reclaims_its_own_lease() {
    let redis = TestRedis::start_with(Options { aof: true }).await;
    if !redis.can_restart() {
        eprintln!("skipped: this Redis cannot be restarted by the test");
        return;
    }
    let mut c = TestCluster::on(redis).await;
    let mut config = c.config("p1");
    // Long enough that waiting it out would be visible, short enough for a test.
    config.lease_ttl = std::time::Duration::from_secs(20);
    let _projector = c.spawn(config);
    let id = c.xadd(&leave("n0")).await;
    c.wait_applied(id, Duration::from_secs(20)).await;
    let lease = c.layout.lease();
    let before: Option<String> = redis::cmd("GET")
        .arg(&lease)
        .query_async(&mut c.con)
        .await
        .expect("GET lease");
    let fence = format!("{lease}:fence");
    let fence_before: Option<u64> = redis::cmd("GET")
        .arg(&fence)
        .query_async(&mut c.con)
        .await
        .expect("GET fence");

    c.redis.kill();
    c.redis.restart().await;
    c.con = c.redis.connection().await;
    let restarted = Instant::now();
    let id = c.xadd(&leave("n1")).await;
    // Well inside the 20 s TTL: the projector did not wait for its old lease to expire.
    c.wait_applied(id, Duration::from_secs(15)).await;
    eprintln!("applied {:?} after the restart", restarted.elapsed());
    let after: Option<String> = redis::cmd("GET")
        .arg(&lease)
        .query_async(&mut c.con)
        .await
        .expect("GET lease");
    let fence_after: Option<u64> = redis::cmd("GET")
        .arg(&fence)
        .query_async(&mut c.con)
        .await
        .expect("GET fence");
    assert!(before.is_some());
    assert_eq!(before, after, "the same holder leads, with the same token");
    assert_eq!(fence_before, fence_after, "no change of holder happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_has_a_deadline_while_redis_hangs() {
    let mut c = TestCluster::start().await;
    let mut child = c.spawn_child("p1", 2000);
    let id = c.xadd(&leave("n0")).await;
    c.wait_applied(id, Duration::from_secs(20)).await;
    let pid = pantheon_test_support::server_pid(&mut c.con).await;
    signal(pid, "STOP");
    let asked = Instant::now();
    child.signal("TERM");
    let deadline = pantheon_service::STOP_DEADLINE + Duration::from_secs(10);
    let exited = loop {
        if child.child.try_wait().expect("try_wait").is_some() {
            break true;
        }
        if asked.elapsed() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    signal(pid, "CONT");
    assert!(
        exited,
        "the projector did not stop within {deadline:?} of SIGTERM while Redis hung"
    );
    eprintln!(
        "stopped {:?} after SIGTERM with Redis hung",
        asked.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_no_replica_confirmed_exits_4_and_is_never_reported_applied() {
    let c = TestCluster::start().await;
    let _projector = c.spawn_projector("p1");
    let dir = tempfile::tempdir().expect("temp dir");
    // This server has no replica, so a durability of one replica cannot be met.
    let run = pantheon(
        dir.path(),
        &[
            ("PANTHEON_DURABILITY__REPLICAS", "1"),
            ("PANTHEON_DURABILITY__TIMEOUT_MS", "200"),
        ],
        &[
            "join",
            "n1",
            "--url",
            "http://127.0.0.1:9/health",
            "--redis-url",
            &c.redis.url,
            "--cluster",
            &c.name,
        ],
    )
    .await;
    assert_eq!(run.code, 4, "{run:?}");
    assert!(
        run.stderr.contains("0 of 1 replica(s)") && run.stderr.contains("may be lost"),
        "{run:?}"
    );
    assert!(run.stdout.is_empty(), "{run:?}");
    // The default on a single server waits for no replica.
    let run = pantheon(
        dir.path(),
        &[],
        &[
            "join",
            "n1",
            "--url",
            "http://127.0.0.1:9/health",
            "--redis-url",
            &c.redis.url,
            "--cluster",
            &c.name,
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
}
