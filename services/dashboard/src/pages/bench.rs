//! The render benchmark of issue 6: the index with 1,000 active requests. Run it with
//!
//! ```sh
//! cargo test -p dashboard --release -- --ignored --nocapture index_render_benchmark
//! ```
//!
//! It prints the render time and size of the index as served (page 1 of 1,000 active requests)
//! and of all 1,000 cards in one page (the template under stress), raw and compressed by the
//! same layer the router uses, and the first load (HTML + CSS + JS + htmx, compressed).

use std::time::{Duration, Instant};

use askama::Template;
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Request, header};
use axum::routing::get;
use shared::events::MediaType;
use shared::model::{EpisodeCounts, RequestSummary, State};
use tower::ServiceExt;

use super::Layout;
use super::filters::{Filters, ListKind, PageParams};
use super::lists::{IndexPage, ListView, form};
use crate::views::Card;
use crate::views::card::tests::summary;

/// 1,000 requests in every active state: films and series, downloads, failures with reasons.
fn requests() -> Vec<RequestSummary> {
    let active = ListKind::Active.states();
    (1..=1000)
        .map(|i| {
            let state = active[i as usize % active.len()];
            let mut s = summary(i, &format!("Request number {i}: a title of a usual length"), state);
            if i % 3 == 0 {
                s.media_type = MediaType::Tv;
                s.episodes_summary = Some(EpisodeCounts { total: 12, downloading: 2, downloaded: 2, available: 8 });
            }
            if state == State::Downloading {
                (s.progress, s.dlspeed, s.eta) = (0.67, 2_300_000, Some(272));
            }
            if state == State::Failed || i % 17 == 0 {
                s.stalled = state != State::Failed;
                s.reason = Some("No release found yet after 6 h: releases may be rejected by quality profiles".into());
            }
            s
        })
        .collect()
}

fn render(cards: Vec<Card>, total: u64) -> String {
    let f = Filters::new(ListKind::Active, &PageParams::default(), &HeaderMap::new());
    let layout = Layout::new("Requests", "active", "index");
    IndexPage { layout, form: form(&f), list: ListView::new(&f, cards, total, None) }.render().unwrap()
}

/// Mean time of `f` over `n` runs.
fn time<T>(n: u32, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut last = f();
    let start = Instant::now();
    for _ in 0..n {
        last = f();
    }
    (start.elapsed() / n, last)
}

/// Size of `body` after the router's compression layer, for `encoding`.
async fn compressed(path: &str, body: String, encoding: &str) -> usize {
    let html = Router::new().route("/", get(move || async move { ([(header::CONTENT_TYPE, "text/html")], body) }));
    let app = html.route("/static/{name}", get(crate::assets::serve)).layer(crate::compression());
    let req = Request::get(path).header(header::ACCEPT_ENCODING, encoding).body(Body::empty()).unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.headers()[header::CONTENT_ENCODING], encoding, "{path}");
    to_bytes(res.into_body(), usize::MAX).await.unwrap().len()
}

#[tokio::test]
#[ignore = "a benchmark: run it in release mode, see the module docs"]
async fn index_render_benchmark() {
    let all = requests();
    let (page_time, page) = time(200, || {
        let cards = all.iter().take(super::filters::PAGE_SIZE as usize).map(Card::new).collect();
        render(cards, all.len() as u64)
    });
    let (all_time, everything) = time(20, || render(all.iter().map(Card::new).collect(), all.len() as u64));
    let mut first_load = compressed("/", page.clone(), "br").await;
    for asset in ["app.css", "app.js", "htmx.min.js"] {
        first_load += compressed(&crate::assets::url(asset), String::new(), "br").await;
    }
    let start = Instant::now();
    let all_br = compressed("/", everything.clone(), "br").await;
    let all_br_time = start.elapsed();
    println!("index, page 1 of 1,000 active requests ({} cards):", super::filters::PAGE_SIZE);
    println!(
        "  render {page_time:?}; HTML {} B, gzip {} B, br {} B",
        page.len(),
        compressed("/", page.clone(), "gzip").await,
        compressed("/", page.clone(), "br").await
    );
    println!("  first load (HTML + CSS + JS + htmx, br): {first_load} B");
    println!("all 1,000 cards in one page:");
    println!(
        "  render {all_time:?}; HTML {} B, gzip {} B, br {all_br} B (compressed in {all_br_time:?})",
        everything.len(),
        compressed("/", everything.clone(), "gzip").await
    );
    assert!(first_load <= 100_000, "first load {first_load} B is over 100 KB");
}
