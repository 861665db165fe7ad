//! Finding the clusters that exist under a key prefix, for `up --clusters '*'` (or a pattern
//! such as `billing-*`): every `<prefix>:{<name>}:log` stream on every master (each shard of a
//! Redis Cluster), by `SCAN ... MATCH ... TYPE stream`, so no key list is kept anywhere.

use redis::aio::ConnectionLike;

use crate::StoreError;
use crate::deployment::Deployment;
use crate::resolve;

/// At most this many `SCAN` calls per master (10,000 keys each): a bound, not a limit met in
/// practice (10⁸ keys).
const MAX_SCANS: usize = 10_000;

/// The names of every cluster with a log under `prefix`, sorted.
pub async fn clusters(deployment: &Deployment, prefix: &str) -> Result<Vec<String>, StoreError> {
    let masters = resolve::masters(deployment)
        .await
        .map_err(|e| StoreError::Unavailable {
            class: crate::Failure::Resolve,
            reason: e.reason,
        })?;
    let mut names = Vec::new();
    for m in masters {
        let mut con = m.client.get_multiplexed_async_connection().await?;
        names.extend(scan(&mut con, prefix).await?);
    }
    names.sort();
    names.dedup();
    Ok(names)
}

async fn scan<C: ConnectionLike + Send>(
    con: &mut C,
    prefix: &str,
) -> Result<Vec<String>, StoreError> {
    let pattern = format!("{prefix}:{{*}}:log");
    let mut names = Vec::new();
    let mut cursor: u64 = 0;
    for _ in 0..MAX_SCANS {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(10_000)
            .arg("TYPE")
            .arg("stream")
            .query_async(con)
            .await?;
        names.extend(keys.iter().filter_map(|k| name_of(k, prefix)));
        if next == 0 {
            break;
        }
        cursor = next;
    }
    Ok(names)
}

/// `<prefix>:{<name>}:log` → `name` (nothing for other keys a glob also matches, such as a
/// scratch copy's `<prefix>:{<name>}:<scratch>:log`).
fn name_of(key: &str, prefix: &str) -> Option<String> {
    let name = key
        .strip_prefix(prefix)?
        .strip_prefix(":{")?
        .strip_suffix("}:log")?;
    (!name.is_empty() && !name.contains(['{', '}', ':'])).then(|| name.to_owned())
}

/// Whether cluster `name` matches `pattern`, a name where `*` stands for any run of
/// characters (`*` alone: every cluster).
pub fn matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || !name[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_only_from_log_keys() {
        assert_eq!(
            name_of("pantheon:{a}:log", "pantheon").as_deref(),
            Some("a")
        );
        assert_eq!(name_of("pantheon:{a}:scratch:log", "pantheon"), None);
        assert_eq!(name_of("pantheon:{a}:log:gen:5-0", "pantheon"), None);
        assert_eq!(name_of("other:{a}:log", "pantheon"), None);
    }

    #[test]
    fn patterns() {
        assert!(matches("*", "anything"));
        assert!(matches("svc-*", "svc-1"));
        assert!(!matches("svc-*", "db-1"));
        assert!(matches("*-eu", "svc-eu"));
        assert!(matches("a*b*c", "a-x-b-y-c"));
        assert!(!matches("a*b*c", "a-x-c"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exactly"));
        assert!(!matches("ab*ba", "aba"));
    }
}
