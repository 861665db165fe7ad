//! `pantheon-prober`: one prober replica, until SIGTERM/SIGINT (then in-flight probes get the
//! grace period and the replica deregisters so others take its nodes at once).
//!
//! Settings from the environment (`pantheon up` embeds the same prober with the full
//! configuration file support): `PANTHEON_REDIS_URL` (`redis://127.0.0.1:6379`),
//! `PANTHEON_CLUSTER` (`default`), `PANTHEON_PREFIX` (`pantheon`), `PANTHEON_PROBER_ID`,
//! `PANTHEON_PROBE_INTERVAL_MS` (1000), `PANTHEON_PROBE_SUSPECT_INTERVAL_MS` (200),
//! `PANTHEON_PROBE_DEAD_INTERVAL_MS` (5000), `PANTHEON_PROBE_TIMEOUT_MS` (500),
//! `PANTHEON_PROBER_TTL_MS` (3000), `RUST_LOG`.

use std::process::ExitCode;

use pantheon_prober::ProberConfig;
use pantheon_service::env;

fn config() -> Result<ProberConfig, String> {
    let tls = pantheon_store::TlsFiles {
        ca_file: std::env::var_os("PANTHEON_TLS__CA_FILE").map(Into::into),
        cert_file: std::env::var_os("PANTHEON_TLS__CERT_FILE").map(Into::into),
        key_file: std::env::var_os("PANTHEON_TLS__KEY_FILE").map(Into::into),
    };
    let redis = pantheon_store::Deployment::new(
        &env::or("PANTHEON_REDIS_URL", "redis://127.0.0.1:6379"),
        &tls,
    )
    .map_err(|e| e.to_string())?;
    let mut c = ProberConfig::new(redis, env::or("PANTHEON_CLUSTER", "default"));
    c.prefix = env::or("PANTHEON_PREFIX", &c.prefix);
    if let Ok(id) = std::env::var("PANTHEON_PROBER_ID") {
        c.id = id;
    }
    c.interval = env::ms("PANTHEON_PROBE_INTERVAL_MS", c.interval)?;
    c.suspect_interval = env::ms("PANTHEON_PROBE_SUSPECT_INTERVAL_MS", c.suspect_interval)?;
    c.dead_interval = env::ms("PANTHEON_PROBE_DEAD_INTERVAL_MS", c.dead_interval)?;
    c.timeout = env::ms("PANTHEON_PROBE_TIMEOUT_MS", c.timeout)?;
    c.registration_ttl = env::ms("PANTHEON_PROBER_TTL_MS", c.registration_ttl)?;
    c.validate()?;
    Ok(c)
}

// jemalloc returns freed memory to the OS far better than glibc's per-thread arenas: the
// projector's RSS after folding a million keys drops by about half (docs/benchmarks.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    pantheon_service::serve("pantheon-prober", config(), pantheon_prober::run).await
}
