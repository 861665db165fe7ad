//! A Sentinel that refuses the credentials for itself, said as such.
//!
//! A Sentinel with a password of its own answers `NOAUTH` (no `?sentinel_password=`) or
//! `WRONGPASS` (a wrong one). Classified like any authentication failure, that would read as
//! "the credentials of Redis user default were refused", pointing at the data nodes' user,
//! which is not the one at fault. The reason names the sentinel's address and which URL
//! parameter to fix, never a password.

use crate::deployment::Deployment;
use crate::failure::Failure;
use crate::resolve::ResolveError;
use crate::url::HostPort;

/// `e` with a reason and class that blame the Sentinel's own credentials, when it is an
/// authentication failure; `e` unchanged otherwise.
pub(crate) fn refused(
    deployment: &Deployment,
    sentinel: &HostPort,
    e: ResolveError,
) -> ResolveError {
    let Some(source) = e
        .source
        .as_ref()
        .filter(|s| Failure::of(s) == Failure::Authentication)
    else {
        return e;
    };
    let url = &deployment.url;
    let reason = if url.sentinel_password().is_some() {
        let user = url
            .sentinel_username
            .as_deref()
            .map(|u| format!(" (sentinel_username {u:?})"))
            .unwrap_or_default();
        format!(
            "sentinel {sentinel} refused the password given with ?sentinel_password={user}: \
             {source}"
        )
    } else {
        format!(
            "sentinel {sentinel} requires a password of its own: add ?sentinel_password=... \
             to the URL (the password before the @ is the data nodes'): {source}"
        )
    };
    ResolveError {
        reason,
        source: e.source,
        class: Some(Failure::SentinelAuthentication),
    }
}
