//! The dashboard's key box, which answers `pantheon explain KEY`: `/api/explain?key=K` gives
//! the answer as JSON (the shape of `pantheon explain --json`, [`explanation_json`]), and
//! `/?key=K` renders the page with the answer in its key box: the key's owners over time,
//! oldest first, each with its node, token, clock time and age, and why it became the owner.
//! The box is outside the page's live part, so live updates leave what was typed alone; its
//! script asks for `?key=K` and swaps in the box's answer without a reload.
//!
//! A key must be given, and be at most [`MAX_KEY_BYTES`] bytes (what the log accepts): an
//! empty or longer one gets a 400 with the reason, from both.
//!
//! [`explanation_json`]: pantheon_client::explanation_json

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pantheon_client::{Explanation, Pantheon};
use pantheon_domain::limits::MAX_KEY_BYTES;

use super::dashboard::{PageQuery, escape, unavailable};
use super::{Shared, clock};

/// The key asked for, or why it cannot be explained.
pub fn checked(key: &str) -> Result<&str, String> {
    if key.is_empty() {
        return Err("type a key to explain (?key=K)".to_owned());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "a key is at most {MAX_KEY_BYTES} bytes; this one has {}",
            key.len()
        ));
    }
    Ok(key)
}

/// What the key box shows: nothing asked yet, a refusal of the input (a 400), a failure to
/// read the log (a 503), or the answer.
#[derive(Debug)]
pub enum Answer {
    None,
    Refused { key: String, why: String },
    Failed { key: String, why: String },
    Explained(Explanation),
}

impl Answer {
    /// Explains `key` (when the page was asked for one).
    pub async fn of(client: &Pantheon, key: Option<&str>) -> Self {
        let Some(key) = key else { return Self::None };
        match checked(key) {
            Err(why) => Self::Refused {
                key: key.to_owned(),
                why,
            },
            Ok(key) => match client.explain(key).await {
                Ok(x) => Self::Explained(x),
                Err(e) => Self::Failed {
                    key: key.to_owned(),
                    why: e.to_string(),
                },
            },
        }
    }

    /// The status the page is served with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Refused { .. } => StatusCode::BAD_REQUEST,
            Self::Failed { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::None | Self::Explained(_) => StatusCode::OK,
        }
    }

    fn key(&self) -> &str {
        match self {
            Self::None => "",
            Self::Refused { key, .. } | Self::Failed { key, .. } => key,
            Self::Explained(x) => &x.key,
        }
    }
}

/// `/api/explain?key=K[&cluster=NAME]`.
pub async fn explain_json(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<PageQuery>,
) -> Response {
    let key = match checked(q.key.as_deref().unwrap_or_default()) {
        Ok(key) => key,
        Err(why) => return (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response(),
    };
    let client = match shared.client_for(q.cluster.as_deref()).await {
        Ok(c) => c,
        Err(refused) => return refused,
    };
    match client.explain(key).await {
        Ok(x) => Json(pantheon_client::explanation_json(&x)).into_response(),
        Err(e) => unavailable(e),
    }
}

/// The key box: a form (a plain GET of the page, so it works with scripts off; the page's
/// script sends it without a reload) and the answer. `hidden` are the page's other query
/// fields, kept when the form is sent.
pub fn render(html: &mut String, answer: &Answer, hidden: &[(&str, &str)], now: u64) {
    html.push_str(
        "<section id=\"key-box\"><h2>Explain a key</h2><form id=\"explain-form\" method=\"get\">",
    );
    for (name, value) in hidden {
        let _ = write!(
            html,
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(value)
        );
    }
    let _ = write!(
        html,
        "<input id=\"explain-key\" name=\"key\" type=\"search\" size=\"40\" \
         placeholder=\"a key, e.g. user:42\" aria-label=\"key\" value=\"{}\"> \
         <button type=\"submit\">explain</button></form><div id=\"explain\" data-state=\"{}\">",
        escape(answer.key()),
        match answer {
            Answer::None => "empty",
            Answer::Refused { .. } => "refused",
            Answer::Failed { .. } => "failed",
            Answer::Explained(_) => "explained",
        }
    );
    match answer {
        Answer::None => html.push_str(
            "<p class=\"hint\">Which nodes owned a key, with their tokens, and why each \
             change happened, from the log.</p>",
        ),
        Answer::Refused { why, .. } | Answer::Failed { why, .. } => {
            let _ = write!(
                html,
                "<p class=\"bad\" id=\"explain-error\">{}</p>",
                escape(why)
            );
        }
        Answer::Explained(x) => render_answer(html, x, now),
    }
    html.push_str("</div></section>");
}

/// "user:1 is assigned; 2 owners over time:", then one line per owner, oldest first.
fn render_answer(html: &mut String, x: &Explanation, now: u64) {
    let placed = if x.assigned {
        "is assigned"
    } else {
        "is not assigned; the ring places it"
    };
    let owners = x.history.len();
    let _ = write!(
        html,
        "<p id=\"explain-head\" data-key=\"{key}\" data-assigned=\"{}\"><b>{key}</b> {placed}; \
         {owners} owner{} over time <small class=\"hint\">(from {} log entries)</small></p>",
        x.assigned,
        if owners == 1 { "" } else { "s" },
        x.entries,
        key = escape(&x.key),
    );
    if x.history.is_empty() {
        html.push_str("<p>No node has owned it yet: no node could own keys.</p>");
        return;
    }
    html.push_str("<ol id=\"explain-history\">");
    for (i, o) in x.history.iter().enumerate() {
        let node = o.node.as_ref().map(|n| escape(n.as_str()));
        let now_class = if i + 1 == owners {
            " class=\"now\""
        } else {
            ""
        };
        let _ = write!(
            html,
            "<li{now_class} data-node=\"{}\" data-token=\"{}\" data-cause=\"{}\">",
            node.as_deref().unwrap_or(""),
            o.token.map(|t| t.to_string()).unwrap_or_default(),
            o.cause
        );
        clock::write_time(html, o.at_ms, now);
        match (&node, o.token) {
            (Some(n), Some(t)) => {
                let _ = write!(
                    html,
                    " <b class=\"owner\">{n}</b> <span class=\"token\">(token {t})</span>:"
                );
            }
            (Some(n), None) => {
                let _ = write!(html, " <b class=\"owner\">{n}</b>:");
            }
            (None, _) => html.push_str(" <b class=\"owner\">nobody</b>:"),
        }
        let _ = write!(html, " <span class=\"because\">{}</span>", escape(&o.why));
        if i + 1 == owners {
            html.push_str(" <small class=\"hint\">(owner now)</small>");
        }
        html.push_str("</li>");
    }
    html.push_str("</ol>");
    if !x.replicas.is_empty() {
        let names: Vec<String> = x.replicas.iter().map(|n| escape(n.as_str())).collect();
        let _ = write!(
            html,
            "<p id=\"explain-replicas\">Read replicas now (a hot key): <b>{}</b></p>",
            names.join("</b>, <b>")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pantheon_client::{EntryId, NodeId, Owned};

    #[test]
    fn empty_and_long_keys_are_refused_with_the_reason() {
        assert!(checked("").unwrap_err().contains("type a key"));
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert_eq!(
            checked(&long).unwrap_err(),
            format!(
                "a key is at most 1024 bytes; this one has {}",
                MAX_KEY_BYTES + 1
            )
        );
        assert_eq!(checked("user:1"), Ok("user:1"));
        assert!(checked(&"k".repeat(MAX_KEY_BYTES)).is_ok());
    }

    #[test]
    fn the_box_shows_each_owner_with_token_time_and_why_escaped() {
        const T: u64 = 1_796_306_806_205;
        let x = Explanation {
            key: "<user:1>".into(),
            assigned: true,
            history: vec![
                Owned {
                    node: Some(NodeId::new("b").unwrap()),
                    token: Some(7),
                    at_ms: T,
                    cause: EntryId { ms: T, seq: 0 },
                    why: "assigned; the ring placed it on b".into(),
                },
                Owned {
                    node: Some(NodeId::new("a").unwrap()),
                    token: Some(9),
                    at_ms: T + 5_000,
                    cause: EntryId {
                        ms: T + 5_000,
                        seq: 1,
                    },
                    why: "b died: 3 failed probes in a row; placement moved it to a".into(),
                },
            ],
            replicas: vec![NodeId::new("c").unwrap(), NodeId::new("d").unwrap()],
            entries: 12,
        };
        let mut html = String::new();
        render(
            &mut html,
            &Answer::Explained(x),
            &[("cluster", "c\"1")],
            T + 8_000,
        );
        assert!(html.contains("value=\"&lt;user:1&gt;\""), "{html}");
        assert!(
            html.contains("name=\"cluster\" value=\"c&quot;1\""),
            "{html}"
        );
        assert!(html.contains("<b>&lt;user:1&gt;</b> is assigned; 2 owners over time"));
        assert!(html.contains(
            "<time datetime=\"2026-12-03T14:06:51.205Z\" data-ms=\"1796306811205\">14:06:51.205</time> \
             <span class=\"ago\" data-ms=\"1796306811205\">3 s ago</span> <b class=\"owner\">a</b> \
             <span class=\"token\">(token 9)</span>: <span class=\"because\">b died: 3 failed probes \
             in a row; placement moved it to a</span> <small class=\"hint\">(owner now)</small>"
        ), "{html}");
        assert!(html.contains("data-cause=\"1796306811205-1\""), "{html}");
        assert!(
            html.contains(
                "<p id=\"explain-replicas\">Read replicas now (a hot key): <b>c</b>, <b>d</b></p>"
            ),
            "{html}"
        );
        let mut html = String::new();
        render(
            &mut html,
            &Answer::Refused {
                key: String::new(),
                why: "type a key to explain (?key=K)".into(),
            },
            &[],
            T,
        );
        assert!(html.contains("data-state=\"refused\""), "{html}");
        assert!(html.contains("type a key to explain"), "{html}");
    }
}
