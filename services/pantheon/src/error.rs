//! Exit codes, and the error that carries one. Everything else (`anyhow` errors from inside
//! commands) exits with [`FAILURE`].

use std::fmt;

/// Success.
pub const SUCCESS: u8 = 0;
/// The command failed: Redis unreachable, a check that did not pass, ...
pub const FAILURE: u8 = 1;
/// The projector rejected a write (the reason is printed).
pub const REJECTED: u8 = 2;
/// A write was not applied within the wait timeout (is a projector running?).
pub const TIMED_OUT: u8 = 3;
/// A write reached the master's log but not the required replicas in time: it may be lost
/// if the master fails now, so it is never reported as applied.
pub const NOT_REPLICATED: u8 = 4;
/// Bad usage or configuration (EX_USAGE from sysexits.h).
pub const USAGE: u8 = 64;

/// An error with the exit code it should end the process with.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Bad usage or configuration: exit 64.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(USAGE, message)
    }

    /// A failure: exit 1.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(FAILURE, message)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// The exit code and the one line to print for an error from a command.
pub fn report(e: &anyhow::Error) -> (u8, String) {
    // A `ConfigError` reaches here through `?` on `Settings::projector_config()` and the
    // like: it is a bad configuration, exit 64, like the `CliError` it converts to.
    let code = e
        .chain()
        .find_map(|c| {
            c.downcast_ref::<CliError>()
                .map(|c| c.code)
                .or_else(|| c.is::<pantheon_config::ConfigError>().then_some(USAGE))
        })
        .unwrap_or(FAILURE);
    // `{:#}` joins the causes with ": "; errors from Redis sometimes carry newlines.
    let line = format!("{e:#}")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    (code, line)
}
