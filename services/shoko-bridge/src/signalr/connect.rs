//! Opening a hub connection: `POST <hub>/negotiate?negotiateVersion=1`, the WebSocket upgrade
//! with `id=<connectionToken>`, and the JSON handshake.
//!
//! Negotiating first is what the official clients do by default. ASP.NET Core would also
//! accept a WebSocket without `id` (its "skip negotiation" mode), but negotiating lets a
//! reverse proxy or an auth problem show up as a plain HTTP status with a clear message, and
//! it tells us whether the server offers WebSockets at all.

use std::collections::VecDeque;

use futures_util::{SinkExt, StreamExt};
use reqwest::Url;
use reqwest::header::HeaderValue;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use super::protocol::{self, HANDSHAKE_REQUEST, RecordBuffer};
use super::{Connection, HubEndpoint, HubError, Timings, redact};

/// Shoko's API-key header (its REST API and hubs also accept `?apikey=`).
const APIKEY: &str = "apikey";

/// Makes connections to one hub.
#[derive(Debug, Clone)]
pub struct HubClient {
    http: reqwest::Client,
    endpoint: HubEndpoint,
    timings: Timings,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NegotiateResponse {
    connection_id: Option<String>,
    connection_token: Option<String>,
    #[serde(default)]
    available_transports: Vec<AvailableTransport>,
    url: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AvailableTransport {
    transport: String,
}

impl HubClient {
    pub fn new(http: reqwest::Client, endpoint: HubEndpoint, timings: Timings) -> Self {
        Self { http, endpoint, timings }
    }

    /// Negotiates, upgrades and handshakes, all within `connect_timeout`.
    pub async fn connect(&self) -> Result<Connection, HubError> {
        let after = self.timings.connect_timeout;
        tokio::time::timeout(after, self.connect_inner())
            .await
            .unwrap_or(Err(HubError::Timeout { step: "connecting to the hub", after }))
    }

    async fn connect_inner(&self) -> Result<Connection, HubError> {
        let token = self.negotiate().await?;
        let mut ws = self.upgrade(&token).await?;
        ws.send(Message::text(HANDSHAKE_REQUEST)).await.map_err(|e| self.ws_error("handshake", e))?;
        let mut buffer = RecordBuffer::default();
        let mut records = VecDeque::new();
        while records.is_empty() {
            let bytes = match ws.next().await {
                Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
                Some(Ok(Message::Binary(b))) => b.to_vec(),
                Some(Ok(Message::Close(frame))) => return Err(HubError::Ended(close_reason(frame))),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(self.ws_error("handshake", e)),
                None => return Err(HubError::Ended("closed during the handshake".into())),
            };
            records.extend(buffer.push(&bytes));
        }
        let reply = records.pop_front().unwrap_or_default();
        protocol::parse_handshake_response(&reply)?;
        // Whatever came with the reply (ASP.NET Core flushes `OnConnectedAsync` sends together
        // with it) is kept and handed out first.
        Ok(Connection::new(ws, buffer, records, self.timings))
    }

    /// The hub URL with its query and `extra` pairs (and the API key), over `scheme`.
    fn hub_url(&self, scheme: &str, suffix: &str, extra: &[(&str, &str)]) -> Url {
        let mut url = self.endpoint.base.clone();
        // http→ws and https→wss keep the URL "special", which `set_scheme` allows.
        let _ = url.set_scheme(scheme);
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}/{}{suffix}", self.endpoint.hub_path.trim_matches('/')));
        {
            let mut query = url.query_pairs_mut();
            for (k, v) in &self.endpoint.query {
                query.append_pair(k, v);
            }
            for (k, v) in extra {
                query.append_pair(k, v);
            }
            if let Some(key) = &self.endpoint.api_key {
                query.append_pair(APIKEY, key.expose());
            }
        }
        url
    }

    /// Returns the id to open the WebSocket with: the connection token (negotiate v1), or the
    /// connection id from a server that only speaks v0.
    async fn negotiate(&self) -> Result<String, HubError> {
        const STEP: &str = "negotiate";
        let url = self.hub_url(self.endpoint.base.scheme(), "/negotiate", &[("negotiateVersion", "1")]);
        let mut request = self.http.post(url).timeout(self.timings.connect_timeout);
        if let Some(key) = &self.endpoint.api_key {
            request = request.header(APIKEY, key.expose());
        }
        let response = request.send().await.map_err(|e| self.http_error(STEP, e))?;
        check_status(STEP, response.status().as_u16())?;
        let body: NegotiateResponse = response.json().await.map_err(|e| self.http_error(STEP, e))?;
        if let Some(error) = body.error {
            return Err(HubError::Negotiate(error));
        }
        if let Some(url) = body.url {
            let url = redact(url, self.endpoint.api_key.as_ref());
            return Err(HubError::Negotiate(format!("redirect to {url} is not supported")));
        }
        if !body.available_transports.iter().any(|t| t.transport.eq_ignore_ascii_case("WebSockets")) {
            return Err(HubError::Negotiate("the server does not offer WebSockets".into()));
        }
        body.connection_token
            .or(body.connection_id)
            .ok_or_else(|| HubError::Negotiate("no connectionToken or connectionId in the answer".into()))
    }

    async fn upgrade(&self, token: &str) -> Result<crate::signalr::connection::Ws, HubError> {
        let scheme = if self.endpoint.base.scheme() == "https" { "wss" } else { "ws" };
        let url = self.hub_url(scheme, "", &[("id", token)]);
        let mut request = url.as_str().into_client_request().map_err(|e| self.ws_error("WebSocket", e))?;
        if let Some(key) = &self.endpoint.api_key {
            let mut value = HeaderValue::from_str(key.expose())
                .map_err(|_| HubError::Negotiate("SHOKO_API_KEY is not a valid header value".into()))?;
            value.set_sensitive(true);
            request.headers_mut().insert(APIKEY, value);
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await.map_err(|e| match e {
            tungstenite::Error::Http(response) => check_status("WebSocket upgrade", response.status().as_u16())
                .err()
                .unwrap_or(HubError::Http { step: "WebSocket upgrade", status: response.status().as_u16() }),
            other => self.ws_error("WebSocket upgrade", other),
        })?;
        Ok(ws)
    }

    fn http_error(&self, step: &'static str, e: reqwest::Error) -> HubError {
        let message = redact(e.without_url().to_string(), self.endpoint.api_key.as_ref());
        HubError::Transport { step, message }
    }

    fn ws_error(&self, step: &'static str, e: tungstenite::Error) -> HubError {
        HubError::Transport { step, message: redact(e.to_string(), self.endpoint.api_key.as_ref()) }
    }
}

/// 401/403 mean a key problem; other non-2xx statuses are reported as they are.
pub(crate) fn check_status(step: &'static str, status: u16) -> Result<(), HubError> {
    match status {
        200..=299 => Ok(()),
        401 | 403 => Err(HubError::Unauthorized { step, status }),
        _ => Err(HubError::Http { step, status }),
    }
}

pub(crate) fn close_reason(frame: Option<tungstenite::protocol::CloseFrame>) -> String {
    match frame {
        Some(f) if !f.reason.is_empty() => format!("WebSocket closed ({}: {})", u16::from(f.code), f.reason),
        Some(f) => format!("WebSocket closed ({})", u16::from(f.code)),
        None => "WebSocket closed".to_owned(),
    }
}
