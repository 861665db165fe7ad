//! Log entries: the inputs of the fold, and their wire format.
//!
//! An entry is flat field/value pairs, so `redis-cli XADD` is a valid producer:
//!
//! ```text
//! XADD pantheon:{demo}:log * type join node node-1 address http://10.0.0.5 port 8080 path health
//! XADD pantheon:{demo}:log * type assign key user:1 key user:2 key user:3
//! ```
//!
//! `v` is the schema version (absent means 1, the only version so far). `cmd` is an optional
//! client command id; a repeated `cmd` within the de-duplication window is applied once.

use std::fmt;

use url::Url;

use crate::health::ProbeError;
use crate::ids::{NodeId, NodeIdError};
use crate::limits::*;
use crate::placement::Strategy;
use crate::policy::PolicyChange;
use crate::wire::{Fields, clip};

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// One decoded log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Client command id for de-duplication of retried writes.
    pub cmd: Option<String>,
    pub command: Command,
}

/// What an entry asks for, or (for `Probe`) what a prober observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A node joins (or re-joins: a new epoch, health reset) with its health URL.
    Join {
        node: NodeId,
        url: String,
        weight: Option<u32>,
        /// The node releases keys before a planned move gives them to another node (field
        /// `handoff 1`; the worker library joins so; see `docs/adr/0016-planned-moves-hand-off.md`).
        handoff: bool,
    },
    Leave {
        node: NodeId,
    },
    Drain {
        node: NodeId,
    },
    Undrain {
        node: NodeId,
    },
    Weight {
        node: NodeId,
        weight: u32,
    },
    Assign {
        keys: Vec<String>,
    },
    Unassign {
        keys: Vec<String>,
    },
    Probe(ProbeResult),
    Policy(PolicyChange),
    /// The set of live prober replicas changed (written by the projector's prober watchdog).
    Probers {
        alive: Vec<String>,
    },
    /// A probe result of a prober that confirms deaths: a `probe` entry with a `confirm`
    /// field (see [`crate::confirm`]).
    Checked(crate::confirm::CheckedProbe),
    /// A prober's report on its own health: `prober_degraded` / `prober_recovered`.
    ProberHealth(crate::confirm::ProberHealth),
    /// An entry ran ahead of Redis's clock (written by the projector leader; see
    /// [`crate::clock`]).
    ClockSkew(crate::clock::ClockSkew),
    /// The first entry of a new log generation (written by `pantheon recover-clock`).
    Generation(crate::clock::Generation),
    /// The first entry of a generation re-seeded into a Redis that came back empty (written by
    /// the projector leader; see [`crate::restore`]).
    Restored(crate::restore::Restored),
    /// A node that hands off released these keys (after storing their state): the ones it
    /// is still handing off move to their new owners (ADR 0016).
    Released {
        node: NodeId,
        keys: Vec<String>,
    },
    /// The projector leader forces the hand-off of every key `node` is handing off: it did
    /// not release them within the policy's `handoff_timeout`.
    HandoffForced {
        node: NodeId,
    },
    /// Nodes' loads as their health answers gave them (`X-Pantheon-Load`), written by a
    /// prober: each node with the text it sent. The fold refuses a text that is not a load
    /// with a `load_refused` event and keeps the rest (see [`crate::load`]).
    Loads {
        reports: Vec<(NodeId, String)>,
    },
    /// A worker's hottest keys with their loads in thousandths (the worker library reports
    /// its top keys per interval; at most [`crate::load::MAX_KEY_LOADS`]).
    KeyLoads {
        node: NodeId,
        keys: Vec<(String, u64)>,
    },
    /// Log time passes: written by the projector leader when Redis's clock has passed a
    /// damped node's reuse time and no entry has carried log time there (a quiet cluster
    /// writes nothing). Changes nothing but time.
    Tick,
}

/// One health probe's result, as a prober reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub node: NodeId,
    /// The node epoch the prober saw; results of older epochs are ignored.
    pub epoch: u64,
    pub ok: bool,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    pub latency_ms: u32,
    pub error: Option<ProbeError>,
    /// Which prober replica sent it.
    pub prober: Option<String>,
}

/// Why an entry could not be decoded. Every variant reads as a sentence for the `rejected`
/// stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("missing field {0:?}")]
    MissingField(&'static str),
    #[error("field {0:?} appears more than once")]
    DuplicateField(&'static str),
    #[error(
        "unknown entry type {0:?} (expected join, leave, drain, undrain, weight, assign, unassign, released, probe, policy, probers, prober_degraded, prober_recovered, clock_skew, generation, restored, handoff_forced, loads, key_loads or tick)"
    )]
    UnknownType(String),
    #[error("unknown schema version {0:?} (this build reads version {SCHEMA_VERSION})")]
    UnknownVersion(String),
    #[error("unknown field {field:?} for a {kind} entry")]
    UnknownField { field: String, kind: &'static str },
    #[error("field {field:?} is not valid UTF-8")]
    InvalidUtf8 { field: String },
    #[error("field {field:?} is {len} bytes, longer than the limit of {max}")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("entry has {count} fields, more than the limit of {max}")]
    TooManyFields { count: usize, max: usize },
    #[error("batch has {count} keys, more than the limit of {max}")]
    TooManyKeys { count: usize, max: usize },
    #[error("batch has no keys (give one or more \"key\" fields)")]
    EmptyBatch,
    #[error("key is empty")]
    EmptyKey,
    #[error("field {field:?} must be a stream entry id (<ms>-<seq>), got {value:?}")]
    BadEntryId { field: &'static str, value: String },
    #[error("field {field:?} must be a number, got {value:?}")]
    BadNumber { field: &'static str, value: String },
    #[error("field {field:?} is {value}, outside {min}..={max}")]
    OutOfRange {
        field: &'static str,
        value: u64,
        min: u32,
        max: u32,
    },
    #[error("bad port {0:?} (expected 1..=65535)")]
    BadPort(String),
    #[error("bad health URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("health URL scheme {0:?} is not http or https")]
    NotHttp(String),
    #[error("give either \"url\" or \"address\"/\"port\"/\"path\", not both")]
    UrlAndAddress,
    #[error("field {field:?} must be true/false or 1/0, got {value:?}")]
    BadBool { field: &'static str, value: String },
    #[error(
        "unknown probe error kind {0:?} (expected refused, timeout, status, protocol or policy)"
    )]
    BadProbeError(String),
    #[error("unknown placement strategy {0:?} (expected ring or rendezvous)")]
    BadStrategy(String),
    #[error(
        "a policy entry must set at least one of fall, rise, strategy, vnodes, panic, damp_penalty, damp_suppress, damp_reuse, damp_half_life, damp_max_suppress, handoff_timeout, load_epsilon"
    )]
    EmptyPolicy,
    #[error("bad node id: {0}")]
    BadNodeId(#[from] NodeIdError),
    #[error("each \"node\" (or \"key\") must be followed by its \"load\"")]
    UnpairedLoad,
    #[error("{0}")]
    BadLoad(crate::load::LoadError),
}

const COMMON: [&str; 3] = ["v", "type", "cmd"];

pub(crate) fn allowed(extra: &[&'static str]) -> Vec<&'static str> {
    COMMON.iter().chain(extra).copied().collect()
}

impl LogEntry {
    pub fn new(command: Command) -> Self {
        Self { cmd: None, command }
    }

    pub fn with_cmd(mut self, cmd: impl Into<String>) -> Self {
        self.cmd = Some(cmd.into());
        self
    }

    /// The entry's `type` field value.
    pub fn kind(&self) -> &'static str {
        self.command.kind()
    }

    /// Decodes raw stream fields (bytes, as Redis returns them).
    pub fn decode<K: AsRef<[u8]>, V: AsRef<[u8]>>(raw: &[(K, V)]) -> Result<Self, DecodeError> {
        let f = Fields::new(raw)?;
        if let Some(v) = f.opt("v")?
            && v != "1"
        {
            return Err(DecodeError::UnknownVersion(clip(v)));
        }
        let cmd = f.opt("cmd")?.map(str::to_owned);
        let kind = f.req("type")?;
        let command = match kind {
            "join" => decode_join(&f)?,
            "leave" | "drain" | "undrain" => {
                let kind: &'static str = match kind {
                    "leave" => "leave",
                    "drain" => "drain",
                    _ => "undrain",
                };
                f.only(kind, &allowed(&["node"]))?;
                let node = node(&f)?;
                match kind {
                    "leave" => Command::Leave { node },
                    "drain" => Command::Drain { node },
                    _ => Command::Undrain { node },
                }
            }
            "weight" => {
                f.only("weight", &allowed(&["node", "weight"]))?;
                let weight = f
                    .opt_ranged("weight", 1, MAX_WEIGHT)?
                    .ok_or(DecodeError::MissingField("weight"))?;
                Command::Weight {
                    node: node(&f)?,
                    weight,
                }
            }
            "assign" | "unassign" => {
                let assign = kind == "assign";
                f.only(
                    if assign { "assign" } else { "unassign" },
                    &allowed(&["key"]),
                )?;
                let keys = decode_keys(&f)?;
                if assign {
                    Command::Assign { keys }
                } else {
                    Command::Unassign { keys }
                }
            }
            "probe" => decode_probe(&f)?,
            "policy" => decode_policy(&f)?,
            "probers" => decode_probers(&f)?,
            "tick" => {
                f.only("tick", &allowed(&[]))?;
                Command::Tick
            }
            "released" => {
                f.only("released", &allowed(&["node", "key"]))?;
                Command::Released {
                    node: node(&f)?,
                    keys: decode_keys(&f)?,
                }
            }
            "handoff_forced" => {
                f.only("handoff_forced", &allowed(&["node"]))?;
                Command::HandoffForced { node: node(&f)? }
            }
            "loads" => decode_loads(&f)?,
            "key_loads" => decode_key_loads(&f)?,
            "prober_degraded" | "prober_recovered" => Command::ProberHealth(
                crate::confirm::ProberHealth::decode(&f, kind == "prober_degraded")?,
            ),
            "clock_skew" => crate::clock::decode_clock_skew(&f)?,
            "generation" => crate::clock::decode_generation(&f)?,
            "restored" => crate::restore::decode_restored(&f)?,
            other => return Err(DecodeError::UnknownType(clip(other))),
        };
        Ok(Self { cmd, command })
    }

    /// Encodes to flat field/value pairs in a fixed order. `decode(encode(e)) == e`.
    pub fn encode(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("v", SCHEMA_VERSION.to_string()),
            ("type", self.kind().to_owned()),
        ];
        if let Some(cmd) = &self.cmd {
            out.push(("cmd", cmd.clone()));
        }
        match &self.command {
            Command::Join {
                node,
                url,
                weight,
                handoff,
            } => {
                out.push(("node", node.to_string()));
                out.push(("url", url.clone()));
                if let Some(w) = weight {
                    out.push(("weight", w.to_string()));
                }
                if *handoff {
                    out.push(("handoff", "1".to_owned()));
                }
            }
            Command::Leave { node }
            | Command::Drain { node }
            | Command::Undrain { node }
            | Command::HandoffForced { node } => {
                out.push(("node", node.to_string()));
            }
            Command::Released { node, keys } => {
                out.push(("node", node.to_string()));
                out.extend(keys.iter().map(|k| ("key", k.clone())));
            }
            Command::Weight { node, weight } => {
                out.push(("node", node.to_string()));
                out.push(("weight", weight.to_string()));
            }
            Command::Assign { keys } | Command::Unassign { keys } => {
                out.extend(keys.iter().map(|k| ("key", k.clone())));
            }
            Command::Probe(p) => encode_probe(p, &mut out),
            Command::Checked(c) => {
                encode_probe(&c.result, &mut out);
                out.push(("confirm", if c.confirm { "1" } else { "0" }.to_owned()));
            }
            Command::ProberHealth(h) => h.encode(&mut out),
            Command::ClockSkew(c) => c.encode(&mut out),
            Command::Generation(g) => g.encode(&mut out),
            Command::Restored(r) => r.encode(&mut out),
            Command::Policy(c) => {
                if let Some(v) = c.fall {
                    out.push(("fall", v.to_string()));
                }
                if let Some(v) = c.rise {
                    out.push(("rise", v.to_string()));
                }
                if let Some(v) = c.strategy {
                    out.push(("strategy", v.as_str().to_owned()));
                }
                if let Some(v) = c.vnodes {
                    out.push(("vnodes", v.to_string()));
                }
                if let Some(v) = c.panic {
                    out.push(("panic", v.to_string()));
                }
                for (name, v) in c.damping_fields() {
                    if let Some(v) = v {
                        out.push((name, v.to_string()));
                    }
                }
                if let Some(v) = c.handoff_timeout {
                    out.push(("handoff_timeout", v.to_string()));
                }
                if let Some(v) = c.load_epsilon {
                    out.push(("load_epsilon", v.to_string()));
                }
            }
            Command::Probers { alive } => {
                out.push(("alive", alive.join(" ")));
            }
            Command::Loads { reports } => {
                for (node, load) in reports {
                    out.push(("node", node.to_string()));
                    out.push(("load", load.clone()));
                }
            }
            Command::KeyLoads { node, keys } => {
                out.push(("node", node.to_string()));
                for (key, load) in keys {
                    out.push(("key", key.clone()));
                    out.push(("load", crate::load::format_load(*load)));
                }
            }
            Command::Tick => {}
        }
        out
    }
}

/// Entry types only the service writes: applied only with an [`Origin`] that may write them
/// (see [`crate::origin`]). Everything else is a user-facing request any producer may send.
///
/// [`Origin`]: crate::origin::Origin
pub const SERVICE_TYPES: [&str; 10] = [
    "probe",
    "loads",
    "handoff_forced",
    "restored",
    "probers",
    "prober_degraded",
    "prober_recovered",
    "tick",
    "clock_skew",
    "generation",
];

/// Whether a raw `type` value names a service-only entry type.
pub fn is_service_type(kind: &[u8]) -> bool {
    SERVICE_TYPES.iter().any(|t| t.as_bytes() == kind)
}

impl Command {
    /// Whether only the service may write this entry (its type is in [`SERVICE_TYPES`]).
    pub fn is_service_only(&self) -> bool {
        is_service_type(self.kind().as_bytes())
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Command::Join { .. } => "join",
            Command::Leave { .. } => "leave",
            Command::Drain { .. } => "drain",
            Command::Undrain { .. } => "undrain",
            Command::Weight { .. } => "weight",
            Command::Assign { .. } => "assign",
            Command::Unassign { .. } => "unassign",
            Command::Probe(_) => "probe",
            Command::Policy(_) => "policy",
            Command::Probers { .. } => "probers",
            Command::Tick => "tick",
            Command::Checked(_) => "probe",
            Command::ProberHealth(h) => h.kind(),
            Command::ClockSkew(_) => "clock_skew",
            Command::Generation(_) => "generation",
            Command::Restored(_) => "restored",
            Command::Released { .. } => "released",
            Command::HandoffForced { .. } => "handoff_forced",
            Command::Loads { .. } => "loads",
            Command::KeyLoads { .. } => "key_loads",
        }
    }
}

impl fmt::Display for LogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.encode().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

fn encode_probe(p: &ProbeResult, out: &mut Vec<(&'static str, String)>) {
    out.push(("node", p.node.to_string()));
    out.push(("epoch", p.epoch.to_string()));
    out.push(("ok", if p.ok { "1" } else { "0" }.to_owned()));
    if let Some(s) = p.status {
        out.push(("status", s.to_string()));
    }
    out.push(("latency", p.latency_ms.to_string()));
    if let Some(e) = p.error {
        out.push(("error", e.as_str().to_owned()));
    }
    if let Some(prober) = &p.prober {
        out.push(("prober", prober.clone()));
    }
}

/// `node n1 load 12.5 node n2 load 3 …`: pairs in order. The load texts stay as sent (the
/// fold refuses bad ones per node); each is at most 64 bytes.
fn decode_loads(f: &Fields<'_>) -> Result<Command, DecodeError> {
    f.only("loads", &allowed(&["node", "load"]))?;
    let mut reports = Vec::new();
    let mut pending: Option<NodeId> = None;
    for &(k, v) in f.pairs() {
        match (k, pending.take()) {
            ("node", None) => pending = Some(NodeId::new(v)?),
            ("load", Some(node)) => {
                if v.len() > MAX_LOAD_TEXT_BYTES {
                    return Err(DecodeError::TooLong {
                        field: "load",
                        len: v.len(),
                        max: MAX_LOAD_TEXT_BYTES,
                    });
                }
                reports.push((node, v.to_owned()));
            }
            ("node" | "load", _) => return Err(DecodeError::UnpairedLoad),
            _ => {}
        }
    }
    if pending.is_some() {
        return Err(DecodeError::UnpairedLoad);
    }
    if reports.is_empty() {
        return Err(DecodeError::MissingField("node"));
    }
    Ok(Command::Loads { reports })
}

/// `node n1 key k1 load 12.5 key k2 load 3 …`: the key/load pairs in order.
fn decode_key_loads(f: &Fields<'_>) -> Result<Command, DecodeError> {
    f.only("key_loads", &allowed(&["node", "key", "load"]))?;
    let node = node(f)?;
    let mut keys = Vec::new();
    let mut pending: Option<&str> = None;
    for &(k, v) in f.pairs() {
        match (k, pending.take()) {
            ("key", None) => pending = Some(check_key(v)?),
            ("load", Some(key)) => {
                let load = crate::load::parse_load(v).map_err(DecodeError::BadLoad)?;
                keys.push((key.to_owned(), load));
            }
            ("key" | "load", _) => return Err(DecodeError::UnpairedLoad),
            _ => {}
        }
    }
    if pending.is_some() {
        return Err(DecodeError::UnpairedLoad);
    }
    if keys.len() > crate::load::MAX_KEY_LOADS {
        return Err(DecodeError::TooManyKeys {
            count: keys.len(),
            max: crate::load::MAX_KEY_LOADS,
        });
    }
    Ok(Command::KeyLoads { node, keys })
}

fn node(f: &Fields<'_>) -> Result<NodeId, DecodeError> {
    Ok(NodeId::new(f.req("node")?)?)
}

/// A `key` field's value: 1 to [`MAX_KEY_BYTES`] bytes.
fn check_key(v: &str) -> Result<&str, DecodeError> {
    if v.is_empty() {
        return Err(DecodeError::EmptyKey);
    }
    if v.len() > MAX_KEY_BYTES {
        return Err(DecodeError::TooLong {
            field: "key",
            len: v.len(),
            max: MAX_KEY_BYTES,
        });
    }
    Ok(v)
}

fn decode_keys(f: &Fields<'_>) -> Result<Vec<String>, DecodeError> {
    let mut keys = Vec::new();
    for &(k, v) in f.pairs() {
        if k != "key" {
            continue;
        }
        keys.push(check_key(v)?.to_owned());
    }
    if keys.is_empty() {
        return Err(DecodeError::EmptyBatch);
    }
    if keys.len() > MAX_BATCH_KEYS {
        return Err(DecodeError::TooManyKeys {
            count: keys.len(),
            max: MAX_BATCH_KEYS,
        });
    }
    Ok(keys)
}

/// Checks a health URL: absolute, http or https, with a host. Returns it normalised.
pub fn check_health_url(raw: &str) -> Result<String, DecodeError> {
    written_as_parsed(raw)?;
    let url = Url::parse(raw).map_err(|e| DecodeError::BadUrl {
        url: clip(raw),
        reason: e.to_string(),
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(DecodeError::NotHttp(clip(url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(DecodeError::BadUrl {
            url: clip(raw),
            reason: "no host".into(),
        });
    }
    // Health URLs end up in read models, events, audit output and logs: a password in one
    // would leak everywhere. Refuse it, and never echo it back.
    if !url.username().is_empty() || url.password().is_some() {
        let mut shown = url.clone();
        let _ = shown.set_password(None);
        let _ = shown.set_username("");
        return Err(DecodeError::BadUrl {
            url: clip(shown.as_str()),
            reason: "credentials (user:password@) are not allowed in a health URL: they would be \
                     stored and shown in read models, events and logs; use an endpoint that \
                     needs none"
                .into(),
        });
    }
    Ok(url.to_string())
}

/// Refuses what the URL parser would silently repair, so the URL probed is the URL written:
/// surrounding whitespace or control characters (trimmed by the parser), backslashes (read
/// as `/`), and extra slashes before the host (`http:///h` is read as `http://h`).
fn written_as_parsed(raw: &str) -> Result<(), DecodeError> {
    let bad = |reason: &str| {
        Err(DecodeError::BadUrl {
            url: clip(raw),
            reason: reason.into(),
        })
    };
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("whitespace or control characters are not allowed in a URL");
    }
    if raw.contains('\\') {
        return bad("backslashes are not allowed in a URL");
    }
    match raw.split_once("://") {
        Some((_, rest)) if rest.is_empty() || rest.starts_with('/') => {
            bad("no host after the scheme's //")
        }
        Some(_) => Ok(()),
        None => bad("needs a scheme and a host, like http://10.0.0.5:8080/health"),
    }
}

/// The `address` of a join in the Go library's shape: a scheme and a host, nothing else (the
/// port and path have their own fields). A path, query, fragment, port or user:password in
/// it is refused rather than glued into a URL nobody meant (`http://h/x` + port 80 would
/// become `http://h/x:80/...`).
fn check_address(address: &str) -> Result<(), DecodeError> {
    written_as_parsed(address)?;
    let bad = |reason: &str| {
        Err(DecodeError::BadUrl {
            url: clip(address),
            reason: reason.into(),
        })
    };
    let url = match Url::parse(address) {
        Ok(url) => url,
        Err(e) => return bad(&e.to_string()),
    };
    if !url.username().is_empty() || url.password().is_some() {
        // Never echo the credentials back.
        let mut shown = url.clone();
        let _ = shown.set_password(None);
        let _ = shown.set_username("");
        return Err(DecodeError::BadUrl {
            url: clip(shown.as_str()),
            reason: "an address takes no credentials (user:password@)".into(),
        });
    }
    if url.port().is_some() {
        return bad("an address takes no port: give it with `port`");
    }
    if url.path() != "/" {
        return bad("an address takes no path: give it with `path`");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return bad("an address takes no query or fragment");
    }
    Ok(())
}

fn decode_join(f: &Fields<'_>) -> Result<Command, DecodeError> {
    f.only(
        "join",
        &allowed(&[
            "node", "url", "address", "port", "path", "weight", "handoff",
        ]),
    )?;
    let node = node(f)?;
    let weight = f.opt_ranged("weight", 1, MAX_WEIGHT)?;
    let handoff = match f.opt("handoff")? {
        Some(v) => decode_bool("handoff", v)?,
        None => false,
    };
    let url = match (f.opt("url")?, f.opt("address")?) {
        (Some(_), Some(_)) => return Err(DecodeError::UrlAndAddress),
        (Some(url), None) => {
            if f.opt("port")?.is_some() || f.opt("path")?.is_some() {
                return Err(DecodeError::UrlAndAddress);
            }
            check_health_url(url)?
        }
        (None, Some(address)) => {
            let port_raw = f.req("port")?;
            let port: u16 = port_raw
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| DecodeError::BadPort(clip(port_raw)))?;
            let path = f.opt("path")?.unwrap_or("").trim_start_matches('/');
            if !address.contains("://") {
                return Err(DecodeError::BadUrl {
                    url: clip(address),
                    reason: "address needs a scheme, like http://10.0.0.5".into(),
                });
            }
            check_address(address)?;
            check_health_url(&format!("{}:{port}/{path}", address.trim_end_matches('/')))?
        }
        (None, None) => return Err(DecodeError::MissingField("url")),
    };
    Ok(Command::Join {
        node,
        url,
        weight,
        handoff,
    })
}

fn decode_bool(field: &'static str, v: &str) -> Result<bool, DecodeError> {
    match v {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        other => Err(DecodeError::BadBool {
            field,
            value: clip(other),
        }),
    }
}

fn decode_probe(f: &Fields<'_>) -> Result<Command, DecodeError> {
    f.only(
        "probe",
        &allowed(&[
            "node", "epoch", "ok", "status", "latency", "error", "prober", "confirm",
        ]),
    )?;
    let node = node(f)?;
    let epoch = f
        .opt_num::<u64>("epoch")?
        .ok_or(DecodeError::MissingField("epoch"))?;
    let ok = decode_bool("ok", f.req("ok")?)?;
    let status = match f.opt_num::<u64>("status")? {
        None => None,
        Some(s @ 100..=599) => Some(s as u16),
        Some(s) => {
            return Err(DecodeError::OutOfRange {
                field: "status",
                value: s,
                min: 100,
                max: 599,
            });
        }
    };
    let latency_ms = f.opt_num::<u32>("latency")?.unwrap_or(0);
    let error = f
        .opt("error")?
        .map(|e| {
            e.parse::<ProbeError>()
                .map_err(|_| DecodeError::BadProbeError(clip(e)))
        })
        .transpose()?;
    let prober = f.opt("prober")?.map(str::to_owned);
    let result = ProbeResult {
        node,
        epoch,
        ok,
        status,
        latency_ms,
        error,
        prober,
    };
    // `confirm` marks a prober that confirms deaths (see `crate::confirm`).
    Ok(match f.opt("confirm")? {
        None => Command::Probe(result),
        Some(v) => Command::Checked(crate::confirm::CheckedProbe {
            result,
            confirm: decode_bool("confirm", v)?,
        }),
    })
}

/// Prober ids are node-id shaped (they are hashed for rendezvous ownership the same way).
fn decode_probers(f: &Fields<'_>) -> Result<Command, DecodeError> {
    f.only("probers", &allowed(&["alive"]))?;
    let mut alive = Vec::new();
    for id in f.req("alive")?.split_whitespace() {
        alive.push(NodeId::new(id)?.to_string());
    }
    alive.sort();
    alive.dedup();
    Ok(Command::Probers { alive })
}

/// The fields a `policy` entry may set, in the order [`LogEntry::encode`] writes them.
pub const POLICY_FIELDS: [&str; 12] = [
    "fall",
    "rise",
    "strategy",
    "vnodes",
    "panic",
    "damp_penalty",
    "damp_suppress",
    "damp_reuse",
    "damp_half_life",
    "damp_max_suppress",
    "handoff_timeout",
    "load_epsilon",
];

fn decode_policy(f: &Fields<'_>) -> Result<Command, DecodeError> {
    f.only("policy", &allowed(&POLICY_FIELDS))?;
    Ok(Command::Policy(policy_change(f)?))
}

/// The ranges of every policy field: the one place they are written down.
fn policy_change(f: &Fields<'_>) -> Result<PolicyChange, DecodeError> {
    let change = PolicyChange {
        fall: f.opt_ranged("fall", 1, MAX_THRESHOLD)?,
        rise: f.opt_ranged("rise", 1, MAX_THRESHOLD)?,
        strategy: f
            .opt("strategy")?
            .map(|s| {
                s.parse::<Strategy>()
                    .map_err(|_| DecodeError::BadStrategy(clip(s)))
            })
            .transpose()?,
        vnodes: f.opt_ranged("vnodes", 1, MAX_VNODES)?,
        panic: f.opt_ranged("panic", 0, 100)?,
        damp_penalty: f.opt_ranged("damp_penalty", 0, 100_000)?,
        damp_suppress: f.opt_ranged("damp_suppress", 1, 1_000_000)?,
        damp_reuse: f.opt_ranged("damp_reuse", 1, 1_000_000)?,
        damp_half_life: f.opt_ranged("damp_half_life", 1, 86_400)?,
        damp_max_suppress: f.opt_ranged("damp_max_suppress", 1, 86_400)?,
        handoff_timeout: f.opt_ranged("handoff_timeout", 0, 3_600_000)?,
        load_epsilon: f.opt_ranged("load_epsilon", 0, crate::policy::Policy::MAX_LOAD_EPSILON)?,
    };
    if change == PolicyChange::default() {
        return Err(DecodeError::EmptyPolicy);
    }
    Ok(change)
}

impl PolicyChange {
    /// Decodes `(field, value)` pairs as the fields of a `policy` entry, by the projector's
    /// own rules and with its errors: only [`POLICY_FIELDS`] (not `type`, `v` or `cmd`), each
    /// at most once, in range, at least one. For producers that check a change before they
    /// append it (`pantheon policy set`). Rules that depend on the cluster's state (damping
    /// thresholds, the ring's size) are the fold's: it may still reject a decoded change.
    ///
    /// ```
    /// use pantheon_domain::policy::PolicyChange;
    ///
    /// let change = PolicyChange::decode(&[("load_epsilon", "10"), ("panic", "40")]).unwrap();
    /// assert_eq!((change.load_epsilon, change.panic), (Some(10), Some(40)));
    /// assert!(PolicyChange::decode(&[("vnodes", "0")]).is_err());
    /// ```
    pub fn decode<K: AsRef<[u8]>, V: AsRef<[u8]>>(raw: &[(K, V)]) -> Result<Self, DecodeError> {
        let f = Fields::new(raw)?;
        f.only("policy", &POLICY_FIELDS)?;
        policy_change(&f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(fields: &[(&str, &str)]) -> Result<LogEntry, DecodeError> {
        let mut all = vec![("type", "join"), ("node", "n1")];
        all.extend_from_slice(fields);
        LogEntry::decode(&all)
    }

    #[test]
    fn an_address_is_a_scheme_and_a_host_only() {
        let with = |address| join(&[("address", address), ("port", "8080")]);
        assert!(with("http://127.0.0.1").is_ok());
        assert!(with("http://127.0.0.1/").is_ok());
        for bad in [
            "http://127.0.0.1/x",
            "http://127.0.0.1?a=1",
            "http://127.0.0.1#f",
            "http://u:p@127.0.0.1",
            "http://u@127.0.0.1",
            "http://127.0.0.1:80",
            "http:///127.0.0.1",
            " http://127.0.0.1",
            "http:\\\\127.0.0.1",
        ] {
            let err = with(bad).expect_err(bad).to_string();
            assert!(!err.contains("u:p"), "{err}");
        }
    }

    #[test]
    fn a_policy_change_decodes_as_a_policy_entry_does() {
        let cases: [&[(&str, &str)]; 7] = [
            &[("load_epsilon", "10"), ("panic", "40")],
            &[("strategy", "rendezvous")],
            &[("vnodes", "0")],
            &[("load_epsilon", "101")],
            &[("bogus", "1")],
            &[("panic", "40"), ("panic", "50")],
            &[],
        ];
        for fields in cases {
            let mut entry = vec![("type", "policy")];
            entry.extend_from_slice(fields);
            let as_entry = LogEntry::decode(&entry).map(|e| e.command);
            assert_eq!(
                PolicyChange::decode(fields).map(Command::Policy),
                as_entry,
                "{fields:?}"
            );
        }
        // The entry's own fields are not policy fields.
        assert_eq!(
            PolicyChange::decode(&[("type", "policy"), ("panic", "40")]),
            Err(DecodeError::UnknownField {
                field: "type".into(),
                kind: "policy"
            })
        );
    }

    #[test]
    fn a_url_without_a_host_as_written_is_refused() {
        assert!(join(&[("url", "http://127.0.0.1:1/health")]).is_ok());
        for bad in [
            "http:///127.0.0.1:1/health",
            "http://",
            "http://127.0.0.1:1/health ",
            "http:\\\\127.0.0.1:1/health",
        ] {
            assert!(join(&[("url", bad)]).is_err(), "{bad}");
        }
    }
}
