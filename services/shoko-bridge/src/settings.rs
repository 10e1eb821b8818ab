//! The bridge's settings: where Shoko is and how patient to be with it.
//!
//! `SHOKO_URL`, `SHOKO_API_KEY` and `SHOKO_CATCHUP_WINDOW` come from the environment. The
//! timings are fields with defaults that suit a real Shoko (ASP.NET Core drops a client silent
//! for 60 s there); tests shorten them instead of waiting for minutes.

use std::time::Duration;

use reqwest::Url;
use shared::settings::{Env, Secret, SettingError};

/// How the bridge reaches Shoko Server.
#[derive(Debug, Clone)]
pub struct ShokoSettings {
    /// Shoko Server's base URL (`SHOKO_URL`), e.g. `http://shoko:8111`. `None`: the bridge idles.
    pub url: Option<Url>,
    /// Shoko API key (`SHOKO_API_KEY`), sent as the `apikey` header and query parameter.
    pub api_key: Option<Secret>,
    /// Time between two SignalR pings we send. ASP.NET Core counts only SignalR messages
    /// (not WebSocket pings) against its client timeout, which Shoko sets to 60 s.
    pub ping_interval: Duration,
    /// A connection that brings nothing (not even the server's own pings, every 15 s by
    /// default) for this long is taken as dead: a half-open TCP connection never errors.
    pub server_timeout: Duration,
    /// Upper bound for negotiate + WebSocket upgrade + handshake, and for each REST call.
    pub connect_timeout: Duration,
    /// First wait before reconnecting; it doubles after each failed attempt.
    pub backoff_min: Duration,
    /// Longest wait between two reconnection attempts.
    pub backoff_max: Duration,
    /// The import folder list is fetched again on an unknown folder id, but not more often
    /// than this, so a stream of events for a folder Shoko does not list cannot flood it.
    pub folder_refresh_min: Duration,
    /// At start-up, how far back to read the files Shoko matched while the bridge was not
    /// running (`SHOKO_CATCHUP_WINDOW`). Zero: no catch-up at all, not even after a lost
    /// connection.
    pub catchup_window: Duration,
    /// After a lost connection, the catch-up starts this long before the loss was noticed
    /// (a dead connection is noticed only after `server_timeout`; clocks differ).
    pub catchup_overlap: Duration,
    /// Hub events waiting for NATS, at most. When NATS stores nothing for so long that this
    /// many wait, the bridge leaves the hub until they are stored, then reconnects and catches
    /// up as after any lost connection: memory stays bounded through a long NATS outage.
    pub queue_max: usize,
}

impl Default for ShokoSettings {
    fn default() -> Self {
        Self {
            url: None,
            api_key: None,
            ping_interval: Duration::from_secs(15),
            server_timeout: Duration::from_secs(45),
            connect_timeout: Duration::from_secs(15),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            folder_refresh_min: Duration::from_secs(5),
            catchup_window: Duration::from_secs(24 * 3600),
            catchup_overlap: Duration::from_secs(600),
            queue_max: 10_000,
        }
    }
}

impl ShokoSettings {
    /// Reads `SHOKO_URL`, `SHOKO_API_KEY` and `SHOKO_CATCHUP_WINDOW`; the timings keep their
    /// defaults.
    pub fn from_env(env: &Env) -> Result<Self, SettingError> {
        let url = env.get("SHOKO_URL").map(|raw| parse_base_url(&raw)).transpose()?;
        let defaults = Self::default();
        let catchup_window = env.duration("SHOKO_CATCHUP_WINDOW")?.unwrap_or(defaults.catchup_window);
        Ok(Self { url, api_key: env.secret("SHOKO_API_KEY"), catchup_window, ..defaults })
    }

    /// Settings for a Shoko at `url` (tests and embedders), default timings.
    pub fn for_url(url: &str, api_key: Option<&str>) -> Result<Self, SettingError> {
        Ok(Self { url: Some(parse_base_url(url)?), api_key: api_key.map(Secret::new), ..Self::default() })
    }
}

/// Accepts `http(s)://host[:port][/prefix]`; a trailing `/` is dropped so paths can be appended.
fn parse_base_url(raw: &str) -> Result<Url, SettingError> {
    let err = |problem: String| SettingError { name: "SHOKO_URL", value: raw.to_owned(), problem };
    let mut url = Url::parse(raw.trim()).map_err(|e| err(format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(err("expected an http:// or https:// URL".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(err("give the server's base URL, without ?query or #fragment".into()));
    }
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_url_means_idle_and_the_key_stays_secret() {
        let s = ShokoSettings::from_env(&Env::from_pairs([("SHOKO_API_KEY", "k-123")])).unwrap();
        assert!(s.url.is_none());
        assert_eq!(s.api_key.as_ref().map(Secret::expose), Some("k-123"));
        assert!(!format!("{s:?}").contains("k-123"));
    }

    #[test]
    fn base_url_loses_its_trailing_slash_and_keeps_a_prefix() {
        let s = ShokoSettings::from_env(&Env::from_pairs([("SHOKO_URL", "http://shoko:8111/")])).unwrap();
        assert_eq!(s.url.unwrap().as_str(), "http://shoko:8111/");
        let s = ShokoSettings::for_url("https://example.org/shoko/", None).unwrap();
        assert_eq!(s.url.unwrap().path(), "/shoko");
    }

    #[test]
    fn the_catch_up_window_is_read_and_zero_turns_it_off() {
        assert_eq!(ShokoSettings::from_env(&Env::default()).unwrap().catchup_window, Duration::from_secs(86_400));
        let s = ShokoSettings::from_env(&Env::from_pairs([("SHOKO_CATCHUP_WINDOW", "2h")])).unwrap();
        assert_eq!(s.catchup_window, Duration::from_secs(7200));
        let s = ShokoSettings::from_env(&Env::from_pairs([("SHOKO_CATCHUP_WINDOW", "0")])).unwrap();
        assert_eq!(s.catchup_window, Duration::ZERO);
        let err = ShokoSettings::from_env(&Env::from_pairs([("SHOKO_CATCHUP_WINDOW", "soon")])).unwrap_err();
        assert!(err.to_string().contains("SHOKO_CATCHUP_WINDOW"), "{err}");
    }

    #[test]
    fn bad_urls_name_the_variable() {
        for bad in ["shoko:8111", "ftp://shoko", "http://shoko:8111/?apikey=x"] {
            let err = ShokoSettings::from_env(&Env::from_pairs([("SHOKO_URL", bad)])).unwrap_err();
            assert!(err.to_string().contains("SHOKO_URL"), "{bad}: {err}");
        }
    }
}
