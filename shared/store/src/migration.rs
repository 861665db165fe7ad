//! Half-finished slot migrations: an operator's reshard that stopped midway, with the slot of
//! `{cluster}` `MIGRATING` on its master and `IMPORTING` on another node.
//!
//! While it lasts, the master answers `ASK <slot> <node>` for a key it no longer holds (or
//! never held: a key being created) and `TRYAGAIN` for a command whose keys are split between
//! the two nodes. A single command follows the ASK (`ASKING`, then the command, on the named
//! node; the slot's master is unchanged, unlike after `MOVED`). A transaction or a script
//! cannot: its keys must all live on one node, so it waits until the migration completes or
//! is rolled back. Neither reply means that anything ran, so sending the command again later
//! is always safe.
//!
//! This module recognises those replies, names the migration (slot, source, destination;
//! from `CLUSTER NODES` on the master), sends followed commands, and logs the migration once
//! per change of state for the whole process: one WARN when it starts to matter, one INFO
//! when it is over.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Cmd, ErrorKind, RedisError, ServerErrorKind, Value};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::connect::{COMMAND_TIMEOUT, CONNECT_TIMEOUT};
use crate::deployment::Deployment;
use crate::url::{HostPort, RedisUrl};

/// A slot being moved from one master to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub slot: u16,
    pub source: HostPort,
    /// Unknown when the master could not be asked (`CLUSTER NODES` denied) and only a
    /// `TRYAGAIN` was seen.
    pub destination: Option<HostPort>,
}

impl fmt::Display for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "slot {} is migrating from {} to ",
            self.slot, self.source
        )?;
        match &self.destination {
            Some(d) => write!(f, "{d}"),
            None => f.write_str("another node"),
        }
    }
}

/// True for the replies of a half-finished migration: `ASK`, `TRYAGAIN`, or a transaction
/// aborted (or a pipeline failed) because of them.
pub fn refused(e: &RedisError) -> bool {
    if matches!(
        e.kind(),
        ErrorKind::Server(ServerErrorKind::Ask | ServerErrorKind::TryAgain)
    ) {
        return true;
    }
    e.clone().into_server_errors().is_some_and(|errors| {
        errors
            .iter()
            .any(|(_, s)| matches!(s.code(), "ASK" | "TRYAGAIN"))
    })
}

/// True when `value` is an `ASK` or `TRYAGAIN` error reply.
pub fn refused_value(value: &Value) -> bool {
    matches!(value, Value::ServerError(e) if matches!(e.code(), "ASK" | "TRYAGAIN"))
}

/// The node an `ASK` reply names.
pub fn ask_target(value: &Value) -> Option<HostPort> {
    match value {
        Value::ServerError(e) if e.code() == "ASK" => redirect_addr(e.details()?),
        _ => None,
    }
}

/// The node of an `ASK`/`MOVED` error.
pub fn redirect_target(e: &RedisError) -> Option<HostPort> {
    let (addr, _) = e.redirect_node()?;
    parse_addr(addr)
}

/// `<slot> <host:port>` (the details of `ASK` and `MOVED`) to the address.
pub(crate) fn redirect_addr(details: &str) -> Option<HostPort> {
    parse_addr(details.split_ascii_whitespace().nth(1)?)
}

fn parse_addr(addr: &str) -> Option<HostPort> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some(HostPort {
        host: host.to_owned(),
        port: port.parse().ok()?,
    })
}

/// Whether `cmd` may be sent to the node an `ASK` names. Not a script (its keys must all be on
/// one node, and the script may create keys the target does not have yet) and nothing of a
/// transaction (`WATCH` state and queued commands belong to the master's connection).
pub fn may_follow(cmd: &Cmd) -> bool {
    let Some(redis::Arg::Simple(name)) = cmd.args_iter().next() else {
        return false;
    };
    const NO: [&[u8]; 11] = [
        b"EVAL",
        b"EVALSHA",
        b"EVAL_RO",
        b"EVALSHA_RO",
        b"FCALL",
        b"FCALL_RO",
        b"WATCH",
        b"UNWATCH",
        b"MULTI",
        b"EXEC",
        b"DISCARD",
    ];
    !NO.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// True for a script call (`EVAL`, `EVALSHA`, `FCALL`, and their read-only forms).
pub fn is_script(cmd: &Cmd) -> bool {
    matches!(cmd.args_iter().next(), Some(redis::Arg::Simple(n))
        if [&b"EVAL"[..], b"EVALSHA", b"EVAL_RO", b"EVALSHA_RO", b"FCALL", b"FCALL_RO"]
            .iter()
            .any(|s| s.eq_ignore_ascii_case(n)))
}

/// True for `WAIT`: it counts the writes of its own connection, so when a write was sent to
/// the node an ASK named, the `WAIT` after it must go there too.
pub fn is_wait(cmd: &Cmd) -> bool {
    matches!(cmd.args_iter().next(), Some(redis::Arg::Simple(n)) if n.eq_ignore_ascii_case(b"WAIT"))
}

/// The connection to the node an ASK named, kept while the migration lasts (one per handle).
#[derive(Default)]
pub(crate) struct AskLink {
    con: tokio::sync::Mutex<Option<(HostPort, MultiplexedConnection)>>,
}

impl AskLink {
    /// Sends each of `cmds` preceded by `ASKING` (which holds for the next command only) to
    /// `target`, in one write, and returns the commands' replies.
    pub(crate) async fn send(
        &self,
        deployment: &Deployment,
        target: &HostPort,
        cmds: &[&Cmd],
    ) -> Result<Vec<Value>, RedisError> {
        let mut slot = self.con.lock().await;
        let mut con = match slot.as_ref() {
            Some((addr, con)) if addr == target => con.clone(),
            _ => {
                let client = crate::resolve::data_client(deployment, target).map_err(|e| {
                    e.source.unwrap_or_else(|| {
                        RedisError::from(std::io::Error::other(e.reason.clone()))
                    })
                })?;
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(COMMAND_TIMEOUT));
                let con = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                *slot = Some((target.clone(), con.clone()));
                con
            }
        };
        drop(slot);
        let mut pipe = redis::pipe();
        for cmd in cmds {
            pipe.cmd("ASKING");
            pipe.add_command((*cmd).clone());
        }
        match con.req_packed_commands(&pipe, 0, cmds.len() * 2).await {
            Ok(values) => Ok(values.into_iter().skip(1).step_by(2).collect()),
            Err(e) => {
                *self.con.lock().await = None;
                Err(e)
            }
        }
    }
}

/// What the master says about a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotState {
    Migrating(Migration),
    /// No migration; the master serving it (when the asked node knows one).
    Stable(Option<HostPort>),
}

/// The state of `slot` in `CLUSTER NODES` of the node at `node`.
pub async fn lookup(
    deployment: &Deployment,
    node: &HostPort,
    slot: u16,
) -> Result<SlotState, crate::resolve::ResolveError> {
    let text = crate::resolve::cluster_nodes(deployment, node).await?;
    Ok(match parse_migration(&text, slot, node) {
        Some(m) => SlotState::Migrating(m),
        None => SlotState::Stable(parse_owner(&text, slot, node)),
    })
}

/// `CLUSTER NODES` split into lines of fields (`<id> <addr> <flags> <master> <ping> <pong>
/// <epoch> <link> <slot>...`).
fn node_lines(nodes: &str) -> Vec<Vec<&str>> {
    nodes
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() >= 8)
        .collect()
}

/// The address of a `CLUSTER NODES` line; an empty host means the node asked.
fn line_addr(fields: &[&str], asked: &HostPort) -> Option<HostPort> {
    let addr = parse_addr(fields[1].split(['@', ',']).next()?)?;
    Some(if addr.host.is_empty() {
        HostPort {
            host: asked.host.clone(),
            port: addr.port,
        }
    } else {
        addr
    })
}

/// The master whose stable ranges hold `slot`, in a `CLUSTER NODES` reply.
pub fn parse_owner(nodes: &str, slot: u16, asked: &HostPort) -> Option<HostPort> {
    node_lines(nodes).iter().find_map(|f| {
        let serves = f[8..].iter().filter(|s| !s.starts_with('[')).any(|spec| {
            let (a, b) = spec.split_once('-').unwrap_or((*spec, *spec));
            matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if a <= slot && slot <= b)
        });
        serves.then(|| line_addr(f, asked)).flatten()
    })
}

/// The migration of `slot` in a `CLUSTER NODES` reply of the node at `asked`: its own line
/// carries `[slot->-<id>]` when migrating to node `<id>`, `[slot-<-<id>]` when importing.
pub fn parse_migration(nodes: &str, slot: u16, asked: &HostPort) -> Option<Migration> {
    let lines = node_lines(nodes);
    let addr_of = |id: &str| {
        lines
            .iter()
            .find(|f| f[0] == id)
            .and_then(|f| line_addr(f, asked))
    };
    let me = lines
        .iter()
        .find(|f| f[2].split(',').any(|flag| flag == "myself"))?;
    let prefix = format!("[{slot}-");
    me[8..].iter().find_map(|spec| {
        let rest = spec.strip_prefix(&prefix)?.strip_suffix(']')?;
        if let Some(to) = rest.strip_prefix(">-") {
            Some(Migration {
                slot,
                source: asked.clone(),
                destination: addr_of(to),
            })
        } else {
            let from = rest.strip_prefix("<-")?;
            Some(Migration {
                slot,
                source: addr_of(from)?,
                destination: Some(asked.clone()),
            })
        }
    })
}

/// The last word of an error text that reads as `host:port` (the node of a `MOVED`).
pub(crate) fn addr_in(text: &str) -> Option<HostPort> {
    text.split_whitespace().last().and_then(parse_addr)
}

/// How often a handle that saw a migration asks whether it is over, while commands succeed
/// (a rollback ends it without any `MOVED`).
pub(crate) const RECHECK: Duration = Duration::from_secs(1);
/// How long after a migration ended a `MOVED` to its new master is expected news: each
/// handle and connection of the process meets it once, and only the first one logs it.
const ENDED_MEMORY: Duration = Duration::from_secs(120);

/// The migrations this process has logged, per deployment and slot.
struct Tracked {
    url: RedisUrl,
    migration: Migration,
    checked: Instant,
    ended: Option<Instant>,
}

static TRACKED: Mutex<Vec<Tracked>> = Mutex::new(Vec::new());

fn tracked() -> std::sync::MutexGuard<'static, Vec<Tracked>> {
    TRACKED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn position(all: &[Tracked], url: &RedisUrl, slot: u16) -> Option<usize> {
    all.iter()
        .position(|t| t.url == *url && t.migration.slot == slot)
}

/// The migration of `slot` in progress, as this process last saw it.
pub fn current(url: &RedisUrl, slot: u16) -> Option<Migration> {
    let all = tracked();
    position(&all, url, slot)
        .map(|i| &all[i])
        .filter(|t| t.ended.is_none())
        .map(|t| t.migration.clone())
}

/// Records a migration; logs it when it is news to the process.
pub(crate) fn started(url: &RedisUrl, migration: Migration) {
    let mut all = tracked();
    if let Some(i) = position(&all, url, migration.slot) {
        if all[i].ended.is_none() {
            return;
        }
        all.remove(i);
    }
    warn!(
        slot = migration.slot,
        source = %migration.source,
        destination = ?migration.destination.as_ref().map(ToString::to_string),
        "redis: {migration}: reads follow ASK; transactions and scripts wait until the \
         migration completes or is rolled back"
    );
    all.push(Tracked {
        url: url.clone(),
        migration,
        checked: Instant::now(),
        ended: None,
    });
}

/// Marks the migration of `slot` as over, logging it once (`served_by`: the master now).
pub(crate) fn ended(url: &RedisUrl, slot: u16, served_by: Option<&HostPort>) {
    let mut all = tracked();
    let Some(t) = position(&all, url, slot).map(|i| &mut all[i]) else {
        return;
    };
    if t.ended.is_some() {
        return;
    }
    t.ended = Some(Instant::now());
    let m = &t.migration;
    let by = served_by.map_or_else(|| "(unknown)".to_owned(), ToString::to_string);
    info!(
        slot,
        source = %m.source,
        destination = ?m.destination.as_ref().map(ToString::to_string),
        master = %by,
        "redis: the migration of slot {slot} from {} is over, {by} serves it: writes apply \
         again",
        m.source
    );
}

/// True when a `MOVED` of `slot` comes from a migration this process saw (in progress or
/// recently ended): the end of the migration, not a lost master.
pub(crate) fn explains_move(url: &RedisUrl, slot: u16) -> bool {
    let all = tracked();
    position(&all, url, slot)
        .is_some_and(|i| all[i].ended.is_none_or(|at| at.elapsed() < ENDED_MEMORY))
}

/// True when a migration of `slot` is in progress and was last looked at more than
/// [`RECHECK`] ago (then it counts as looked at now).
pub(crate) fn recheck_due(url: &RedisUrl, slot: u16) -> bool {
    let mut all = tracked();
    match position(&all, url, slot).map(|i| &mut all[i]) {
        Some(t) if t.ended.is_none() && t.checked.elapsed() >= RECHECK => {
            t.checked = Instant::now();
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(port: u16) -> HostPort {
        HostPort {
            host: "127.0.0.1".into(),
            port,
        }
    }

    const NODES: &str = "\
e5ca 127.0.0.1:41002@51002 myself,master - 0 1796226945000 2 connected 5461-10922 [7365->-fc5e]
fc5e 127.0.0.1:41001@51001 master - 0 1796226945000 1 connected 0-5460
";

    #[test]
    fn a_migrating_slot_names_both_nodes() {
        let m = parse_migration(NODES, 7365, &hp(41002)).expect("migrating");
        assert_eq!(m.source, hp(41002));
        assert_eq!(m.destination, Some(hp(41001)));
        assert_eq!(
            m.to_string(),
            "slot 7365 is migrating from 127.0.0.1:41002 to 127.0.0.1:41001"
        );
        assert_eq!(parse_migration(NODES, 7366, &hp(41002)), None);
        assert_eq!(parse_migration(NODES, 736, &hp(41002)), None);
        assert_eq!(parse_owner(NODES, 7365, &hp(41002)), Some(hp(41002)));
        assert_eq!(parse_owner(NODES, 5460, &hp(41002)), Some(hp(41001)));
    }

    #[test]
    fn an_importing_slot_names_both_nodes() {
        let nodes = "\
fc5e :41001@51001 myself,master - 0 0 1 connected 0-5460 [7365-<-e5ca]
e5ca 127.0.0.1:41002@51002 master - 0 0 2 connected 5461-10922
";
        let m = parse_migration(nodes, 7365, &hp(41001)).expect("importing");
        assert_eq!(m.source, hp(41002));
        assert_eq!(m.destination, Some(hp(41001)));
    }

    #[test]
    fn redirects_are_parsed() {
        assert_eq!(redirect_addr("7365 127.0.0.1:41001"), Some(hp(41001)));
        assert_eq!(
            redirect_addr("1 ::1:7000").map(|a| a.host),
            Some("::1".to_owned())
        );
        assert_eq!(redirect_addr("7365"), None);
        assert_eq!(addr_in("MOVED 7365 127.0.0.1:41001"), Some(hp(41001)));
    }

    #[test]
    fn scripts_and_transactions_never_follow_an_ask() {
        assert!(may_follow(redis::cmd("HGETALL").arg("k")));
        assert!(may_follow(redis::cmd("xadd").arg("k")));
        assert!(!may_follow(redis::cmd("evalsha").arg("abc")));
        assert!(!may_follow(&redis::cmd("EXEC")));
        assert!(!may_follow(redis::cmd("WATCH").arg("k")));
        assert!(is_wait(redis::cmd("WAIT").arg(1).arg(100)));
        assert!(is_script(redis::cmd("evalsha").arg("abc").arg(1)));
        assert!(!is_script(redis::cmd("GET").arg("k")));
    }
}
