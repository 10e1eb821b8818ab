//! HTML pages (askama templates, autoescaped).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use shared::model::{ListQuery, RequestSummary};

use crate::Dashboard;

#[derive(Template, WebTemplate)]
#[template(path = "index.html")]
pub(crate) struct IndexPage {
    requests: Vec<RequestSummary>,
    total: u64,
    error: Option<String>,
}

pub(crate) async fn index(State(d): State<Dashboard>) -> IndexPage {
    match d.list_requests(&ListQuery { limit: Some(100), ..Default::default() }).await {
        Ok(list) => IndexPage { requests: list.requests, total: list.total, error: None },
        Err(e) => IndexPage { requests: Vec::new(), total: 0, error: Some(e.to_string()) },
    }
}
