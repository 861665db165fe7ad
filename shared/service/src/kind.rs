//! Which kind of Pantheon process this is: what it runs for each cluster, and under which
//! name it registers in the fleet registry.

/// What a process runs for each cluster it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessKind {
    /// `pantheon up`: the projector and a prober replica.
    Up,
    /// `pantheon-projector`: the projector alone.
    Projector,
    /// `pantheon-prober`: a prober replica alone.
    Prober,
}

impl ProcessKind {
    /// Its name in the fleet registry (`<prefix>:{fleet}:<name>`): each kind splits the
    /// clusters among its own, so projectors and probers scale separately.
    pub fn name(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Projector => "projector",
            Self::Prober => "prober",
        }
    }

    pub fn runs_projector(self) -> bool {
        matches!(self, Self::Up | Self::Projector)
    }

    pub fn runs_prober(self) -> bool {
        matches!(self, Self::Up | Self::Prober)
    }
}
