//! A `pantheon up` whose Redis user is deleted (`ACL DELUSER`) or gets a new password while
//! it runs: one log line when the credentials are refused and one when they work again (not
//! one per retry), `/readyz` 503 with the reason meanwhile, and the services carry on once
//! the user is back. Real Redis, the real binary, real HTTP.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use pantheon_test_support::TestRedis;
use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

use crate::cli::{command, pantheon};

const PASSWORD: &str = "Svc-PW-4d1e";
const OTHER_PASSWORD: &str = "Rotated-PW-9b2c";
const WAIT: Duration = Duration::from_secs(20);

async fn admin(con: &mut MultiplexedConnection, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let _: redis::Value = cmd
        .query_async(con)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
}

/// The address `up` printed for its HTTP endpoint, from its log.
async fn http_addr(log: &Path) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = text.split("HTTP endpoint on http://").nth(1) {
            return rest.split('/').next().unwrap_or_default().to_owned();
        }
        assert!(Instant::now() < deadline, "no HTTP endpoint in: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `/readyz` until `want` (status) with `body` in the text, bounded by [`WAIT`].
async fn readyz_until(addr: &str, want: u16, body: &str) -> String {
    let deadline = Instant::now() + WAIT;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("http://{addr}/readyz")).await {
            let code = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            if code == want && text.contains(body) {
                return text;
            }
            last = format!("{code} {text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/readyz did not turn {want} with {body:?} within {WAIT:?}; last: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_deleted_or_given_a_new_password_under_up_fails_readyz_with_one_line_per_change() {
    let redis = TestRedis::start().await;
    let mut con = redis.connection().await;
    let port = redis
        .url
        .rsplit(':')
        .next()
        .map(|p| p.trim_end_matches(|c: char| !c.is_ascii_digit()).to_owned())
        .expect("port in the test Redis URL");
    let cluster = format!("revoked-{}", redis.namespace());
    let create = [
        "ACL",
        "SETUSER",
        "svc",
        "on",
        "resetpass",
        ">Svc-PW-4d1e",
        "~*",
        "&*",
        "+@all",
    ];
    admin(&mut con, &create).await;
    let url = format!("redis://svc:{PASSWORD}@127.0.0.1:{port}");
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("up.log");
    let mut up = command(
        dir.path(),
        &[
            ("PANTHEON_LOCAL_REDIS__START", "false"),
            ("PANTHEON_PROJECTOR__BLOCK_MS", "100"),
        ],
        &[
            "up",
            "--redis-url",
            &url,
            "--cluster",
            &cluster,
            "--listen",
            "127.0.0.1:0",
        ],
    )
    .env_remove("RUST_LOG")
    .stdout(Stdio::null())
    .stderr(Stdio::from(std::fs::File::create(&log).expect("log")))
    .spawn()
    .expect("spawn up");
    let addr = http_addr(&log).await;
    readyz_until(&addr, 200, "projector leading").await;

    // Deleted: Redis closes the user's connections, and every reconnect gets WRONGPASS.
    admin(&mut con, &["ACL", "DELUSER", "svc"]).await;
    let why = readyz_until(&addr, 503, "credentials of user \"svc\"").await;
    assert!(!why.contains(PASSWORD), "{why}");
    // Several retries of each handle (backoff up to 2 s) while the user is gone.
    tokio::time::sleep(Duration::from_secs(5)).await;
    readyz_until(&addr, 503, "credentials of user \"svc\"").await;
    admin(&mut con, &create).await;
    readyz_until(&addr, 200, "projector leading").await;

    // A new password: connections already authenticated keep working (Redis checks it at
    // AUTH), so the change shows at the next reconnect, forced here.
    let rotate = ["ACL", "SETUSER", "svc", "resetpass", ">Rotated-PW-9b2c"];
    admin(&mut con, &rotate).await;
    admin(&mut con, &["CLIENT", "KILL", "USER", "svc"]).await;
    readyz_until(&addr, 503, "credentials of user \"svc\"").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    admin(&mut con, &create).await;
    readyz_until(&addr, 200, "projector leading").await;

    // The services work again: a write (as the admin) is applied by this projector.
    let run = pantheon(
        dir.path(),
        &[],
        &[
            "join",
            "n1",
            "--url",
            "http://127.0.0.1:9/health",
            "--redis-url",
            &redis.url,
            "--cluster",
            &cluster,
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let _ = up.start_kill();
    let _ = up.wait().await;

    let logged = std::fs::read_to_string(&log).expect("up log");
    let count = |what: &str| logged.lines().filter(|l| l.contains(what)).count();
    assert_eq!(count("credentials refused"), 2, "{logged}");
    assert_eq!(count("credentials accepted again"), 2, "{logged}");
    // Redis's refusal itself (redis-rs words WRONGPASS as "authentication failed"), once per
    // change of state although every handle retried several times.
    assert_eq!(
        count("authentication failed"),
        2,
        "one line per change, not per retry: {logged}"
    );
    assert!(!logged.contains(PASSWORD) && !logged.contains(OTHER_PASSWORD));
    assert!(!logged.contains('\x1b'), "colour codes in a file: {logged}");
}
