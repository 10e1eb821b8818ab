//! Configuration from environment variables.
//!
//! Every variable status-tracker reads is declared once in [`SETTINGS`] with its default and a
//! line of documentation; `docs/configuration.md` is checked against this list by a test, and
//! reading an undeclared name panics in debug builds. Services build their typed settings from
//! an [`Env`], which tests construct directly instead of mutating the process environment.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// One documented environment variable.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub name: &'static str,
    /// Default as the user would write it; `None` means "unset" (the feature is off).
    pub default: Option<&'static str>,
    /// Secrets are never logged or shown; `doctor` prints them redacted.
    pub secret: bool,
    /// Which services read it.
    pub used_by: &'static str,
    pub doc: &'static str,
}

const fn s(
    name: &'static str,
    default: Option<&'static str>,
    secret: bool,
    used_by: &'static str,
    doc: &'static str,
) -> Setting {
    Setting { name, default, secret, used_by, doc }
}

/// Every setting, in the order `docs/configuration.md` documents them.
pub const SETTINGS: &[Setting] = &[
    s(
        "NATS_URL",
        None,
        false,
        "all",
        "NATS server URL (JetStream enabled). Unset: `status-tracker` starts its own `nats-server -js` child with its store under `TRACKER_DATA_DIR/nats`.",
    ),
    s(
        "NATS_SERVER_BIN",
        Some("nats-server"),
        false,
        "all-in-one",
        "The `nats-server` executable used for the embedded server when `NATS_URL` is unset.",
    ),
    s(
        "TRACKER_NATS_MEMORY_LIMIT",
        Some("512MiB"),
        false,
        "all-in-one",
        "Soft memory limit of the embedded nats-server, given to it as Go's `GOMEMLIMIT` in place of any in the environment (`256MiB`, `1GiB`; `off`: none). Without one, a burst of thousands of webhooks a second leaves it holding about 1 GiB (docs/performance.md).",
    ),
    s(
        "TRACKER_LISTEN",
        Some("0.0.0.0:8100"),
        false,
        "ingress, dashboard",
        "Address of the HTTP listener (webhooks, pages, API). In the all-in-one mode one listener serves everything.",
    ),
    s(
        "TRACKER_DATA_DIR",
        Some("./data"),
        false,
        "correlator, ingress, all-in-one",
        "Directory for the SQLite database (`tracker.db`), the ingress spool (`spool/`) and the embedded NATS store (`nats/`). Created if missing; a directory the process cannot write stops the start with its uid and gid (the image runs as 10001:10001: a bind mount needs `chown -R 10001:10001` on the host, a named volume needs nothing).",
    ),
    s(
        "TRACKER_WEBHOOK_TOKEN",
        None,
        true,
        "ingress",
        "When set, every `/hooks/*` call must carry this token as a bearer token, a Basic-auth password or `?token=`.",
    ),
    s(
        "TRACKER_WEBHOOK_TOKEN_JELLYSEERR",
        None,
        true,
        "ingress",
        "Token for `/hooks/jellyseerr` only (overrides `TRACKER_WEBHOOK_TOKEN` for that source).",
    ),
    s("TRACKER_WEBHOOK_TOKEN_SONARR", None, true, "ingress", "Token for `/hooks/sonarr` only."),
    s("TRACKER_WEBHOOK_TOKEN_RADARR", None, true, "ingress", "Token for `/hooks/radarr` only."),
    s("TRACKER_WEBHOOK_TOKEN_QBITTORRENT", None, true, "ingress", "Token for `/hooks/qbittorrent` only."),
    s("TRACKER_WEBHOOK_TOKEN_JELLYFIN", None, true, "ingress", "Token for `/hooks/jellyfin` only."),
    s(
        "TRACKER_AUTH",
        None,
        false,
        "dashboard",
        "Unset: pages and the API are open to whoever reaches the port (a LAN). `proxy`: trust the user name a reverse proxy puts in `TRACKER_AUTH_HEADER`, from `TRACKER_TRUSTED_PROXIES` only; anyone else gets 401.",
    ),
    s(
        "TRACKER_AUTH_HEADER",
        Some("Remote-User"),
        false,
        "dashboard",
        "The header carrying the authenticated user name when `TRACKER_AUTH=proxy` (Authelia and Authentik send `Remote-User`).",
    ),
    s(
        "TRACKER_TRUSTED_PROXIES",
        Some("127.0.0.1/32,::1/128"),
        false,
        "dashboard",
        "Addresses (CIDR, comma-separated) whose `TRACKER_AUTH_HEADER` is believed.",
    ),
    s(
        "TRACKER_ADMINS",
        None,
        false,
        "dashboard",
        "User names (comma-separated) allowed to retry and cancel anyone's request when `TRACKER_AUTH` is set, and to lower a request's quality; others may retry and cancel their own requests only.",
    ),
    s(
        "TRACKER_TRACE_URL",
        None,
        false,
        "dashboard",
        "Link to a trace in your trace UI, `{trace_id}` standing for the id, e.g. `http://jaeger:16686/trace/{trace_id}`. Set: request pages link to the trace that created the request.",
    ),
    s(
        "TRACKER_MAX_BODY_BYTES",
        Some("1048576"),
        false,
        "ingress",
        "Largest webhook body accepted; larger ones are answered 413.",
    ),
    s(
        "TRACKER_PATH_MAP",
        None,
        false,
        "correlator",
        "Path prefixes that name the same folder in different containers, `from=to` pairs separated by `;` (e.g. `/downloads=/data/torrents;/tv=/data/media/tv`).",
    ),
    s(
        "TRACKER_ORPHAN_TTL",
        Some("7d"),
        false,
        "correlator",
        "How long an event whose request is not known yet is kept waiting for it.",
    ),
    s(
        "TRACKER_STALL_SEARCHING",
        Some("6h"),
        false,
        "correlator",
        "A request approved or searching this long without a grab shows \"No release found yet\" (releases may be rejected by the quality profile).",
    ),
    s(
        "TRACKER_STALL_IMPORT",
        Some("15m"),
        false,
        "correlator",
        "A download finished this long ago but not imported shows why, from Radarr's/Sonarr's queue when `RADARR_URL`/`SONARR_URL` are set.",
    ),
    s(
        "TRACKER_STALL_LIBRARY",
        Some("1h"),
        false,
        "correlator",
        "An import this old that Jellyfin has not shown yet is flagged (and checked through Jellyfin's API when `JELLYFIN_URL` is set).",
    ),
    s(
        "TRACKER_STALL_MATCHING",
        Some("1h"),
        false,
        "correlator",
        "An anime file Shoko has not matched after this long shows \"needs a manual link\".",
    ),
    s(
        "TRACKER_ARCHIVE_AFTER",
        Some("7d"),
        false,
        "correlator",
        "Available requests move to the history (state `completed`) after this long.",
    ),
    s(
        "TRACKER_WATCH_INTERVAL",
        Some("1m"),
        false,
        "correlator",
        "How often the correlator looks for stalled requests, media already in the library, and requests to archive.",
    ),
    s(
        "QBIT_URL",
        None,
        false,
        "poller",
        "qBittorrent Web UI URL, e.g. `http://qbittorrent:8080`. Unset: the poller stays idle.",
    ),
    s("QBIT_USERNAME", Some("admin"), false, "poller", "qBittorrent Web UI user."),
    s("QBIT_PASSWORD", None, true, "poller", "qBittorrent Web UI password."),
    s(
        "QBIT_POLL_INTERVAL",
        Some("2s"),
        false,
        "poller",
        "Time between two `sync/maindata` polls while tracked torrents are active.",
    ),
    s(
        "QBIT_API_KEY",
        None,
        true,
        "poller",
        "qBittorrent 5.2+ Web API key, sent as a bearer token instead of logging in with `QBIT_USERNAME`/`QBIT_PASSWORD`.",
    ),
    s(
        "QBIT_IDLE_INTERVAL",
        Some("30s"),
        false,
        "poller",
        "Time between two polls while no tracked torrent is downloading.",
    ),
    s(
        "QBIT_STALL_AFTER",
        Some("10m"),
        false,
        "poller",
        "A tracked torrent waiting for peers (`stalledDL`) or for metadata (`metaDL`) this long is reported stalled.",
    ),
    s(
        "SHOKO_URL",
        None,
        false,
        "shoko-bridge",
        "Shoko Server URL, e.g. `http://shoko:8111`. Unset: the bridge stays idle.",
    ),
    s("SHOKO_API_KEY", None, true, "shoko-bridge", "Shoko API key (sent as `apikey`)."),
    s(
        "SHOKO_CATCHUP_WINDOW",
        Some("24h"),
        false,
        "shoko-bridge",
        "SignalR has no replay: after each (re)connection the bridge reads back the files Shoko matched while it was not listening (Shoko 5.x's `GET /api/v3/File`). At start-up it looks back this far; after a lost connection, to the loss. `0` turns the catch-up off.",
    ),
    s("SONARR_URL", None, false, "correlator", "Sonarr URL, for retries and queue checks."),
    s("SONARR_API_KEY", None, true, "correlator", "Sonarr API key."),
    s("RADARR_URL", None, false, "correlator", "Radarr URL, for retries and queue checks."),
    s("RADARR_API_KEY", None, true, "correlator", "Radarr API key."),
    s(
        "SONARR_4K_URL",
        None,
        false,
        "correlator",
        "The Sonarr Jellyseerr sends 4K requests to, if it has one: retries and queue checks of 4K requests go there. Its webhook posts to `/hooks/sonarr?instance=4k`.",
    ),
    s("SONARR_4K_API_KEY", None, true, "correlator", "The 4K Sonarr's API key."),
    s(
        "RADARR_4K_URL",
        None,
        false,
        "correlator",
        "The Radarr Jellyseerr sends 4K requests to, if it has one (webhook: `/hooks/radarr?instance=4k`).",
    ),
    s("RADARR_4K_API_KEY", None, true, "correlator", "The 4K Radarr's API key."),
    s(
        "JELLYFIN_URL",
        None,
        false,
        "correlator",
        "Jellyfin URL, used to resolve episodes to their series and to verify availability.",
    ),
    s("JELLYFIN_API_KEY", None, true, "correlator", "Jellyfin API key."),
    s(
        "JELLYFIN_PUBLIC_URL",
        None,
        false,
        "correlator",
        "Jellyfin URL as requesters reach it, for \"Watch now\" links. Default: the `ServerUrl` Jellyfin sends, else `JELLYFIN_URL`.",
    ),
    s(
        "JELLYSEERR_URL",
        None,
        false,
        "correlator",
        "Jellyseerr/Overseerr URL. When set, its newest requests are read every 5 minutes and those whose webhook never came (tracker down, agent off) are caught up.",
    ),
    s("JELLYSEERR_API_KEY", None, true, "correlator", "Jellyseerr/Overseerr API key (Settings → General)."),
    s(
        "SONARR_FALLBACK_PROFILE",
        None,
        false,
        "correlator, dashboard",
        "A Sonarr quality profile (name or id) for \"Lower quality\": set, a stalled or failed series offers it beside Retry; it switches the series to this profile (it stays switched), then searches again. Admins only when `TRACKER_AUTH` is set.",
    ),
    s(
        "RADARR_FALLBACK_PROFILE",
        None,
        false,
        "correlator, dashboard",
        "The same for films: a Radarr quality profile (name or id), e.g. `SD` or `Any`.",
    ),
    s(
        "SONARR_4K_FALLBACK_PROFILE",
        None,
        false,
        "correlator, dashboard",
        "The same for 4K series, a profile of the 4K Sonarr.",
    ),
    s(
        "RADARR_4K_FALLBACK_PROFILE",
        None,
        false,
        "correlator, dashboard",
        "The same for 4K films, a profile of the 4K Radarr.",
    ),
    s(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        None,
        false,
        "all",
        "OTLP/HTTP endpoint for traces (e.g. `http://jaeger:4318`). Unset: no export.",
    ),
    s("TRACKER_LOG_FORMAT", Some("text"), false, "all", "`text` or `json` (one JSON object per line)."),
    s("RUST_LOG", Some("info"), false, "all", "Log filter, e.g. `info,correlator=debug`."),
];

/// Looks a setting up by name.
pub fn setting(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// A snapshot of the environment. Tests build one from pairs; services read it once at start.
#[derive(Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.vars {
            let secret = setting(k).is_some_and(|s| s.secret);
            m.entry(k, &if secret { "[redacted]" } else { v.as_str() });
        }
        m.finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{name}={value:?}: {problem}")]
pub struct SettingError {
    pub name: &'static str,
    pub value: String,
    pub problem: String,
}

impl Env {
    /// The declared variables of the process environment.
    pub fn from_process() -> Self {
        let vars = std::env::vars().filter(|(k, _)| setting(k).is_some()).collect();
        Self { vars }
    }

    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self { vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// Returns a copy with one more variable set.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.vars.insert(name.to_owned(), value.into());
        self
    }

    fn declared(name: &str) -> &'static Setting {
        match setting(name) {
            Some(s) => s,
            None => panic!("setting {name} is not declared in shared::settings::SETTINGS"),
        }
    }

    /// The value, trimmed; empty counts as unset. Falls back to the declared default.
    pub fn get(&self, name: &str) -> Option<String> {
        let decl = Self::declared(name);
        self.vars
            .get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .or_else(|| decl.default.map(str::to_owned))
    }

    /// A secret: like [`get`](Self::get) but wrapped so it cannot be logged by accident.
    pub fn secret(&self, name: &str) -> Option<Secret> {
        debug_assert!(Self::declared(name).secret, "{name} is not declared secret");
        self.get(name).map(Secret)
    }

    pub fn parse<T>(&self, name: &str) -> Result<Option<T>, SettingError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let decl = Self::declared(name);
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|e: T::Err| SettingError {
                name: decl.name,
                value: v.clone(),
                problem: e.to_string(),
            }),
        }
    }

    /// A duration such as `2s`, `500ms`, `6h`, `7d`; a bare number means seconds.
    pub fn duration(&self, name: &str) -> Result<Option<Duration>, SettingError> {
        let decl = Self::declared(name);
        match self.get(name) {
            None => Ok(None),
            Some(v) => parse_duration(&v).map(Some).map_err(|problem| SettingError {
                name: decl.name,
                value: v.clone(),
                problem,
            }),
        }
    }

    /// Every declared variable with its effective value, secrets redacted (for `doctor`).
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        SETTINGS
            .iter()
            .map(|s| {
                let shown = match self.get(s.name) {
                    None => "(unset)".to_owned(),
                    Some(_) if s.secret => "[redacted]".to_owned(),
                    Some(v) => v,
                };
                (s.name, shown)
            })
            .collect()
    }
}

/// A URL without its `user:password@`, for logs and reports (`nats://***@nats:4222`).
pub fn redact_userinfo(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else { return value.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => value.to_owned(),
    }
}

/// Parses `250ms`, `2s`, `5m`, `6h`, `7d` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("expected a duration like 2s, 5m, 6h; got {s:?}"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        other => return Err(format!("unknown unit {other:?} (use ms, s, m, h or d)")),
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("duration out of range: {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A secret value: `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_hidden() {
        assert_eq!(redact_userinfo("nats://tracker:s3cret@nats:4222"), "nats://***@nats:4222");
        assert_eq!(redact_userinfo("http://qbit:8080/a@b"), "http://qbit:8080/a@b");
        assert_eq!(redact_userinfo("0.0.0.0:8100"), "0.0.0.0:8100");
    }

    #[test]
    fn durations_accept_units_and_bare_seconds() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("6h").unwrap(), Duration::from_secs(6 * 3600));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn defaults_apply_and_blank_means_unset() {
        let env = Env::from_pairs([("TRACKER_LISTEN", "  "), ("NATS_URL", "")]);
        assert_eq!(env.get("TRACKER_LISTEN").as_deref(), Some("0.0.0.0:8100"));
        assert_eq!(env.get("NATS_URL"), None);
    }

    #[test]
    fn secrets_never_print() {
        let env = Env::from_pairs([("QBIT_PASSWORD", "hunter2")]);
        let secret = env.secret("QBIT_PASSWORD").unwrap();
        assert_eq!(format!("{secret} {secret:?} {env:?}").matches("hunter2").count(), 0);
        assert_eq!(secret.expose(), "hunter2");
        assert!(env.describe().iter().all(|(_, v)| v != "hunter2"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let env = Env::from_pairs([("QBIT_POLL_INTERVAL", "often")]);
        let err = env.duration("QBIT_POLL_INTERVAL").unwrap_err().to_string();
        assert!(err.contains("QBIT_POLL_INTERVAL"), "{err}");
    }

    #[test]
    #[should_panic(expected = "not declared")]
    fn undeclared_settings_are_a_bug() {
        Env::default().get("NOT_A_SETTING");
    }
}

/// The settings table of `docs/configuration.md`, rendered from [`SETTINGS`].
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | default | used by | meaning |\n|---|---|---|---|\n");
    for s in SETTINGS {
        let default = match (s.default, s.secret) {
            (Some(d), _) => format!("`{d}`"),
            (None, true) => "unset (secret)".to_owned(),
            (None, false) => "unset".to_owned(),
        };
        out.push_str(&format!("| `{}` | {} | {} | {} |\n", s.name, default, s.used_by, s.doc));
    }
    out
}

#[cfg(test)]
mod doc_tests {
    /// `docs/configuration.md` must carry the table of every setting, as the code declares
    /// them. Run with `UPDATE_DOCS=1` to rewrite the table in place.
    #[test]
    fn configuration_doc_lists_every_setting() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
        let doc = std::fs::read_to_string(path).expect("docs/configuration.md");
        let table = super::markdown_table();
        let (begin, end) = ("<!-- settings:begin -->\n", "<!-- settings:end -->");
        let start = doc.find(begin).expect("settings:begin marker") + begin.len();
        let stop = doc.find(end).expect("settings:end marker");
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(path, format!("{}{table}{}", &doc[..start], &doc[stop..])).unwrap();
            return;
        }
        assert_eq!(
            &doc[start..stop],
            table,
            "docs/configuration.md is out of date: run UPDATE_DOCS=1 cargo test -p shared"
        );
    }
}
