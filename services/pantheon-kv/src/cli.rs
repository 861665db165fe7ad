//! The command line (clap). Every flag is described in the crate docs.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const AFTER: &str = "\
Exit codes: 0 success (also after SIGTERM); 1 failure (Redis unreachable, address taken); \
64 bad usage or configuration.

Configuration: defaults < pantheon.toml (or --config / PANTHEON_CONFIG) < PANTHEON_* \
environment variables < flags, as for the pantheon CLI (docs/configuration.md).";

/// A sharded in-memory key-value cache on Pantheon: workers own keys, a router forwards.
#[derive(Debug, Parser)]
#[command(name = "pantheon-kv", version, after_help = AFTER)]
pub struct Cli {
    /// Redis URL (default redis://127.0.0.1:6379; also PANTHEON_REDIS_URL).
    #[arg(long, global = true, value_name = "URL")]
    pub redis_url: Option<String>,
    /// Cluster name (default "default"; also PANTHEON_CLUSTER).
    #[arg(long, global = true, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Key prefix (default "pantheon"; also PANTHEON_PREFIX).
    #[arg(long, global = true, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Configuration file (default ./pantheon.toml if present; also PANTHEON_CONFIG).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log lines as `text` (default) or `json` (also PANTHEON_LOG__FORMAT).
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Debug log lines on stderr (RUST_LOG overrides the filter).
    #[arg(long, short, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Own keys: join the cluster and keep the values of the owned keys in memory.
    Worker(WorkerArgs),
    /// Forward each request to the key's owner, retrying through hand-off gaps.
    Router(RouterArgs),
}

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// The node id to join as.
    #[arg(long, value_name = "ID")]
    pub node: String,
    /// Serve /kv/{key} and /health here (e.g. 127.0.0.1:7001; port 0 picks one).
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// How the prober and the router reach this worker: scheme, host and port (default
    /// http:// and the bound address). The node joins with URL/health.
    #[arg(long, value_name = "URL")]
    pub advertise: Option<String>,
    /// Share of keys relative to the other nodes, 1..=100 (default: the cluster's, 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub weight: Option<u32>,
    /// The worker library's state file: feed position and owned keys, no values (default
    /// TMPDIR/pantheon-kv-CLUSTER-NODE.json).
    #[arg(long, value_name = "PATH")]
    pub state_file: Option<PathBuf>,
    /// The largest value accepted, in bytes; a larger PUT is answered 413.
    #[arg(long, value_name = "N", default_value_t = crate::DEFAULT_MAX_VALUE)]
    pub max_value_bytes: usize,
    /// On SIGTERM: how long draining, handing every value over and leaving may take.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub leave_timeout_ms: u64,
}

#[derive(Debug, Clone, Args)]
pub struct RouterArgs {
    /// Serve /kv/{key} and /health here (e.g. 127.0.0.1:7000; port 0 picks one).
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// How long one request may retry through a hand-off gap (421, connection refused, no
    /// owner) before the answer is 503.
    #[arg(long, value_name = "MS", default_value_t = 2_000)]
    pub retry_ms: u64,
    /// Timeout of one forwarded request.
    #[arg(long, value_name = "MS", default_value_t = 1_000)]
    pub forward_timeout_ms: u64,
    /// The largest value accepted, in bytes; a larger PUT is answered 413.
    #[arg(long, value_name = "N", default_value_t = crate::DEFAULT_MAX_VALUE)]
    pub max_value_bytes: usize,
}
