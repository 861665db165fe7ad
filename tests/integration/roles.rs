//! Least privilege on a real Redis: users created from `pantheon acl <role>` output, each
//! doing its job through the real CLI, and refused everything else with one clear line.

use std::process::Stdio;
use std::time::Duration;

use pantheon_test_support::TestRedis;
use redis::aio::MultiplexedConnection;
use tokio::process::Child;

use crate::cli::{Run, command, pantheon};

/// One cluster on one Redis, with the admin connection that creates the users.
struct Roles {
    redis: TestRedis,
    admin: MultiplexedConnection,
    cluster: String,
    dir: tempfile::TempDir,
    port: u16,
}

impl Roles {
    async fn start() -> Self {
        let redis = TestRedis::start().await;
        let admin = redis.connection().await;
        let port = redis
            .url
            .rsplit(':')
            .next()
            .and_then(|p| {
                p.trim_end_matches(|c: char| !c.is_ascii_digit())
                    .parse()
                    .ok()
            })
            .expect("port in the test Redis URL");
        Self {
            cluster: format!("acl-{}", redis.namespace()),
            admin,
            redis,
            dir: tempfile::tempdir().expect("temp dir"),
            port,
        }
    }

    async fn cli(&self, url: &str, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        all.extend(["--redis-url", url, "--cluster", &self.cluster]);
        pantheon(self.dir.path(), &[], &all).await
    }

    /// Runs `pantheon acl <role> --user <role>-user`, sends the printed line to Redis as the
    /// admin, and returns the new user's URL.
    async fn user(&mut self, role: &str) -> String {
        let user = format!("{role}-user");
        let run = self
            .cli(&self.redis.url.clone(), &["acl", role, "--user", &user])
            .await;
        assert_eq!(run.code, 0, "{run:?}");
        let line = run.stdout.trim();
        // The line is single-quoted words: ACL SETUSER 'name' ... '>password' ...
        let args: Vec<&str> = line.split("' '").map(|a| a.trim_matches('\'')).collect();
        assert_eq!(&args[..2], ["ACL", "SETUSER"], "{line}");
        let password = args
            .iter()
            .find_map(|a| a.strip_prefix('>'))
            .expect("a password in the line");
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let () = cmd
            .query_async(&mut self.admin)
            .await
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        format!("redis://{user}:{password}@127.0.0.1:{}", self.port)
    }

    fn up(&self, url: &str) -> Child {
        let env = [
            ("PANTHEON_PROBER__INTERVAL_MS", "200"),
            ("PANTHEON_PROJECTOR__BLOCK_MS", "100"),
            ("PANTHEON_LOCAL_REDIS__START", "false"),
        ];
        command(
            self.dir.path(),
            &env,
            &["up", "--redis-url", url, "--cluster", &self.cluster],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pantheon up")
    }
}

/// A direct command as some user: `Err(message)` when refused.
async fn as_user(url: &str, args: &[&str]) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async::<redis::Value>(&mut con)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn refused(run: &Run, user: &str) {
    assert_eq!(run.code, 1, "{run:?}");
    let line = run.stderr.trim();
    assert_eq!(line.lines().count(), 1, "one line: {run:?}");
    assert!(line.contains("NOPERM") && line.contains(user), "{run:?}");
    assert!(!line.contains("refused the connection"), "{run:?}");
}

fn log_key(cluster: &str) -> String {
    format!("pantheon:{{{cluster}}}:log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_does_its_job_and_nothing_else() {
    let mut t = Roles::start().await;
    let service = t.user("service").await;
    let producer = t.user("producer").await;
    let writer = t.user("writer").await;
    let reader = t.user("reader").await;
    let consumer = t.user("consumer").await;
    let operator = t.user("operator").await;
    let c = t.cluster.clone();
    let log = log_key(&c);
    let keymap = format!("pantheon:{{{c}}}:keymap");

    // The operator migrates; the services run as the service user.
    let run = t.cli(&operator, &["migrate"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let mut up = t.up(&service);

    // Writer: appends and waits for the outcome (so the service user's projector applied it).
    let run = t
        .cli(
            &writer,
            &[
                "join",
                "n1",
                "--url",
                "http://127.0.0.1:9/health",
                "--timeout-ms",
                "8000",
            ],
        )
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("waiting for its first probe"),
        "{run:?}"
    );
    let run = t.cli(&writer, &["distribute", "k1", "k2"]).await;
    assert_eq!(run.code, 0, "{run:?}");

    // Producer: appends with --no-wait (no PING, no reads needed) ...
    let run = t.cli(&producer, &["leave", "n9", "--no-wait"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    // ... and, waiting, says the entry was written before the read it may not do failed.
    let run = t.cli(&producer, &["leave", "n8"]).await;
    refused(&run, "producer-user");
    assert!(run.stderr.contains("was written"), "{run:?}");
    // It cannot write read models, or read anything.
    assert!(
        as_user(&producer, &["HSET", &keymap, "k1", "evil"])
            .await
            .is_err()
    );
    assert!(
        as_user(&producer, &["XRANGE", &log, "-", "+"])
            .await
            .is_err()
    );
    assert!(
        as_user(
            &producer,
            &["XADD", &log, "*", "type", "leave", "node", "n7"]
        )
        .await
        .is_ok()
    );

    // Reader: reads, and cannot append.
    for args in [
        &["nodes", "--json"][..],
        &["locate", "k1"],
        &["keys", "n1"],
        &["watch", "n1", "--lines", "1"],
        &["events"],
    ] {
        let run = t.cli(&reader, args).await;
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
    }
    let run = t.cli(&reader, &["leave", "n1", "--no-wait"]).await;
    refused(&run, "reader-user");
    assert!(run.stderr.contains("nothing was written"), "{run:?}");
    assert!(
        run.stderr.contains("XADD") && run.stderr.contains(&log),
        "{run:?}"
    );
    assert!(
        as_user(&reader, &["XADD", &log, "*", "type", "leave"])
            .await
            .is_err()
    );

    // Consumer: reads events through a group; cannot append to the log or read models.
    let run = t
        .cli(
            &consumer,
            &[
                "events",
                "--group",
                "g",
                "--consumer",
                "c1",
                "--from-beginning",
            ],
        )
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("joined"), "{run:?}");
    assert!(
        as_user(&consumer, &["XADD", &log, "*", "type", "leave"])
            .await
            .is_err()
    );
    assert!(as_user(&consumer, &["HGETALL", &keymap]).await.is_err());

    // Operator: verifies; nothing outside the cluster, nothing server-wide.
    let run = t.cli(&operator, &["rebuild", "--verify"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    // The operator may move the log to a new generation (a RENAME under the lease); a reader
    // may not, and says which permission is missing.
    let run = t.cli(&reader, &["recover-clock", "--force"]).await;
    assert_ne!(run.code, 0, "{run:?}");
    let run = t.cli(&operator, &["recover-clock", "--force"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("new generation"), "{run:?}");
    assert!(
        as_user(&operator, &["SET", "someone-else", "x"])
            .await
            .is_err()
    );
    assert!(as_user(&operator, &["FLUSHALL"]).await.is_err());
    assert!(as_user(&service, &["FLUSHDB"]).await.is_err());
    assert!(
        as_user(&service, &["GET", "pantheon:{other}:log"])
            .await
            .is_err()
    );

    // `up` as a user without the service's permissions stops at once with the reason.
    let mut wrong = t.up(&reader);
    let status = tokio::time::timeout(Duration::from_secs(15), wrong.wait())
        .await
        .expect("up as the reader must fail fast, not retry")
        .expect("wait");
    assert_ne!(status.code(), Some(0));
    let stderr = read_stderr(&mut wrong).await;
    assert!(
        stderr.contains("NOPERM") && stderr.contains("reader-user"),
        "{stderr}"
    );

    // A wrong password is named as such, not as a refused connection.
    let bad = format!("redis://reader-user:wrong@127.0.0.1:{}", t.port);
    let run = t.cli(&bad, &["nodes"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("credentials"), "{run:?}");

    let _ = up.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), up.wait()).await;
}

async fn read_stderr(child: &mut Child) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = tokio::time::timeout(Duration::from_secs(2), e.read_to_string(&mut out)).await;
    }
    out
}

/// `XADD` as some user; the new entry's id.
async fn xadd_as(url: &str, log: &str, fields: &[&str]) -> String {
    let client = redis::Client::open(url).expect("url");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let mut cmd = redis::cmd("XADD");
    cmd.arg(log).arg("*").arg(fields);
    cmd.query_async(&mut con).await.expect("XADD as the user")
}

/// The reason entry `id` was rejected, if it was.
async fn rejected(admin: &mut MultiplexedConnection, cluster: &str, id: &str) -> Option<String> {
    let reply: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(format!("pantheon:{{{cluster}}}:rejected"))
        .arg(id)
        .arg(id)
        .query_async(admin)
        .await
        .expect("XRANGE rejected");
    reply.into_iter().next().and_then(|(_, fields)| {
        fields
            .into_iter()
            .find(|(k, _)| k == "reason")
            .map(|(_, v)| v)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_writes_every_user_facing_type_and_cannot_forge_a_service_entry() {
    let mut t = Roles::start().await;
    let service = t.user("service").await;
    let producer = t.user("producer").await;
    let writer = t.user("writer").await;
    let c = t.cluster.clone();
    let log = log_key(&c);
    let attest = format!("pantheon:{{{c}}}:attest");
    let mut up = t.up(&service);
    let node = crate::nodes::TestNode::start().await;
    let url = format!("http://{}/health", node.addr);
    let run = t
        .cli(
            &writer,
            &["join", "n1", "--url", &url, "--timeout-ms", "8000"],
        )
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let run = t.cli(&writer, &["distribute", "k1", "k2", "k3"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    // Wait until n1 answered its first probe and owns the keys.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let run = t.cli(&writer, &["locate", "k1"]).await;
        if run.code == 0 && run.stdout.contains("n1") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "n1 never owned k1: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every user-facing type, as redis-cli would send it with the producer's credentials.
    let user_facing: [&[&str]; 8] = [
        &[
            "type",
            "join",
            "node",
            "n2",
            "url",
            "http://127.0.0.1:1/health",
        ],
        &["type", "weight", "node", "n2", "weight", "2"],
        &["type", "drain", "node", "n2"],
        &["type", "undrain", "node", "n2"],
        &["type", "assign", "key", "k4", "key", "k5"],
        &["type", "unassign", "key", "k5"],
        &["type", "policy", "rise", "2"],
        &["type", "leave", "node", "n2"],
    ];
    let mut ids = Vec::new();
    for fields in user_facing {
        ids.push(xadd_as(&producer, &log, fields).await);
    }
    // The service-only types, forged: three failures that would kill n1, a confirmation, an
    // empty prober set, a self-suspicion, a tick.
    let forged_fields: [&[&str]; 7] = [
        &["type", "probe", "node", "n1", "epoch", "1", "ok", "0"],
        &["type", "probe", "node", "n1", "epoch", "1", "ok", "0"],
        &[
            "type", "probe", "node", "n1", "epoch", "1", "ok", "0", "prober", "p", "confirm", "1",
        ],
        &["type", "probers", "alive", ""],
        &["type", "prober_degraded", "prober", "p"],
        &["type", "tick"],
        &["type", "probe", "node", "n1", "epoch", "1", "ok", "0"],
    ];
    let mut forged = Vec::new();
    for fields in forged_fields {
        forged.push(xadd_as(&producer, &log, fields).await);
    }
    // The producer cannot write the proof, nor run a script that would.
    assert!(
        as_user(&producer, &["XADD", &attest, "*", "type", "probe"])
            .await
            .is_err()
    );
    assert!(
        as_user(&producer, &["EVAL", "return 1", "1", &log])
            .await
            .is_err()
    );
    // Wait until the last forgery is applied (or rejected).
    let last = forged.last().cloned().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while rejected(&mut t.admin, &c, &last).await.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{last} never decided"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &ids {
        assert_eq!(rejected(&mut t.admin, &c, id).await, None, "{id} applied");
    }
    for id in &forged {
        let reason = rejected(&mut t.admin, &c, id).await;
        assert!(
            reason
                .as_deref()
                .is_some_and(|r| r.contains("written only by the service")),
            "{id}: {reason:?}"
        );
    }
    let run = t.cli(&writer, &["nodes", "--json"]).await;
    let nodes: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let n1 = nodes["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["node"] == "n1"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(n1["state"], "alive", "{nodes}");
    let run = t.cli(&writer, &["events", "--json"]).await;
    assert!(!run.stdout.contains("\"died\""), "{run:?}");
    assert!(!run.stdout.contains("no_prober"), "{run:?}");
    let _ = up.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), up.wait()).await;
}
