//! A stand-in for qBittorrent's Web API on a real socket, speaking its wire format as the
//! recorded exchanges show it: 4.x–5.1 login (`200 Ok.`/`200 Fails.`, cookie `SID`), 5.2 login
//! (`204`/`401`, cookie `QBT_SID_<port>`, bearer API keys), `403 Forbidden` without a valid
//! session, the login ban, the CSRF check on `Origin`/`Referer`, and `sync/maindata` deltas
//! per session. It counts the calls and the bytes that cross the socket.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::swarm::{self, Sent, Swarm};

/// Which qBittorrent's login to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// 4.x–5.1 (WebAPI 2.8.19 here): `200 Ok.` / `200 Fails.`, cookie `SID`.
    V4,
    /// 5.2 (WebAPI 2.14): `204` / `401`, cookie `QBT_SID_<port>`, `Authorization: Bearer`.
    V5_2,
}

pub const USER: &str = "admin";
pub const PASSWORD: &str = "loopback-pass";
pub const API_KEY: &str = "qbt_0123456789abcdef";
/// Failed logins before the address is banned (qBittorrent's default).
pub const BAN_AFTER: u32 = 5;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub status: u16,
}

pub struct Inner {
    pub flavour: Flavour,
    pub swarm: Swarm,
    /// Session id → what it was last sent.
    pub sessions: HashMap<String, Sent>,
    /// Bearer callers have no session; their rid state is kept here.
    pub bearer: Sent,
    pub failed_logins: u32,
    pub requests: Vec<Seen>,
    /// Advance the swarm by one refresh before each `sync/maindata` answer.
    pub refresh_each_poll: bool,
    clock: i64,
    port: u16,
    next_sid: u64,
}

/// A running fake; stops with the test's runtime.
#[derive(Clone)]
pub struct FakeQbit {
    pub url: String,
    pub inner: Arc<Mutex<Inner>>,
    /// Bytes from the client to the fake, and back.
    pub bytes_in: Arc<AtomicU64>,
    pub bytes_out: Arc<AtomicU64>,
}

impl FakeQbit {
    pub async fn start(flavour: Flavour, swarm: Swarm) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let inner = Arc::new(Mutex::new(Inner {
            flavour,
            swarm,
            sessions: HashMap::new(),
            bearer: Sent::default(),
            failed_logins: 0,
            requests: Vec::new(),
            refresh_each_poll: false,
            clock: 1_736_590_000,
            port,
            next_sid: 0,
        }));
        let (bytes_in, bytes_out) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let counting = Counting { listener, bytes_in: bytes_in.clone(), bytes_out: bytes_out.clone() };
        let app = Router::new()
            .route("/api/v2/auth/login", post(login))
            .route("/api/v2/app/webapiVersion", get(version))
            .route("/api/v2/sync/maindata", get(maindata))
            .route("/api/v2/torrents/info", get(info))
            .fallback(|| async { StatusCode::NOT_FOUND })
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(counting, app).await.unwrap() });
        Self { url: format!("http://127.0.0.1:{port}"), inner, bytes_in, bytes_out }
    }

    /// Forgets every session, as a qBittorrent restart or `WebUI\SessionTimeout` does.
    pub fn expire_sessions(&self) {
        self.inner.lock().unwrap().sessions.clear();
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// `(method path?query, status)` of every request, for readable assertions.
    pub fn calls(&self) -> Vec<(String, u16)> {
        let seen = self.requests();
        seen.iter().map(|s| (format!("{} {}{}", s.method, s.path, s.query), s.status)).collect()
    }

    pub fn traffic(&self) -> (u64, u64) {
        (self.bytes_in.load(Ordering::Relaxed), self.bytes_out.load(Ordering::Relaxed))
    }
}

type Shared = State<Arc<Mutex<Inner>>>;

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")], body).into_response()
}

impl Inner {
    fn record(&mut self, method: &str, path: &str, query: &str, headers: &HeaderMap, status: StatusCode) {
        let query = if query.is_empty() { String::new() } else { format!("?{query}") };
        let seen = Seen { method: method.into(), path: path.into(), query, headers: headers.clone(), status: 0 };
        self.requests.push(Seen { status: status.as_u16(), ..seen });
    }

    fn cookie_name(&self) -> String {
        match self.flavour {
            Flavour::V4 => "SID".into(),
            Flavour::V5_2 => format!("QBT_SID_{}", self.port),
        }
    }

    /// CSRF: a present Origin/Referer must name our own host:port (absent is fine).
    fn csrf_ok(&self, headers: &HeaderMap) -> bool {
        let own = format!("127.0.0.1:{}", self.port);
        [header::ORIGIN, header::REFERER].iter().all(|h| match headers.get(h).and_then(|v| v.to_str().ok()) {
            None => true,
            Some(v) => v.trim_start_matches("http://").trim_start_matches("https://").starts_with(&own),
        })
    }

    /// The session key of an authenticated call: its cookie's id, or `bearer`.
    fn session(&self, headers: &HeaderMap) -> Option<String> {
        if let Some(auth) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
            let ok = self.flavour == Flavour::V5_2 && auth == format!("Bearer {API_KEY}");
            return ok.then(|| "bearer".to_owned());
        }
        let name = format!("{}=", self.cookie_name());
        let cookies = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok());
        let sid = cookies.flat_map(|c| c.split(';')).map(str::trim).find_map(|c| c.strip_prefix(name.as_str()))?;
        self.sessions.contains_key(sid).then(|| sid.to_owned())
    }
}

async fn login(State(inner): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let mut s = inner.lock().unwrap();
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let (status, response) = if !s.csrf_ok(&headers) {
        (StatusCode::UNAUTHORIZED, text(StatusCode::UNAUTHORIZED, "Unauthorized"))
    } else if s.failed_logins >= BAN_AFTER {
        let body = "Your IP address has been banned after too many failed authentication attempts.";
        (StatusCode::FORBIDDEN, text(StatusCode::FORBIDDEN, body))
    } else if form.get("username").map(String::as_str) == Some(USER)
        && form.get("password").map(String::as_str) == Some(PASSWORD)
    {
        s.next_sid += 1;
        let sid = format!("hBc7TxF+Yv1mKi0pL2q3Rs4t{:08}", s.next_sid);
        s.sessions.insert(sid.clone(), Sent::default());
        let cookie = format!("{}={sid}; HttpOnly; path=/; SameSite=Strict", s.cookie_name());
        let mut r = match s.flavour {
            Flavour::V4 => text(StatusCode::OK, "Ok."),
            Flavour::V5_2 => StatusCode::NO_CONTENT.into_response(),
        };
        r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).unwrap());
        (r.status(), r)
    } else {
        s.failed_logins += 1;
        match s.flavour {
            Flavour::V4 => (StatusCode::OK, text(StatusCode::OK, "Fails.")),
            Flavour::V5_2 => (StatusCode::UNAUTHORIZED, text(StatusCode::UNAUTHORIZED, "Unauthorized")),
        }
    };
    s.record("POST", "/api/v2/auth/login", "", &headers, status);
    response
}

/// Checks the session; without one qBittorrent answers 403 `Forbidden` (see [`forbidden`]).
fn authorize(s: &mut Inner, path: &str, query: &str, headers: &HeaderMap) -> Option<String> {
    let session = s.session(headers);
    if session.is_none() {
        s.record("GET", path, query, headers, StatusCode::FORBIDDEN);
    }
    session
}

fn forbidden() -> Response {
    text(StatusCode::FORBIDDEN, "Forbidden")
}

async fn version(State(inner): Shared, headers: HeaderMap) -> Response {
    let mut s = inner.lock().unwrap();
    if authorize(&mut s, "/api/v2/app/webapiVersion", "", &headers).is_none() {
        return forbidden();
    }
    s.record("GET", "/api/v2/app/webapiVersion", "", &headers, StatusCode::OK);
    text(StatusCode::OK, if s.flavour == Flavour::V4 { "2.8.19" } else { "2.14.1" })
}

async fn maindata(State(inner): Shared, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut guard = inner.lock().unwrap();
    let s = &mut *guard;
    let query = q.get("rid").map(|r| format!("rid={r}")).unwrap_or_default();
    let Some(session) = authorize(s, "/api/v2/sync/maindata", &query, &headers) else {
        return forbidden();
    };
    if s.refresh_each_poll {
        s.clock += 2;
        s.swarm.refresh(s.clock);
    }
    let asked = q.get("rid").and_then(|r| r.parse().ok()).unwrap_or(0);
    let sent = if session == "bearer" { &mut s.bearer } else { s.sessions.get_mut(&session).unwrap() };
    let body = swarm::maindata(&s.swarm, sent, asked);
    s.record("GET", "/api/v2/sync/maindata", &query, &headers, StatusCode::OK);
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn info(State(inner): Shared, headers: HeaderMap) -> Response {
    let mut s = inner.lock().unwrap();
    if authorize(&mut s, "/api/v2/torrents/info", "", &headers).is_none() {
        return forbidden();
    }
    s.record("GET", "/api/v2/torrents/info", "", &headers, StatusCode::OK);
    ([(header::CONTENT_TYPE, "application/json")], s.swarm.info().to_string()).into_response()
}

/// A listener whose connections count the bytes they carry.
struct Counting {
    listener: TcpListener,
    bytes_in: Arc<AtomicU64>,
    bytes_out: Arc<AtomicU64>,
}

impl axum::serve::Listener for Counting {
    type Io = CountingStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Ok((stream, addr)) = self.listener.accept().await {
                let io = CountingStream { stream, bytes_in: self.bytes_in.clone(), bytes_out: self.bytes_out.clone() };
                return (io, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

pub struct CountingStream {
    stream: TcpStream,
    bytes_in: Arc<AtomicU64>,
    bytes_out: Arc<AtomicU64>,
}

impl AsyncRead for CountingStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        self.bytes_in.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        result
    }
}

impl AsyncWrite for CountingStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &result {
            self.bytes_out.fetch_add(*n as u64, Ordering::Relaxed);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
