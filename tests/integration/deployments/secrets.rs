//! A password in the Redis URL appears nowhere: not in `pantheon up`'s logs (at debug level)
//! while Redis drops and comes back, not in CLI output or errors, not in `Debug` output, not in
//! any key Pantheon writes.

use std::process::Stdio;
use std::time::Duration;

use pantheon_projector::ProjectorConfig;
use pantheon_store::Deployment;
use pantheon_test_support::auth::TestRedisWithPassword;
use tokio::time::Instant;

use crate::cli::{command, pantheon};

const PASSWORD: &str = "S3cretPW-7f3a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_url_leaks_nowhere_while_redis_drops() {
    let mut redis = TestRedisWithPassword::start(PASSWORD).await;
    let url = redis.url();
    assert!(url.contains(PASSWORD));
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("up.log");
    let global = ["--redis-url", url.as_str(), "--cluster", "secret"];
    let mut up = command(
        dir.path(),
        &[
            ("PANTHEON_LOCAL_REDIS__START", "false"),
            ("PANTHEON_PROJECTOR__BLOCK_MS", "100"),
        ],
        &[&["up"][..], &global[..]].concat(),
    )
    .env("RUST_LOG", "debug")
    .stdout(Stdio::null())
    .stderr(Stdio::from(std::fs::File::create(&log).expect("log")))
    .spawn()
    .expect("spawn up");

    fn cli<'a>(args: &[&'a str], global: &[&'a str]) -> Vec<&'a str> {
        [args, global].concat()
    }
    let mut outputs = Vec::new();
    let run = pantheon(
        dir.path(),
        &[],
        &cli(
            &["join", "n1", "--url", "http://127.0.0.1:9/health"],
            &global,
        ),
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    outputs.push(format!("{run:?}"));

    // Redis drops; `up` notices and logs it; a CLI command fails meanwhile.
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let run = pantheon(dir.path(), &[], &cli(&["nodes"], &global)).await;
    assert_ne!(run.code, 0, "{run:?}");
    outputs.push(format!("{run:?}"));
    redis.restart().await;

    // `up` comes back on its own and applies the next write (the server kept no data).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run = pantheon(
            dir.path(),
            &[],
            &cli(
                &["join", "n3", "--url", "http://127.0.0.1:9/health"],
                &global,
            ),
        )
        .await;
        outputs.push(format!("{run:?}"));
        if run.code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "up did not recover: {run:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for args in [
        &["config"][..],
        &["nodes", "--json"][..],
        &["events"][..],
        &["audit"][..],
        &[
            "join",
            "n2",
            "--url",
            "http://u:S3cretPW-7f3a@127.0.0.1:9/health",
        ][..],
    ] {
        outputs.push(format!(
            "{:?}",
            pantheon(dir.path(), &[], &cli(args, &global)).await
        ));
    }
    let _ = up.start_kill();
    let _ = up.wait().await;

    let logged = std::fs::read_to_string(&log).expect("up log");
    assert!(
        logged.contains("lost the master") || logged.contains("cannot reach the master"),
        "the drop was not logged: {logged}"
    );
    assert!(
        logged.contains("redis://:****@"),
        "the URL is logged masked: {logged}"
    );
    assert!(!logged.contains(PASSWORD), "password in up's log");
    // One line per change of state, not one per retry: the outage above lasted ~1.5 s, with
    // reconnect attempts every 50 ms to 2 s in each of the projector and the prober.
    let noisy: Vec<&str> = logged
        .lines()
        .filter(|l| (l.contains("WARN") || l.contains("INFO")) && l.contains("redis"))
        .collect();
    eprintln!(
        "{} info/warn lines about redis:\n{}",
        noisy.len(),
        noisy.join("\n")
    );
    assert!(noisy.len() <= 6, "too chatty: {noisy:#?}");
    for out in &outputs {
        assert!(!out.contains(PASSWORD), "password in CLI output: {out}");
    }
    let config = ProjectorConfig::new(Deployment::from_url(&url).expect("url"), "secret");
    assert!(!format!("{config:?}").contains(PASSWORD));

    // Nothing Pantheon stored holds it (the rejected join's reason masks the URL).
    let mut con = redis.connection().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("pantheon:*")
        .query_async(&mut con)
        .await
        .expect("keys");
    assert!(!keys.is_empty());
    for key in keys {
        if key.ends_with(":log") {
            continue; // the producer's own input, as written
        }
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut con)
            .await
            .expect("type");
        let dump: redis::Value = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&key).query_async(&mut con).await,
            "hash" => redis::cmd("HGETALL").arg(&key).query_async(&mut con).await,
            "set" => redis::cmd("SMEMBERS").arg(&key).query_async(&mut con).await,
            "stream" => {
                redis::cmd("XRANGE")
                    .arg(&key)
                    .arg("-")
                    .arg("+")
                    .query_async(&mut con)
                    .await
            }
            _ => Ok(redis::Value::Nil),
        }
        .expect("read key");
        let text = format!("{dump:?}");
        assert!(!text.contains(PASSWORD), "password stored in {key}: {text}");
    }
}
