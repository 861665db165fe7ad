//! Log set-up: stderr, text or JSON, `RUST_LOG` over the given default.

use pantheon_config::LogFormat;

/// Logs to stderr as text; `RUST_LOG` overrides `default` (e.g. `info`, `pantheon=debug`).
pub fn init_logging(default: &str) {
    init_logging_as(default, LogFormat::Text);
}

/// Logs to stderr in `format` (JSON: one object per line, for log shippers). Text is
/// coloured only when stderr is a terminal and `NO_COLOR` is not set.
pub fn init_logging_as(default: &str, format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Whether log lines carry ANSI colour codes: only for a person at a terminal. In a file or a
/// pipe (a log shipper, `grep`) the codes are noise. `NO_COLOR` set to anything but the empty
/// string turns colour off (https://no-color.org).
fn colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::colour;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
    }
}
