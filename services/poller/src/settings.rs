//! The poller's typed settings, read once from the environment (`QBIT_*`).

use std::time::Duration;

use shared::settings::{Env, Secret, SettingError};

/// How the poller proves who it is to qBittorrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `POST /api/v2/auth/login` with a form, then the session cookie on every call.
    Password { username: String, password: Secret },
    /// qBittorrent 5.2+: `Authorization: Bearer <key>` on every call, no session.
    ApiKey(Secret),
    /// No credentials: works only when qBittorrent bypasses authentication for our address
    /// (its "Bypass authentication for clients on localhost / in whitelisted subnets").
    None,
}

/// Poller configuration.
#[derive(Debug, Clone)]
pub struct PollerSettings {
    /// qBittorrent Web UI base URL, without a trailing slash; `None` keeps the poller idle.
    pub url: Option<String>,
    pub credentials: Credentials,
    /// Between two polls while a tracked torrent is downloading.
    pub poll_interval: Duration,
    /// Between two polls while nothing tracked is downloading.
    pub idle_interval: Duration,
    /// A tracked torrent waiting for peers or metadata this long is reported stalled.
    pub stall_after: Duration,
}

impl PollerSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingError> {
        let url = env.get("QBIT_URL").map(|u| u.trim_end_matches('/').to_owned());
        if let Some(u) = &url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(SettingError {
                name: "QBIT_URL",
                value: u.clone(),
                problem: "expected an http:// or https:// URL, e.g. http://qbittorrent:8080".into(),
            });
        }
        // An API key wins: it needs no session, so there is nothing to ban.
        let credentials = match (env.secret("QBIT_API_KEY"), env.secret("QBIT_PASSWORD")) {
            (Some(key), _) => Credentials::ApiKey(key),
            (None, Some(password)) => {
                Credentials::Password { username: env.get("QBIT_USERNAME").unwrap_or_default(), password }
            }
            (None, None) => Credentials::None,
        };
        let duration = |name: &str, default: u64| -> Result<Duration, SettingError> {
            Ok(env.duration(name)?.unwrap_or(Duration::from_secs(default)).max(Duration::from_millis(100)))
        };
        let poll_interval = duration("QBIT_POLL_INTERVAL", 2)?;
        Ok(Self {
            url,
            credentials,
            poll_interval,
            idle_interval: duration("QBIT_IDLE_INTERVAL", 30)?.max(poll_interval),
            stall_after: duration("QBIT_STALL_AFTER", 600)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_leave_the_poller_idle_with_a_two_second_interval() {
        let s = PollerSettings::from_env(&Env::default()).unwrap();
        assert_eq!(s.url, None);
        assert_eq!(s.credentials, Credentials::None);
        assert_eq!(s.poll_interval, Duration::from_secs(2));
        assert_eq!(s.idle_interval, Duration::from_secs(30));
        assert_eq!(s.stall_after, Duration::from_secs(600));
    }

    #[test]
    fn an_api_key_is_preferred_over_a_password() {
        let env = Env::from_pairs([
            ("QBIT_URL", "http://qbittorrent:8080/"),
            ("QBIT_PASSWORD", "hunter2"),
            ("QBIT_API_KEY", "qbt_key"),
        ]);
        let s = PollerSettings::from_env(&env).unwrap();
        assert_eq!(s.url.as_deref(), Some("http://qbittorrent:8080"));
        assert_eq!(s.credentials, Credentials::ApiKey(Secret::new("qbt_key")));
        assert!(!format!("{s:?}").contains("qbt_key"), "secrets never print");
    }

    #[test]
    fn a_password_logs_in_as_the_configured_user() {
        let env = Env::from_pairs([("QBIT_URL", "http://q:8080"), ("QBIT_PASSWORD", "pw"), ("QBIT_USERNAME", "bob")]);
        let s = PollerSettings::from_env(&env).unwrap();
        assert_eq!(s.credentials, Credentials::Password { username: "bob".into(), password: Secret::new("pw") });
    }

    #[test]
    fn a_url_without_scheme_is_refused_with_its_name() {
        let err = PollerSettings::from_env(&Env::from_pairs([("QBIT_URL", "qbittorrent:8080")])).unwrap_err();
        assert!(err.to_string().contains("QBIT_URL"), "{err}");
    }
}
