//! The service binaries as child processes, and one health server for many nodes.

use std::process::{Command as Process, Stdio};

use axum::Router;
use axum::routing::get;
use pantheon_test_support::process::ChildGuard;

/// Leaves the bench's own `PANTHEON_*` variables (its knobs among them) out of `cmd`'s
/// environment: the binaries read every `PANTHEON_*` as a setting.
pub fn without_pantheon_env(cmd: &mut Process) -> &mut Process {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PANTHEON_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// A service binary as a child process, with only the settings given here (no `PANTHEON_*`
/// of the bench's own environment).
pub fn service(bin: &str, url: &str, cluster: &str, env: &[(&str, &str)]) -> ChildGuard {
    let mut cmd = Process::new(bin);
    without_pantheon_env(&mut cmd)
        .env("PANTHEON_REDIS_URL", url)
        .env("PANTHEON_CLUSTER", cluster)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    ChildGuard(cmd.spawn().unwrap_or_else(|e| panic!("spawn {bin}: {e}")))
}

/// One axum server answering 200 on every path: every node's health endpoint. Returns its
/// port on 127.0.0.1.
pub async fn health_server() -> u16 {
    let app = Router::new().fallback(get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the health server");
    let port = listener.local_addr().expect("its address").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    port
}
