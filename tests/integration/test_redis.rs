//! The per-test Redis itself: isolated, and (for a local redis-server) restartable with its
//! data when AOF is on.

use pantheon_test_support::{Options, TestRedis};

#[tokio::test]
async fn each_test_gets_its_own_namespace_and_never_the_shared_redis() {
    let a = TestRedis::start().await;
    let b = TestRedis::start().await;
    assert_ne!(a.namespace(), b.namespace());
    if std::env::var(pantheon_test_support::URL_ENV).is_err() {
        assert_ne!(
            a.url,
            b.url,
            "without {} each test has its own server",
            pantheon_test_support::URL_ENV
        );
        assert!(
            !a.url.contains(":6379"),
            "tests must not use the shared Redis on 6379"
        );
    }
    let mut con = a.connection().await;
    let pong: String = redis::cmd("PING")
        .query_async(&mut con)
        .await
        .expect("PING");
    assert_eq!(pong, "PONG");
}

#[tokio::test]
async fn a_killed_server_restarts_with_its_aof_data() {
    let mut redis = TestRedis::start_with(Options { aof: true }).await;
    if !redis.can_restart() {
        eprintln!("skipped: {redis:?} cannot be restarted by the test");
        return;
    }
    let key = format!("{}:k", redis.namespace());
    let mut con = redis.connection().await;
    let () = redis::cmd("SET")
        .arg(&key)
        .arg("kept")
        .query_async(&mut con)
        .await
        .expect("SET");

    redis.kill();
    redis.restart().await;

    let mut con = redis.connection().await;
    let value: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut con)
        .await
        .expect("GET");
    assert_eq!(value.as_deref(), Some("kept"));
}
