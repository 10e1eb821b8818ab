//! `status-tracker doctor`: prints the configuration this process sees (secrets redacted) and
//! checks every configured peer, one line per check.
//!
//! A peer that is not configured is listed as such and is not a failure: the services stay
//! idle without it. The exit code is 0 when every configured check passes, 1 otherwise, so the
//! command can gate a deployment (`docker compose run --rm doctor`). Secrets are sent where
//! they belong (a header, a login form) and never printed; URLs lose any `user:password@`.

use std::process::ExitCode;
use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::GetStreamErrorKind;
use correlator::arr::QualityProfile;
use correlator::peers::ArrSettings;
use reqwest::{Client, RequestBuilder, StatusCode};
use shared::events::MediaType;
use shared::settings::redact_userinfo;
use shared::{Bus, Env, subjects};

/// Peers on a LAN answer in milliseconds; a black-holed address must not stall the report.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const NATS_TIMEOUT: Duration = Duration::from_secs(8);

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Ok(String),
    Failed(String),
    NotConfigured(String),
}

use Outcome::{Failed, NotConfigured};

pub async fn run(env: &Env) -> ExitCode {
    println!("status-tracker {} doctor\n", env!("CARGO_PKG_VERSION"));
    println!("Configuration (from the environment; secrets redacted):");
    let described = env.describe();
    let width = described.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    for (name, value) in described {
        println!("  {name:<width$}  {}", redact_userinfo(&value));
    }

    println!("\nChecks:");
    let checks = check_all(env).await;
    let mut failed = 0;
    for (peer, outcome) in &checks {
        let (label, detail) = match outcome {
            Outcome::Ok(d) => ("ok", d),
            Failed(d) => {
                failed += 1;
                ("failed", d)
            }
            NotConfigured(d) => ("not configured", d),
        };
        println!("  {peer:<12} {label:<15} {detail}");
    }
    if failed == 0 {
        println!("\nEvery configured check passed.");
        ExitCode::SUCCESS
    } else {
        println!("\n{failed} check(s) failed.");
        ExitCode::FAILURE
    }
}

/// Runs every check at once; the report keeps this order.
async fn check_all(env: &Env) -> Vec<(&'static str, Outcome)> {
    let http = Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        // qBittorrent answers 401 to a Referer naming another host; nothing here redirects.
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .build()
        .unwrap_or_default();
    let (nats, qbit, shoko, sonarr, radarr, sonarr_4k, radarr_4k, jellyfin, jellyseerr) = tokio::join!(
        nats(env),
        qbittorrent(env, &http),
        shoko(env, &http),
        arr(env, &http, ArrSettings::of(MediaType::Tv, false)),
        arr(env, &http, ArrSettings::of(MediaType::Movie, false)),
        arr(env, &http, ArrSettings::of(MediaType::Tv, true)),
        arr(env, &http, ArrSettings::of(MediaType::Movie, true)),
        jellyfin(env, &http),
        jellyseerr(env, &http),
    );
    vec![
        ("nats", nats),
        ("qbittorrent", qbit),
        ("shoko", shoko),
        ("sonarr", sonarr),
        ("radarr", radarr),
        ("sonarr-4k", sonarr_4k),
        ("radarr-4k", radarr_4k),
        ("jellyfin", jellyfin),
        ("jellyseerr", jellyseerr),
    ]
}

/// Connects, then asks JetStream for the streams' info (which nats-server 2.9 answers, unlike
/// the account info query). A missing stream is fine: the services create them at start.
async fn nats(env: &Env) -> Outcome {
    let Some(url) = env.get("NATS_URL") else { return embedded_nats(env).await };
    let shown = redact_userinfo(&url);
    let bus = match tokio::time::timeout(NATS_TIMEOUT, Bus::connect(&url, "status-tracker-doctor")).await {
        Err(_) => return Failed(format!("{shown}: no answer within {NATS_TIMEOUT:?}")),
        Ok(Err(shared::bus::BusError::Connect { cause, .. })) => return Failed(format!("{shown}: {cause}")),
        Ok(Err(error)) => return Failed(format!("{shown}: {error}")),
        Ok(Ok(bus)) => bus,
    };
    let mut streams = Vec::new();
    for name in [subjects::STREAM_MEDIA, subjects::STREAM_TRACKER] {
        match tokio::time::timeout(REQUEST_TIMEOUT, bus.js.get_stream(name)).await {
            Err(_) => {
                return Failed(format!("{shown}: connected, but JetStream did not answer within {REQUEST_TIMEOUT:?}"));
            }
            Ok(Ok(stream)) => streams.push(format!("{name} {} messages", stream.cached_info().state.messages)),
            Ok(Err(error)) => match error.kind() {
                GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                    streams.push(format!("{name} not created yet"))
                }
                GetStreamErrorKind::JetStream(e) => {
                    return Failed(format!("{shown}: connected, JetStream refused: {e}"));
                }
                _ => {
                    return Failed(format!(
                        "{shown}: connected, but JetStream does not answer ({error}); is nats-server started with -js?"
                    ));
                }
            },
        }
    }
    Outcome::Ok(format!("{shown}: connected, JetStream answers ({})", streams.join(", ")))
}

/// Without `NATS_URL` the all-in-one starts its own server: check that it can.
async fn embedded_nats(env: &Env) -> Outcome {
    let bin = env.get("NATS_SERVER_BIN").unwrap_or_else(|| "nats-server".into());
    match tokio::process::Command::new(&bin).arg("--version").output().await {
        Ok(out) if out.status.success() => {
            let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            Outcome::Ok(format!("NATS_URL is unset: the all-in-one starts its own server ({version})"))
        }
        Ok(out) => Failed(format!("NATS_URL is unset and `{bin} --version` failed ({})", out.status)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Failed(format!(
            "NATS_URL is unset and `{bin}` is not installed: install nats-server 2.9 or newer, or set NATS_URL"
        )),
        Err(e) => Failed(format!("NATS_URL is unset and `{bin}` cannot run: {e}")),
    }
}

/// qBittorrent answers `webapiVersion` 403 until logged in: any answer means it is there.
async fn qbittorrent(env: &Env, http: &Client) -> Outcome {
    let Some((base, shown)) = base_url(env, "QBIT_URL") else { return not_configured("QBIT_URL") };
    let version_url = format!("{base}/api/v2/app/webapiVersion");
    let (status, body) = match answer(http.get(&version_url)).await {
        Ok(answer) => answer,
        Err(e) => return Failed(format!("{shown}: {e}")),
    };
    if let Some(key) = env.secret("QBIT_API_KEY") {
        let request = http.get(&version_url).bearer_auth(key.expose());
        return verdict(env, &shown, "QBIT_API_KEY", answer(request).await, |v| {
            format!("API key accepted, WebAPI {}", v.trim())
        });
    }
    if let Some(password) = env.secret("QBIT_PASSWORD") {
        let user = env.get("QBIT_USERNAME").unwrap_or_default();
        return qbit_login(http, &base, &shown, &user, password.expose()).await;
    }
    match status {
        s if s.is_success() => {
            Outcome::Ok(format!("{shown}: WebAPI {} without login (address whitelisted)", body.trim()))
        }
        StatusCode::FORBIDDEN => {
            Failed(format!("{shown}: reachable, but it wants a login: set QBIT_PASSWORD or QBIT_API_KEY"))
        }
        s => Failed(format!("{shown}: reachable, but answered {}", short(s, &body))),
    }
}

/// `POST /api/v2/auth/login`: 4.x–5.1 answer `200 Ok.`/`200 Fails.`, 5.2 `204`/`401`; both
/// `403` to an address they banned. One refused login counts toward that ban.
async fn qbit_login(http: &Client, base: &str, shown: &str, user: &str, password: &str) -> Outcome {
    let form = [("username", user), ("password", password)];
    match answer(http.post(format!("{base}/api/v2/auth/login")).form(&form)).await {
        Ok((StatusCode::OK, b)) if b.trim() == "Ok." => Outcome::Ok(format!("{shown}: login accepted for {user:?}")),
        Ok((StatusCode::NO_CONTENT, _)) => Outcome::Ok(format!("{shown}: login accepted for {user:?}")),
        Ok((StatusCode::OK | StatusCode::UNAUTHORIZED, _)) => Failed(format!(
            "{shown}: reachable, but the login of {user:?} was refused: check QBIT_USERNAME and QBIT_PASSWORD"
        )),
        Ok((StatusCode::FORBIDDEN, _)) => {
            Failed(format!("{shown}: qBittorrent has banned this address after failed logins (for an hour)"))
        }
        Ok((s, b)) => Failed(format!("{shown}: unexpected answer to the login: {}", short(s, &b))),
        Err(e) => Failed(format!("{shown}: login: {e}")),
    }
}

/// Shoko: the import folder list needs the API key, and the bridge needs the list.
async fn shoko(env: &Env, http: &Client) -> Outcome {
    let Some((base, shown)) = base_url(env, "SHOKO_URL") else { return not_configured("SHOKO_URL") };
    let mut request = http.get(format!("{base}/api/v3/ImportFolder"));
    if let Some(key) = env.secret("SHOKO_API_KEY") {
        request = request.header("apikey", key.expose());
    }
    verdict(env, &shown, "SHOKO_API_KEY", answer(request).await, |body| {
        let folders = serde_json::from_str::<Vec<serde_json::Value>>(body).map(|f| f.len()).unwrap_or(0);
        format!("API key accepted, {folders} import folder(s)")
    })
}

/// Sonarr and Radarr share their API: `GET /api/v3/system/status` with `X-Api-Key`; with a
/// fallback quality profile set ("Lower quality"), `GET /api/v3/qualityprofile` must list it.
async fn arr(env: &Env, http: &Client, names: ArrSettings) -> Outcome {
    let ArrSettings { url: url_var, api_key: key_var, fallback: fallback_var } = names;
    let Some((base, shown)) = base_url(env, url_var) else { return not_configured(url_var) };
    let get = |path: &str| {
        let request = http.get(format!("{base}{path}"));
        match env.secret(key_var) {
            Some(key) => request.header("X-Api-Key", key.expose()),
            None => request,
        }
    };
    let mut app = String::new();
    let status = verdict(env, &shown, key_var, answer(get("/api/v3/system/status")).await, |body| {
        let status: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        app = status["appName"].as_str().unwrap_or("answered").to_owned();
        format!("{app} {}, API key accepted", status["version"].as_str().unwrap_or(""))
    });
    let (Outcome::Ok(found), Some(wanted)) = (&status, env.get(fallback_var)) else { return status };
    let profiles = match answer(get("/api/v3/qualityprofile")).await {
        Ok((s, body)) if s.is_success() => QualityProfile::list(&serde_json::from_str(&body).unwrap_or_default()),
        Ok((s, b)) => return Failed(format!("{found}, but its quality profiles: {}", short(s, &b))),
        Err(e) => return Failed(format!("{found}, but its quality profiles: {e}")),
    };
    match QualityProfile::find(&profiles, &wanted) {
        Some(p) => Outcome::Ok(format!("{found}, \"Lower quality\" switches to {}", p.name)),
        None => {
            let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
            let wanted = wanted.trim();
            Failed(format!(
                "{found}, but {fallback_var} {wanted:?} is not one of {app}'s quality profiles ({})",
                names.join(", ")
            ))
        }
    }
}

/// Jellyfin: the public info needs no key; with a key, `/System/Info` proves it. Beside a 4K
/// Radarr/Sonarr the API is needed: its webhook names no file, and the file (`GET /Items/{id}`,
/// which wants the key) is what tells a film's HD and 4K copies apart; a URL without a key fails.
async fn jellyfin(env: &Env, http: &Client) -> Outcome {
    let api_needed = ["RADARR_4K_URL", "SONARR_4K_URL"].into_iter().find(|var| env.get(var).is_some()).map(|var| {
        format!(
            "with {var} set, Jellyfin's \"item added\" is told apart for HD and 4K requests of the same \
             film or series only by the file it names through Jellyfin's API; without it, it goes to the \
             newer request"
        )
    });
    let Some((base, shown)) = base_url(env, "JELLYFIN_URL") else {
        return match api_needed {
            Some(why) => NotConfigured(format!("JELLYFIN_URL is unset: {why}")),
            None => not_configured("JELLYFIN_URL"),
        };
    };
    let info = match public_json(http, &format!("{base}/System/Info/Public"), &shown).await {
        Ok(info) => info,
        Err(failed) => return failed,
    };
    let server = format!("{shown}: Jellyfin {}", info["Version"].as_str().unwrap_or("(version unknown)"));
    let Some(key) = env.secret("JELLYFIN_API_KEY") else {
        return match api_needed {
            Some(why) => Failed(format!("{server}, but no JELLYFIN_API_KEY set: {why}")),
            None => Outcome::Ok(format!("{server}, no JELLYFIN_API_KEY set")),
        };
    };
    let authorized = http
        .get(format!("{base}/System/Info"))
        .header("Authorization", format!("MediaBrowser Client=\"status-tracker\", Token=\"{}\"", key.expose()));
    verdict(env, &server, "JELLYFIN_API_KEY", answer(authorized).await, |_| "API key accepted".into())
}

/// Jellyseerr/Overseerr: `/api/v1/status` is public; `/api/v1/auth/me` proves the key.
async fn jellyseerr(env: &Env, http: &Client) -> Outcome {
    let Some((base, shown)) = base_url(env, "JELLYSEERR_URL") else { return not_configured("JELLYSEERR_URL") };
    let status = match public_json(http, &format!("{base}/api/v1/status"), &shown).await {
        Ok(status) => status,
        Err(failed) => return failed,
    };
    let server = format!("{shown}: version {}", status["version"].as_str().unwrap_or("unknown"));
    let Some(key) = env.secret("JELLYSEERR_API_KEY") else {
        return Outcome::Ok(format!("{server}, no JELLYSEERR_API_KEY set"));
    };
    let request = http.get(format!("{base}/api/v1/auth/me")).header("X-Api-Key", key.expose());
    verdict(env, &server, "JELLYSEERR_API_KEY", answer(request).await, |_| "API key accepted".into())
}

/// A public JSON document, or the failed check.
async fn public_json(http: &Client, url: &str, shown: &str) -> Result<serde_json::Value, Outcome> {
    match answer(http.get(url)).await {
        Ok((s, body)) if s.is_success() => Ok(serde_json::from_str(&body).unwrap_or_default()),
        Ok((s, b)) => Err(Failed(format!("{shown}: unexpected answer: {}", short(s, &b)))),
        Err(e) => Err(Failed(format!("{shown}: {e}"))),
    }
}

/// The check's outcome from the answer to a request that carried `key_var`'s key (if set):
/// `ok` describes a 2xx body, 401/403 name the setting to fix.
fn verdict(
    env: &Env,
    shown: &str,
    key_var: &str,
    answer: Result<(StatusCode, String), String>,
    ok: impl FnOnce(&str) -> String,
) -> Outcome {
    match answer {
        Ok((s, body)) if s.is_success() => Outcome::Ok(format!("{shown}: {}", ok(&body))),
        Ok((s, _)) if is_refusal(s) => Failed(format!("{shown}: {} ({s})", key_problem(env, key_var))),
        Ok((s, b)) => Failed(format!("{shown}: unexpected answer: {}", short(s, &b))),
        Err(e) => Failed(format!("{shown}: {e}")),
    }
}

fn not_configured(var: &str) -> Outcome {
    NotConfigured(format!("{var} is unset"))
}

/// The URL without a trailing slash, and the same for printing (no `user:password@`).
fn base_url(env: &Env, var: &str) -> Option<(String, String)> {
    let base = env.get(var)?.trim_end_matches('/').to_owned();
    let shown = redact_userinfo(&base);
    Some((base, shown))
}

fn is_refusal(status: StatusCode) -> bool {
    matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
}

fn key_problem(env: &Env, key_var: &str) -> String {
    match env.get(key_var) {
        Some(_) => format!("{key_var} was refused"),
        None => format!("{key_var} is not set and the server wants one"),
    }
}

/// Sends the request: the status and body of any HTTP answer, or why there was none.
async fn answer(request: RequestBuilder) -> Result<(StatusCode, String), String> {
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    Ok((status, response.text().await.unwrap_or_default()))
}

/// "unreachable: error sending request: client error (Connect): tcp connect error: ..."
fn unreachable(error: reqwest::Error) -> String {
    let timeout = error.is_timeout();
    let error = error.without_url();
    let mut text = format!("unreachable: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if timeout {
        text.push_str(" (timed out)");
    }
    text
}

/// `401 Unauthorized: <the first line of the body, cut>`.
fn short(status: StatusCode, body: &str) -> String {
    let line: String = body.lines().next().unwrap_or("").chars().take(120).collect();
    if line.trim().is_empty() { status.to_string() } else { format!("{status}: {}", line.trim()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_answers_keep_the_first_line() {
        assert_eq!(short(StatusCode::FORBIDDEN, "Forbidden\nmore"), "403 Forbidden: Forbidden");
        assert_eq!(short(StatusCode::UNAUTHORIZED, ""), "401 Unauthorized");
    }
}
