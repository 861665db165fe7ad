//! The worker library of Pantheon: embed it in the process that owns keys.
//!
//! A [`Worker`]:
//!
//! * serves the health endpoint the prober calls (`GET /health`, with axum), or lets the
//!   application answer it ([`Health::External`]);
//! * joins the cluster with that URL (and a weight) and waits until the join is applied;
//! * follows the node's ownership feed ([`pantheon_client::Pantheon::watch`]) and calls the
//!   application's [`Ownership::on_acquire`] / [`Ownership::on_release`] one at a time, in
//!   feed order. The first start acquires the whole owned set (`from = None`); a start
//!   after the feed dropped the saved position compares a snapshot with what the worker held
//!   and calls only the true changes (release first, then acquire);
//! * records the feed position and the owned keys with their tokens in a state file *after*
//!   each line's callbacks returned, so a restart resumes with nothing missed: a snapshot
//!   (written atomically) and a journal that gets one line per feed line, in proportion to the
//!   keys that changed, synced to disk once per burst of lines. Delivery is **at least
//!   once**: a crash after a callback but before its record delivers that change again (a
//!   power loss, the lines since the last sync); make callbacks idempotent;
//! * answers [`Worker::owns`]`(key)` with the token it owns the key with, so requests for
//!   keys it does not own, or with an older token, can be refused; and
//!   [`OwnedKeys::current_within`] whether that answer misses no move committed more than a
//!   moment ago (a process that was paused, or cut off from Redis, may still list keys a
//!   death or a forced hand-off moved away);
//! * joins with `handoff`, so planned moves wait for it: a feed `handoff` line calls
//!   [`Ownership::on_handoff`] for the keys' state, stores it and releases the keys; the new
//!   owner gets it through [`Ownership::on_state`] before `on_acquire`
//!   (`docs/adr/0016-planned-moves-hand-off.md`);
//! * offers [`Worker::graceful_shutdown`] (drain, hand everything off, leave; for SIGTERM see
//!   [`shutdown_signal`]), the hooks [`Worker::leave`] and [`Worker::drain`], and
//!   [`Worker::shutdown`].
//!
//! A hot key can have read replicas (docs/adr/0018): [`Replicas`] answers reads of keys this
//! node replicates from a copy of the owner's value, and says how old it is.
//!
//! Modules: `app` (the [`Ownership`] trait), `owned` (the pure rules from feed line to
//! callbacks), `state` (the state file), `health` (the endpoint), `worker` (the follow
//! loop and the handle), [`error`].
//!
//! ```no_run
//! use pantheon_client::{NodeId, Pantheon};
//! use pantheon_worker::{AppError, Health, Ownership, Worker};
//!
//! struct Tenants;
//!
//! impl Ownership for Tenants {
//!     async fn on_acquire(&self, keys: &[String], token: u64, from: Option<&NodeId>) -> Result<(), AppError> {
//!         println!("now mine with token {token} (from {from:?}): {keys:?}");
//!         Ok(())
//!     }
//!     async fn on_release(&self, keys: &[String], _token: u64, to: Option<&NodeId>) -> Result<(), AppError> {
//!         println!("no longer mine (to {to:?}): {keys:?}");
//!         Ok(())
//!     }
//! }
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Pantheon::connect("redis://127.0.0.1:6379", "prod").await?;
//! let worker = Worker::builder(client, "worker-1", "/var/lib/app/pantheon-worker.json")
//!     .health(Health::serve("0.0.0.0:8080".parse()?))
//!     .weight(2)
//!     .start(Tenants)
//!     .await?;
//! // In a request handler: refuse keys this node does not own, or stale tokens.
//! let request_token = 17;
//! match worker.owns("tenant:42") {
//!     Some(mine) if request_token >= mine => { /* serve it */ }
//!     _ => { /* refuse: not the owner, or a request for an older owner */ }
//! }
//! // On SIGTERM: hand every key over with its state, leave, stop.
//! pantheon_worker::shutdown_signal().await;
//! worker.graceful_shutdown(std::time::Duration::from_secs(10)).await?;
//! # Ok(()) }
//! ```

mod app;
pub mod error;
mod health;
pub mod load;
mod owned;
pub mod replica;
mod state;
mod worker;

pub use app::Ownership;
pub use error::{AppError, WorkerError};
pub use health::Health;
pub use load::LoadMeter;
pub use pantheon_client::{EntryId, NodeId, Pantheon};
pub use replica::{ReplicaError, ReplicaRead, Replicas};
pub use worker::{DEFAULT_JOIN_TIMEOUT, OwnedKeys, Worker, WorkerBuilder, shutdown_signal};
