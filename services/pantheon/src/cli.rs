//! The command line: global options and one subcommand per job (each implemented in
//! `commands/<name>.rs`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes: 0 success; 1 failure (Redis unreachable, verification mismatch, ...); \
2 the projector rejected a write (the reason is printed); 3 a write was not applied within \
the wait timeout; 4 a write reached the master but not the required replicas in time (it may \
be lost in a failover); 64 bad usage or configuration.

Configuration: defaults < pantheon.toml (or --config / PANTHEON_CONFIG) < PANTHEON_* \
environment variables < flags. See docs/configuration.md, or `pantheon config`.";

/// Pantheon: which healthy node owns key K right now, and why?
#[derive(Debug, Parser)]
#[command(name = "pantheon", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Redis URL (default redis://127.0.0.1:6379): redis://, rediss://,
    /// redis+sentinel://h:p,h:p/<master>, redis+cluster://h:p,h:p (see docs/configuration.md).
    #[arg(long, global = true, value_name = "URL")]
    pub redis_url: Option<String>,
    /// Cluster name (default "default").
    #[arg(long, global = true, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Key prefix (default "pantheon").
    #[arg(long, global = true, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Configuration file (default ./pantheon.toml if present; also PANTHEON_CONFIG).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log what Pantheon does on stderr (its debug lines). Without it (or RUST_LOG), commands
    /// other than `up` and `demo` print their output and at most one error line.
    #[arg(long, short, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the projector and a prober in this process until SIGTERM or Ctrl-C (starts a
    /// local redis-server under ./.pantheon/redis when none answers).
    Up(UpArgs),
    /// A one-minute tour: real HTTP nodes join, one dies and revives, keys move and return.
    Demo(DemoArgs),
    /// Add a node (or re-add it: a new epoch) with its health endpoint.
    Join(JoinArgs),
    /// Remove a node for good; its keys move to the others.
    Leave(NodeArgs),
    /// Keep a node but move its keys away (maintenance).
    Drain(NodeArgs),
    /// Let a drained node own keys again.
    Undrain(NodeArgs),
    /// Change a node's weight (1..=100): its share of keys relative to the others.
    Weight(WeightArgs),
    /// Print the cluster's policy (thresholds, placement, damping, hand-off, load), or
    /// change it: `pantheon policy set load_epsilon=10 panic=40`.
    Policy(PolicyArgs),
    /// Assign keys: each gets an owner among the healthy nodes, kept up to date.
    Distribute(DistributeArgs),
    /// The nodes: state, epoch, weight, keys owned, health URL.
    Nodes(ReadArgs),
    /// Which node owns a key.
    Locate(LocateArgs),
    /// The keys a node owns.
    Keys(KeysArgs),
    /// The owners a key had over time, with their tokens, and why each change happened.
    Explain(ExplainArgs),
    /// Follow a node's ownership changes: a snapshot of its keys, then each acquire and
    /// release with its token, in commit order (resumable with --from).
    Watch(WatchArgs),
    /// Print events (joined, died, revived, rebalanced, ...); --follow waits for new ones.
    Events(EventsArgs),
    /// A failover timeline: when nodes turned suspect/dead/alive, the probes that caused
    /// it, and how many keys moved where.
    Audit(AuditArgs),
    /// Fold the log from scratch and compare with the live read models.
    Rebuild(RebuildArgs),
    /// Apply the cluster's schema migrations (idempotent).
    Migrate(ReadArgs),
    /// Print the effective configuration as TOML (passwords masked).
    Config(ReadArgs),
    /// Print the `ACL SETUSER` line creating a least-privilege Redis user for a role
    /// (producer, writer, reader, consumer, operator, service) of this cluster; pipe it into
    /// `redis-cli` as an admin.
    Acl(AclArgs),
    /// Check the cluster: a projector leads and keeps up, a prober is alive, the log's clock
    /// follows Redis's. Exits 1 when a check fails.
    Doctor(ReadArgs),
    /// Who leads each served cluster (`clusters`, else `cluster`), with the fence, lag,
    /// nodes and probers: with `up --clusters`, which process leads what.
    Status(ReadArgs),
    /// Move the log to a new generation after an entry id ran far ahead of Redis's clock
    /// (keeps all state; needs the operator role). See README, "Security".
    RecoverClock(RecoverClockArgs),
    /// Delete every key of the cluster for good (needs --yes-i-am-sure; operator role). A
    /// running projector then starts it empty instead of putting its state back.
    Destroy(DestroyArgs),
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Do not start a local redis-server, even if none answers.
    #[arg(long)]
    pub no_local_redis: bool,
    /// Serve these clusters (comma-separated), sharing their leading with every other `up`
    /// given the same list (also `clusters` in the config file, PANTHEON_CLUSTERS).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub clusters: Vec<String>,
    /// Serve /healthz, /readyz, /metrics and the dashboard on this address (e.g.
    /// 127.0.0.1:9464; also `[http] listen`, PANTHEON_HTTP__LISTEN). Off by default.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Log lines as `text` (default) or `json` (also `[log] format`, PANTHEON_LOG__FORMAT).
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many demo nodes to start (2..=9).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=9))]
    pub nodes: u8,
    /// How many keys to distribute (1..=100000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub keys: u32,
    /// Pause between the acts of the story so it can be read as it happens (0 = none, at
    /// most 5000).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub pace_ms: u64,
    /// Do not start a local redis-server, even if none answers.
    #[arg(long)]
    pub no_local_redis: bool,
}

/// How a write command waits for the projector.
#[derive(Debug, Args, Clone)]
pub struct WaitArgs {
    /// Do not wait for the projector; print the log entry id and exit.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the projector (default: client.wait_timeout_ms, 10000).
    #[arg(long, value_name = "MS", conflicts_with = "no_wait")]
    pub timeout_ms: Option<u64>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["url", "address"])))]
pub struct JoinArgs {
    /// Node id (letters, digits and . _ - : @).
    pub node: String,
    /// Scheme and host of the health endpoint, e.g. http://10.0.0.5.
    #[arg(long, requires = "port", conflicts_with = "url")]
    pub address: Option<String>,
    /// Port of the health endpoint.
    #[arg(long, requires = "address", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Path of the health endpoint (default "health").
    #[arg(long, requires = "address")]
    pub path: Option<String>,
    /// The full health URL instead of --address/--port/--path.
    #[arg(long)]
    pub url: Option<String>,
    /// Share of keys relative to other nodes, 1..=100 (default 1).
    #[arg(long)]
    pub weight: Option<u32>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Node id.
    pub node: String,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct WeightArgs {
    /// Node id.
    pub node: String,
    /// The new weight, 1..=100.
    pub weight: u32,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `pantheon policy` prints; `pantheon policy set FIELD=VALUE ...` writes.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: Option<PolicyCommand>,
    /// Print JSON: {"cluster", "policy", "defaults", "non_default"}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Change policy fields, e.g. `load_epsilon=10 panic=40`. Checked by the projector's own
    /// rules first: an unknown field or a value out of range writes nothing (exit 64).
    Set(PolicySetArgs),
}

#[derive(Debug, Args)]
pub struct PolicySetArgs {
    /// The fields to change: fall, rise, strategy, vnodes, panic, damp_penalty,
    /// damp_suppress, damp_reuse, damp_half_life, damp_max_suppress, handoff_timeout,
    /// load_epsilon (ranges: README, "Wire format").
    #[arg(required = true, value_name = "FIELD=VALUE", value_parser = field_value)]
    pub changes: Vec<(String, String)>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `load_epsilon=10` → `("load_epsilon", "10")`; what the field and value mean is the
/// domain's to say.
fn field_value(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((field, value)) if !field.is_empty() => Ok((field.to_owned(), value.to_owned())),
        _ => Err(format!(
            "expected FIELD=VALUE, like load_epsilon=10, got {arg:?}"
        )),
    }
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["keys", "file"])))]
pub struct DistributeArgs {
    /// Keys to assign.
    pub keys: Vec<String>,
    /// Read keys from a file, one per line, exactly as written (only the line break is
    /// removed; empty lines are skipped; "-" for standard input); sent in batches of
    /// 10,000 with a progress bar.
    #[arg(long, short, value_name = "FILE", conflicts_with = "keys")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct ReadArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LocateArgs {
    /// The key.
    pub key: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    /// Node id.
    pub node: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The key.
    pub key: String,
    /// Print JSON: {"key", "assigned", "history": [{"node", "token", "at_ms", "cause", "why"}]}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Node id.
    pub node: String,
    /// Resume after this line (its `id`): nothing missed, nothing repeated. A snapshot
    /// comes first instead when the feed no longer holds that line.
    #[arg(long, value_name = "ID")]
    pub from: Option<String>,
    /// One JSON object per line: {"id", "op", "keys", "token", "peer", "cause"}.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many lines (default: follow until Ctrl-C).
    #[arg(long, value_name = "N")]
    pub lines: Option<u64>,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep printing new events until Ctrl-C.
    #[arg(long, short)]
    pub follow: bool,
    /// Read through this consumer group (created if missing), acking what is printed.
    #[arg(long, requires = "consumer", value_name = "G")]
    pub group: Option<String>,
    /// Consumer name within --group.
    #[arg(long, requires = "group", value_name = "C")]
    pub consumer: Option<String>,
    /// A new --group starts at the oldest event instead of new ones only.
    #[arg(long, requires = "group")]
    pub from_beginning: bool,
    /// Without --group: how many of the latest events to print first.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub limit: usize,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this node's transitions, and the key moves involving it.
    #[arg(long, value_name = "N")]
    pub node: Option<String>,
    /// Start here: a duration ago (30s, 10m, 2h, 1d), an event id (1712345678901-0) or a
    /// Unix time in milliseconds.
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// Fold the log into a scratch copy and compare checksums with the live state (read
    /// only; exits 1 on a mismatch). Rebuilding in place is the projector's job.
    #[arg(long)]
    pub verify: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RecoverClockArgs {
    /// Move the log even though its clock does not run ahead of Redis's by more than
    /// `projector.clock_skew_bound_ms`.
    #[arg(long)]
    pub force: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Confirms the deletion; without it nothing is deleted (exit 64).
    #[arg(long)]
    pub yes_i_am_sure: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AclArgs {
    /// The role: producer, writer, reader, consumer, operator or service.
    #[arg(value_parser = ["producer", "writer", "reader", "consumer", "operator", "service"])]
    pub role: String,
    /// The Redis user name (default pantheon-<role>).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn join_takes_an_address_or_a_url() {
        assert!(
            Cli::try_parse_from([
                "pantheon",
                "join",
                "n1",
                "--address",
                "http://h",
                "--port",
                "80"
            ])
            .is_ok()
        );
        assert!(Cli::try_parse_from(["pantheon", "join", "n1", "--url", "http://h/x"]).is_ok());
        assert!(Cli::try_parse_from(["pantheon", "join", "n1"]).is_err());
        assert!(
            Cli::try_parse_from([
                "pantheon",
                "join",
                "n1",
                "--url",
                "http://h/",
                "--address",
                "http://h",
                "--port",
                "1"
            ])
            .is_err()
        );
    }

    #[test]
    fn policy_prints_or_sets_field_value_pairs() {
        let parse = |args: &[&str]| {
            let mut all = vec!["pantheon", "policy"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).map(|cli| cli.command)
        };
        assert!(matches!(
            parse(&["--json"]),
            Ok(Command::Policy(PolicyArgs {
                command: None,
                json: true
            }))
        ));
        let Ok(Command::Policy(PolicyArgs {
            command: Some(PolicyCommand::Set(set)),
            ..
        })) = parse(&["set", "load_epsilon=10", "strategy=ring", "--json"])
        else {
            panic!("policy set did not parse");
        };
        assert_eq!(
            set.changes,
            [
                ("load_epsilon".to_owned(), "10".to_owned()),
                ("strategy".to_owned(), "ring".to_owned())
            ]
        );
        assert!(set.wait.json);
        // Nothing to set, no `=`, no field name: usage errors before any connection.
        for bad in [&["set"][..], &["set", "load_epsilon"], &["set", "=10"]] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
