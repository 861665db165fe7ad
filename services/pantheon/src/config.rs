//! The CLI's configuration: the model shared with the service binaries
//! ([`pantheon_config`]), re-exported, and loaded here with its errors as usage errors
//! (exit 64).

use std::path::Path;

pub use pantheon_config::{
    CONFIG_ENV, ClientSettings, ConfigError, DEFAULT_FILE, DurabilitySettings, ENV_PREFIX, Loaded,
    LocalRedisSettings, Overrides, Settings, env_name, mask_url,
};

use crate::error::CliError;

/// Loads the configuration (see [`pantheon_config::load`]).
pub fn load(flag: Option<&Path>, overrides: &Overrides) -> Result<Loaded, CliError> {
    pantheon_config::load(flag, overrides).map_err(CliError::from)
}

/// A bad configuration is a usage error: exit 64, with the message as it is.
impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::usage(e.message)
    }
}
