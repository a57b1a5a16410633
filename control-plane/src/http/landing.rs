//! `GET /`: a small static page that names the server and links its endpoints
//! (workspace-api.md §8.1, "`/` → landing page"). Only the exact root path is routed, so
//! it shadows nothing; under `--base-path` the links carry the prefix the request came in
//! with.

use crate::manager::Manager;
use axum::extract::{OriginalUri, State};
use axum::response::Html;
use axum::routing::get;
use std::sync::Arc;

const PAGE: &str = include_str!("landing.html");

pub(super) fn routes() -> axum::Router<Arc<Manager>> {
    axum::Router::new().route("/", get(landing))
}

async fn landing(State(m): State<Arc<Manager>>, OriginalUri(uri): OriginalUri) -> Html<String> {
    let base = uri.path().trim_end_matches('/');
    Html(render(
        &m.config.server_id,
        &m.config.version,
        &m.config.public_base_url,
        base,
    ))
}

fn render(server_id: &str, version: &str, public_url: &str, base: &str) -> String {
    PAGE.replace("{{SERVER_ID}}", &escape(server_id))
        .replace("{{VERSION}}", &escape(version))
        .replace("{{PUBLIC_URL}}", &escape(public_url))
        .replace("{{BASE}}", &escape(base))
}

/// Escapes text for HTML content and double-quoted attributes.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_the_server_and_links_under_the_base_path() {
        let page = render("srv-1", "0.21.99", "http://h:9527/hypha", "/hypha");
        assert!(page.contains("<strong id=\"server-id\">srv-1</strong>"));
        assert!(page.contains("0.21.99"));
        assert!(page.contains("href=\"/hypha/health\""));
        assert!(page.contains("href=\"/hypha/ws/agent-skills/\""));
        assert!(page.contains("\"server_url\": \"http://h:9527/hypha\""));
        assert!(!page.contains("{{"), "every placeholder is filled");
        let root = render("s", "v", "http://h", "");
        assert!(root.contains("href=\"/metrics\""));
    }

    #[test]
    fn config_values_are_escaped() {
        let page = render("<script>", "v", "http://h", "");
        assert!(page.contains("&lt;script&gt;"));
        assert!(!page.contains("<script>"));
    }
}
