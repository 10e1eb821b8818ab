//! Who may read the pages and API, and who may act on a request.
//!
//! Unset `TRACKER_AUTH`: everything is open to whoever reaches the port (a home LAN).
//! `TRACKER_AUTH=proxy`: a reverse proxy (Authelia, Authentik, oauth2-proxy…) authenticates
//! and names the user in a header; the header is believed only from `TRACKER_TRUSTED_PROXIES`,
//! anyone else gets 401. Retry and Cancel then need an admin (`TRACKER_ADMINS`) or the
//! requester; Lower quality, which changes Radarr's or Sonarr's quality profile, an admin.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use shared::settings::{Env, SettingError};

use crate::Dashboard;
use crate::error::ApiError;

#[derive(Debug, Clone)]
pub enum AuthMode {
    Open,
    Proxy { header: HeaderName, trusted: Vec<IpNet> },
}

/// The authenticated user, put in the request's extensions by [`require`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User(pub Option<String>);

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub mode: AuthMode,
    pub admins: Vec<String>,
}

impl AuthSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingError> {
        let bad = |name: &'static str, value: String, problem: String| SettingError { name, value, problem };
        let mode = match env.get("TRACKER_AUTH").as_deref() {
            None | Some("none") | Some("off") => AuthMode::Open,
            Some("proxy") => {
                let header_name = env.get("TRACKER_AUTH_HEADER").unwrap_or_else(|| "Remote-User".into());
                let header = HeaderName::try_from(header_name.as_str())
                    .map_err(|e| bad("TRACKER_AUTH_HEADER", header_name.clone(), e.to_string()))?;
                let spec = env.get("TRACKER_TRUSTED_PROXIES").unwrap_or_default();
                let trusted = spec
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse::<IpNet>().or_else(|_| s.parse::<IpAddr>().map(IpNet::from)))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad("TRACKER_TRUSTED_PROXIES", spec.clone(), e.to_string()))?;
                AuthMode::Proxy { header, trusted }
            }
            Some(other) => return Err(bad("TRACKER_AUTH", other.into(), "expected `proxy` or nothing".into())),
        };
        let admins = env.get("TRACKER_ADMINS").unwrap_or_default();
        let admins = admins.split(',').map(|a| a.trim().to_lowercase()).filter(|a| !a.is_empty()).collect();
        Ok(Self { mode, admins })
    }

    pub fn open() -> Self {
        Self { mode: AuthMode::Open, admins: Vec::new() }
    }

    /// Who the request comes from, or `None` when it must be refused.
    fn user_of(&self, peer: Option<IpAddr>, headers: &axum::http::HeaderMap) -> Option<User> {
        match &self.mode {
            AuthMode::Open => Some(User(None)),
            AuthMode::Proxy { header, trusted } => {
                let peer = peer?;
                if !trusted.iter().any(|net| net.contains(&peer)) {
                    return None;
                }
                let name = headers.get(header)?.to_str().ok()?.trim();
                (!name.is_empty()).then(|| User(Some(name.to_owned())))
            }
        }
    }

    /// May `user` change what Radarr/Sonarr keep for everyone (a quality profile)?
    pub fn may_administer(&self, user: &User) -> bool {
        match (&self.mode, &user.0) {
            (AuthMode::Open, _) => true,
            (AuthMode::Proxy { .. }, None) => false,
            (AuthMode::Proxy { .. }, Some(name)) => self.admins.contains(&name.to_lowercase()),
        }
    }

    /// May `user` retry or cancel a request of `requester`?
    pub fn may_act(&self, user: &User, requester: Option<&str>) -> bool {
        match (&self.mode, &user.0) {
            (AuthMode::Open, _) => true,
            (AuthMode::Proxy { .. }, None) => false,
            (AuthMode::Proxy { .. }, Some(name)) => {
                let name = name.to_lowercase();
                self.admins.contains(&name) || requester.is_some_and(|r| r.to_lowercase() == name)
            }
        }
    }
}

/// Middleware: lets the request through with its [`User`], or answers 401.
pub(crate) async fn require(State(d): State<Dashboard>, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    match d.settings.auth.user_of(peer, req.headers()) {
        Some(user) => {
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        None => {
            tracing::debug!(?peer, "unauthenticated request refused");
            ApiError::new(StatusCode::UNAUTHORIZED, "sign in through the reverse proxy to see this page")
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn proxy() -> AuthSettings {
        let env = Env::from_pairs([
            ("TRACKER_AUTH", "proxy"),
            ("TRACKER_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.5"),
            ("TRACKER_ADMINS", "Admin"),
        ]);
        AuthSettings::from_env(&env).unwrap()
    }

    fn headers(user: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("remote-user", user.parse().unwrap());
        h
    }

    #[test]
    fn the_header_counts_only_from_trusted_proxies() {
        let auth = proxy();
        let from = |ip: &str| auth.user_of(Some(ip.parse().unwrap()), &headers("alice"));
        assert_eq!(from("10.1.2.3"), Some(User(Some("alice".into()))));
        assert_eq!(from("192.168.1.5"), Some(User(Some("alice".into()))));
        assert_eq!(from("192.168.1.6"), None, "not a trusted proxy");
        assert_eq!(auth.user_of(Some("10.1.2.3".parse().unwrap()), &HeaderMap::new()), None, "no user header");
    }

    #[test]
    fn admins_act_on_everything_others_on_their_own_requests() {
        let auth = proxy();
        let user = |n: &str| User(Some(n.into()));
        assert!(auth.may_act(&user("admin"), Some("bob")));
        assert!(auth.may_act(&user("Bob"), Some("bob")));
        assert!(!auth.may_act(&user("alice"), Some("bob")));
        assert!(!auth.may_act(&User(None), Some("bob")));
        assert!(AuthSettings::open().may_act(&User(None), None), "open mode: the LAN may act");
    }

    #[test]
    fn only_admins_may_change_what_radarr_and_sonarr_keep() {
        let auth = proxy();
        let user = |n: &str| User(Some(n.into()));
        assert!(auth.may_administer(&user("ADMIN")));
        assert!(!auth.may_administer(&user("bob")), "a requester is not an admin");
        assert!(!auth.may_administer(&User(None)));
        assert!(AuthSettings::open().may_administer(&User(None)), "open mode: the LAN may act");
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let env = Env::from_pairs([("TRACKER_AUTH", "proxy"), ("TRACKER_TRUSTED_PROXIES", "not-an-ip")]);
        assert!(AuthSettings::from_env(&env).unwrap_err().to_string().contains("TRACKER_TRUSTED_PROXIES"));
        let env = Env::from_pairs([("TRACKER_AUTH", "jellyfin")]);
        assert!(AuthSettings::from_env(&env).unwrap_err().to_string().contains("TRACKER_AUTH"));
    }
}
