//! [`Pantheon::explain`]: the owners a key had over time and why, from the log (after the
//! latest snapshot, if the log was compacted), folded locally. See
//! [`pantheon_domain::explain`].

use pantheon_domain::explain::{Explainer, Explanation};
use pantheon_domain::{EntryId, LogEntry};
use pantheon_store::{attest, log, snapshot};

use crate::{ClientError, Pantheon};

/// Log entries read per round trip.
const PAGE: usize = 2_000;

impl Pantheon {
    /// The owners `key` had over time — assigned or only placed by the ring — each with its
    /// token, the log entry that made it the owner, and why, as a sentence.
    pub async fn explain(&self, key: &str) -> Result<Explanation, ClientError> {
        let explained = self.explain_with(key, Explainer::new).await?;
        if !explained.needs_full_fold() {
            return Ok(explained.finish());
        }
        // Keys could hand off: only the whole state gives exact tokens (see
        // `pantheon_domain::explain`).
        Ok(self.explain_with(key, Explainer::full).await?.finish())
    }

    /// Folds the log after the latest snapshot into the explainer `start` makes.
    async fn explain_with(
        &self,
        key: &str,
        start: fn(&str, pantheon_domain::State, Option<EntryId>) -> Explainer,
    ) -> Result<Explainer, ClientError> {
        let layout = self.layout();
        let mut con = self.con();
        let (state, base) = match snapshot::load(&mut con, layout).await? {
            Some(snap) => {
                let (state, id) = snap.restore().map_err(ClientError::Config)?;
                (state, Some(id))
            }
            None => (pantheon_domain::State::default(), None),
        };
        let mut explainer = start(key, state, base);
        let legacy_until = attest::legacy_until(&mut con, layout).await?;
        let mut after = base;
        loop {
            let page = log::range(&mut con, layout, after, None, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            let origins = attest::origins(&mut con, layout, &page, legacy_until).await?;
            for (raw, origin) in page.iter().zip(origins) {
                // An entry that does not decode was rejected when it was applied: it changed
                // nothing, here either.
                if let Ok(entry) = LogEntry::decode(&raw.fields) {
                    explainer.entry(raw.id, &entry, origin);
                }
            }
            if page.len() < PAGE {
                break;
            }
        }
        Ok(explainer)
    }
}

/// An explanation as JSON, the one shape `pantheon explain --json` prints and the dashboard's
/// `/api/explain` serves: `{"key", "assigned", "history": [{"node", "token", "at_ms", "cause",
/// "why"}], "replicas": [node, …]}`, oldest owner first (`node` and `token` are `null` while no
/// node could own keys; `replicas` are the key's read replicas now, docs/adr/0018).
pub fn explanation_json(x: &Explanation) -> serde_json::Value {
    let history: Vec<serde_json::Value> = x
        .history
        .iter()
        .map(|o| {
            serde_json::json!({
                "node": o.node.as_ref().map(ToString::to_string),
                "token": o.token,
                "at_ms": o.at_ms,
                "cause": o.cause.to_string(),
                "why": o.why,
            })
        })
        .collect();
    serde_json::json!({
        "key": x.key,
        "assigned": x.assigned,
        "history": history,
        "replicas": x.replicas.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}
