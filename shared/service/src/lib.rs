//! Process plumbing shared by Pantheon's processes (`pantheon up`, `pantheon-projector`,
//! `pantheon-prober`), one job per module:
//!
//! - [`signals`]: SIGTERM/SIGINT into a cancellation token;
//! - [`logging`]: stderr logging, text or JSON;
//! - [`kind`]: which kind of process ([`ProcessKind`]) and what it runs per cluster;
//! - [`serve`]: the one path every process serves by ([`Service`]): one cluster, or a share
//!   of many; what runs per cluster, and its supervisor with a stop deadline;
//! - [`fleet`]: how processes given the same clusters split them (registry heartbeat,
//!   rendezvous ownership, hand-over);
//! - [`http`]: the HTTP endpoint: health, readiness, Prometheus metrics, the live dashboard;
//! - [`binary`]: the whole `main` of the service binaries, with their exit codes.

pub mod binary;
pub mod fleet;
pub mod http;
pub mod kind;
pub mod logging;
pub mod serve;
pub mod signals;

pub use kind::ProcessKind;
pub use logging::{init_logging, init_logging_as};
pub use serve::{STOP_DEADLINE, Service};
pub use signals::shutdown_on_signals;
