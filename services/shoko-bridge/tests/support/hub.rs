//! A stand-in for Shoko Server that speaks real ASP.NET Core SignalR over a real socket:
//! `POST /signalr/aggregate/negotiate?negotiateVersion=1`, the WebSocket with `id=<token>`,
//! the JSON handshake, type-1 invocations pushed by the test, type-6 pings both ways, type-7
//! close, and the server's client timeout (a client that sends nothing for `client_timeout`
//! is closed with ASP.NET's own message). Also `GET /api/v3/ImportFolder`, and
//! `GET /api/v3/File` as Shoko 5.3 pages, sorts (`sortOrder=-ImportedAt`) and trims
//! (`SeriesIDs` only with `include=XRefs`) it. The API key is checked like Shoko does it: the
//! `apikey` header or `?apikey=`, else 401.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{mpsc, watch};

/// How the hub behaves.
#[derive(Debug, Clone)]
pub struct HubOptions {
    pub api_key: Option<String>,
    /// Closes a client that sent nothing for this long (Shoko: 60 s).
    pub client_timeout: Duration,
    /// The hub's own pings (ASP.NET Core's KeepAliveInterval, 15 s by default).
    pub keepalive: Duration,
    /// Records sent in the same WebSocket message as the handshake reply.
    pub on_connect: Vec<String>,
    /// The body of `GET /api/v3/ImportFolder`.
    pub folders: Value,
    /// The files `GET /api/v3/File` lists, as `File` objects with their `SeriesIDs`; `None`:
    /// the route does not exist (Shoko 4.2 answers 404).
    pub files: Option<Vec<Value>>,
    /// Hub routes without the key check (some Shoko versions map the hub without
    /// authorization); the REST API still checks it.
    pub open_hub: bool,
}

impl Default for HubOptions {
    fn default() -> Self {
        Self {
            api_key: Some(KEY.to_owned()),
            client_timeout: Duration::from_secs(5),
            keepalive: Duration::from_millis(300),
            on_connect: Vec::new(),
            folders: serde_json::from_str(&fixture_text("api_v3_importfolder.json")).unwrap(),
            files: Some(fixture_files()),
            open_hub: false,
        }
    }
}

/// The API key the hub expects unless told otherwise.
pub const KEY: &str = "test-key-8e2f";

pub(super) enum Cmd {
    Send(String),
    Close(String),
    Abort,
}

pub(super) struct HubState {
    pub(super) options: HubOptions,
    pub(super) folders: Mutex<Value>,
    pub(super) files: Mutex<Option<Vec<Value>>>,
    pub(super) file_queries: Mutex<Vec<HashMap<String, String>>>,
    pub(super) tokens: Mutex<HashSet<String>>,
    pub(super) next_id: AtomicU64,
    pub(super) client: Mutex<Option<(u64, mpsc::UnboundedSender<Cmd>)>>,
    pub(super) handshakes: watch::Sender<u64>,
    pub(super) client_timeouts: AtomicU64,
    pub(super) pings_received: AtomicU64,
    pub(super) folder_requests: AtomicU64,
    pub(super) refused: AtomicU64,
    pub(super) key_in_header_and_query: AtomicU64,
    pub(super) unnegotiated: AtomicU64,
}

/// A running hub; the test drives it through this handle.
#[derive(Clone)]
pub struct Hub {
    addr: SocketAddr,
    state: Arc<HubState>,
}

impl Hub {
    pub async fn start(options: HubOptions) -> Self {
        let state = Arc::new(HubState {
            folders: Mutex::new(options.folders.clone()),
            files: Mutex::new(options.files.clone()),
            file_queries: Mutex::default(),
            options,
            tokens: Mutex::default(),
            next_id: AtomicU64::new(1),
            client: Mutex::default(),
            handshakes: watch::channel(0).0,
            client_timeouts: AtomicU64::new(0),
            pings_received: AtomicU64::new(0),
            folder_requests: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            key_in_header_and_query: AtomicU64::new(0),
            unnegotiated: AtomicU64::new(0),
        });
        let router = axum::Router::new()
            .route("/signalr/aggregate/negotiate", post(negotiate))
            .route("/signalr/aggregate", get(upgrade))
            .route("/api/v3/ImportFolder", get(import_folders))
            .route("/api/v3/File", get(files))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until `n` clients have completed the handshake since the start.
    pub async fn wait_for_handshakes(&self, n: u64) {
        let mut rx = self.state.handshakes.subscribe();
        let waited = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|&count| count >= n)).await;
        assert!(waited.is_ok(), "hub saw {} handshakes, expected {n}", self.handshakes());
    }

    pub fn handshakes(&self) -> u64 {
        *self.state.handshakes.borrow()
    }

    /// Sends one WebSocket message (one or more records) to the connected client.
    pub fn send(&self, text: impl Into<String>) {
        self.command(Cmd::Send(text.into()));
    }

    /// Sends a type-7 close with `error`, then closes the socket.
    pub fn close_with_error(&self, error: &str) {
        self.command(Cmd::Close(error.to_owned()));
    }

    /// Drops the socket without any goodbye, like a crashed server.
    pub fn abort(&self) {
        self.command(Cmd::Abort);
    }

    fn command(&self, cmd: Cmd) {
        let client = self.state.client.lock().unwrap();
        let (_, tx) = client.as_ref().expect("no client connected to the hub");
        assert!(tx.send(cmd).is_ok(), "the hub's client is gone");
    }

    pub fn set_folders(&self, folders: Value) {
        *self.state.folders.lock().unwrap() = folders;
    }

    /// Replaces the files `GET /api/v3/File` lists.
    pub fn set_files(&self, files: Vec<Value>) {
        *self.state.files.lock().unwrap() = Some(files);
    }

    /// The query of every `GET /api/v3/File` so far.
    pub fn file_queries(&self) -> Vec<HashMap<String, String>> {
        self.state.file_queries.lock().unwrap().clone()
    }

    pub fn folder_requests(&self) -> u64 {
        self.state.folder_requests.load(Ordering::SeqCst)
    }

    pub fn client_timeouts(&self) -> u64 {
        self.state.client_timeouts.load(Ordering::SeqCst)
    }

    pub fn pings_received(&self) -> u64 {
        self.state.pings_received.load(Ordering::SeqCst)
    }

    /// Requests that carried the key both as the `apikey` header and as `?apikey=`.
    pub fn key_in_header_and_query(&self) -> u64 {
        self.state.key_in_header_and_query.load(Ordering::SeqCst)
    }

    /// WebSockets opened without a negotiated `id`.
    pub fn unnegotiated(&self) -> u64 {
        self.state.unnegotiated.load(Ordering::SeqCst)
    }

    /// Requests answered 401.
    pub fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::SeqCst)
    }
}

/// The text of a fixture in `tests/fixtures/shoko/`.
pub fn fixture_text(name: &str) -> String {
    let path = format!("{}/../../tests/fixtures/shoko/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The files of `api_v3_file_recently_imported.json` (one page of `GET /api/v3/File`).
pub fn fixture_files() -> Vec<Value> {
    let page: Value = serde_json::from_str(&fixture_text("api_v3_file_recently_imported.json")).unwrap();
    page["List"].as_array().unwrap().clone()
}

/// A fixture as it travels on the wire: compact JSON ended by 0x1E.
pub fn record(name: &str) -> String {
    record_of(&serde_json::from_str(&fixture_text(name)).unwrap())
}

pub fn record_of(message: &Value) -> String {
    format!("{message}\u{1e}")
}

fn authorized(state: &HubState, headers: &HeaderMap, query: &HashMap<String, String>) -> bool {
    let Some(expected) = &state.options.api_key else { return true };
    let header = headers.get("apikey").and_then(|v| v.to_str().ok());
    let in_query = query.get("apikey") == Some(expected);
    let ok = header == Some(expected.as_str()) || in_query;
    if header == Some(expected.as_str()) && in_query {
        state.key_in_header_and_query.fetch_add(1, Ordering::SeqCst);
    }
    if !ok {
        state.refused.fetch_add(1, Ordering::SeqCst);
    }
    ok
}

async fn negotiate(
    State(state): State<Arc<HubState>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !state.options.open_hub && !authorized(&state, &headers, &query) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let n = state.next_id.fetch_add(1, Ordering::SeqCst);
    let token = format!("token-{n}");
    state.tokens.lock().unwrap().insert(token.clone());
    let version = if query.get("negotiateVersion").map(String::as_str) == Some("1") { 1 } else { 0 };
    Json(json!({
        "negotiateVersion": version,
        "connectionId": format!("conn-{n}"),
        "connectionToken": token,
        "availableTransports": [
            {"transport": "WebSockets", "transferFormats": ["Text", "Binary"]},
            {"transport": "LongPolling", "transferFormats": ["Text", "Binary"]}
        ]
    }))
    .into_response()
}

async fn upgrade(
    State(state): State<Arc<HubState>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    if !state.options.open_hub && !authorized(&state, &headers, &query) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    // As in ASP.NET Core: a negotiated token is used once; no `id` at all is a WebSocket
    // that skipped negotiation, which is allowed.
    match query.get("id") {
        Some(token) if !state.tokens.lock().unwrap().remove(token) => {
            return (StatusCode::NOT_FOUND, "No Connection with that ID").into_response();
        }
        Some(_) => {}
        None => _ = state.unnegotiated.fetch_add(1, Ordering::SeqCst),
    }
    if query.get("feeds").map(String::as_str) != Some("shoko") {
        return (StatusCode::BAD_REQUEST, "expected feeds=shoko").into_response();
    }
    ws.on_upgrade(move |socket| super::hub_socket::serve_client(socket, state))
}

async fn import_folders(
    State(state): State<Arc<HubState>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&state, &headers, &query) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    state.folder_requests.fetch_add(1, Ordering::SeqCst);
    Json(state.folders.lock().unwrap().clone()).into_response()
}

/// `GET /api/v3/File`: `pageSize` (default 100, 0 = all), `page` (from 1), `include`
/// (`XRefs` keeps `SeriesIDs`), `sortOrder` (`ImportedAt` or `-ImportedAt`; without it, by
/// relative path). Never-imported files sort last either way, as in Shoko.
async fn files(
    State(state): State<Arc<HubState>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&state, &headers, &query) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    state.file_queries.lock().unwrap().push(query.clone());
    let Some(mut files) = state.files.lock().unwrap().clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let number = |name: &str, default: usize| query.get(name).map_or(Ok(default), |v| v.parse::<usize>());
    let (Ok(size), Ok(page)) = (number("pageSize", 100), number("page", 1)) else {
        return (StatusCode::BAD_REQUEST, "pageSize and page are numbers").into_response();
    };
    if page == 0 || size > 1000 {
        return (StatusCode::BAD_REQUEST, "page ≥ 1, pageSize ≤ 1000").into_response();
    }
    let imported = |f: &Value| f["Imported"].as_str().and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
    match query.get("sortOrder").map(String::as_str) {
        Some("-ImportedAt") => files.sort_by_key(|f| (imported(f).is_none(), Reverse(imported(f)))),
        Some("ImportedAt") => files.sort_by_key(|f| (imported(f).is_none(), imported(f))),
        Some(other) => {
            return (StatusCode::BAD_REQUEST, format!("sortOrder {other} not in the stand-in")).into_response();
        }
        None => files.sort_by_key(|f| f["Locations"][0]["RelativePath"].as_str().map(str::to_owned)),
    }
    let xrefs = query.get("include").is_some_and(|i| i.split(',').any(|x| x.eq_ignore_ascii_case("XRefs")));
    if !xrefs {
        for f in &mut files {
            f.as_object_mut().unwrap().remove("SeriesIDs");
        }
    }
    let total = files.len();
    let list: Vec<Value> =
        if size == 0 { files } else { files.into_iter().skip((page - 1) * size).take(size).collect() };
    Json(json!({ "Total": total, "List": list })).into_response()
}
