//! The qBittorrent Web API client: logs in once and keeps the session cookie (whatever its
//! name: `SID` up to 5.1, `QBT_SID_<port>` from 5.2), or sends an API key as a bearer token;
//! logs in again when a call answers 403; and gives up, saying why, when the credentials are
//! refused, because every further failed login brings qBittorrent's IP ban closer.
//!
//! It never sends `Origin` or `Referer`: qBittorrent accepts their absence, but answers 401
//! when their host:port differs from its own, which behind a proxy they would.

use std::future::Future;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, COOKIE, SET_COOKIE};

use crate::maindata::MaindataUpdate;
use crate::settings::Credentials;

/// How long a login ban lasts in qBittorrent by default (`WebUI\BanDuration`).
pub const BAN_DURATION: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QbitError {
    /// Network errors, timeouts, server errors, answers we cannot read: retried with backoff.
    #[error("{0}")]
    Unreachable(String),
    /// qBittorrent refused who we are. `retry`: when it is worth trying again, if ever
    /// without a person fixing the settings.
    #[error("{reason}")]
    Refused { reason: String, retry: Option<Duration> },
}

/// What the poller needs from qBittorrent; the HTTP client below, or a scripted stand-in.
pub trait Qbit: Send {
    /// One `GET /api/v2/sync/maindata?rid=<rid>`, logging in first if needed.
    fn maindata(&mut self, rid: u64) -> impl Future<Output = Result<MaindataUpdate, QbitError>> + Send;
    /// True once after a new session began: `rid` is per session, so the caller starts over.
    fn take_new_session(&mut self) -> bool;
    /// The WebAPI version, once known (e.g. `2.8.19` for qBittorrent 4.5.2).
    fn webapi_version(&self) -> Option<String>;
}

pub struct QbitClient {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
    /// `name=value` pairs of the session cookies, ready for a `Cookie` header.
    cookie: Option<String>,
    logged_in: bool,
    new_session: bool,
    version: Option<String>,
}

impl QbitClient {
    pub fn new(base: &str, credentials: Credentials) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            // A redirect would carry a Referer, and qBittorrent's API never redirects.
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .build()
            .unwrap_or_default();
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            credentials,
            cookie: None,
            logged_in: false,
            new_session: false,
            version: None,
        }
    }

    /// `POST /api/v2/auth/login`. 4.x–5.1 answer `200 Ok.` or `200 Fails.`; 5.2 answers `204`
    /// or `401`; both answer `403` to an address they have banned.
    pub async fn login(&mut self) -> Result<(), QbitError> {
        let Credentials::Password { username, password } = &self.credentials else {
            return Ok(());
        };
        let form = [("username", username.as_str()), ("password", password.expose())];
        let url = format!("{}/api/v2/auth/login", self.base);
        let resp = self.http.post(url).form(&form).send().await.map_err(|e| unreachable(&self.base, e))?;
        let status = resp.status();
        let cookie = session_cookie(&resp);
        let body = resp.text().await.unwrap_or_default();
        match (status, body.trim()) {
            (StatusCode::OK, "Ok.") | (StatusCode::NO_CONTENT, _) => {}
            (StatusCode::OK, "Fails.") | (StatusCode::UNAUTHORIZED, _) => {
                return Err(QbitError::Refused {
                    reason: format!(
                        "login refused ({}): check QBIT_USERNAME and QBIT_PASSWORD, then restart the poller; \
                         it stopped trying so that qBittorrent does not ban this address",
                        short(status, &body)
                    ),
                    retry: None,
                });
            }
            (StatusCode::FORBIDDEN, _) => {
                return Err(QbitError::Refused {
                    reason: "qBittorrent has banned this address after too many failed logins; \
                             check QBIT_USERNAME and QBIT_PASSWORD (trying again in an hour)"
                        .into(),
                    retry: Some(BAN_DURATION),
                });
            }
            _ => return Err(QbitError::Unreachable(format!("unexpected answer to login: {}", short(status, &body)))),
        }
        tracing::info!(url = %redact(&self.base), "logged in to qBittorrent");
        self.cookie = cookie;
        self.logged_in = true;
        self.new_session = true;
        self.fetch_version().await;
        Ok(())
    }

    /// Best effort: the version is shown in health, nothing depends on it.
    async fn fetch_version(&mut self) {
        let req = self.authorized(self.http.get(format!("{}/api/v2/app/webapiVersion", self.base)));
        if let Ok(resp) = req.send().await
            && resp.status().is_success()
            && let Ok(text) = resp.text().await
        {
            let text = text.trim();
            if !text.is_empty() && text.len() < 32 {
                self.version = Some(text.to_owned());
            }
        }
    }

    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match (&self.credentials, &self.cookie) {
            (Credentials::ApiKey(key), _) => req.header(AUTHORIZATION, format!("Bearer {}", key.expose())),
            (_, Some(cookie)) => req.header(COOKIE, cookie),
            _ => req,
        }
    }

    async fn get_maindata(&self, rid: u64) -> Result<reqwest::Response, QbitError> {
        let req = self.http.get(format!("{}/api/v2/sync/maindata", self.base)).query(&[("rid", rid)]);
        self.authorized(req).send().await.map_err(|e| unreachable(&self.base, e))
    }

    fn refused_403(&self) -> QbitError {
        let reason = match self.credentials {
            Credentials::ApiKey(_) => {
                "qBittorrent refused QBIT_API_KEY (403): check the key (API keys need \
                                       qBittorrent 5.2 or later; older ones need QBIT_PASSWORD)"
            }
            Credentials::None => {
                "qBittorrent asks for a login (403): set QBIT_PASSWORD (and QBIT_USERNAME) \
                                  or QBIT_API_KEY"
            }
            Credentials::Password { .. } => {
                return QbitError::Unreachable("403 Forbidden right after a successful login".into());
            }
        };
        QbitError::Refused { reason: reason.into(), retry: None }
    }
}

impl Qbit for QbitClient {
    async fn maindata(&mut self, rid: u64) -> Result<MaindataUpdate, QbitError> {
        let mut fresh = false;
        if matches!(self.credentials, Credentials::Password { .. }) && !self.logged_in {
            self.login().await?;
            fresh = true;
        }
        // A new session knows no rid: ask for everything.
        let mut resp = self.get_maindata(if fresh { 0 } else { rid }).await?;
        if resp.status() == StatusCode::FORBIDDEN && matches!(self.credentials, Credentials::Password { .. }) && !fresh
        {
            // The session expired (qBittorrent restarted, or `WebUI\SessionTimeout` passed).
            tracing::info!("qBittorrent session expired, logging in again");
            self.logged_in = false;
            self.cookie = None;
            self.login().await?;
            resp = self.get_maindata(0).await?;
        }
        let status = resp.status();
        if status == StatusCode::FORBIDDEN {
            return Err(self.refused_403());
        }
        if status == StatusCode::UNAUTHORIZED {
            let reason = format!(
                "qBittorrent answered 401 Unauthorized: {}",
                match self.credentials {
                    Credentials::ApiKey(_) => "check QBIT_API_KEY",
                    _ =>
                        "its Host header or CSRF check refuses QBIT_URL's host:port (use the address it \
                          listens on, or turn off Host header validation in its Web UI options)",
                }
            );
            return Err(QbitError::Refused { reason, retry: None });
        }
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(QbitError::Unreachable(format!("sync/maindata answered {}", short(status, &body))));
        }
        if !self.logged_in {
            // Without a login (API key, or no credentials), the first answer is our "session".
            self.logged_in = true;
            self.fetch_version().await;
        }
        let bytes = resp.bytes().await.map_err(|e| unreachable(&self.base, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| QbitError::Unreachable(format!("sync/maindata is not what qBittorrent sends: {e}")))
    }

    fn take_new_session(&mut self) -> bool {
        std::mem::take(&mut self.new_session)
    }

    fn webapi_version(&self) -> Option<String> {
        self.version.clone()
    }
}

/// Every `Set-Cookie` of the login answer as `name=value` pairs; qBittorrent sets one, named
/// `SID` or `QBT_SID_<port>`, and we send back whatever it set.
fn session_cookie(resp: &reqwest::Response) -> Option<String> {
    let pairs: Vec<&str> = resp
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::trim)
        .filter(|pair| pair.contains('='))
        .collect();
    (!pairs.is_empty()).then(|| pairs.join("; "))
}

/// A network error without its URL (which might hold credentials), with its causes.
fn unreachable(base: &str, error: reqwest::Error) -> QbitError {
    let kind = if error.is_timeout() { "timed out" } else { "cannot reach it" };
    let mut text = format!("{kind} at {}", redact(base));
    let error = error.without_url();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&error);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    QbitError::Unreachable(text)
}

/// The URL without any `user:password@`.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}{}", &url[..scheme + 3], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// `403 Forbidden: <start of the body>`, for error messages.
fn short(status: StatusCode, body: &str) -> String {
    let body: String = body.trim().chars().take(120).collect();
    if body.is_empty() { status.to_string() } else { format!("{status}: {body}") }
}
