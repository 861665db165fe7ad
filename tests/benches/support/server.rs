//! What the Redis server reports about itself (`INFO`), for the benches' resource figures.

use redis::aio::MultiplexedConnection;

/// One `INFO` section, as text.
pub async fn info(con: &mut MultiplexedConnection, section: &str) -> String {
    redis::cmd("INFO")
        .arg(section)
        .query_async(con)
        .await
        .expect("INFO")
}

/// The value of `name` in `INFO` text (`name:value` lines).
pub fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// Redis's `used_memory`, in bytes (0 when missing).
pub async fn used_memory(con: &mut MultiplexedConnection) -> u64 {
    let memory = info(con, "memory").await;
    info_field(&memory, "used_memory")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
