//! Least-privilege Redis ACL rules for each kind of Pantheon user, and the `ACL SETUSER`
//! line that creates such a user (`pantheon acl <role>`).
//!
//! Every rule is scoped to one Pantheon cluster's keys (`<prefix>:{<cluster>}:...`, see
//! [`Layout`]); nothing grants a key of another cluster or another application. Roles use
//! Redis 7 selectors (`(...)`) so a command is allowed on exactly the keys it needs: the
//! producer may `XADD` to the log and nothing else, not even read it.
//!
//! What ACLs cannot express, and the documentation says so:
//! * command arguments: a producer's `XADD` may carry `MAXLEN`/`MINID` (trimming the log) or
//!   an explicit id; the projector decides what an entry means, not the ACL;
//! * consumer groups: a consumer user may read and ack any group of the events stream.

use std::fmt;

use redis::{Cmd, ErrorKind, Pipeline, RedisError, ServerErrorKind, Value};

use crate::deployment::Deployment;
use crate::layout::Layout;
use crate::url::Topology;

/// A kind of Pantheon user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Appends to the log (`XADD`), nothing else: `pantheon <write> --no-wait`, any-language
    /// producers.
    Producer,
    /// Appends, then waits for the outcome and reads the result: the write commands without
    /// `--no-wait`.
    Writer,
    /// Reads the read models, the events and the log: `nodes`, `locate`, `keys`, `events`
    /// (without `--group`), `audit`.
    Reader,
    /// Reads the events stream through consumer groups, acks, claims, dead-letters:
    /// `events --group G --consumer C`, the client's `Subscription`.
    Consumer,
    /// Runs `rebuild --verify` (scratch keys of the cluster) and `migrate`.
    Operator,
    /// Runs the services: `up`, `pantheon-projector`, `pantheon-prober`.
    Service,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Producer,
        Role::Writer,
        Role::Reader,
        Role::Consumer,
        Role::Operator,
        Role::Service,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Writer => "writer",
            Role::Reader => "reader",
            Role::Consumer => "consumer",
            Role::Operator => "operator",
            Role::Service => "service",
        }
    }

    /// The role called `name`, if any.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    /// What the role is for, in one line.
    pub fn purpose(self) -> &'static str {
        match self {
            Role::Producer => {
                "append to the log only (writes with --no-wait, producers in any language)"
            }
            Role::Writer => {
                "append and wait for the outcome (write commands), read the result, hand over key state (workers)"
            }
            Role::Reader => {
                "read nodes, keys, placement, events and the log (read commands, audit)"
            }
            Role::Consumer => "read the events stream through consumer groups (events --group)",
            Role::Operator => "rebuild --verify, migrate and recover-clock",
            Role::Service => {
                "run the projector and prober (up, pantheon-projector, pantheon-prober)"
            }
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Read-only commands a reader (and a writer waiting for its outcome) uses on read models
/// and streams. Enumerated rather than `+@read`: `@read` includes `SCAN`/`KEYS`/`RANDOMKEY`,
/// which list the names of every key in the database, not only this cluster's.
const READ_COMMANDS: &[&str] = &[
    "get",
    "mget",
    "exists",
    "type",
    "hget",
    "hmget",
    "hgetall",
    "hlen",
    "hexists",
    "hscan",
    "scard",
    "sismember",
    "smismember",
    "smembers",
    "sscan",
    "xrange",
    "xrevrange",
    "xread",
    "xlen",
    "xinfo|stream",
    "xinfo|groups",
    // Server time, to judge which prober replicas' registrations are live.
    "time",
    // A feed snapshot reads a node's key set and its feed's position in one transaction.
    "multi",
    "exec",
    "discard",
];

/// What the services and the operator need: every data command on the cluster's keys,
/// scripts and transactions; never a server-wide or dangerous command.
const SERVICE_CATEGORIES: &[&str] = &[
    "+@read",
    "+@write",
    "+@stream",
    "+@hash",
    "+@set",
    "+@string",
    "+@keyspace",
    "+@scripting",
    "+@transaction",
    "+time",
    "+scan",
    "-@dangerous",
    // Keyless scripting commands that would affect every user of the server.
    "-function",
    "-script|flush",
    "-script|kill",
    // Keyless writes of the @write category that touch the whole server.
    "-swapdb",
    "-flushdb",
    "-flushall",
    "-publish",
    "-spublish",
];

/// The ACL rules (after `reset on >password`) for `role` on cluster `layout` of
/// `deployment`, one token per argument of `ACL SETUSER`.
pub fn rules(role: Role, layout: &Layout, deployment: &Deployment) -> Vec<String> {
    let key = |k: String| format!("~{k}");
    let read_key = |k: String| format!("%R~{k}");
    let all = layout.all_keys_pattern();
    let mut out: Vec<String> = vec!["resetkeys".into(), "resetchannels".into(), "-@all".into()];
    out.extend(connection_rules(role, deployment));
    match role {
        Role::Producer => {
            out.push("+xadd".into());
            out.push(key(layout.log()));
            out.push(selector(&["+get"], &[read_key(layout.schema())]));
        }
        Role::Writer => {
            out.push("+xadd".into());
            out.push(key(layout.log()));
            let mut cmds: Vec<String> = READ_COMMANDS.iter().map(|c| format!("+{c}")).collect();
            cmds.sort();
            out.push(selector_owned(&cmds, &[read_key(all)]));
            // A worker hands over its keys' state with them (docs/adr/0016).
            out.push(selector(
                &["+hset", "+hdel", "+pexpire"],
                &[key(layout.node_handoff_pattern())],
            ));
        }
        Role::Reader => {
            out.extend(READ_COMMANDS.iter().map(|c| format!("+{c}")));
            out.push(read_key(all));
        }
        Role::Consumer => {
            for c in [
                "xreadgroup",
                "xack",
                "xautoclaim",
                "xclaim",
                "xpending",
                "xgroup|create",
                "xrange",
                "multi",
                "exec",
                "discard",
            ] {
                out.push(format!("+{c}"));
            }
            out.push(key(layout.events()));
            // Dead letters: appended (with the ack, in one MULTI/EXEC), never read back here.
            out.push(selector(&["+xadd"], &[key(layout.dead_letters())]));
            out.push(selector(&["+get"], &[read_key(layout.schema())]));
        }
        Role::Operator | Role::Service => {
            out.extend(SERVICE_CATEGORIES.iter().map(|c| (*c).to_owned()));
            out.push(key(all));
            if role == Role::Service {
                // `up --clusters`: the fleet registry (docs/adr/0010).
                out.push(key(layout.fleet_pattern()));
            }
        }
    }
    out
}

/// Keyless commands every role needs to reach the cluster's master: `PING` (the CLI's
/// pre-flight; a `NOPERM` answer is accepted too), `SELECT` for a database other than 0,
/// `ROLE`/`CLUSTER SLOTS` to find the master (`CLUSTER NODES`, `ASKING` while its slot
/// migrates), `WAIT` for durable appends.
fn connection_rules(role: Role, deployment: &Deployment) -> Vec<String> {
    let mut out = vec!["+ping".to_owned()];
    if deployment.url.db != 0 {
        out.push("+select".into());
    }
    match deployment.url.topology {
        Topology::Single(_) => {}
        Topology::Sentinel { .. } => out.push("+role".into()),
        Topology::Cluster { .. } => {
            out.push("+role".into());
            out.push("+cluster|slots".into());
            // A half-finished slot migration: naming it, and following its ASK replies.
            out.push("+cluster|nodes".into());
            out.push("+asking".into());
        }
    }
    let appends = matches!(
        role,
        Role::Producer | Role::Writer | Role::Operator | Role::Service
    );
    if appends && deployment.durability.replicas > 0 {
        out.push("+wait".into());
    }
    out
}

fn selector(commands: &[&str], keys: &[String]) -> String {
    let commands: Vec<String> = commands.iter().map(|c| (*c).to_owned()).collect();
    selector_owned(&commands, keys)
}

fn selector_owned(commands: &[String], keys: &[String]) -> String {
    let mut parts = commands.to_vec();
    parts.extend(keys.iter().cloned());
    format!("({})", parts.join(" "))
}

/// A new random password: 128 bits as 32 hex digits.
pub fn new_password() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Whether `user` is usable as a Redis user name in a printed `ACL SETUSER` line: letters,
/// digits and `. _ - @ :`, 1 to 64 bytes (no quoting or whitespace surprises).
pub fn valid_user(user: &str) -> bool {
    (1..=64).contains(&user.len())
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b':'))
}

/// The arguments of `ACL SETUSER <user> reset on ><password> <rules...>`.
pub fn setuser_args(
    role: Role,
    user: &str,
    password: &str,
    layout: &Layout,
    deployment: &Deployment,
) -> Vec<String> {
    let mut args = vec![
        "ACL".to_owned(),
        "SETUSER".into(),
        user.to_owned(),
        "reset".into(),
        "on".into(),
        format!(">{password}"),
    ];
    args.extend(rules(role, layout, deployment));
    args
}

/// Creates (or resets) user `user` with `role`'s rules: what `pantheon acl` prints, sent as
/// a command (for tests and set-up scripts with an admin connection).
pub fn setuser_cmd(
    role: Role,
    user: &str,
    password: &str,
    layout: &Layout,
    deployment: &Deployment,
) -> redis::Cmd {
    let args = setuser_args(role, user, password, layout, deployment);
    let mut cmd = redis::cmd(&args[0]);
    for a in &args[1..] {
        cmd.arg(a);
    }
    cmd
}

/// One command of each kind `role` sends, on the key it sends it to: what [`check`] asks
/// Redis about. Arguments are valid enough for the ACL check, which happens when a command
/// is queued in a transaction, before it would run.
fn probes(role: Role, layout: &Layout) -> Vec<Cmd> {
    let c = |parts: &[&str]| {
        let mut cmd = redis::cmd(parts[0]);
        for p in &parts[1..] {
            cmd.arg(*p);
        }
        cmd
    };
    let (log, events, dead) = (layout.log(), layout.events(), layout.dead_letters());
    let append = c(&["XADD", &log, "*", "acl", "check"]);
    let reads = [
        c(&["HGET", &layout.checkpoint(), "last_id"]),
        c(&["HGETALL", &layout.nodes()]),
        c(&["HLEN", &layout.keymap()]),
        c(&["XREVRANGE", &events, "+", "-", "COUNT", "1"]),
        c(&["XRANGE", &layout.rejected(), "-", "+", "COUNT", "1"]),
        c(&["XRANGE", &log, "-", "+", "COUNT", "1"]),
    ];
    match role {
        Role::Producer => vec![append],
        Role::Writer => std::iter::once(append)
            .chain(reads)
            .chain([c(&[
                "HSET",
                &layout
                    .node_handoff(&pantheon_domain::NodeId::new("acl-check").expect("a valid id")),
                "k",
                "v",
            ])])
            .collect(),
        Role::Reader => reads.into(),
        Role::Consumer => vec![
            c(&["XGROUP", "CREATE", &events, "acl-check", "$", "MKSTREAM"]),
            c(&[
                "XREADGROUP",
                "GROUP",
                "g",
                "c",
                "COUNT",
                "1",
                "STREAMS",
                &events,
                ">",
            ]),
            c(&["XACK", &events, "g", "0-1"]),
            c(&["XAUTOCLAIM", &events, "g", "c", "1000", "0-0"]),
            c(&["XPENDING", &events, "g", "-", "+", "1"]),
            c(&["XADD", &dead, "*", "acl", "check"]),
        ],
        Role::Operator | Role::Service => {
            let mut out = vec![
                append,
                c(&["XGROUP", "CREATE", &log, "projector", "$", "MKSTREAM"]),
                c(&[
                    "XREADGROUP",
                    "GROUP",
                    "projector",
                    "p",
                    "COUNT",
                    "1",
                    "STREAMS",
                    &log,
                    ">",
                ]),
                c(&["XACK", &log, "projector", "0-1"]),
                c(&["SET", &layout.lease(), "x", "NX", "PX", "1000"]),
                c(&["PEXPIRE", &layout.lease(), "1000"]),
                c(&[
                    "EVALSHA",
                    "0000000000000000000000000000000000000000",
                    "1",
                    &layout.checkpoint(),
                ]),
                c(&["HSET", &layout.probers(), "acl", "check"]),
                // The attested append of service entries (docs/adr/0011).
                c(&["SCRIPT", "LOAD", "return 1"]),
                c(&["XADD", &layout.attest(), "*", "acl", "check"]),
                c(&["XADD", &events, "*", "acl", "check"]),
                c(&["XTRIM", &log, "MINID", "0-1"]),
                c(&["SADD", &layout.unowned(), "x"]),
                c(&["DEL", &layout.scratch("acl-check").keymap()]),
                c(&["TIME"]),
            ];
            out.extend(reads);
            out
        }
    }
}

/// Asks Redis whether the connected user may do `role`'s job on `layout`, without doing
/// any of it: one command of each kind is queued in a transaction (Redis checks the ACL
/// when queuing) that is then discarded. The first missing permission comes back as the
/// `NOPERM` error [`name_denied`] describes. Only for roles allowed `MULTI` (consumer,
/// operator, service); for the others it stops at the refused `MULTI`. `con` must not be shared with other callers
/// while this runs (a transaction is per connection): pass a dedicated connection.
pub async fn check<C: redis::aio::ConnectionLike + Send>(
    con: &mut C,
    role: Role,
    layout: &Layout,
    user: &str,
) -> Result<(), crate::StoreError> {
    // MULTI alone first: were it refused, the probes would run for real.
    let multi = redis::cmd("MULTI");
    let reply = con.req_packed_command(&multi).await?;
    if let Some(e) = name_denied(std::slice::from_ref(&reply), [&multi].into_iter(), user) {
        return Err(e.into());
    }
    let mut pipe = redis::pipe();
    let probes = probes(role, layout);
    for p in &probes {
        pipe.add_command(p.clone());
    }
    pipe.cmd("DISCARD");
    let values: Vec<Value> = con.req_packed_commands(&pipe, 0, probes.len() + 1).await?;
    match name_denied_in_pipeline(&values, &pipe, user) {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Redis's `NOPERM` says neither who nor (for a key) which key. When a reply among `values`
/// is a `NOPERM`, the error to return instead: it names the user, the command and its first
/// key, and keeps the code `NOPERM` (so callers still recognise it and never retry it).
/// `cmds` are the commands the replies answer, in order.
pub fn name_denied<'a>(
    values: &[Value],
    mut cmds: impl Iterator<Item = &'a Cmd>,
    user: &str,
) -> Option<RedisError> {
    values.iter().enumerate().find_map(|(i, v)| match v {
        Value::ServerError(e) if e.code() == "NOPERM" => {
            let (command, key) = cmds.nth(i).map(command_and_key).unwrap_or_default();
            let key = key.map_or_else(String::new, |k| format!(" on key {k}"));
            Some(RedisError::from((
                ErrorKind::Server(ServerErrorKind::NoPerm),
                "NOPERM",
                format!(
                    "Redis user {user:?} is not allowed to run {command}{key} ({}); see \
                     `pantheon acl <role>` for what each role may do",
                    e.details().unwrap_or("no permission")
                ),
            )))
        }
        _ => None,
    })
}

/// [`name_denied`] for the replies of a pipeline (a transaction's replies come as one
/// array, so its commands cannot be matched one to one: the first command is named).
pub fn name_denied_in_pipeline(
    values: &[Value],
    pipeline: &Pipeline,
    user: &str,
) -> Option<RedisError> {
    if pipeline.is_transaction() {
        let nested: Vec<Value> = values
            .iter()
            .flat_map(|v| match v {
                Value::Array(items) => items.clone(),
                other => vec![other.clone()],
            })
            .collect();
        return name_denied(&nested, pipeline.cmd_iter(), user);
    }
    name_denied(values, pipeline.cmd_iter(), user)
}

/// The command's name (upper case, with its subcommand for XGROUP and the like) and the
/// first key it names, for messages.
fn command_and_key(cmd: &Cmd) -> (String, Option<String>) {
    let args: Vec<String> = cmd
        .args_iter()
        .map(|a| match a {
            redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
            // A cursor (SCAN), or a kind of argument newer than this code.
            _ => "0".to_owned(),
        })
        .collect();
    let name = args.first().map_or_else(String::new, |n| n.to_uppercase());
    let key_at = |i: usize| args.get(i).cloned();
    match name.as_str() {
        "XGROUP" | "XINFO" | "CLUSTER" | "SCRIPT" => {
            let sub = args.get(1).map_or_else(String::new, |s| s.to_uppercase());
            (format!("{name} {sub}"), key_at(2))
        }
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" => (name, key_at(3)),
        "XREAD" | "XREADGROUP" => {
            let streams = args.iter().position(|a| a.eq_ignore_ascii_case("STREAMS"));
            (name, streams.and_then(|i| key_at(i + 1)))
        }
        "PING" | "WAIT" | "TIME" | "ROLE" | "MULTI" | "EXEC" | "SELECT" => (name, None),
        _ => (name, key_at(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TlsFiles;

    fn single() -> Deployment {
        Deployment::new("redis://127.0.0.1:6380", &TlsFiles::default()).unwrap_or_else(|e| {
            panic!("{e}");
        })
    }

    #[test]
    fn the_producer_may_only_append_to_the_log() {
        let layout = Layout::new("pantheon", "prod");
        let rules = rules(Role::Producer, &layout, &single()).join(" ");
        assert_eq!(
            rules,
            "resetkeys resetchannels -@all +ping +xadd ~pantheon:{prod}:log \
             (+get %R~pantheon:{prod}:schema)"
        );
    }

    #[test]
    fn every_key_rule_is_inside_the_cluster() {
        let layout = Layout::new("pantheon", "prod");
        for role in Role::ALL {
            for token in rules(role, &layout, &single()) {
                for part in token.trim_matches(['(', ')']).split(' ') {
                    if let Some(i) = part.find('~') {
                        let pattern = &part[i + 1..];
                        // The service may also heartbeat into the fleet registries
                        // (`up --clusters`), and nothing else outside the cluster.
                        let fleet = role == Role::Service && pattern == "pantheon:{fleet}:*";
                        assert!(
                            pattern.starts_with("pantheon:{prod}:") || fleet,
                            "{role}: {part}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn roles_parse_by_name() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.name()), Some(role));
        }
        assert_eq!(Role::parse("admin"), None);
    }
}
