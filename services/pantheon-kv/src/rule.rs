//! The token rule of the crate docs, as pure functions (no Redis, no clock): whether a worker
//! serves a request for a key, from the token it holds the key with (`mine`), the request's
//! token (`req`) and, when `req > mine`, the node's own record.

/// A request token above the worker's own that was found to come from a rise of the token
/// floor (not from a lost and regained key), and the node token it was checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmed {
    pub request: u64,
    pub node_token: u64,
}

/// What the rule says before any read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum First {
    /// Serve with `mine`.
    Serve(u64),
    /// Answer 421 with the reason; the token this node holds the key with (0: none).
    Refuse { mine: u64, reason: String },
    /// `req > mine` and no earlier check covers it: read the node's record, then
    /// [`after_record`].
    CheckRecord { mine: u64, req: u64 },
}

/// Rules 1 to 3, and rule 4 when an earlier check (`known`) already covers `req`.
pub fn first(node: &str, mine: Option<u64>, req: Option<u64>, known: Option<Confirmed>) -> First {
    let Some(mine) = mine else {
        return First::Refuse {
            mine: 0,
            reason: format!("{node} does not own this key"),
        };
    };
    let Some(req) = req else {
        return First::Serve(mine);
    };
    if req == mine {
        return First::Serve(mine);
    }
    if req < mine {
        return First::Refuse {
            mine,
            reason: format!(
                "the request's token {req} is older than this owner's {mine}: locate the key again"
            ),
        };
    }
    // Covered by an earlier check: the floor had risen to at least `req`, and the node had
    // not become a member again since it took this key.
    if known.is_some_and(|c| req <= c.request && c.node_token <= mine) {
        return First::Serve(mine);
    }
    First::CheckRecord { mine, req }
}

/// Rule 4 once the node's record is read: `member` is its node token if it is a member now
/// (alive, suspect, or dead but held), `None` if not. `Ok` serves; the floor explains `req`.
pub fn after_record(node: &str, mine: u64, member: Option<u64>) -> Result<(), String> {
    match member {
        None => Err(format!("stale owner: {node} is no longer a member")),
        Some(token) if token > mine => Err(format!(
            "stale owner: {node} became a member again (token {token}) after it took this key \
             with {mine}, and has not read that from its feed yet"
        )),
        Some(_) => Ok(()),
    }
}

/// What to remember after `req` was found to be a floor rise with the node token `node_token`.
pub fn remember(known: Option<Confirmed>, req: u64, node_token: u64) -> Confirmed {
    let request = match known {
        Some(c) if c.node_token == node_token => c.request.max(req),
        _ => req,
    };
    Confirmed {
        request,
        node_token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(f: &First) -> bool {
        matches!(f, First::Refuse { .. })
    }

    #[test]
    fn a_key_not_owned_is_refused_with_token_0() {
        assert_eq!(
            first("n", None, Some(5), None),
            First::Refuse {
                mine: 0,
                reason: "n does not own this key".into()
            }
        );
        assert!(refused(&first("n", None, None, None)));
    }

    #[test]
    fn the_same_token_or_none_is_served_an_older_one_refused() {
        assert_eq!(first("n", Some(7), Some(7), None), First::Serve(7));
        assert_eq!(first("n", Some(7), None, None), First::Serve(7));
        assert!(refused(&first("n", Some(7), Some(6), None)));
    }

    #[test]
    fn a_newer_token_needs_the_record_unless_a_check_covers_it() {
        assert_eq!(
            first("n", Some(7), Some(9), None),
            First::CheckRecord { mine: 7, req: 9 }
        );
        let known = Some(Confirmed {
            request: 9,
            node_token: 3,
        });
        assert_eq!(first("n", Some(7), Some(9), known), First::Serve(7));
        assert_eq!(first("n", Some(7), Some(8), known), First::Serve(7));
        // A larger token than the one checked: check again.
        assert_eq!(
            first("n", Some(7), Some(10), known),
            First::CheckRecord { mine: 7, req: 10 }
        );
        // A key taken before the node token the check saw: it may have been lost and regained.
        assert_eq!(
            first("n", Some(2), Some(9), known),
            First::CheckRecord { mine: 2, req: 9 }
        );
    }

    #[test]
    fn the_record_tells_a_floor_rise_from_a_stale_owner() {
        // The node's membership is older than its hold: only the floor rose.
        assert!(after_record("n", 7, Some(3)).is_ok());
        assert!(after_record("n", 7, Some(7)).is_ok());
        // It became a member again after taking the key: its feed is behind.
        assert!(
            after_record("n", 7, Some(8))
                .expect_err("refused")
                .contains("stale owner")
        );
        assert!(
            after_record("n", 7, None)
                .expect_err("refused")
                .contains("no longer a member")
        );
    }

    #[test]
    fn remembered_checks_grow_and_restart_with_a_new_node_token() {
        let a = remember(None, 9, 3);
        assert_eq!(
            a,
            Confirmed {
                request: 9,
                node_token: 3
            }
        );
        assert_eq!(remember(Some(a), 8, 3).request, 9);
        assert_eq!(remember(Some(a), 12, 3).request, 12);
        assert_eq!(
            remember(Some(a), 10, 4),
            Confirmed {
                request: 10,
                node_token: 4
            }
        );
    }
}
