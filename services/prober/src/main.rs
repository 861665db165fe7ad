//! `pantheon-prober`: one prober replica, until SIGTERM/SIGINT (then in-flight probes get the
//! grace period and the replica deregisters so others take its nodes at once).
//!
//! It reads the same configuration as the `pantheon` CLI and `pantheon up`, the same way
//! (`docs/configuration.md`): defaults ← the file named by `--config PATH` or
//! `PANTHEON_CONFIG` (else `./pantheon.toml` if present) ← `PANTHEON_*` variables, e.g.
//! `PANTHEON_REDIS_URL`, `PANTHEON_CLUSTER`, `PANTHEON_TLS__CA_FILE`, `PANTHEON_PROBER__ID`,
//! `PANTHEON_PROBER__INTERVAL_MS`. It uses the top-level keys, `[tls]`, `[durability]` and
//! `[prober]`, yet checks every key: a bad or unknown one exits 64 with one line naming it. `--listen ADDR`
//! (or `[http] listen`) serves /healthz, /readyz, /metrics and the dashboard; `--log-format
//! json` writes JSON log lines.
//! `RUST_LOG` sets the log level (default `info`).

use std::process::ExitCode;

// jemalloc returns freed memory to the OS far better than glibc's per-thread arenas: the
// projector's RSS after folding a million keys drops by about half (docs/benchmarks.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    pantheon_service::binary::main(
        "pantheon-prober",
        pantheon_service::ProcessKind::Prober,
        pantheon_config::load_service(std::env::args_os().skip(1)),
    )
    .await
}
