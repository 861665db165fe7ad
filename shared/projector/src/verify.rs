//! `rebuild --verify`: folds the log in memory up to the live checkpoint and compares the
//! result with the live read models, streaming them page by page (issue 19: at 5M keys the
//! old verify wrote a whole scratch copy of the read models, doubling Redis's memory, and
//! loaded it back, holding the state twice). Read only: nothing is written to Redis.
//!
//! Compared: the checkpoint's checksum with the fold's; every key of the key map and of the
//! unowned set with the fold's owner (plus their sizes, so nothing is missing); every node's
//! record; each node's key-set size. If the leader commits while the comparison runs and
//! something differs, the tail is folded and the comparison repeated (up to 5 times); a
//! result that still differs while the leader moved on says so ([`Verification::moved_on`]).

use std::collections::HashMap;

use pantheon_domain::{EntryId, NodeId, State};
use pantheon_store::readmodel::{self, NodeRecord};
use pantheon_store::{Connection, Layout};

use crate::ProjectorError;
use crate::paging::Paging;
use crate::rebuild::{fold_after, fold_log};

/// Differences kept as examples (the count goes on).
const EXAMPLES: usize = 10;
/// Comparisons tried while the leader keeps committing during them.
const ATTEMPTS: u32 = 5;

/// What `rebuild --verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub last_id: Option<EntryId>,
    pub entries: u64,
    pub live_checksum: Option<u64>,
    /// Checksum of the state folded from the log in memory.
    pub folded_checksum: u64,
    /// Read-model elements compared with the fold (keys, nodes, key-set sizes).
    pub compared: u64,
    /// How many of them differ, and the first few, as sentences.
    pub differences: u64,
    pub examples: Vec<String>,
    /// The leader committed during the comparison: differences may be its progress.
    pub moved_on: bool,
}

impl Verification {
    pub fn matches(&self) -> bool {
        self.live_checksum == Some(self.folded_checksum) && self.differences == 0 && !self.moved_on
    }
}

/// Counts differences, keeping the first few.
#[derive(Default)]
struct Diff {
    compared: u64,
    differences: u64,
    examples: Vec<String>,
}

impl Diff {
    fn check(&mut self, same: bool, why: impl FnOnce() -> String) {
        self.compared += 1;
        if !same {
            self.differences += 1;
            if self.examples.len() < EXAMPLES {
                self.examples.push(why());
            }
        }
    }
}

/// Folds the log up to the live checkpoint and compares the live read models with it.
/// `progress(entries)` is called while folding.
pub async fn verify<C: Connection + Clone + 'static>(
    con: &mut C,
    layout: &Layout,
    progress: impl FnMut(u64),
) -> Result<Verification, ProjectorError> {
    let mut live = readmodel::load_checkpoint(con, layout).await?;
    // Bounded pages: the key map plus two pages is the peak (issue 19: ≤ 0.5× Redis's memory).
    let until = live.as_ref().and_then(|c| c.last_id);
    let mut folded = fold_log(con, layout, until, Paging::Bounded, progress).await?;
    let mut attempt = 1;
    loop {
        let mut diff = Diff::default();
        if live.is_some() {
            compare(con, layout, &folded.state, &mut diff).await?;
        }
        let after = readmodel::load_checkpoint(con, layout).await?;
        let moved_on = after.as_ref().and_then(|c| c.last_id) != folded.last_id;
        // A commit landed while comparing: fold what it applied and compare again, a few
        // times (a busy cluster commits often; its changes are small).
        if diff.differences > 0 && moved_on && attempt < ATTEMPTS {
            attempt += 1;
            live = after;
            let until = live.as_ref().and_then(|c| c.last_id);
            fold_after(con, layout, &mut folded, until, Paging::Bounded, |_| {}).await?;
            continue;
        }
        return Ok(Verification {
            last_id: folded.last_id,
            entries: folded.entries,
            live_checksum: live.as_ref().map(|c| c.checksum),
            folded_checksum: folded.state.checksum(),
            compared: diff.compared,
            differences: diff.differences,
            examples: diff.examples,
            moved_on,
        });
    }
}

async fn compare<C: Connection>(
    con: &mut C,
    layout: &Layout,
    state: &State,
    diff: &mut Diff,
) -> Result<(), ProjectorError> {
    let keys = state.keys();
    let keymap = layout.keymap();
    readmodel::scan_pages(
        con,
        "HSCAN",
        Some(&keymap),
        None,
        |page: Vec<(String, String)>| {
            for (key, node) in page {
                let fold = keys.get(&key);
                diff.check(fold.flatten().is_some_and(|n| n.as_str() == node), || {
                    format!(
                        "key {key:?}: owner {node} in the read models, {} in the fold",
                        owner(fold)
                    )
                });
            }
        },
    )
    .await?;
    let unowned = layout.unowned();
    readmodel::scan_pages(con, "SSCAN", Some(&unowned), None, |page: Vec<String>| {
        for key in page {
            let fold = keys.get(&key);
            diff.check(fold == Some(None), || {
                format!(
                    "key {key:?}: unowned in the read models, {} in the fold",
                    owner(fold)
                )
            });
        }
    })
    .await?;

    // Every element scanned matched, and the sizes agree: then nothing is missing either.
    let per_node: HashMap<&NodeId, u64> = keys.per_owner().collect();
    let unowned_n = keys.len() as u64 - per_node.values().sum::<u64>();
    let nodes: Vec<NodeId> = state.nodes().map(|n| n.id.clone()).collect();
    let (owned_live, unowned_live, sets) = readmodel::sizes(con, layout, &nodes).await?;
    let owned_fold = keys.len() as u64 - unowned_n;
    diff.check(owned_live == owned_fold, || {
        format!("{owned_live} owned keys in the read models, {owned_fold} in the fold")
    });
    diff.check(unowned_live == unowned_n, || {
        format!("{unowned_live} unowned keys in the read models, {unowned_n} in the fold")
    });
    for (node, live) in nodes.iter().zip(sets) {
        let fold = per_node.get(node).copied().unwrap_or(0);
        diff.check(live == fold, || {
            format!("node {node}: {live} keys in its key set, {fold} in the fold")
        });
    }

    let live_nodes = readmodel::nodes(con, layout).await?;
    diff.check(live_nodes.len() == nodes.len(), || {
        format!(
            "{} node records in the read models, {} nodes in the fold",
            live_nodes.len(),
            nodes.len()
        )
    });
    for record in live_nodes {
        let fold = NodeId::new(&record.node)
            .ok()
            .and_then(|id| state.node(&id))
            .map(|n| NodeRecord::of(state, n));
        diff.check(fold.as_ref() == Some(&record), || {
            format!("node {}: its record differs from the fold's", record.node)
        });
    }
    Ok(())
}

fn owner(fold: Option<Option<&NodeId>>) -> String {
    match fold {
        None => "absent".to_owned(),
        Some(None) => "unowned".to_owned(),
        Some(Some(n)) => format!("owner {n}"),
    }
}
