//! The clusters a fleet process serves: `/` without `?cluster=` lists them, each linking to
//! its own page, and `/api/clusters` gives the list as JSON (outside a fleet, the one
//! cluster). The list is the clusters named in the settings plus, with patterns, those that
//! match now (a `SCAN` of every master per request).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};

use super::Shared;
use super::dashboard::{STYLE, escape, unavailable};

/// The clusters served now.
async fn served(shared: &Shared) -> Result<Vec<String>, String> {
    match &shared.config.fleet {
        None => Ok(vec![shared.config.cluster.clone()]),
        Some(served) => served
            .find(&shared.config.deployment, &shared.config.prefix)
            .await
            .map_err(|e| e.to_string()),
    }
}

pub async fn clusters_json(State(shared): State<Arc<Shared>>) -> Response {
    match served(&shared).await {
        Ok(clusters) => Json(clusters).into_response(),
        Err(e) => unavailable(e),
    }
}

/// `/` in a fleet.
pub async fn index(shared: &Shared) -> Response {
    match served(shared).await {
        Ok(clusters) => {
            let patterns = shared
                .config
                .fleet
                .as_ref()
                .map(|f| f.patterns.as_slice())
                .unwrap_or_default();
            Html(render_index(&clusters, patterns)).into_response()
        }
        Err(e) => unavailable(e),
    }
}

fn render_index(clusters: &[String], patterns: &[String]) -> String {
    let title = format!("Pantheon · {} clusters", clusters.len());
    let mut html = String::with_capacity(2048 + clusters.len() * 80);
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body><h1>{title}</h1>\
         <p>This process shares the leading of these clusters with the other processes \
         given the same list"
    );
    if !patterns.is_empty() {
        let patterns: Vec<String> = patterns.iter().map(|p| escape(p)).collect();
        let _ = write!(html, " (with those matching {})", patterns.join(", "));
    }
    html.push_str(".</p><ul id=\"clusters\">");
    for c in clusters {
        let c = escape(c);
        let _ = write!(
            html,
            "<li id=\"cluster-{c}\"><a href=\"?cluster={c}\">{c}</a></li>"
        );
    }
    html.push_str("</ul></body></html>");
    html
}

#[cfg(test)]
mod tests {
    use super::render_index;

    #[test]
    fn the_index_links_every_cluster() {
        let html = render_index(&["a".into(), "b".into()], &["b*".into()]);
        assert!(
            html.contains("<title>Pantheon · 2 clusters</title>"),
            "{html}"
        );
        assert!(html.contains("<a href=\"?cluster=a\">a</a>"), "{html}");
        assert!(html.contains("<a href=\"?cluster=b\">b</a>"), "{html}");
        assert!(html.contains("matching b*"), "{html}");
    }
}
