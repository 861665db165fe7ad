//! `/`: the dashboard. Rendered on the server, so a plain load (scripts off, `curl`) shows
//! the state; a few lines of inline script follow `/api/events` and swap in a fresh render
//! of the page's live part after each event. `?node=ID` shows that node's audit; the node
//! table shows 200 rows at a time, `?page=N` (from 1) picks which.
//! `/api/status` and `/api/audit` give the same data as JSON. `?cluster=NAME` picks the
//! cluster (needed in a fleet, whose `/` without it lists the clusters: `super::clusters`).
//!
//! It reads like a person wrote it: times are UTC clock times with their age ("3 s ago",
//! kept current by the script), never raw entry ids; each event is one sentence, without
//! its kind's name repeated before it; the ring is drawn as each member's share, with a
//! legend; and a chart shows each node's keys over the recent events (`super::chart`).
//! Above the live part, a key box answers `explain`: `?key=K` shows the key's owners over
//! time and why (`super::explain`, which also serves `/api/explain`).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use pantheon_client::audit::{AuditFilter, TimelineItem};
use pantheon_client::status::ClusterStatus;
use serde::Deserialize;

use super::{Shared, chart, clock, explain};

/// Events shown on the cluster page.
const TIMELINE_EVENTS: usize = 50;
/// Events the keys-per-node chart walks back through.
const CHART_EVENTS: usize = 1_000;
/// Legend rows under the ring; the rest are summed up in one line.
const LEGEND_MAX: usize = 12;
/// Colours for nodes (`c0`.. strokes, `b0`.. fills), by the node's place in the status.
pub(super) const COLOURS: usize = 10;
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
    /// The key the key box explains (`super::explain`).
    pub key: Option<String>,
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
    // The chart walks back through more events than the timeline shows, without probes.
    let recent = match client.timeline(&chart_filter()).await {
        Ok(recent) => recent,
        Err(e) => return unavailable(e),
    };
    let answer = explain::Answer::of(&client, q.key.as_deref()).await;
    let picked = q.cluster.as_deref();
    let view = View {
        status: &status,
        items: &items,
        recent: &recent,
        answer: &answer,
        now_ms: clock::now_ms(),
    };
    (
        answer.status(),
        Html(render_page(&view, node.as_deref(), q.page, picked)),
    )
        .into_response()
}

fn chart_filter() -> AuditFilter {
    AuditFilter {
        last: Some(CHART_EVENTS),
        probes: false,
        ..AuditFilter::default()
    }
}

/// What one render of the page shows.
pub struct View<'a> {
    pub status: &'a ClusterStatus,
    /// The timeline: the cluster's latest events, or the selected node's audit.
    pub items: &'a [TimelineItem],
    /// The cluster's latest events (up to [`CHART_EVENTS`]), for the chart.
    pub recent: &'a [TimelineItem],
    /// What the key box shows.
    pub answer: &'a explain::Answer,
    /// The time the page is rendered at; ages are counted from it.
    pub now_ms: u64,
}

/// The whole page; `cluster` (when picked with `?cluster=`) is kept in its links.
pub fn render_page(
    view: &View<'_>,
    node: Option<&str>,
    page: Option<usize>,
    cluster: Option<&str>,
) -> String {
    let mut html = String::with_capacity(16 * 1024 + view.status.nodes.len() * 400);
    let title = format!("Pantheon · {}", escape(&view.status.cluster));
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\
         <h1>{title} <small id=\"live-state\">static</small></h1>",
    );
    // The key box is not part of the live part: live updates leave what was typed alone.
    let mut hidden = Vec::new();
    if let Some(c) = cluster {
        hidden.push(("cluster", c));
    }
    if let Some(n) = node {
        hidden.push(("node", n));
    }
    explain::render(&mut html, view.answer, &hidden, view.now_ms);
    let _ = write!(html, "<main id=\"live\" data-now=\"{}\">", view.now_ms);
    let links = Links::new(cluster);
    render_live(&mut html, view, node, page, &links);
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
    view: &View<'_>,
    node: Option<&str>,
    page: Option<usize>,
    links: &Links,
) {
    let s = view.status;
    let now = view.now_ms;
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
         probers: {probers}</p><p class=\"note\">Times are UTC, from the log's clock; \
         this view is as of {}.</p></section>",
        s.nodes.len(),
        states.join(", "),
        s.owned_keys,
        s.unowned_keys,
        s.ring_version,
        escape(&s.strategy),
        s.vnodes,
        p.lag_entries,
        p.lag_seconds,
        clock::clock(now, now),
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
    // Load (docs/adr/0018) is a column only once some node reports one.
    let mean_load = pantheon_client::loads::mean_load(s.nodes.iter().map(|n| &n.record));
    html.push_str(
        "<table id=\"nodes\"><thead><tr>\
        <th>node</th><th>state</th><th>epoch</th><th>weight</th><th>keys</th>",
    );
    if mean_load.is_some() {
        html.push_str("<th>load</th>");
    }
    html.push_str("<th>ring share</th><th>last change</th></tr></thead><tbody>");
    for (i, n) in rows.iter().enumerate() {
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
             <td>{}</td><td>{}</td><td class=\"keys\">{}</td>{}\
             <td><div class=\"bar\"><span class=\"b{colour}\" style=\"width:{share:.1}%\">\
             </span></div>{}</td><td class=\"last\">{} ",
            r.epoch,
            r.weight,
            n.keys,
            mean_load.map_or(String::new(), |mean| format!(
                "<td class=\"load\">{}</td>",
                pantheon_client::loads::load_text(r.load, mean)
            )),
            percent(n.ring_share),
            escape(&r.last.replace('_', " ")),
            state = escape(&r.state),
            href = links.to("node", &id),
            colour = (first + i) % COLOURS,
        );
        clock::write_time(html, r.since_ms, now);
        html.push_str("</td></tr>");
    }
    html.push_str("</tbody></table></section><section><h2>Ring</h2>");
    render_ring(html, s);
    html.push_str("</section><section><h2>Keys per node</h2>");
    let history = chart::history(s, view.recent, now);
    chart::render(html, &history, now);
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
    render_timeline(html, view.items, now);
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

/// The ring as a donut: one arc per member, its length the member's share, in the node's
/// colour; a legend below names each member with its share of the ring and of the keys.
fn render_ring(html: &mut String, s: &ClusterStatus) {
    // (colour, node, share): the colour is the node's place in the status, as in the chart.
    let members: Vec<(usize, &str, f64, u64)> = s
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.ring_share > 0.0)
        .map(|(i, n)| (i % COLOURS, n.record.node.as_str(), n.ring_share, n.keys))
        .collect();
    html.push_str("<svg id=\"ring\" viewBox=\"-110 -110 220 220\" width=\"220\" height=\"220\">");
    html.push_str("<circle r=\"90\" class=\"ring-empty\"/>");
    let circumference = 2.0 * std::f64::consts::PI * 90.0;
    if members.len() <= RING_ARCS_MAX {
        let mut offset = 0.0;
        for (colour, name, share, _) in &members {
            let len = share * circumference;
            let name = escape(name);
            let _ = write!(
                html,
                "<circle r=\"90\" class=\"arc c{colour}\" data-node=\"{name}\" \
                 data-share=\"{share}\" stroke-dasharray=\"{len:.2} {:.2}\" \
                 stroke-dashoffset=\"{:.2}\"><title>{name}: {} of the ring</title></circle>",
                circumference - len,
                -offset,
                percent(*share)
            );
            offset += len;
        }
    } else {
        // Hundreds of slivers say nothing: one ring, and the table gives the shares.
        let _ = write!(
            html,
            "<circle r=\"90\" class=\"arc c0\"><title>{} members</title></circle>",
            members.len()
        );
    }
    let n = members.len();
    let _ = write!(
        html,
        "<text text-anchor=\"middle\" dy=\"5\">{n} member{}</text></svg>",
        if n == 1 { "" } else { "s" }
    );
    html.push_str("<ul class=\"legend\" id=\"ring-legend\">");
    let owned = s.owned_keys.max(1) as f64;
    for (colour, name, share, keys) in members.iter().take(LEGEND_MAX) {
        let name = escape(name);
        let _ = write!(
            html,
            "<li data-node=\"{name}\" data-share=\"{share}\"><i class=\"swatch b{colour}\"></i>\
             {name}: {} of the ring, {keys} keys ({})</li>",
            percent(*share),
            percent(*keys as f64 / owned)
        );
    }
    if members.len() > LEGEND_MAX {
        let rest: f64 = members[LEGEND_MAX..].iter().map(|m| m.2).sum();
        let _ = write!(
            html,
            "<li>{} more members: {} of the ring</li>",
            members.len() - LEGEND_MAX,
            percent(rest)
        );
    }
    if members.is_empty() {
        html.push_str("<li>no members: no node can own keys</li>");
    }
    html.push_str("</ul>");
}

/// "108 keys moved: node-b→node-a 108".
fn moves_sentence(m: &pantheon_client::audit::Moves) -> String {
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
    let keys = if m.total == 1 { "key" } else { "keys" };
    format!("{} {keys} moved: {}", m.total, flows.join(", "))
}

/// One event a line: its time and age, the node, and the summary, which already starts with
/// what happened ("died: 3 failed probes in a row"), so the kind is not written before it.
fn render_timeline(html: &mut String, items: &[TimelineItem], now: u64) {
    html.push_str("<ol id=\"timeline\" reversed>");
    for it in items.iter().rev() {
        let kind = escape(&it.kind);
        let _ = write!(
            html,
            "<li data-type=\"{kind}\" data-id=\"{}\">",
            escape(&it.event_id)
        );
        clock::write_time(html, it.at_ms, now);
        if let Some(n) = &it.node {
            let _ = write!(html, " <b>{}</b>", escape(n));
        }
        // A move on its own (not after a death or a join) is its own sentence.
        let standalone_move = it.kind == "rebalanced" && it.moved.is_some();
        let summary = match &it.moved {
            Some(m) if standalone_move => moves_sentence(m),
            _ => escape(&it.summary),
        };
        let _ = write!(html, " <span class=\"what k-{kind}\">{summary}</span>");
        if let (Some(after), Some(previous)) = (it.after_ms, &it.after_kind) {
            let _ = write!(
                html,
                " <small class=\"after\">{} after {}</small>",
                clock::span(after),
                escape(&previous.replace('_', " "))
            );
        }
        if !it.probes.is_empty() {
            let probes: Vec<String> = it
                .probes
                .iter()
                .map(|p| format!("{} {}", clock::clock(p.at_ms, now), escape(&p.describe())))
                .collect();
            let _ = write!(
                html,
                "<div class=\"why\">probes: {}</div>",
                probes.join("; ")
            );
        }
        if let Some(m) = &it.moved
            && !standalone_move
        {
            let _ = write!(html, "<div class=\"why\">{}</div>", moves_sentence(m));
        }
        html.push_str("</li>");
    }
    html.push_str("</ol>");
}

pub(super) const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\
.note,.caption,.ago,.after,.hint{color:#888}.caption{font-size:.9em;max-width:480px}\
.legend{list-style:none;padding:0;margin:.5em 0}.legend li{margin:.1em 0}\
.swatch{display:inline-block;width:.8em;height:.8em;margin-right:.4em;vertical-align:-1px}\
#keys-chart text,#ring text{font-size:10px;fill:#666}.axis{stroke:#ccc}\
.series{fill:none;stroke-width:2}.k-died,.k-suspect{color:#c0392b}\
h1 small{font-size:.5em;color:#888}table{border-collapse:collapse}\
td,th{padding:.25em .6em;border-bottom:1px solid #eee;text-align:left}\
.cols{display:flex;gap:2em;flex-wrap:wrap}.bar{display:inline-block;width:80px;height:8px;\
background:#eee;margin-right:.4em}.bar span{display:block;height:8px}\
.s-alive{color:#2a7d3a}.s-joining{color:#1f6fb2;font-style:italic}.s-suspect{color:#b8860b}.s-dead{color:#c0392b;font-weight:bold}\
.s-draining{color:#666}.bad{color:#c0392b}tr.selected{background:#fff6d5}\
.why{color:#555;margin-left:2em;font-size:.9em}#timeline time{color:#555}\
.ring-empty{fill:none;stroke:#eee;stroke-width:18}\
.arc{fill:none;stroke-width:18;transform:rotate(-90deg)}\
.c0{stroke:#4a7}.c1{stroke:#47a}.c2{stroke:#a74}.c3{stroke:#7a4}.c4{stroke:#a47}\
.c5{stroke:#4aa}.c6{stroke:#aa4}.c7{stroke:#74a}.c8{stroke:#888}.c9{stroke:#d62}\
.b0{background:#4a7}.b1{background:#47a}.b2{background:#a74}.b3{background:#7a4}\
.b4{background:#a47}.b5{background:#4aa}.b6{background:#aa4}.b7{background:#74a}\
.b8{background:#888}.b9{background:#d62}\
#key-box{margin-bottom:1em}#explain-history .owner{font-weight:bold}#explain-history li.now{background:#fff6d5}\
#explain[data-state=loading]{opacity:.5}";

/// Follows `/api/events` (of the cluster in the page's query); after each event (at most every 250 ms) fetches this page again
/// (without `key`: the key box is not redrawn, so no `explain` per event) and swaps in its
/// live part. Every second it counts the "ago"s on, from the server's clock (`data-now` of
/// the last render), in the words of `clock::ago`. The key box's form is sent without a
/// reload: it fetches the page with `?key=K`, swaps in the box's answer and puts the key in
/// the address, so a reload or a link shows the same answer.
const SCRIPT: &str = r#"(function(){
var live=document.getElementById('live'),tag=document.getElementById('live-state');
var pending=false,updates=0,skew=0;
function sync(){var n=Number(live.dataset.now);if(n)skew=n-Date.now();}
function agoText(d){if(d<1000)return 'just now';var s=Math.floor(d/1000);
if(s<60)return s+' s ago';if(s<3600)return Math.floor(s/60)+' min ago';
if(s<86400)return Math.floor(s/3600)+' h ago';return Math.floor(s/86400)+' d ago';}
function tick(){var now=Date.now()+skew;document.querySelectorAll('.ago').forEach(function(e){
e.textContent=agoText(now-Number(e.dataset.ms));});}
sync();setInterval(tick,1000);
function liveUrl(){var u=new URL(location.href);u.searchParams.delete('key');return u.href;}
var form=document.getElementById('explain-form'),box=document.getElementById('explain');
if(form&&box&&window.fetch)form.addEventListener('submit',function(ev){ev.preventDefault();
var q='?'+new URLSearchParams(new FormData(form)).toString();box.dataset.state='loading';
fetch(q,{cache:'no-store'}).then(function(r){return r.text()}).then(function(t){
var next=new DOMParser().parseFromString(t,'text/html').getElementById('explain');
if(next){box.innerHTML=next.innerHTML;box.dataset.state=next.dataset.state;tick();
history.replaceState(null,'',q);}
}).catch(function(){box.dataset.state='failed';box.textContent='the dashboard did not answer';});});
function refresh(){if(pending)return;pending=true;setTimeout(function(){
fetch(liveUrl(),{cache:'no-store'}).then(function(r){return r.text()}).then(function(t){
var doc=new DOMParser().parseFromString(t,'text/html');var next=doc.getElementById('live');
if(next){live.innerHTML=next.innerHTML;live.dataset.now=next.dataset.now;sync();
updates++;document.body.dataset.updates=updates;}
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
