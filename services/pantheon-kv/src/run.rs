//! From the command line to a running worker or router: the configuration is Pantheon's own
//! ([`pantheon_config::load`], as the `pantheon` CLI loads it), the connection waits at most
//! `client.connect_timeout_ms`, SIGTERM/SIGINT come through
//! [`pantheon_service::shutdown_on_signals`], and every error ends the process with one line
//! on stderr and an exit code: 1 a failure, 64 bad usage or configuration.

use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pantheon_client::{ClientError, NodeId, Pantheon};
use pantheon_config::{ConfigError, Overrides, Settings, mask_url};

use crate::cli::{Cli, Command, RouterArgs, WorkerArgs};
use crate::router::{self, RouterConfig};
use crate::worker::{self, WorkerConfig};

/// A failure: Redis unreachable, the address taken, a join that did not apply.
pub const FAILURE: u8 = 1;
/// Bad usage or configuration (EX_USAGE from sysexits.h), as the `pantheon` CLI.
pub const USAGE: u8 = 64;

/// Bad usage: exits 64.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// Parses the command line, runs the subcommand, and turns the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(USAGE),
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pantheon-kv: cannot start the runtime: {e}");
            return ExitCode::from(FAILURE);
        }
    };
    let outcome = runtime.block_on(run(cli));
    // A request in flight or a blocking feed read must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let (code, line) = report(&e);
            eprintln!("pantheon-kv: {line}");
            ExitCode::from(code)
        }
    }
}

/// The exit code and the one line to print for an error.
pub fn report(e: &anyhow::Error) -> (u8, String) {
    let usage = e
        .chain()
        .any(|c| c.is::<UsageError>() || c.is::<ConfigError>());
    let line = format!("{e:#}")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    (if usage { USAGE } else { FAILURE }, line)
}

/// Runs one parsed command line until it stops (SIGTERM/SIGINT for both subcommands).
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let overrides = Overrides {
        redis_url: cli.redis_url.clone(),
        cluster: cli.cluster.clone(),
        prefix: cli.prefix.clone(),
        http_listen: None,
        log_format: cli.log_format.clone(),
    };
    let loaded = pantheon_config::load(cli.config.as_deref(), &overrides);
    let format = loaded
        .as_ref()
        .ok()
        .and_then(|l| l.settings.log_format().ok())
        .unwrap_or_default();
    let level = if cli.verbose {
        "info,pantheon_kv=debug"
    } else {
        "info"
    };
    pantheon_service::init_logging_as(level, format);
    let settings = loaded?.settings;
    settings.log_format()?;
    match cli.command {
        Command::Worker(args) => {
            let config = worker_config(&settings, args)?;
            let client = connect(&settings).await?;
            let shutdown = pantheon_service::shutdown_on_signals();
            worker::run(client, config, shutdown).await
        }
        Command::Router(args) => {
            let config = router_config(args)?;
            let client = connect(&settings).await?;
            let shutdown = pantheon_service::shutdown_on_signals();
            router::run(client, config, shutdown).await
        }
    }
}

fn worker_config(settings: &Settings, args: WorkerArgs) -> anyhow::Result<WorkerConfig> {
    NodeId::new(&args.node).map_err(|e| usage(format!("--node {:?}: {e}", args.node)))?;
    if let Some(url) = &args.advertise
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(usage(format!(
            "--advertise {url:?}: give a URL with its scheme, e.g. http://10.0.0.5:7001"
        )));
    }
    check_max_value(args.max_value_bytes)?;
    let state_file = args.state_file.unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "pantheon-kv-{}-{}.json",
            settings.cluster, args.node
        ))
    });
    Ok(WorkerConfig {
        node: args.node,
        listen: args.listen,
        advertise: args.advertise,
        weight: args.weight,
        state_file,
        max_value: args.max_value_bytes,
        leave_timeout: Duration::from_millis(args.leave_timeout_ms),
    })
}

fn router_config(args: RouterArgs) -> anyhow::Result<RouterConfig> {
    check_max_value(args.max_value_bytes)?;
    if args.forward_timeout_ms == 0 {
        return Err(usage("--forward-timeout-ms must be at least 1"));
    }
    Ok(RouterConfig {
        listen: args.listen,
        retry: Duration::from_millis(args.retry_ms),
        forward_timeout: Duration::from_millis(args.forward_timeout_ms),
        max_value: args.max_value_bytes,
    })
}

fn check_max_value(n: usize) -> anyhow::Result<()> {
    if n == 0 {
        return Err(usage("--max-value-bytes must be at least 1"));
    }
    Ok(())
}

/// Connects to the configured cluster, giving up after `client.connect_timeout_ms`.
async fn connect(settings: &Settings) -> anyhow::Result<Pantheon> {
    let deployment = settings.deployment()?;
    let timeout = settings.connect_timeout();
    let connecting = Pantheon::builder(&settings.redis_url, &settings.cluster)
        .prefix(&settings.prefix)
        .deployment(deployment)
        .connect();
    let url = mask_url(&settings.redis_url);
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(client)) => Ok(client),
        // A bad cluster name or prefix.
        Ok(Err(e @ (ClientError::Config(_) | ClientError::Invalid(_)))) => {
            Err(usage(e.to_string()))
        }
        Ok(Err(e)) => Err(anyhow::anyhow!("cannot reach Redis at {url}: {e}")),
        Err(_) => Err(anyhow::anyhow!(
            "cannot reach Redis at {url}: no answer within {timeout:?} (client.connect_timeout_ms)"
        )),
    }
}
