//! Process plumbing shared by Pantheon's binaries.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::info;

/// A token cancelled on the first SIGTERM or SIGINT. A second signal exits at once, for the
/// operator whose graceful shutdown is taking too long.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down (send the signal again to exit at once)");
        cancel.cancel();
        wait_for_signal().await;
        std::process::exit(130);
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Logs to stderr; `RUST_LOG` overrides `default` (e.g. `info`, `pantheon=debug`).
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The whole `main` of a stand-alone service binary: logging, the configuration (a bad one
/// exits 64, like the CLI's usage errors, with the reason), a shutdown token cancelled by
/// SIGTERM/SIGINT, then `run`; an error from it exits 1.
pub async fn serve<C, E, F>(
    name: &str,
    config: Result<C, String>,
    run: impl FnOnce(C, CancellationToken) -> F,
) -> std::process::ExitCode
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    init_logging("info");
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: bad configuration: {e}");
            return std::process::ExitCode::from(64);
        }
    };
    match run(config, shutdown_on_signals()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Waits for `task` to end, at most `grace`; returns false if it had to be abandoned.
pub async fn drain<F: std::future::Future>(task: F, grace: Duration) -> bool {
    tokio::time::timeout(grace, task).await.is_ok()
}

/// Environment settings of the stand-alone service binaries (`pantheon-projector`,
/// `pantheon-prober`); the `pantheon` CLI has the full layered configuration instead.
pub mod env {
    use std::time::Duration;

    /// A variable's value, or `default` when unset.
    pub fn or(name: &str, default: &str) -> String {
        std::env::var(name).unwrap_or_else(|_| default.to_owned())
    }

    /// A whole number, or `default` when unset; the error names the variable and its value.
    pub fn num(name: &str, default: u64) -> Result<u64, String> {
        match std::env::var(name) {
            Ok(v) => v
                .parse()
                .map_err(|_| format!("{name}={v:?} is not a whole number")),
            Err(_) => Ok(default),
        }
    }

    /// A duration in whole milliseconds, or `default` when unset.
    pub fn ms(name: &str, default: Duration) -> Result<Duration, String> {
        num(name, default.as_millis() as u64).map(Duration::from_millis)
    }
}
