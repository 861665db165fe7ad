//! The production-like Redis launchers against real servers: a cluster that serves each
//! master's names, promotes a replica when a master is killed and migrates a slot with a
//! stream in it; Sentinel failovers; TLS with and without client certificates; a password.
//!
//! Each test is bounded in time. Timings are printed (`--no-capture` shows them).

use std::future::Future;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use pantheon_test_support::auth::TestRedisWithPassword;
use pantheon_test_support::redis_cluster::{SLOTS, TestCluster};
use pantheon_test_support::sentinel::{Options, TestSentinel};
use pantheon_test_support::tls::{TestTls, TlsOptions};
use redis::aio::MultiplexedConnection;

/// Runs `test` or fails it after `limit`: a hang must fail, not block CI.
async fn bounded<F: Future>(limit: Duration, test: F) -> F::Output {
    tokio::time::timeout(limit, test)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {limit:?}"))
}

async fn connect(url: &str) -> MultiplexedConnection {
    let client = redis::Client::open(url).expect("valid URL");
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// A connection straight to one node (the `redis` crate here has no cluster client).
async fn node(addr: &str) -> MultiplexedConnection {
    connect(&format!("redis://{addr}/")).await
}

fn log_key(name: &str) -> String {
    format!("pantheon:{{{name}}}:log")
}

async fn xadd(
    con: &mut MultiplexedConnection,
    key: &str,
    value: &str,
) -> redis::RedisResult<String> {
    redis::cmd("XADD")
        .arg(key)
        .arg("*")
        .arg("type")
        .arg(value)
        .query_async(con)
        .await
}

async fn xlen(con: &mut MultiplexedConnection, key: &str) -> usize {
    redis::cmd("XLEN")
        .arg(key)
        .query_async(con)
        .await
        .expect("XLEN")
}

async fn role(con: &mut MultiplexedConnection) -> String {
    let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(con).await.expect("ROLE");
    match role.first() {
        Some(redis::Value::BulkString(r)) => String::from_utf8_lossy(r).into_owned(),
        other => panic!("unexpected ROLE reply {other:?}"),
    }
}

/// Waits until `count` replicas acknowledged the writes so far, so a promoted replica has them.
async fn wait_replicated(con: &mut MultiplexedConnection) {
    let acked: usize = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(con)
        .await
        .expect("WAIT");
    assert_eq!(acked, 1, "the replica did not acknowledge the writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_serves_each_masters_names() {
    bounded(Duration::from_secs(60), async {
        let began = Instant::now();
        let cluster = TestCluster::start().await;
        eprintln!("cluster started in {:?}", began.elapsed());

        let seeds = cluster.seeds();
        assert_eq!(seeds.len(), 6);
        assert_eq!(
            cluster.url(),
            format!("redis+cluster://{},{},{}", seeds[0], seeds[1], seeds[2])
        );
        let masters = cluster.masters().await;
        assert_eq!(masters.len(), 3, "{masters:?}");
        let slots: usize = masters
            .iter()
            .flat_map(|(_, ranges)| ranges.iter().map(|r| r.len()))
            .sum();
        assert_eq!(slots, usize::from(SLOTS));

        // Our CRC16 agrees with the server's.
        let mut any = node(&seeds[0]).await;
        for key in [
            "foo",
            "{user1000}.following",
            "{user1000}.followers",
            "pantheon:{c1}:log",
            "foo{}{bar}",
            "foo{{bar}}zap",
            "",
            "a-much-longer-key-with-unicode-é-and-{tag}",
        ] {
            let slot: u16 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query_async(&mut any)
                .await
                .expect("CLUSTER KEYSLOT");
            assert_eq!(TestCluster::slot_of(key), slot, "slot of {key:?}");
        }
        assert_eq!(TestCluster::slot_of("foo"), 12182);
        assert_eq!(TestCluster::slot_of("{user1000}.following"), 3443);

        let names = cluster.cluster_names_per_master("shard").await;
        assert_eq!(names.len(), 3, "{names:?}");
        let mut owners = Vec::new();
        for (name, (master, _)) in names.iter().zip(&masters) {
            let key = log_key(name);
            let owner = cluster.master_of_slot(TestCluster::slot_of(&key)).await;
            assert_eq!(&owner, master, "{name} is not on its master");
            let mut con = node(&owner).await;
            xadd(&mut con, &key, "join")
                .await
                .expect("XADD on the owner");
            assert_eq!(xlen(&mut con, &key).await, 1);
            owners.push(owner);
        }
        owners.dedup();
        assert_eq!(owners.len(), 3, "names not spread over the masters");

        // Another master redirects: this is a real cluster, not three standalone servers.
        let mut other = node(&masters[1].0).await;
        let err = xadd(&mut other, &log_key(&names[0]), "join")
            .await
            .expect_err("a write to the wrong master must be redirected");
        assert!(format!("{err:?}").contains("Moved"), "{err:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_promotes_a_replica_when_a_master_is_killed() {
    bounded(Duration::from_secs(90), async {
        let mut cluster = TestCluster::start().await;
        let name = cluster.cluster_names_per_master("crash").await.remove(0);
        let key = log_key(&name);
        let slot = TestCluster::slot_of(&key);
        let old = cluster.master_of_slot(slot).await;
        let mut con = node(&old).await;
        xadd(&mut con, &key, "join").await.expect("XADD");
        wait_replicated(&mut con).await;

        let killed = cluster.kill_master_of(slot).await;
        assert_eq!(killed, old);
        let began = Instant::now();
        let new = cluster.wait_promoted(slot, Duration::from_secs(20)).await;
        eprintln!(
            "replica {new} promoted {:?} after master {old} was killed",
            began.elapsed()
        );
        assert_ne!(new, old);
        let mut con = node(&new).await;
        assert_eq!(role(&mut con).await, "master");
        assert_eq!(
            xlen(&mut con, &key).await,
            1,
            "the acknowledged write survived"
        );
        xadd(&mut con, &key, "leave")
            .await
            .expect("XADD on the new master");

        let began = Instant::now();
        cluster.restart_node(&old).await;
        eprintln!(
            "old master {old} rejoined as a replica in {:?}",
            began.elapsed()
        );
        assert_eq!(role(&mut node(&old).await).await, "slave");
        assert_eq!(cluster.master_of_slot(slot).await, new);
        assert_eq!(cluster.masters().await.len(), 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_migrates_a_slot_with_a_stream() {
    bounded(Duration::from_secs(60), async {
        let cluster = TestCluster::start().await;
        let name = cluster.cluster_names_per_master("move").await.remove(0);
        let key = log_key(&name);
        let members = format!("pantheon:{{{name}}}:members");
        let slot = TestCluster::slot_of(&key);
        let from = cluster.master_of_slot(slot).await;
        let to = cluster
            .masters()
            .await
            .into_iter()
            .map(|(addr, _)| addr)
            .find(|addr| *addr != from)
            .expect("another master");

        let mut con = node(&from).await;
        for i in 0..250 {
            xadd(&mut con, &key, &format!("e{i}")).await.expect("XADD");
        }
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&key)
            .arg("projector")
            .arg("0")
            .query_async(&mut con)
            .await
            .expect("XGROUP CREATE");
        let _: () = redis::cmd("HSET")
            .arg(&members)
            .arg("n1")
            .arg("up")
            .arg("n2")
            .arg("down")
            .query_async(&mut con)
            .await
            .expect("HSET");
        // More keys than one MIGRATE batch (100).
        for i in 0..150 {
            let _: () = redis::cmd("SET")
                .arg(format!("pantheon:{{{name}}}:k{i}"))
                .arg(i)
                .query_async(&mut con)
                .await
                .expect("SET");
        }

        let began = Instant::now();
        cluster.migrate_slot(slot, &to).await;
        eprintln!(
            "slot {slot} (152 keys) moved {from} -> {to} in {:?}",
            began.elapsed()
        );
        assert_eq!(cluster.master_of_slot(slot).await, to);

        let mut target = node(&to).await;
        assert_eq!(xlen(&mut target, &key).await, 250);
        let groups: Vec<redis::Value> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&key)
            .query_async(&mut target)
            .await
            .expect("XINFO GROUPS");
        assert_eq!(groups.len(), 1, "the consumer group moved with the stream");
        let state: Option<String> = redis::cmd("HGET")
            .arg(&members)
            .arg("n2")
            .query_async(&mut target)
            .await
            .expect("HGET");
        assert_eq!(state.as_deref(), Some("down"));
        let keys: usize = redis::cmd("CLUSTER")
            .arg("COUNTKEYSINSLOT")
            .arg(slot)
            .query_async(&mut target)
            .await
            .expect("COUNTKEYSINSLOT");
        assert_eq!(keys, 152);
        let err = xadd(&mut con, &key, "late")
            .await
            .expect_err("the old owner must redirect");
        assert!(format!("{err:?}").contains("Moved"), "{err:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_manual_failover_with_password() {
    bounded(Duration::from_secs(60), async {
        let began = Instant::now();
        let sentinel = TestSentinel::start_with(Options {
            password: Some(String::from("se cret/@")),
            ..Options::default()
        })
        .await;
        eprintln!("sentinel deployment started in {:?}", began.elapsed());
        assert_eq!(
            sentinel.url(),
            format!(
                "redis+sentinel://{}/{}",
                sentinel.sentinel_addr(),
                sentinel.master_name()
            )
        );
        let urls = sentinel.data_urls();
        let old = sentinel.master_addr().await;
        assert!(urls[0].contains(&old), "{urls:?} {old}");

        let mut con = connect(&urls[0]).await;
        xadd(&mut con, "pantheon:{s}:log", "join")
            .await
            .expect("XADD");
        wait_replicated(&mut con).await;
        // The password is required.
        let mut anonymous = node(&old).await;
        let err = xadd(&mut anonymous, "pantheon:{s}:log", "join")
            .await
            .expect_err("no password");
        assert!(err.to_string().contains("NOAUTH"), "{err}");

        let began = Instant::now();
        let new = sentinel.failover().await;
        eprintln!("sentinel failover {old} -> {new} in {:?}", began.elapsed());
        assert_ne!(new, old);
        assert_eq!(sentinel.master_addr().await, new);
        let mut promoted = connect(&urls[1]).await;
        assert_eq!(role(&mut promoted).await, "master");
        assert_eq!(xlen(&mut promoted, "pantheon:{s}:log").await, 1);
        // Sentinel reconfigures with `CLIENT KILL TYPE normal`: old connections are dropped.
        let dropped = xadd(&mut con, "pantheon:{s}:log", "late").await;
        assert!(dropped.is_err(), "{dropped:?}");
        let mut con = connect(&urls[0]).await;
        assert_eq!(role(&mut con).await, "slave");
        let err = xadd(&mut con, "pantheon:{s}:log", "late")
            .await
            .expect_err("the old master is a replica now");
        assert!(err.to_string().contains("read only"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_promotes_the_replica_when_the_master_is_killed() {
    bounded(Duration::from_secs(60), async {
        let mut sentinel = TestSentinel::start().await;
        let mut con = connect(&sentinel.data_urls()[0]).await;
        xadd(&mut con, "pantheon:{k}:log", "join")
            .await
            .expect("XADD");
        wait_replicated(&mut con).await;

        let old = sentinel.kill_master().await;
        let began = Instant::now();
        let new = sentinel
            .wait_new_master(&old, Duration::from_secs(20))
            .await;
        eprintln!(
            "sentinel promoted {new} {:?} after master {old} was killed",
            began.elapsed()
        );
        let mut promoted = node(&new).await;
        assert_eq!(xlen(&mut promoted, "pantheon:{k}:log").await, 1);

        let began = Instant::now();
        sentinel.restart(&old).await;
        eprintln!(
            "old master {old} is a replica again {:?} after restart",
            began.elapsed()
        );
        let mut back = node(&old).await;
        assert_eq!(role(&mut back).await, "slave");
        assert_eq!(xlen(&mut back, "pantheon:{k}:log").await, 1, "resynced");
    })
    .await;
}

fn client(tls: &TestTls, other: bool) -> Option<(&Path, &Path)> {
    Some(if other {
        (tls.other_client_cert_file(), tls.other_client_key_file())
    } else {
        (tls.client_cert_file(), tls.client_key_file())
    })
}

#[tokio::test]
async fn tls_without_client_certificates() {
    bounded(Duration::from_secs(30), async {
        let began = Instant::now();
        let tls = TestTls::start().await;
        eprintln!("TLS redis-server started in {:?}", began.elapsed());
        assert_eq!(tls.url(), format!("rediss://127.0.0.1:{}", tls.port()));
        assert_eq!(
            tls.url_localhost(),
            format!("rediss://localhost:{}", tls.port())
        );
        let ping = tls.cli(tls.ca_file(), None, &["PING"]).await;
        assert_eq!(ping.as_deref(), Ok("PONG"));
        // A client trusting another CA refuses the server.
        let refused = tls.cli(tls.other_ca_file(), None, &["PING"]).await;
        assert!(refused.is_err(), "{refused:?}");
        // No plain-text port: a plain connection to the TLS port gets no answer.
        let plain = redis_cli_plain(tls.port()).await;
        assert!(plain.is_err(), "{plain:?}");
    })
    .await;
}

#[tokio::test]
async fn tls_requiring_client_certificates() {
    bounded(Duration::from_secs(30), async {
        let tls = TestTls::start_with(TlsOptions {
            require_client_cert: true,
            ..TlsOptions::default()
        })
        .await;
        let ping = tls.cli(tls.ca_file(), client(&tls, false), &["PING"]).await;
        assert_eq!(ping.as_deref(), Ok("PONG"));
        let without = tls.cli(tls.ca_file(), None, &["PING"]).await;
        assert!(without.is_err(), "no client certificate: {without:?}");
        let unknown = tls.cli(tls.ca_file(), client(&tls, true), &["PING"]).await;
        assert!(
            unknown.is_err(),
            "client certificate of an unknown CA: {unknown:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn tls_certificate_for_another_host_name() {
    bounded(Duration::from_secs(30), async {
        let tls = TestTls::start_with(TlsOptions::mismatched_name()).await;
        // redis-cli (hiredis) checks the chain but not the host name.
        let ping = tls.cli(tls.ca_file(), None, &["PING"]).await;
        assert_eq!(ping.as_deref(), Ok("PONG"));
        let Some(localhost) = openssl_verify(&tls, &["-verify_hostname", "localhost"]).await else {
            eprintln!("openssl not on PATH: host name checks skipped");
            return;
        };
        assert!(
            !localhost,
            "a certificate for example.invalid must not pass as localhost"
        );
        let ip = openssl_verify(&tls, &["-verify_ip", "127.0.0.1"]).await;
        assert_eq!(ip, Some(false), "nor as 127.0.0.1");
        let right = openssl_verify(&tls, &["-verify_hostname", "example.invalid"]).await;
        assert_eq!(right, Some(true), "the chain itself is valid");

        // And the default certificate passes both checks.
        let good = TestTls::start().await;
        assert_eq!(
            openssl_verify(&good, &["-verify_hostname", "localhost"]).await,
            Some(true)
        );
        assert_eq!(
            openssl_verify(&good, &["-verify_ip", "127.0.0.1"]).await,
            Some(true)
        );
    })
    .await;
}

/// Whether `openssl s_client` verifies the server's certificate with these extra checks;
/// `None` without openssl.
async fn openssl_verify(tls: &TestTls, checks: &[&str]) -> Option<bool> {
    let output = tokio::process::Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{}", tls.port()))
        .arg("-CAfile")
        .arg(tls.ca_file())
        .arg("-verify_return_error")
        .arg("-brief")
        .args(checks)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(10), output)
        .await
        .expect("openssl s_client did not finish within 10 s");
    match output {
        Ok(output) => Some(output.status.success()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("cannot run openssl: {e}"),
    }
}

/// `redis-cli -p <port> PING` without TLS.
async fn redis_cli_plain(port: u16) -> Result<String, String> {
    let output = tokio::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "PING"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(10), output)
        .await
        .expect("redis-cli did not finish within 10 s")
        .expect("redis-cli runs");
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if output.status.success() && stdout == "PONG" {
        Ok(stdout)
    } else {
        Err(format!(
            "{stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

#[tokio::test]
async fn password_server_survives_kill_and_restart() {
    bounded(Duration::from_secs(30), async {
        let password = "p@ss word:/%";
        let mut redis = TestRedisWithPassword::start(password).await;
        assert_eq!(redis.password(), password);
        let mut con = connect(&redis.url()).await;
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query_async(&mut con)
            .await
            .expect("SET with the password");
        let mut anonymous = connect(&redis.url_without_password()).await;
        let err = redis::cmd("GET")
            .arg("k")
            .query_async::<Option<String>>(&mut anonymous)
            .await
            .expect_err("no password");
        assert!(err.to_string().contains("NOAUTH"), "{err}");

        let port = redis.port();
        redis.kill();
        let client = redis::Client::open(redis.url()).expect("url");
        assert!(
            client.get_multiplexed_async_connection().await.is_err(),
            "killed"
        );
        redis.restart().await;
        assert_eq!(redis.port(), port);
        let mut con = redis.connection().await;
        let value: Option<String> = redis::cmd("GET")
            .arg("k")
            .query_async(&mut con)
            .await
            .expect("GET after restart");
        assert_eq!(value, None, "no persistence: a crash loses the data");
    })
    .await;
}
