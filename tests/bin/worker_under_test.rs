//! A process embedding `pantheon-worker`, for the integration tests: it runs a worker and
//! prints each callback as one JSON line on stdout
//! (`{"op":"acquire"|"release","keys":[...],"token":N,"peer":"node"|null}`), and
//! `{"started":"<health url>"}` once it has joined.
//!
//! Usage: `pantheon-worker-under-test REDIS_URL CLUSTER NODE STATE_FILE HEALTH_PORT`.

use std::io::Write;

use anyhow::Context;
use pantheon_worker::{AppError, Health, NodeId, Ownership, Pantheon, Worker};
use serde_json::json;

struct Printer;

fn print(op: &str, keys: &[String], token: u64, peer: Option<&NodeId>) -> Result<(), AppError> {
    let line = json!({"op": op, "keys": keys, "token": token, "peer": peer.map(|p| p.as_str())});
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
    let worker = Worker::builder(client, node, state)
        .health(Health::serve(([127, 0, 0, 1], port).into()))
        .start(Printer)
        .await?;
    println!("{}", json!({"started": worker.health_url()}));
    let mut worker = worker;
    // Runs until killed, or until a callback fails.
    worker.finished().await?;
    Ok(())
}
