//! Who wrote a log entry, as far as the fold may trust it.
//!
//! Any Redis user allowed to `XADD` to the log can write any field, so the fields alone never
//! prove who wrote an entry. The service appends its own entries (probe results, the prober
//! set, prober health, ticks, clock reports, generation markers) through an *attested* append
//! that only the `service` and `operator` roles may run; the store layer reads that proof back
//! and hands the fold an [`Origin`] with each entry. The fold stays pure: it decides on the
//! entry and its origin, never on Redis (see `docs/adr/0011-service-entries-and-joining.md`).

/// Where an entry provably comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Appended by the attested append of a service process (or an operator tool).
    Service,
    /// Appended by anyone else: a plain `XADD` (the CLI, the client, `redis-cli`).
    Client,
    /// Written before the cluster began attesting service entries. Replayed by the rules of
    /// that time: service entries are trusted, and a join makes a node alive at once.
    Legacy,
}

impl Origin {
    /// Whether a service-only entry (see [`crate::Command::is_service_only`]) from here may be
    /// applied.
    pub fn may_write_service_entries(self) -> bool {
        matches!(self, Origin::Service | Origin::Legacy)
    }
}
