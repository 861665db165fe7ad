//! [`Ownership`]: what the application implements to hear about the keys it gains and loses.

use std::future::Future;

use pantheon_client::NodeId;

use crate::AppError;

/// The application's side of ownership. The worker calls these one at a time, in feed
/// order, and waits for each to finish before the next: a release of a key always comes
/// after its acquire, and nothing overlaps.
///
/// The methods are async because what an application does on acquire (load a tenant's
/// state, open a connection) and on release (flush, close) is usually I/O; an application
/// with nothing to await simply writes an `async fn` without `.await` in it. (`impl Future +
/// Send` rather than `async fn` in the trait so the worker's task can run on any thread.)
///
/// Delivery is at least once: the worker records a change as delivered after the callback
/// returned `Ok`; a crash between the two delivers that one change again on restart. Make the
/// callbacks idempotent (acquiring a key already held, releasing one not held: no-ops).
/// A callback that returns `Err` stops the worker with [`crate::WorkerError::Callback`] and
/// the change is delivered again on the next start.
pub trait Ownership: Send + Sync + 'static {
    /// The node now owns `keys`, with `token` (larger than any earlier owner's). `from` is the
    /// node they came from, `None` when no node owned them (new keys, or a snapshot at start).
    fn on_acquire(
        &self,
        keys: &[String],
        token: u64,
        from: Option<&NodeId>,
    ) -> impl Future<Output = Result<(), AppError>> + Send;

    /// The node no longer owns `keys`. `token` is the new owner's (or, if nobody took them,
    /// the cluster's token floor) as the feed says; when the change was found by comparing a
    /// snapshot with what the worker held, it is the snapshot's token. `to` is the node they
    /// went to, `None` when no node took them or (after a snapshot) it is not known.
    fn on_release(
        &self,
        keys: &[String],
        token: u64,
        to: Option<&NodeId>,
    ) -> impl Future<Output = Result<(), AppError>> + Send;

    /// A planned hand-off asks this node to give `keys` to `to` (a drain, a leave, a join
    /// taking a share; not a death). Return the state to carry over, one value per key it
    /// has state for; keys without a value are handed over without state. The worker stores
    /// the values, then releases the keys, and [`Ownership::on_release`] follows once the
    /// release is committed. Keep serving the keys until then: the node still owns them.
    /// The default carries no state.
    fn on_handoff(
        &self,
        keys: &[String],
        to: &NodeId,
    ) -> impl Future<Output = Result<Vec<(String, Vec<u8>)>, AppError>> + Send {
        let _ = (keys, to);
        async { Ok(Vec::new()) }
    }

    /// The state the previous owner `from` handed over for keys this node is acquiring.
    /// Called just before the [`Ownership::on_acquire`] of those keys. The default drops it.
    fn on_state(
        &self,
        state: Vec<(String, Vec<u8>)>,
        from: &NodeId,
    ) -> impl Future<Output = Result<(), AppError>> + Send {
        let _ = (state, from);
        async { Ok(()) }
    }
}
