//! `pantheon-projector`: runs one projector (leader or standby) until SIGTERM/SIGINT.
//!
//! Settings come from the environment (the `pantheon` CLI's `up` command embeds the same
//! projector with the full configuration file support):
//! `PANTHEON_REDIS_URL` (default `redis://127.0.0.1:6379`), `PANTHEON_CLUSTER` (`default`),
//! `PANTHEON_PREFIX` (`pantheon`), `PANTHEON_INSTANCE`, `PANTHEON_LEASE_TTL_MS` (5000),
//! `PANTHEON_SNAPSHOT_EVERY` (100000), `PANTHEON_PROBER_WATCHDOG_MS` (1000; 0 = off), `RUST_LOG`.

use std::process::ExitCode;
use std::time::Duration;

use pantheon_projector::ProjectorConfig;
use pantheon_service::env;

fn config() -> Result<ProjectorConfig, String> {
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
    let mut c = ProjectorConfig::new(redis, env::or("PANTHEON_CLUSTER", "default"));
    c.prefix = env::or("PANTHEON_PREFIX", &c.prefix);
    if let Ok(instance) = std::env::var("PANTHEON_INSTANCE") {
        c.instance = instance;
    }
    c.lease_ttl = Duration::from_millis(env::num("PANTHEON_LEASE_TTL_MS", 5000)?);
    c.block = c.block.min(c.lease_ttl / 3);
    c.snapshot_every = env::num("PANTHEON_SNAPSHOT_EVERY", c.snapshot_every)?;
    c.prober_watchdog = match env::num("PANTHEON_PROBER_WATCHDOG_MS", 1000)? {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    };
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
    pantheon_service::serve("pantheon-projector", config(), pantheon_projector::run).await
}
