//! HTML pages and the fragments that live updates swap in (askama templates, autoescaped).
//!
//! Pages: `/` (active requests), `/requests/{id}` (detail), `/history`, `/stats`. Fragments, fetched by
//! `static/app.js` through htmx when an SSE event names a request: `/fragments/card/{id}`,
//! `/fragments/detail/{id}`, `/fragments/active` and `/fragments/history` (a page's list).

#[cfg(test)]
mod bench;
mod detail;
mod filters;
mod lists;
mod stats;

use axum::http::{HeaderValue, header};
use axum::response::Response;

pub(crate) use detail::{detail_fragment, detail_page};
pub(crate) use lists::{active_fragment, card_fragment, history_fragment, history_page, index_page};
pub(crate) use stats::stats_page;

/// What every page's frame needs: its title, which nav entry is current, and what the script
/// should listen to.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub title: String,
    /// `active`, `history` or empty: the nav entry marked `aria-current`.
    pub nav: &'static str,
    /// `index`, `detail`, `history` or `error`: tells `app.js` what to update live.
    pub page: &'static str,
    /// The SSE stream this page follows, if any.
    pub sse: Option<String>,
    /// The newest SSE event id when the page was rendered: the script resumes from it.
    pub last_event_id: Option<String>,
}

impl Layout {
    /// A page without live updates.
    pub fn new(title: impl Into<String>, nav: &'static str, page: &'static str) -> Self {
        Self { title: title.into(), nav, page, sse: None, last_event_id: None }
    }

    /// A page that follows `sse` from now on. Take it before asking the correlator, so that a
    /// change landing in between is replayed rather than lost.
    pub fn live(mut self, sse: String, hub: &crate::Hub) -> Self {
        self.sse = Some(sse);
        self.last_event_id = Some(hub.last_event_id());
        self
    }

    pub fn css(&self) -> String {
        crate::assets::url("app.css")
    }

    pub fn js(&self) -> String {
        crate::assets::url("app.js")
    }

    pub fn htmx(&self) -> String {
        crate::assets::url("htmx.min.js")
    }
}

/// The Content-Security-Policy of every page: scripts and styles only from the dashboard
/// itself (no inline script, no `eval`), posters from anywhere over http(s). Even if some
/// user text escaped the templates' escaping, the browser would refuse to run it.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: http: data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Adds the security headers to HTML answers (a `map_response` middleware).
pub(crate) async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-cache"));
    res
}
