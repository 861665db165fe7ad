//! The fence of every `MULTI`/`EXEC` write that must not outlive its leader: a batch commit
//! ([`crate::commit::Watched`]), a switch to a new log generation ([`crate::generation`]) and a
//! re-seed ([`crate::reseed`]). Each `WATCH`es the lease's fence counter, the checkpoint and
//! whatever else it depends on, then reads who holds the lease and where the checkpoint is.
//! `EXEC` then runs only if none of the watched keys changed since that read: a new leader
//! bumps the fence, a commit moves the checkpoint. (The Lua commit, [`crate::commit::Batch`],
//! checks the same two facts inside its script.)

use crate::lease::Lease;
use crate::{PinnedConnection, StoreError};

/// What was read under the watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    /// The lease holder's token, if anyone holds it.
    pub holder: Option<String>,
    /// The checkpoint's `last_id` ("" when nothing is applied; `None` without a checkpoint).
    pub last: Option<String>,
}

impl Seen {
    /// Whether `lease` is still this process's.
    pub fn holds(&self, lease: &Lease) -> bool {
        self.holder.as_deref() == Some(lease.token())
    }

    /// The checkpoint's `last_id`, "" when nothing is applied.
    pub fn last_id(&self) -> &str {
        self.last.as_deref().unwrap_or("")
    }
}

/// Runs `body` with `con` watching the fence of `lease`, `checkpoint` and `also`, and what
/// was read under the watch. `EXEC` inside `body` ends the watch; when `body` fails the watch
/// is ended here, so the connection goes back clean. `con` must be used by no one else: WATCH
/// state belongs to the connection.
pub(crate) async fn fenced<T, E>(
    con: &mut PinnedConnection,
    lease: &Lease,
    checkpoint: &str,
    also: &[&str],
    body: impl AsyncFnOnce(&mut PinnedConnection, Seen) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<StoreError>,
{
    let _: () = redis::cmd("WATCH")
        .arg(lease.fence_key())
        .arg(checkpoint)
        .arg(also)
        .query_async(con)
        .await
        .map_err(StoreError::from)?;
    let read = async {
        redis::pipe()
            .cmd("GET")
            .arg(lease.key())
            .cmd("HGET")
            .arg(checkpoint)
            .arg("last_id")
            .query_async::<(Option<String>, Option<String>)>(con)
            .await
    };
    let result = match read.await {
        Ok((holder, last)) => body(con, Seen { holder, last }).await,
        Err(e) => Err(StoreError::from(e).into()),
    };
    if result.is_err() {
        let _: Result<(), _> = redis::cmd("UNWATCH").query_async(con).await;
    }
    result
}
