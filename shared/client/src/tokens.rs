//! The owners' tokens (docs/adr/0015) a router sends with each request, kept per ring
//! [`TokensAt`]: the ring's `tokens` field names every owner (about 250 KB at 10,000 nodes),
//! so reading it for each request made a router's cost grow with the cluster. Each request
//! reads the short [`TokensAt`] with the key instead, and the field only when it moved.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use pantheon_domain::NodeId;
use pantheon_store::readmodel::{self, TokensAt};
use pantheon_store::{Layout, Redis, StoreError};

type Tokens = Arc<HashMap<NodeId, u64>>;

#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    // std Mutex: held only to copy an Arc, never across an await.
    current: Mutex<Option<(TokensAt, Tokens)>>,
}

impl TokenCache {
    /// The tokens as of `at` (or newer: read when the copy is not of `at`).
    pub(crate) async fn at(
        &self,
        con: &mut Redis,
        layout: &Layout,
        at: TokensAt,
    ) -> Result<Tokens, StoreError> {
        if let Some((held, tokens)) = &*self.current.lock().unwrap_or_else(PoisonError::into_inner)
            && *held == at
        {
            return Ok(Arc::clone(tokens));
        }
        let (read_at, tokens) = readmodel::ring_tokens(con, layout).await?;
        let tokens = Arc::new(tokens);
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((read_at, Arc::clone(&tokens)));
        Ok(tokens)
    }
}
