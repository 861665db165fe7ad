//! `/`: the dashboard. Rendered on the server, so a plain load (scripts off, `curl`) shows
//! the state; a few lines of inline script follow `/api/events` and swap in a fresh render
//! of the page's live part after each event. `?node=ID` shows that node's audit; the node
//! table shows 200 rows at a time, `?page=N` (from 1) picks which.
//! `/api/status` and `/api/audit` give the same data as JSON. `?cluster=NAME` picks the
//! cluster (needed in a fleet, whose `/` without it lists the clusters: `super::clusters`).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use pantheon_client::audit::{AuditFilter, TimelineItem};
use pantheon_client::status::ClusterStatus;
use serde::Deserialize;

use super::Shared;

/// Events shown on the cluster page.
const TIMELINE_EVENTS: usize = 50;
/// Events read for one node's audit.
const NODE_AUDIT_EVENTS: usize = 2_000;
/// Above this many ring members the ring is drawn per state, not per node.
const RING_ARCS_MAX: usize = 360;
/// Node rows per page: a 3,000-node table was 1.5 MB and took seconds to render.
const NODES_PER_PAGE: usize = 200;

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    pub cluster: Option<String>,
    node: Option<String>,
    /// Which page of the node table (from 1); the selected node's page by default.
    page: Option<usize>,
}

/// A share (0..=1) as a percentage with three significant digits, so one node of 3,000
/// reads 0.0333%, not 0.0%.
fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p <= 0.0 || !p.is_finite() {
        return "0%".to_owned();
    }
    let digits = (2 - p.log10().floor() as i32).clamp(1, 6) as usize;
    format!("{p:.digits$}%")
}

pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn unavailable(e: impl std::fmt::Display) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response()
}

pub async fn status_json(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<PageQuery>,
) -> Response {
    let client = match shared.client_for(q.cluster.as_deref()).await {
        Ok(c) => c,
        Err(refused) => return refused,
    };
    match client.status().await {
        Ok(s) => Json(s).into_response(),
        Err(e) => unavailable(e),
    }
}

pub async fn audit_json(State(shared): State<Arc<Shared>>, Query(q): Query<PageQuery>) -> Response {
    let client = match shared.client_for(q.cluster.as_deref()).await {
        Ok(c) => c,
        Err(refused) => return refused,
    };
    match client.timeline(&filter(q.node)).await {
        Ok(items) => Json(items).into_response(),
        Err(e) => unavailable(e),
    }
}

fn filter(node: Option<String>) -> AuditFilter {
    match node {
        Some(n) => AuditFilter {
            node: Some(n),
            last: Some(NODE_AUDIT_EVENTS),
            ..AuditFilter::default()
        },
        None => AuditFilter {
            last: Some(TIMELINE_EVENTS),
            probes: false,
            ..AuditFilter::default()
        },
    }
}

pub async fn page(State(shared): State<Arc<Shared>>, Query(q): Query<PageQuery>) -> Response {
    if shared.config.fleet.is_some() && q.cluster.is_none() {
        return super::clusters::index(&shared).await;
    }
    let client = match shared.client_for(q.cluster.as_deref()).await {
        Ok(c) => c,
        Err(refused) => return refused,
    };
    let status = match client.status().await {
        Ok(s) => s,
        Err(e) => return unavailable(e),
    };
    let node = q.node.filter(|n| status.node(n).is_some());
    let items = match client.timeline(&filter(node.clone())).await {
        Ok(items) => items,
        Err(e) => return unavailable(e),
    };
    let picked = q.cluster.as_deref();
    Html(render_page(
        &status,
        &items,
        node.as_deref(),
        q.page,
        picked,
    ))
    .into_response()
}

/// The whole page; `cluster` (when picked with `?cluster=`) is kept in its links.
pub fn render_page(
    status: &ClusterStatus,
    items: &[TimelineItem],
    node: Option<&str>,
    page: Option<usize>,
    cluster: Option<&str>,
) -> String {
    let mut html = String::with_capacity(16 * 1024 + status.nodes.len() * 400);
    let title = format!("Pantheon · {}", escape(&status.cluster));
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\
         <h1>{title} <small id=\"live-state\">static</small></h1><main id=\"live\">"
    );
    let links = Links::new(cluster);
    render_live(&mut html, status, items, node, page, &links);
    let _ = write!(html, "</main><script>{SCRIPT}</script></body></html>");
    html
}

/// The start of the page's own links: `?` plus the picked cluster, if any.
struct Links {
    query: String,
}

impl Links {
    fn new(cluster: Option<&str>) -> Self {
        let query = match cluster {
            Some(c) => format!("?cluster={}&amp;", escape(c)),
            None => "?".to_owned(),
        };
        Self { query }
    }

    /// `?[cluster=NAME&]key=value`, escaped for an attribute.
    fn to(&self, key: &str, value: impl std::fmt::Display) -> String {
        format!("{}{key}={value}", self.query)
    }

    /// The page without a node or page picked.
    fn top(&self) -> &str {
        self.query.trim_end_matches("&amp;")
    }
}

/// The part the script swaps in after each event.
fn render_live(
    html: &mut String,
    s: &ClusterStatus,
    items: &[TimelineItem],
    node: Option<&str>,
    page: Option<usize>,
    links: &Links,
) {
    let p = &s.projector;
    let leader = match (&p.leader, p.lease_held) {
        (Some(l), true) => format!("{} (fence {})", escape(l), p.fence),
        _ => "<b class=\"bad\">none</b>".to_owned(),
    };
    let probers: Vec<String> = s.probers.iter().map(|p| escape(&p.id)).collect();
    let probers = if probers.is_empty() {
        "<b class=\"bad\">none alive</b>".to_owned()
    } else {
        probers.join(", ")
    };
    let states: Vec<String> = s
        .states
        .iter()
        .map(|(state, n)| format!("<span class=\"s-{state}\">{n} {state}</span>"))
        .collect();
    let _ = write!(
        html,
        "<section class=\"summary\"><p>{} nodes: {} · {} keys owned, {} without an owner · \
         ring v{} ({}, {} vnodes)</p><p>leader {leader} · lag {} entries ({:.1} s) · \
         probers: {probers}</p></section>",
        s.nodes.len(),
        states.join(", "),
        s.owned_keys,
        s.unowned_keys,
        s.ring_version,
        escape(&s.strategy),
        s.vnodes,
        p.lag_entries,
        p.lag_seconds,
    );
    let pages = s.nodes.len().div_ceil(NODES_PER_PAGE).max(1);
    let selected_page = node
        .and_then(|n| s.nodes.iter().position(|x| x.record.node == n))
        .map(|i| i / NODES_PER_PAGE + 1);
    let page = page.or(selected_page).unwrap_or(1).clamp(1, pages);
    let first = (page - 1) * NODES_PER_PAGE;
    let rows = &s.nodes[first.min(s.nodes.len())..(first + NODES_PER_PAGE).min(s.nodes.len())];
    html.push_str("<div class=\"cols\"><section><h2>Nodes</h2>");
    if pages > 1 {
        render_pager(html, page, pages, first, rows.len(), s.nodes.len(), links);
    }
    html.push_str(
        "<table id=\"nodes\"><thead><tr>\
        <th>node</th><th>state</th><th>epoch</th><th>weight</th><th>keys</th>\
        <th>ring share</th><th>last change</th></tr></thead><tbody>",
    );
    for n in rows {
        let r = &n.record;
        let id = escape(&r.node);
        let share = n.ring_share * 100.0;
        let selected = if node == Some(r.node.as_str()) {
            " class=\"selected\""
        } else {
            ""
        };
        let _ = write!(
            html,
            "<tr id=\"node-{id}\" data-node=\"{id}\" data-state=\"{state}\"{selected}>\
             <td><a href=\"{href}\">{id}</a></td><td class=\"state s-{state}\">{state}</td>\
             <td>{}</td><td>{}</td><td class=\"keys\">{}</td>\
             <td><div class=\"bar\"><span style=\"width:{share:.1}%\"></span></div>{}</td>\
             <td>{} <small>{}</small></td></tr>",
            r.epoch,
            r.weight,
            n.keys,
            percent(n.ring_share),
            escape(&r.last),
            escape(&r.since),
            state = escape(&r.state),
            href = links.to("node", &id),
        );
    }
    html.push_str("</tbody></table></section><section><h2>Ring</h2>");
    render_ring(html, s);
    html.push_str("</section></div>");
    match node {
        Some(n) => {
            let _ = write!(
                html,
                "<section><h2>Audit of {} <small><a href=\"{}\">all nodes</a></small></h2>",
                escape(n),
                links.top()
            );
        }
        None => html.push_str("<section><h2>Recent events</h2>"),
    }
    render_timeline(html, items);
    html.push_str("</section>");
}

/// "nodes 201–400 of 3000", with links to the neighbouring pages.
fn render_pager(
    html: &mut String,
    page: usize,
    pages: usize,
    first: usize,
    shown: usize,
    total: usize,
    links: &Links,
) {
    let _ = write!(
        html,
        "<p id=\"pager\" data-page=\"{page}\" data-pages=\"{pages}\">nodes {}–{} of {total}",
        first + 1,
        first + shown
    );
    if page > 1 {
        let _ = write!(
            html,
            " · <a href=\"{}\">‹ previous</a>",
            links.to("page", page - 1)
        );
    }
    if page < pages {
        let _ = write!(
            html,
            " · <a href=\"{}\">next ›</a>",
            links.to("page", page + 1)
        );
    }
    html.push_str("</p>");
}

/// The ring as a donut: one arc per member, its length the member's share.
fn render_ring(html: &mut String, s: &ClusterStatus) {
    let members: Vec<_> = s.nodes.iter().filter(|n| n.ring_share > 0.0).collect();
    html.push_str("<svg id=\"ring\" viewBox=\"-110 -110 220 220\" width=\"220\" height=\"220\">");
    html.push_str("<circle r=\"90\" class=\"ring-empty\"/>");
    let arcs: Vec<(String, f64)> = if members.len() <= RING_ARCS_MAX {
        members
            .iter()
            .map(|n| (n.record.node.clone(), n.ring_share))
            .collect()
    } else {
        vec![(format!("{} members", members.len()), 1.0)]
    };
    let circumference = 2.0 * std::f64::consts::PI * 90.0;
    let mut offset = 0.0;
    for (i, (name, share)) in arcs.iter().enumerate() {
        let len = share * circumference;
        let _ = write!(
            html,
            "<circle r=\"90\" class=\"arc c{}\" stroke-dasharray=\"{len:.2} {:.2}\" \
             stroke-dashoffset=\"{:.2}\"><title>{} {}</title></circle>",
            i % 8,
            circumference - len,
            -offset,
            escape(name),
            percent(*share)
        );
        offset += len;
    }
    let _ = write!(
        html,
        "<text text-anchor=\"middle\" dy=\"5\">{} members</text></svg>",
        members.len()
    );
}

fn render_timeline(html: &mut String, items: &[TimelineItem]) {
    html.push_str("<ol id=\"timeline\" reversed>");
    for it in items.iter().rev() {
        let _ = write!(
            html,
            "<li data-type=\"{kind}\"><time>{}</time> <b>{}</b> <span class=\"kind\">{kind}</span> {}",
            it.event_id,
            escape(it.node.as_deref().unwrap_or("-")),
            escape(&it.summary),
            kind = escape(&it.kind),
        );
        if !it.probes.is_empty() {
            let probes: Vec<String> = it.probes.iter().map(|p| escape(&p.describe())).collect();
            let _ = write!(
                html,
                "<div class=\"why\">probes: {}</div>",
                probes.join("; ")
            );
        }
        if let Some(m) = &it.moved {
            let flows: Vec<String> = m
                .flows
                .iter()
                .map(|f| {
                    format!(
                        "{}→{} {}",
                        escape(f.from.as_deref().unwrap_or("(none)")),
                        escape(f.to.as_deref().unwrap_or("(none)")),
                        f.keys
                    )
                })
                .collect();
            let _ = write!(
                html,
                "<div class=\"why\">{} keys moved: {}</div>",
                m.total,
                flows.join(", ")
            );
        }
        html.push_str("</li>");
    }
    html.push_str("</ol>");
}

pub(super) const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\
h1 small{font-size:.5em;color:#888}table{border-collapse:collapse}\
td,th{padding:.25em .6em;border-bottom:1px solid #eee;text-align:left}\
.cols{display:flex;gap:2em;flex-wrap:wrap}.bar{display:inline-block;width:80px;height:8px;\
background:#eee;margin-right:.4em}.bar span{display:block;height:8px;background:#4a7}\
.s-alive{color:#2a7d3a}.s-joining{color:#1f6fb2;font-style:italic}.s-suspect{color:#b8860b}.s-dead{color:#c0392b;font-weight:bold}\
.s-draining{color:#666}.bad{color:#c0392b}tr.selected{background:#fff6d5}\
.why{color:#555;margin-left:2em;font-size:.9em}#timeline time{color:#888}\
.kind{font-family:monospace}.ring-empty{fill:none;stroke:#eee;stroke-width:18}\
.arc{fill:none;stroke-width:18;transform:rotate(-90deg)}.c0{stroke:#4a7}.c1{stroke:#47a}\
.c2{stroke:#a74}.c3{stroke:#7a4}.c4{stroke:#a47}.c5{stroke:#4aa}.c6{stroke:#aa4}.c7{stroke:#74a}";

/// Follows `/api/events` (of the cluster in the page's query); after each event (at most every 250 ms) fetches this page again
/// and swaps in its live part.
const SCRIPT: &str = r#"(function(){
var live=document.getElementById('live'),tag=document.getElementById('live-state');
var pending=false,updates=0;
function refresh(){if(pending)return;pending=true;setTimeout(function(){
fetch(location.href,{cache:'no-store'}).then(function(r){return r.text()}).then(function(t){
var doc=new DOMParser().parseFromString(t,'text/html');var next=doc.getElementById('live');
if(next){live.innerHTML=next.innerHTML;updates++;document.body.dataset.updates=updates;}
}).finally(function(){pending=false;});},250);}
if(!window.EventSource)return;
var es=new EventSource('api/events'+location.search);
es.onopen=function(){tag.textContent='live';document.body.dataset.live='1';};
es.onerror=function(){tag.textContent='reconnecting';};
es.addEventListener('cluster',refresh);
})();"#;

#[cfg(test)]
mod tests {
    use super::percent;

    #[test]
    fn small_shares_keep_three_significant_digits() {
        assert_eq!(percent(1.0 / 3000.0), "0.0333%");
        assert_eq!(percent(1.0 / 30.0), "3.33%");
        assert_eq!(percent(0.5), "50.0%");
        assert_eq!(percent(1.0), "100.0%");
        assert_eq!(percent(0.0), "0%");
        assert_eq!(percent(1e-9), "0.000000%");
    }
}
