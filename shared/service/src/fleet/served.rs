//! Which clusters a fleet process serves: the ones named outright, and those matching a
//! pattern (`*`, `billing-*`) among the clusters that exist.

use std::collections::BTreeSet;

use pantheon_store::{Deployment, StoreError, discover};

/// The `clusters` setting, split into names and patterns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Served {
    /// Clusters named outright.
    pub names: Vec<String>,
    /// Patterns: every cluster with a log under the prefix whose name matches is served too
    /// (`pantheon_store::discover`).
    pub patterns: Vec<String>,
}

impl Served {
    /// Whether `cluster` is one of them: named, or matching a pattern.
    pub fn includes(&self, cluster: &str) -> bool {
        self.names.iter().any(|n| n == cluster)
            || self.patterns.iter().any(|p| discover::matches(p, cluster))
    }

    /// The named clusters plus those of `found` that match a pattern, sorted, each once.
    pub fn with_found(&self, found: Vec<String>) -> Vec<String> {
        let mut all: BTreeSet<String> = self.names.iter().cloned().collect();
        all.extend(
            found
                .into_iter()
                .filter(|name| self.patterns.iter().any(|p| discover::matches(p, name))),
        );
        all.into_iter().collect()
    }

    /// Every cluster served now: the named ones, plus (with patterns) those found by a `SCAN`
    /// of every master.
    pub async fn find(
        &self,
        deployment: &Deployment,
        prefix: &str,
    ) -> Result<Vec<String>, StoreError> {
        if self.patterns.is_empty() {
            return Ok(self.with_found(Vec::new()));
        }
        Ok(self.with_found(discover::clusters(deployment, prefix).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_matching_clusters_each_once() {
        let served = Served {
            names: vec!["b".into(), "billing-1".into()],
            patterns: vec!["billing-*".into()],
        };
        let found = vec!["a".into(), "billing-1".into(), "billing-2".into()];
        assert_eq!(served.with_found(found), ["b", "billing-1", "billing-2"]);
        assert!(served.includes("b"));
        assert!(served.includes("billing-9"));
        assert!(!served.includes("a"));
    }
}
