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
/// exits 64, like the CLI's usage errors, with its reason on one line), a shutdown token
/// cancelled by SIGTERM/SIGINT, then `run`; an error from it exits 1.
pub async fn serve<C, B, E, F>(
    name: &str,
    config: Result<C, B>,
    run: impl FnOnce(C, CancellationToken) -> F,
) -> std::process::ExitCode
where
    B: std::fmt::Display,
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    init_logging("info");
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: {}", one_line(&e));
            return std::process::ExitCode::from(64);
        }
    };
    let shutdown = shutdown_on_signals();
    // Shutdown has a deadline even while Redis hangs: a command in flight could otherwise
    // wait out its response timeout.
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(STOP_DEADLINE).await;
    };
    tokio::select! {
        result = run(config, shutdown.clone()) => match result {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{name}: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        _ = deadline => {
            eprintln!("{name}: did not stop within {STOP_DEADLINE:?} of the signal (is Redis answering?); stopped anyway");
            std::process::ExitCode::FAILURE
        }
    }
}

/// How long a service may take to stop after SIGTERM/SIGINT.
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// A message on one line (a TOML syntax error quotes the offending lines).
fn one_line(e: &impl std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Waits for `task` to end, at most `grace`; returns false if it had to be abandoned.
pub async fn drain<F: std::future::Future>(task: F, grace: Duration) -> bool {
    tokio::time::timeout(grace, task).await.is_ok()
}
