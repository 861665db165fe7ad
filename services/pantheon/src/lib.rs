//! `pantheon`, the one CLI: runs the services (`up`), demos them (`demo`), writes to a
//! cluster (`join`, `leave`, `distribute`, ...), reads it (`nodes`, `locate`, `keys`,
//! `events`, `audit`), and checks it (`rebuild --verify`, `migrate`, `config`).
//!
//! * [`cli`] — the command line (clap);
//! * [`config`] — the layered configuration (defaults, `pantheon.toml`, `PANTHEON_*`, flags)
//!   shared with the service binaries ([`pantheon_config`]), with its errors as exit 64;
//! * [`error`] — exit codes;
//! * [`connect`] — reaching Redis with a clear error, and the handles commands use;
//! * [`local_redis`] — starting a `redis-server` for `up` and `demo` when none answers;
//! * [`output`] — times, counts and tables for people, JSON for scripts;
//! * [`stdout`] — delivering lines to stdout (flushed, read by a pipe's reader), closed
//!   stdout detection;
//! * [`commands`] — one module per command;
//! * [`demo`] — the demo's HTTP nodes and its narrated story.
//!
//! Errors end the process with one line on stderr and an exit code from [`error`], never a
//! panic or a backtrace.

pub mod cli;
pub mod commands;
pub mod config;
pub mod connect;
pub mod demo;
pub mod error;
pub mod local_redis;
pub mod output;
pub mod stdout;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::config::{Loaded, Overrides};
use crate::error::CliError;

/// Parses the command line, runs the command, and turns the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(error::USAGE),
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pantheon: cannot start the runtime: {e}");
            return ExitCode::from(error::FAILURE);
        }
    };
    let outcome = runtime.block_on(run(cli));
    // Background tasks (a follower's blocking read, a stuck probe) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let (code, line) = error::report(&e);
            eprintln!("pantheon: {line}");
            ExitCode::from(code)
        }
    }
}

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let level = log_level(&cli);
    let (http_listen, log_format) = match &cli.command {
        Command::Up(up) => (up.listen.clone(), up.log_format.clone()),
        _ => (None, None),
    };
    let overrides = Overrides {
        redis_url: cli.redis_url.clone(),
        cluster: cli.cluster.clone(),
        prefix: cli.prefix.clone(),
        http_listen,
        log_format,
    };
    let loaded = config::load(cli.config.as_deref(), &overrides);
    // Logging follows the configuration's format; a bad configuration is reported without it.
    let format = loaded
        .as_ref()
        .ok()
        .and_then(|l| l.settings.log_format().ok())
        .unwrap_or_default();
    pantheon_service::init_logging_as(level, format);
    let loaded: Loaded = loaded?;
    commands::dispatch(cli.command, &loaded).await
}

/// The default log filter (`RUST_LOG` replaces it). A one-shot command logs nothing: its
/// error is the one line `main` prints, and a log line before it (a `WARN` from the Redis
/// layer noticing `CLUSTERDOWN`, say) would be a second, differently worded account of the
/// same failure. The services narrate what they do; `--verbose` adds Pantheon's debug lines.
fn log_level(cli: &Cli) -> &'static str {
    match (&cli.command, cli.verbose) {
        (_, true) => "info,pantheon=debug",
        (Command::Up(_), false) => "info",
        (Command::Demo(_), false) => "warn",
        (_, false) => "off",
    }
}

/// Shorthand for a usage error inside `anyhow` code.
pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    CliError::usage(message).into()
}
