//! The list pages, active requests (`/`) and history (`/history`), their list fragments, and
//! the card fragment that a live update swaps in place of one card.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Layout;
use super::filters::{Filters, ListKind, Opt, PageParams, Pager};
use crate::Dashboard;
use crate::views::Card;

/// A list of cards with its pager, as the page shows it and as `/fragments/…` returns it.
#[derive(Debug, Clone)]
pub(crate) struct ListView {
    pub cards: Vec<Card>,
    pub total: u64,
    pub pager: Pager,
    pub error: Option<String>,
    pub narrowed: bool,
    pub history: bool,
    /// The states this list shows, comma-separated: a card whose request leaves them makes
    /// `app.js` refetch the list instead of the card.
    pub states: String,
    /// Where `app.js` refetches this list (same filters).
    pub refresh: String,
    /// Where "clear filters" goes.
    pub clear: &'static str,
}

impl ListView {
    pub(super) fn new(f: &Filters, cards: Vec<Card>, total: u64, error: Option<String>) -> Self {
        let states: Vec<&str> = f.query().states.iter().map(|s| s.as_str()).collect();
        Self {
            cards,
            total,
            pager: Pager::new(f, total),
            error,
            narrowed: f.narrowed(),
            history: f.kind == ListKind::History,
            states: states.join(","),
            refresh: format!("{}?{}", f.kind.fragment(), f.query_string(f.page)),
            clear: f.kind.path(),
        }
    }
}

/// The filter form's values.
#[derive(Debug, Clone)]
pub(crate) struct FilterForm {
    pub action: &'static str,
    pub q: String,
    pub user: String,
    pub states: Vec<Opt>,
    /// History only: films or series.
    pub media: Option<Vec<Opt>>,
}

#[derive(Template, WebTemplate)]
#[template(path = "index.html")]
pub(crate) struct IndexPage {
    pub(super) layout: Layout,
    pub(super) form: FilterForm,
    pub(super) list: ListView,
}

#[derive(Template, WebTemplate)]
#[template(path = "history.html")]
pub(crate) struct HistoryPage {
    layout: Layout,
    form: FilterForm,
    list: ListView,
}

#[derive(Template, WebTemplate)]
#[template(path = "fragments/list.html")]
pub(crate) struct ListFragment {
    list: ListView,
}

#[derive(Template, WebTemplate)]
#[template(path = "fragments/card.html")]
pub(crate) struct CardFragment {
    card: Card,
}

async fn list(d: &Dashboard, f: &Filters) -> ListView {
    match d.list_requests(&f.query()).await {
        Ok(reply) => ListView::new(f, reply.requests.iter().map(Card::new).collect(), reply.total, None),
        Err(e) => ListView::new(f, Vec::new(), 0, Some(e.to_string())),
    }
}

pub(super) fn form(f: &Filters) -> FilterForm {
    FilterForm {
        action: f.kind.path(),
        q: f.q.clone(),
        user: f.user.clone(),
        states: f.state_options(),
        media: (f.kind == ListKind::History).then(|| f.media_options()),
    }
}

/// Adds the "remember this user" cookie when the query named a user.
fn with_cookie(f: &Filters, page: impl IntoResponse) -> Response {
    let mut res = page.into_response();
    if let Some(cookie) = f.cookie() {
        res.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    res
}

/// `GET /`: the active requests.
pub(crate) async fn index_page(
    State(d): State<Dashboard>,
    Query(p): Query<PageParams>,
    headers: HeaderMap,
) -> Response {
    let f = Filters::new(ListKind::Active, &p, &headers);
    let layout = Layout::new("Requests", "active", "index").live("/api/sse".into(), &d.hub);
    let page = IndexPage { layout, form: form(&f), list: list(&d, &f).await };
    with_cookie(&f, page)
}

/// `GET /history`: finished requests.
pub(crate) async fn history_page(
    State(d): State<Dashboard>,
    Query(p): Query<PageParams>,
    headers: HeaderMap,
) -> Response {
    let f = Filters::new(ListKind::History, &p, &headers);
    let layout = Layout::new("History", "history", "history").live("/api/sse".into(), &d.hub);
    let page = HistoryPage { layout, form: form(&f), list: list(&d, &f).await };
    with_cookie(&f, page)
}

/// `GET /fragments/active`: the list of `/` alone, for a live refresh.
pub(crate) async fn active_fragment(
    State(d): State<Dashboard>,
    Query(p): Query<PageParams>,
    headers: HeaderMap,
) -> ListFragment {
    ListFragment { list: list(&d, &Filters::new(ListKind::Active, &p, &headers)).await }
}

/// `GET /fragments/history`: the list of `/history` alone.
pub(crate) async fn history_fragment(
    State(d): State<Dashboard>,
    Query(p): Query<PageParams>,
    headers: HeaderMap,
) -> ListFragment {
    ListFragment { list: list(&d, &Filters::new(ListKind::History, &p, &headers)).await }
}

/// `GET /fragments/card/{id}`: one card, swapped in place when its request changes.
pub(crate) async fn card_fragment(State(d): State<Dashboard>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse() else { return StatusCode::NOT_FOUND.into_response() };
    match d.request_detail(id).await {
        Ok(detail) => CardFragment { card: Card::new(&detail.summary) }.into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::card::tests::summary;
    use shared::model::State as St;

    fn filters(kind: ListKind) -> Filters {
        Filters::new(kind, &PageParams::default(), &HeaderMap::new())
    }

    fn index_with(cards: Vec<Card>) -> String {
        let f = filters(ListKind::Active);
        let total = cards.len() as u64;
        IndexPage {
            layout: Layout::new("Requests", "active", "index"),
            form: form(&f),
            list: ListView::new(&f, cards, total, None),
        }
        .render()
        .unwrap()
    }

    #[test]
    fn user_text_is_escaped_everywhere_on_the_index() {
        let mut s = summary(7, "<script>window.__xss=1</script>", St::Failed);
        s.requested_by = Some("<b>mallory</b>".into());
        s.reason = Some("\"><img src=x onerror=alert(1)>".into());
        let html = index_with(vec![Card::new(&s)]);
        assert!(!html.contains("<script>window"), "title must be escaped");
        assert!(html.contains("&#60;script&#62;window.__xss=1&#60;/script&#62;") || html.contains("&lt;script&gt;"));
        assert!(!html.contains("<b>mallory"));
        assert!(!html.contains("<img src=x"));
    }

    #[test]
    fn an_empty_index_says_so() {
        let html = index_with(vec![]);
        assert!(html.contains("No active requests"), "{html}");
    }

    #[test]
    fn a_downloading_card_has_its_bar_and_a_series_its_episode_count() {
        let mut film = summary(1, "The Batman", St::Downloading);
        (film.progress, film.dlspeed, film.eta) = (0.67, 2_300_000, Some(272));
        let html = CardFragment { card: Card::new(&film) }.render().unwrap();
        assert!(html.contains(r#"<progress class="bar" max="100" value="67""#), "{html}");
        assert!(html.contains("2.3 MB/s") && html.contains("4m 32s"), "{html}");
        let mut series = summary(2, "DAN DA DAN", St::Importing);
        series.media_type = shared::events::MediaType::Tv;
        series.episodes_summary = Some(shared::model::EpisodeCounts { total: 12, available: 8, ..Default::default() });
        let html = CardFragment { card: Card::new(&series) }.render().unwrap();
        assert!(html.contains("8/12 episodes available"), "{html}");
    }
}
