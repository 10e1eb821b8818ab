//! The request detail page (`/requests/{id}`), its live fragment, and the 404 page.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::ids::RequestId;
use shared::model::RequestDetail;

use super::Layout;
use crate::Dashboard;
use crate::views::Detail;

#[derive(Template, WebTemplate)]
#[template(path = "detail.html")]
pub(crate) struct DetailPage {
    layout: Layout,
    detail: Detail,
}

#[derive(Template, WebTemplate)]
#[template(path = "fragments/detail.html")]
pub(crate) struct DetailFragment {
    detail: Detail,
}

/// The page for an unknown request, or when the correlator cannot answer.
#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    layout: Layout,
    heading: &'static str,
    message: String,
}

impl ErrorPage {
    fn response(status: StatusCode, heading: &'static str, message: String) -> Response {
        let layout = Layout::new(heading, "", "error");
        (status, ErrorPage { layout, heading, message }).into_response()
    }

    fn not_found(id: &str) -> Response {
        Self::response(StatusCode::NOT_FOUND, "Request not found", format!("There is no request {id}."))
    }
}

fn parse(id: &str) -> Option<RequestId> {
    id.parse().ok().filter(|r: &RequestId| r.0 > 0)
}

/// The page's view of a request, with the links and actions the settings allow.
fn view(d: &Dashboard, detail: &RequestDetail) -> Detail {
    Detail::new(detail)
        .with_trace(d.settings.trace_url.as_deref())
        .with_lower_quality(d.settings.lower_quality.offered(detail.summary.media_type, detail.summary.is_4k))
}

/// `GET /requests/{id}`.
pub(crate) async fn detail_page(State(d): State<Dashboard>, Path(id): Path<String>) -> Response {
    let Some(rid) = parse(&id) else { return ErrorPage::not_found(&id) };
    let live = Layout::new("", "", "detail").live(format!("/api/sse?request={rid}"), &d.hub);
    match d.request_detail(rid).await {
        Ok(detail) => {
            let layout = Layout { title: detail.summary.title.clone(), ..live };
            DetailPage { layout, detail: view(&d, &detail) }.into_response()
        }
        Err(e) if e.status() == StatusCode::NOT_FOUND => ErrorPage::not_found(&id),
        Err(e) => ErrorPage::response(e.status(), "Cannot show this request", e.to_string()),
    }
}

/// `GET /fragments/detail/{id}`: the body of the detail page, swapped on a change.
pub(crate) async fn detail_fragment(State(d): State<Dashboard>, Path(id): Path<String>) -> Response {
    let Some(rid) = parse(&id) else { return StatusCode::NOT_FOUND.into_response() };
    match d.request_detail(rid).await {
        Ok(detail) => DetailFragment { detail: view(&d, &detail) }.into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::card::tests::summary;
    use serde_json::json;
    use shared::model::{State as St, TimelineEntry};
    use time::OffsetDateTime;

    fn render(d: &RequestDetail) -> String {
        DetailPage { layout: Layout::new("x", "", "detail"), detail: Detail::new(d) }.render().unwrap()
    }

    #[test]
    fn a_failed_request_offers_retry_and_cancel_and_escapes_its_reason() {
        let mut s = summary(9, "Dune: Part Two", St::Failed);
        s.reason = Some("<i>no</i> release".into());
        let entry = TimelineEntry {
            state: St::Failed,
            at: OffsetDateTime::UNIX_EPOCH,
            source: "jellyseerr".into(),
            message: "Failed <now>".into(),
            details: json!({}),
            episode: None,
            late: false,
            remark: false,
        };
        let html = render(&RequestDetail { summary: s, downloads: vec![], episodes: vec![], timeline: vec![entry] });
        assert!(html.contains(r#"hx-post="/api/requests/9/retry""#), "{html}");
        assert!(html.contains(r#"hx-post="/api/requests/9/cancel""#));
        assert!(!html.contains("lower-quality"), "no fallback profile set: not offered");
        assert!(!html.contains("<i>no</i>") && !html.contains("Failed <now>"));
        assert!(html.contains(r#"<time datetime="1970-01-01T00:00:00Z""#));
    }

    #[test]
    fn lower_quality_is_offered_with_retry_when_a_fallback_profile_is_set() {
        let s = summary(9, "Dune: Part Two", St::Failed);
        let d = RequestDetail { summary: s, downloads: vec![], episodes: vec![], timeline: vec![] };
        let page = |detail| DetailPage { layout: Layout::new("x", "", "detail"), detail }.render().unwrap();
        let html = page(Detail::new(&d).with_lower_quality(true));
        assert!(html.contains(r#"hx-post="/api/requests/9/lower-quality""#), "{html}");
        assert!(html.contains("The profile stays changed in Radarr."), "{html}");
        let mut available = d.clone();
        available.summary.state = St::Available;
        let html = page(Detail::new(&available).with_lower_quality(true));
        assert!(!html.contains("lower-quality"), "nothing to help with: not offered");
        let mut four_k = d.clone();
        four_k.summary.is_4k = true;
        let html = page(Detail::new(&four_k).with_lower_quality(true));
        assert!(html.contains("The profile stays changed in the 4K Radarr."), "{html}");
    }

    #[test]
    fn lower_quality_needs_the_fallback_profile_of_the_requests_instance() {
        let env = shared::Env::from_pairs([("RADARR_FALLBACK_PROFILE", "SD"), ("SONARR_4K_FALLBACK_PROFILE", "HD")]);
        let offered = crate::LowerQuality::from_env(&env);
        use shared::events::MediaType::{Movie, Tv};
        assert!(offered.offered(Movie, false) && !offered.offered(Movie, true));
        assert!(!offered.offered(Tv, false) && offered.offered(Tv, true));
    }

    #[test]
    fn an_available_request_links_to_jellyfin_and_offers_no_retry() {
        let mut s = summary(3, "The Batman", St::Available);
        s.watch_url = Some("https://jf.example/web/#/details?id=1&serverId=2".into());
        let html = render(&RequestDetail { summary: s, downloads: vec![], episodes: vec![], timeline: vec![] });
        assert!(
            html.contains(r#"href="https://jf.example/web/#/details?id=1&#38;serverId=2""#)
                || html.contains("&amp;serverId"),
            "{html}"
        );
        assert!(html.contains("Watch now"));
        assert!(!html.contains("/retry"));
    }
}
