//! Whether Redis currently refuses this process's credentials, per URL, for the whole process.
//!
//! A user can vanish or change under a running service (`ACL DELUSER`, a rotated password):
//! Redis then closes the user's connections (deletion) or refuses the next `AUTH`, and every
//! [`crate::Redis`] handle of the process (projector, prober, HTTP endpoint, one per cluster)
//! retries with backoff. Logged per handle and per retry, that is a wall of lines, and
//! "master still unavailable" blames the wrong thing. Here the process keeps one flag per URL:
//! one warning when the credentials are first refused, one line when they work again, and
//! `/readyz` reads the reason meanwhile ([`refusal`]).

use std::sync::{Mutex, MutexGuard, PoisonError};

use tracing::{info, warn};

use crate::url::RedisUrl;

/// URLs whose credentials Redis refuses right now, with the reason (never a password).
static REFUSED: Mutex<Vec<(RedisUrl, String)>> = Mutex::new(Vec::new());

fn lock() -> MutexGuard<'static, Vec<(RedisUrl, String)>> {
    // A panic while holding the lock cannot leave the list half-written.
    REFUSED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The user a URL authenticates as, for messages.
fn user(url: &RedisUrl) -> &str {
    url.username.as_deref().unwrap_or("default")
}

/// Records that Redis refused `url`'s credentials (`detail`: Redis's words, e.g. `WRONGPASS
/// ...`); logs once per change of state, not per retry.
pub(crate) fn refused(url: &RedisUrl, detail: &str) {
    let reason = format!(
        "Redis refuses the credentials of user {:?} (deleted, disabled or its password \
         changed?): {detail}",
        user(url)
    );
    let mut refused = lock();
    if let Some(entry) = refused.iter_mut().find(|(u, _)| u == url) {
        entry.1 = reason;
        return;
    }
    warn!(%url, %reason, "redis: credentials refused; retrying with backoff until they work");
    refused.push((url.clone(), reason));
}

/// Records that `url`'s credentials work (a connection authenticated); logs if they had been
/// refused.
pub(crate) fn accepted(url: &RedisUrl) {
    let mut refused = lock();
    let before = refused.len();
    refused.retain(|(u, _)| u != url);
    if refused.len() != before {
        info!(%url, user = user(url), "redis: credentials accepted again");
    }
}

/// Why `url`'s credentials are refused right now, if they are.
pub fn refusal(url: &RedisUrl) -> Option<String> {
    lock()
        .iter()
        .find(|(u, _)| u == url)
        .map(|(_, reason)| reason.clone())
}
