//! `pantheon config`: the effective configuration as TOML (or JSON), passwords masked.

use crate::cli::ReadArgs;
use crate::config::Loaded;

pub fn run(args: ReadArgs, loaded: &Loaded) -> anyhow::Result<()> {
    let masked = loaded.settings.masked();
    if args.json {
        return crate::output::json(&masked);
    }
    let file = loaded.file.as_ref().map_or_else(
        || "no configuration file".to_owned(),
        |f| f.display().to_string(),
    );
    crate::outln!(
        "# Effective configuration: defaults < {file} < PANTHEON_* environment < flags.\n\
         # Passwords are masked. Every key is described in docs/configuration.md.\n"
    );
    crate::out!("{}", masked.to_toml());
    Ok(())
}
