//! One module per command. Each takes its parsed arguments and the loaded configuration,
//! prints its result (text, or JSON with `--json`) and returns an error with an exit code.

pub mod acl;
pub mod audit;
pub mod config;
pub mod destroy;
pub mod distribute;
pub mod doctor;
pub mod drain;
pub mod events;
pub mod explain;
pub mod join;
pub mod keys;
pub mod leave;
pub mod locate;
pub mod migrate;
pub mod nodes;
pub mod policy;
pub mod rebuild;
pub mod recover_clock;
pub mod status;
pub mod up;
pub mod watch;
pub mod weight;
mod write;

use crate::cli::Command;
use crate::config::Loaded;

/// Runs a parsed command.
pub async fn dispatch(command: Command, loaded: &Loaded) -> anyhow::Result<()> {
    let settings = &loaded.settings;
    match command {
        Command::Up(args) => up::run(args, settings).await,
        Command::Demo(args) => crate::demo::run(args, settings).await,
        Command::Join(args) => join::run(args, settings).await,
        Command::Leave(args) => leave::run(args, settings).await,
        Command::Drain(args) => drain::run(args, settings, true).await,
        Command::Undrain(args) => drain::run(args, settings, false).await,
        Command::Weight(args) => weight::run(args, settings).await,
        Command::Policy(args) => policy::run(args, settings).await,
        Command::Distribute(args) => distribute::run(args, settings).await,
        Command::Nodes(args) => nodes::run(args, settings).await,
        Command::Locate(args) => locate::run(args, settings).await,
        Command::Keys(args) => keys::run(args, settings).await,
        Command::Watch(args) => watch::run(args, settings).await,
        Command::Explain(args) => explain::run(args, settings).await,
        Command::Events(args) => events::run(args, settings).await,
        Command::Audit(args) => audit::run(args, settings).await,
        Command::Rebuild(args) => rebuild::run(args, settings).await,
        Command::Migrate(args) => migrate::run(args, settings).await,
        Command::Config(args) => config::run(args, loaded),
        Command::Acl(args) => acl::run(&args, settings),
        Command::Doctor(args) => doctor::run(args, settings).await,
        Command::Status(args) => status::run(args, settings).await,
        Command::RecoverClock(args) => recover_clock::run(args, settings).await,
        Command::Destroy(args) => destroy::run(args, settings).await,
    }
}
