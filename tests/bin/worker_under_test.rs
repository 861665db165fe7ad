//! A process embedding `pantheon-worker`, for the integration tests: it runs a worker and
//! prints each callback as one JSON line on stdout
//! (`{"op":"acquire"|"release","keys":[...],"token":N,"peer":"node"|null}`;
//! `{"op":"handoff","keys":[...],"peer":...}` when asked to hand keys over, whose state it
//! gives as `state-of-<key>@<node>`; `{"op":"state","values":{key: value},"peer":...}` for
//! the state it receives), `{"started":"<health url>"}` once it has joined, and
//! `{"stopped":"graceful"}` when SIGTERM's graceful shutdown finished (exit 0).
//!
//! Usage: `pantheon-worker-under-test REDIS_URL CLUSTER NODE STATE_FILE HEALTH_PORT`.
//! `WORKER_NEVER_RELEASES=1`: it never answers a hand-off (a stuck worker);
//! `WORKER_HANDOFF_DELAY_MS=N`: each hand-off takes N ms before it gives the state (a slow one).

use std::io::Write;

use anyhow::Context;
use pantheon_worker::{AppError, Health, NodeId, Ownership, Pantheon, Worker};
use serde_json::json;

struct Printer {
    node: String,
    never_releases: bool,
    handoff_delay: std::time::Duration,
}

fn print(op: &str, keys: &[String], token: u64, peer: Option<&NodeId>) -> Result<(), AppError> {
    emit(&json!({"op": op, "keys": keys, "token": token, "peer": peer.map(|p| p.as_str())}))
}

fn emit(line: &serde_json::Value) -> Result<(), AppError> {
    // One write per line: a kill -9 leaves whole lines only.
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

impl Ownership for Printer {
    async fn on_acquire(
        &self,
        keys: &[String],
        token: u64,
        from: Option<&NodeId>,
    ) -> Result<(), AppError> {
        print("acquire", keys, token, from)
    }

    async fn on_release(
        &self,
        keys: &[String],
        token: u64,
        to: Option<&NodeId>,
    ) -> Result<(), AppError> {
        print("release", keys, token, to)
    }

    async fn on_handoff(
        &self,
        keys: &[String],
        to: &NodeId,
    ) -> Result<Vec<(String, Vec<u8>)>, AppError> {
        emit(&json!({"op": "handoff", "keys": keys, "peer": to.as_str()}))?;
        if self.never_releases {
            // A stuck worker: the projector leader must force the move.
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        }
        tokio::time::sleep(self.handoff_delay).await;
        Ok(keys
            .iter()
            .map(|k| {
                (
                    k.clone(),
                    format!("state-of-{k}@{}", self.node).into_bytes(),
                )
            })
            .collect())
    }

    async fn on_state(&self, state: Vec<(String, Vec<u8>)>, from: &NodeId) -> Result<(), AppError> {
        let values: serde_json::Map<String, serde_json::Value> = state
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned().into()))
            .collect();
        emit(&json!({"op": "state", "values": values, "peer": from.as_str()}))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, cluster, node, state, port] = args.as_slice() else {
        anyhow::bail!(
            "usage: pantheon-worker-under-test REDIS_URL CLUSTER NODE STATE_FILE HEALTH_PORT"
        );
    };
    let port: u16 = port.parse().context("HEALTH_PORT")?;
    let client = Pantheon::connect(url, cluster).await?;
    let printer = Printer {
        node: node.clone(),
        never_releases: std::env::var("WORKER_NEVER_RELEASES").is_ok_and(|v| v == "1"),
        handoff_delay: std::time::Duration::from_millis(
            std::env::var("WORKER_HANDOFF_DELAY_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        ),
    };
    let worker = Worker::builder(client, node, state)
        .health(Health::serve(([127, 0, 0, 1], port).into()))
        .start(printer)
        .await?;
    println!("{}", json!({"started": worker.health_url()}));
    let mut worker = worker;
    // Runs until killed, until a callback fails, or until SIGTERM: then it hands everything
    // over and leaves.
    tokio::select! {
        done = worker.finished() => done?,
        () = pantheon_worker::shutdown_signal() => {
            worker.graceful_shutdown(std::time::Duration::from_secs(20)).await?;
            emit(&json!({"stopped": "graceful"})).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    Ok(())
}
