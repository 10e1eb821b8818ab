//! The JSON API: `/api/health`, `/api/requests`, `/api/requests/{id}`, `/api/requests/{id}/timeline`,
//! and the actions `/api/requests/{id}/retry`, `/lower-quality` and `/cancel`.

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::future::join_all;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use shared::events::MediaType;
use shared::health::ServiceHealth;
use shared::ids::RequestId;
use shared::model::{
    CommandReply, CommandRequest, GetQuery, ListQuery, ListReply, RequestDetail, State as ReqState, Stats, Summary,
};
use shared::subjects;
use std::time::Duration;

use crate::auth::User;
use crate::error::ApiError;
use crate::{Dashboard, QUERY_TIMEOUT};

/// Services whose health `/api/health` reports.
const SERVICES: [&str; 5] = ["ingress", "correlator", "dashboard", "poller", "shoko-bridge"];

/// Query string of `/api/requests`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListParams {
    /// One state or several, comma-separated.
    pub state: Option<String>,
    pub user: Option<String>,
    pub media_type: Option<String>,
    pub q: Option<String>,
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

impl ListParams {
    pub fn to_query(&self) -> Result<ListQuery, ApiError> {
        let mut states = Vec::new();
        for s in self.state.iter().flat_map(|s| s.split(',')).map(str::trim).filter(|s| !s.is_empty()) {
            states.push(ReqState::parse(s).ok_or_else(|| ApiError::bad_request(format!("unknown state {s:?}")))?);
        }
        let media_type = match self.media_type.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(t) => Some(
                MediaType::parse(t)
                    .ok_or_else(|| ApiError::bad_request(format!("unknown media_type {t:?} (movie or tv)")))?,
            ),
        };
        Ok(ListQuery {
            states,
            user: self.user.clone().filter(|u| !u.trim().is_empty()),
            media_type,
            q: self.q.clone().filter(|q| !q.trim().is_empty()),
            limit: self.limit,
            offset: self.offset,
        })
    }
}

impl Dashboard {
    pub(crate) async fn list_requests(&self, q: &ListQuery) -> Result<ListReply, ApiError> {
        Ok(self.bus.request(&subjects::query("list"), q, QUERY_TIMEOUT).await?)
    }

    pub(crate) async fn request_detail(&self, id: RequestId) -> Result<RequestDetail, ApiError> {
        Ok(self.bus.request(&subjects::query("get"), &GetQuery { id }, QUERY_TIMEOUT).await?)
    }
}

pub(crate) async fn list(State(d): State<Dashboard>, Query(p): Query<ListParams>) -> Result<Json<ListReply>, ApiError> {
    Ok(Json(d.list_requests(&p.to_query()?).await?))
}

pub(crate) async fn get(State(d): State<Dashboard>, Path(id): Path<String>) -> Result<Json<RequestDetail>, ApiError> {
    Ok(Json(d.request_detail(parse_id(&id)?).await?))
}

pub(crate) async fn timeline(State(d): State<Dashboard>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let q = GetQuery { id: parse_id(&id)? };
    Ok(Json(d.bus.request(&subjects::query("timeline"), &q, QUERY_TIMEOUT).await?))
}

fn parse_id(s: &str) -> Result<RequestId, ApiError> {
    s.parse().map_err(|_| ApiError::new(StatusCode::NOT_FOUND, format!("no request {s:?}")))
}

/// `200 {"status":"ok", ...}` with each service's state; `503` when NATS is unreachable.
pub(crate) async fn health(State(d): State<Dashboard>) -> Response {
    if !d.bus.is_connected() {
        let body = json!({ "status": "unavailable", "nats": "disconnected" });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let asks = SERVICES.iter().map(|name| {
        let bus = d.bus.clone();
        async move {
            let answer: Result<ServiceHealth, _> =
                bus.request(&subjects::health(name), &json!({}), Duration::from_millis(750)).await;
            let value = match answer {
                Ok(h) => json!({ "status": h.status, "details": h.details }),
                Err(_) => json!({ "status": "not running" }),
            };
            (name.to_string(), value)
        }
    });
    let services: Map<String, Value> = join_all(asks).await.into_iter().collect();
    let degraded = services.values().any(|s| s["status"] == "degraded")
        || ["correlator", "ingress"].iter().any(|n| services[*n]["status"] == "not running");
    let body = json!({
        "status": if degraded { "degraded" } else { "ok" },
        "nats": "connected",
        "services": services,
        "sse_clients": d.hub.clients(),
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// `POST /api/requests/{id}/retry`: asks Radarr/Sonarr to search again for what is missing.
pub(crate) async fn retry(
    State(d): State<Dashboard>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    act(&d, user, &id, Action::Retry).await
}

/// `POST /api/requests/{id}/lower-quality`: switches the film or series to the fallback quality
/// profile, then searches again. Admins only behind a reverse proxy: the profile is Radarr's or
/// Sonarr's, for everyone.
pub(crate) async fn lower_quality(
    State(d): State<Dashboard>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    act(&d, user, &id, Action::LowerQuality).await
}

/// `POST /api/requests/{id}/cancel`: marks the request cancelled (media is not deleted).
pub(crate) async fn cancel(
    State(d): State<Dashboard>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    act(&d, user, &id, Action::Cancel).await
}

/// Commands may call Radarr/Sonarr, which can be slow to answer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Retry,
    LowerQuality,
    Cancel,
}

impl Action {
    /// The command's subject is `tracker.cmd.<verb>`.
    fn verb(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::LowerQuality => "lower_quality",
            Self::Cancel => "cancel",
        }
    }
}

async fn act(d: &Dashboard, user: User, id: &str, action: Action) -> Result<Json<Value>, ApiError> {
    let id = parse_id(id)?;
    let detail = d.request_detail(id).await?;
    let who = || user.0.clone().unwrap_or_else(|| "you".into());
    if action == Action::LowerQuality && !d.settings.auth.may_administer(&user) {
        let arr = match detail.summary.media_type {
            MediaType::Movie => "Radarr",
            MediaType::Tv => "Sonarr",
        };
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{} may not lower the quality: it changes the quality profile in {arr}, ask an admin", who()),
        ));
    }
    if !d.settings.auth.may_act(&user, detail.summary.requested_by.as_deref()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{} may not {} this request: ask its requester or an admin", who(), action.verb()),
        ));
    }
    let verb = action.verb();
    let command = CommandRequest { id, by: user.0.clone() };
    let reply: CommandReply = d.bus.request(&subjects::cmd(verb), &command, COMMAND_TIMEOUT).await?;
    tracing::info!(request = %id, by = ?user.0, %verb, message = %reply.message, "command done");
    Ok(Json(json!({ "message": reply.message })))
}

/// `GET /api/stats`: time per stage and to available (median, 90th percentile), success rate.
pub(crate) async fn stats(State(d): State<Dashboard>) -> Result<Json<Stats>, ApiError> {
    Ok(Json(d.stats().await?))
}

/// `GET /api/summary`: counts by state, for Homepage/Homarr widgets. Open even with
/// `TRACKER_AUTH` (it names no request and no user).
pub(crate) async fn summary(State(d): State<Dashboard>) -> Result<Json<Summary>, ApiError> {
    Ok(Json(d.bus.request(&subjects::query("summary"), &json!({}), QUERY_TIMEOUT).await?))
}

impl Dashboard {
    pub(crate) async fn stats(&self) -> Result<Stats, ApiError> {
        Ok(self.bus.request(&subjects::query("stats"), &json!({}), QUERY_TIMEOUT).await?)
    }
}
