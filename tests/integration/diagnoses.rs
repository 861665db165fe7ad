//! What the CLI says when things go wrong (issue 18, part 5), with the real binary as a child
//! process and no `RUST_LOG` (as a person runs it): one line on stderr, no log lines unless
//! `--verbose` or `RUST_LOG` asks, no colour codes in a pipe, and a next step that fits the
//! URL. The Redis Cluster is a real one-node cluster answering a real `CLUSTERDOWN`.

use std::path::Path;
use std::time::Duration;

use pantheon_test_support::cluster_down::OneNodeCluster;

use crate::cli::{Run, command};

/// The CLI as a person runs it: `RUST_LOG` unset unless `env` sets it (the helper in `cli`
/// sets it).
pub(crate) async fn pantheon_plain(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = command(dir, &[], args);
    cmd.env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .envs(env.iter().copied());
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("pantheon {args:?} did not finish within 60 s"))
        .expect("run pantheon");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Exactly one line on stderr, the CLI's own, with no log line or colour code before it.
pub(crate) fn assert_one_line(run: &Run) {
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {run:?}");
    assert!(lines[0].starts_with("pantheon: "), "{run:?}");
    for noise in ["WARN", "INFO", "ERROR", "\x1b["] {
        assert!(!run.stderr.contains(noise), "{noise:?} on stderr: {run:?}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_clusterdown_a_command_prints_one_line_and_logs_only_when_asked() {
    let cluster = OneNodeCluster::start().await;
    let name = "down";
    cluster
        .take_down(pantheon_store::resolve::slot_of_cluster(name))
        .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let url = cluster.url();
    let args = ["nodes", "--redis-url", url.as_str(), "--cluster", name];

    let run = pantheon_plain(dir.path(), &[], &args).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_one_line(&run);
    assert!(run.stderr.contains("CLUSTERDOWN"), "{run:?}");
    assert!(!run.stderr.contains("pantheon up"), "{run:?}");

    // --verbose shows what the Redis layer saw, and a pipe gets no colour codes.
    let verbose = [&args[..], &["--verbose"]].concat();
    let run = pantheon_plain(dir.path(), &[], &verbose).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.lines().count() > 1, "{run:?}");
    assert!(run.stderr.contains("lost the master"), "{run:?}");
    assert!(
        !run.stderr.contains('\x1b'),
        "colour codes in a pipe: {run:?}"
    );
    assert!(
        run.stderr
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("pantheon: ")),
        "{run:?}"
    );

    // So does RUST_LOG.
    let run = pantheon_plain(dir.path(), &[("RUST_LOG", "warn")], &args).await;
    assert!(run.stderr.contains("WARN"), "{run:?}");
    assert!(!run.stderr.contains('\x1b'), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pantheon_up_is_suggested_only_for_a_local_redis_url() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let short = [("PANTHEON_CLIENT__CONNECT_TIMEOUT_MS", "500")];
    let not_local = [
        (
            format!("redis+sentinel://127.0.0.1:{port}/mymaster"),
            "Sentinels",
        ),
        (format!("redis+cluster://127.0.0.1:{port}"), "Cluster nodes"),
        // TEST-NET-1 (RFC 5737): routed nowhere, so the connection times out.
        (
            "redis://192.0.2.1:6379".to_owned(),
            "this machine can reach",
        ),
    ];
    for (url, next) in &not_local {
        let run = pantheon_plain(dir.path(), &short, &["nodes", "--redis-url", url.as_str()]).await;
        assert_eq!(run.code, 1, "{run:?}");
        assert_one_line(&run);
        assert!(run.stderr.contains("cannot reach Redis"), "{run:?}");
        assert!(run.stderr.contains(next), "{run:?}");
        assert!(!run.stderr.contains("pantheon up"), "{run:?}");
        assert!(!run.stderr.contains("redis-server"), "{run:?}");
    }
    let url = format!("redis://127.0.0.1:{port}");
    let run = pantheon_plain(dir.path(), &short, &["nodes", "--redis-url", &url]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_one_line(&run);
    assert!(run.stderr.contains("`pantheon up` starts"), "{run:?}");
}
