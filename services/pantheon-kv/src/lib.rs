//! `pantheon-kv`: a sharded in-memory key-value cache built on the worker library
//! ([`pantheon_worker`]). It is the example of issue 22: workers own keys through Pantheon,
//! a router sends each request to the key's owner.
//!
//! ```text
//! pantheon-kv [GLOBAL FLAGS] worker --node ID --listen ADDR [--advertise URL] [--weight N]
//!                                   [--state-file PATH] [--max-value-bytes N] [--leave-timeout-ms N]
//! pantheon-kv [GLOBAL FLAGS] router --listen ADDR [--retry-ms N] [--forward-timeout-ms N]
//!                                   [--max-value-bytes N]
//! ```
//!
//! # Flags
//!
//! Global (before or after the subcommand), read exactly like the `pantheon` CLI's
//! ([`pantheon_config::load`]: defaults ← `pantheon.toml` ← `PANTHEON_*` ← flags):
//!
//! * `--redis-url URL` — the Redis holding the cluster (`PANTHEON_REDIS_URL`; default
//!   `redis://127.0.0.1:6379`; Sentinel, Cluster and TLS URLs as in the README);
//! * `--cluster NAME` — the Pantheon cluster (`PANTHEON_CLUSTER`; default `default`);
//! * `--prefix PREFIX` — the key prefix (`PANTHEON_PREFIX`; default `pantheon`);
//! * `--config PATH` — the configuration file (`PANTHEON_CONFIG`; default `./pantheon.toml`
//!   if present). TLS files, durability and `client.connect_timeout_ms` come from there;
//! * `--log-format text|json` — log lines on stderr (`PANTHEON_LOG__FORMAT`);
//! * `--verbose` — debug lines (`RUST_LOG` overrides the filter; default `info`).
//!
//! `worker`:
//!
//! * `--node ID` — the node id it joins as (required);
//! * `--listen ADDR` — where it serves `/kv/{key}` and `/health` (required; port 0 picks one,
//!   and the bound address is printed);
//! * `--advertise URL` — scheme, host and port the prober and the router use to reach it
//!   (default `http://` + the bound address; set it when listening on `0.0.0.0`). The node
//!   joins with `<URL>/health`;
//! * `--weight N` — its share of keys, `1..=100` (default: the cluster's, 1);
//! * `--state-file PATH` — where the worker library keeps its feed position (default
//!   `<temp dir>/pantheon-kv-<cluster>-<node>.json`). Values are never written there;
//! * `--max-value-bytes N` — the largest value accepted (default 1 MiB, [`DEFAULT_MAX_VALUE`]);
//!   a larger `PUT` is answered 413;
//! * `--leave-timeout-ms N` — on SIGTERM, how long the drain, hand-off and leave may take
//!   (default 10,000); past it the worker leaves anyway.
//!
//! `router`:
//!
//! * `--listen ADDR` — where it serves `/kv/{key}` and `/health` (required);
//! * `--retry-ms N` — how long one request may retry through a hand-off gap (default 2,000,
//!   [`DEFAULT_RETRY`]), then 503;
//! * `--forward-timeout-ms N` — the timeout of one forwarded request (default 1,000);
//! * `--max-value-bytes N` — as for the worker: 413 without asking a worker.
//!
//! Exit codes: 0 (including after SIGTERM), 1 a failure (Redis unreachable, the address
//! taken), 64 bad usage or configuration (an unknown flag, a bad address, a bad `PANTHEON_*`).
//!
//! # HTTP
//!
//! * `PUT /kv/{key}` — the body is the value → 204. Through the router, the first `PUT` of a
//!   key assigns it (`distribute`; assigning an assigned key changes nothing), so its owner
//!   learns of it from its feed.
//! * `GET /kv/{key}` → 200 with the value, or 404. The router answers 404 itself, without
//!   asking a worker, for a key that was never assigned.
//! * `GET /health` → 200 (the worker's is what the prober probes). A worker's answer carries
//!   `X-Pantheon-Load`: its requests per second (docs/adr/0018).
//!
//! # Hot keys: read replicas
//!
//! With load-aware placement on (the policy's `load_epsilon`, docs/adr/0018), a key whose
//! reads alone outweigh a node's fair share gets read replicas. The router then sends its
//! `GET`s to the owner and each replica in turn, with `X-Pantheon-Read: replica` to a replica.
//! A replica answers from its copy of the owner's value (fetched with the owner's token, then
//! kept for 1 s: [`pantheon_worker::Replicas`]), with `X-Pantheon-Replica-Of` (the owner) and
//! `X-Pantheon-Age-Ms` (the copy's age). A node that is no replica of the key, or cannot
//! reach the owner, answers 421 and the router asks the owner. What replicas give: a value at
//! most about a second older than the owner's. What they do not: read-your-writes (a `PUT`
//! goes to the owner, and a replica may answer the older value for up to a second).
//!
//! Keys are path segments: percent-encode them (`user%2F1` for `user/1`). Every worker answer
//! carries `X-Pantheon-Node` (the worker's id) and `X-Pantheon-Token` (the token it owns the
//! key with, `0` when it does not own it); the router passes them on.
//!
//! # Who serves a key: the token rule
//!
//! A worker serves a request for `key` only if it owns the key *now*, as its feed says
//! ([`pantheon_worker::Worker::owns`] gives the token `mine` it acquired the key with), and
//! the request's `X-Pantheon-Token` (the token the router located the owner with, `req`)
//! does not say that either side is out of date, and only on a feed read to the end moments
//! ago:
//!
//! 1. not owned → **421** (`not the owner`);
//! 2. `req < mine` → **421**: the router located with a view older than this owner's, and
//!    locates again (ADR 0015: refuse a smaller token);
//! 3. `req == mine`, or no token (a direct client) → served (rule 5 permitting);
//! 4. `req > mine` → the router has seen a newer token for this node than the one it holds
//!    the key with. Either the cluster's token floor rose (another node died or left: ADR
//!    0015, a key's token grows when *other* keys move; nothing changed here), or this node
//!    lost the key and got it back and has not read those feed lines yet: a **stale owner**,
//!    whose value may be older than writes the interim owner took. A node that got keys
//!    back became a member again, so its node token (its record's `token`) is then larger
//!    than `mine`. The worker reads its record (one Redis read, then remembered for that
//!    `req`): not a member, or a node token above `mine` → **421** (`stale owner`); else the
//!    floor explains it → served;
//! 5. and only on a **current feed**: when the worker has not read its feed to the end within
//!    the last 500 ms ([`FEED_FRESH`]; on a quiet feed one Redis read per 500 ms checks that
//!    no line waits, [`pantheon_worker::OwnedKeys::current_within`]) → **421** (`feed
//!    behind`). A worker that was paused (SIGSTOP, a stalled machine) or cut off from Redis
//!    long enough to be declared dead, or to have its hand-off forced, may still list a key
//!    that moved away, with the very token a late request carries; it refuses until its feed
//!    reader has caught up, within milliseconds once it runs and reaches Redis.
//!
//! Reads and writes follow the same rule. The check and the read or write of the value happen
//! under one lock with the value map, and releasing keys takes that lock too, so a value is
//! never written for a key that was just released.
//!
//! A node that kept its membership, lost a key and got it back (a join then a death of the
//! node that took it) while its feed reader was stuck keeps `mine` and a node token below it:
//! rule 4 cannot see that, rule 5 refuses it unless the feed was read to the end within
//! [`FEED_FRESH`].
//!
//! # What is kept, what is lost
//!
//! Values live in the worker's memory only: at most `--max-value-bytes` each, no limit on the
//! count (size the workers for the keys they own). A planned move (a drain, a SIGTERM, a worker
//! joining and taking its share) hands each value over to the new owner
//! (`docs/adr/0016-planned-moves-hand-off.md`; [`values::Values`] implements
//! `on_handoff`/`on_state`): it is not lost. A forced hand-off (a worker that did not release
//! within the cluster's `handoff_timeout`) moves keys without their values.
//! **A worker killed with SIGKILL (or crashing) loses its values**: this is a cache without
//! copies that outlive the owner (a hot key's read replicas keep theirs for a second, to serve
//! reads, not to take over). Its keys move to the others within detection time and read 404 until written
//! again.
//!
//! On SIGTERM (or SIGINT) a worker drains, hands every value over, leaves the cluster
//! (bounded by `--leave-timeout-ms`), stops and exits 0; a second signal exits at once (130).
//!
//! Modules: [`cli`] (flags), [`rule`] (the token rule, pure), [`values`] (the value map and the ownership callbacks),
//! [`worker`] (the worker's HTTP side and its shutdown), [`router`] (locating and
//! forwarding with retries), [`run`] (configuration, connection, exit codes).

pub mod cli;
pub mod router;
pub mod rule;
pub mod run;
pub mod values;
pub mod worker;

use std::time::Duration;

pub use run::main;

/// A worker's base URL: the health URL it joined with, without its `/health`.
pub(crate) fn base_url(health_url: &str) -> &str {
    health_url.strip_suffix("/health").unwrap_or(health_url)
}

/// The URL of `key` on the worker at `base` (the key percent-encoded as one path segment).
pub(crate) fn kv_url(base: &str, key: &str) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    format!("{base}/kv/{}", utf8_percent_encode(key, NON_ALPHANUMERIC))
}

/// The node that answered (worker answers only).
pub const NODE_HEADER: &str = "x-pantheon-node";
/// The ownership token: on a request, the one the router located the owner with; on a worker
/// answer, the one the worker owns the key with (`0`: it does not own it).
pub const TOKEN_HEADER: &str = "x-pantheon-token";
/// On a `GET`, `replica` asks a hot key's read replica for its copy (the router sends a share
/// of a hot key's reads so, docs/adr/0018).
pub const READ_HEADER: &str = "x-pantheon-read";
/// On a replica's answer: the owner its copy came from.
pub const REPLICA_OF_HEADER: &str = "x-pantheon-replica-of";
/// On a replica's answer: how old its copy is, in milliseconds.
pub const AGE_MS_HEADER: &str = "x-pantheon-age-ms";
/// The largest value, by default: 1 MiB.
pub const DEFAULT_MAX_VALUE: usize = 1024 * 1024;
/// How long the router retries one request through a hand-off gap, by default.
pub const DEFAULT_RETRY: Duration = Duration::from_secs(2);
/// A worker serves only if it has read its feed to the end within this (rule 5 of the crate
/// docs): shorter than the quickest move of a silent node's keys (its death detection, about
/// 1.5 s with the fastest prober settings; the policy's `handoff_timeout`, 10 s by default).
pub const FEED_FRESH: Duration = Duration::from_millis(500);
