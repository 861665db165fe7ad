//! The whole `main` of the service binaries (`pantheon-projector`, `pantheon-prober`):
//! logging in the configured format, then [`Service`] with exit codes: a bad configuration
//! exits 64 (like the CLI's usage errors) with its reason on one line, a failure exits 1.

use std::process::ExitCode;

use pantheon_config::{ConfigError, Loaded};

use crate::{ProcessKind, Service, init_logging_as, shutdown_on_signals};

/// Runs a process of `kind` with the `loaded` configuration until SIGTERM/SIGINT; `name`
/// starts its error lines.
pub async fn main(name: &str, kind: ProcessKind, loaded: Result<Loaded, ConfigError>) -> ExitCode {
    let settings = loaded.map(|l| l.settings);
    let format = settings
        .as_ref()
        .ok()
        .and_then(|s| s.log_format().ok())
        .unwrap_or_default();
    init_logging_as("info", format);
    let usage = |e: &dyn std::fmt::Display| {
        eprintln!("{name}: {}", one_line(e));
        ExitCode::from(64)
    };
    let service = match settings.and_then(|s| Service::new(kind, &s)) {
        Ok(s) => s,
        Err(e) => return usage(&e),
    };
    // The endpoint shares the service's shutdown.
    let shutdown = shutdown_on_signals();
    if let Err(e) = service.start_http(&shutdown).await {
        return usage(&e);
    }
    match service.run(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A message on one line (a TOML syntax error quotes the offending lines).
fn one_line(e: &(impl std::fmt::Display + ?Sized)) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_message_on_one_line() {
        assert_eq!(
            one_line("bad configuration:\n  1 | x =\n    ^"),
            "bad configuration: 1 | x = ^"
        );
    }
}
