//! Webhook authentication: one token (or one per source) accepted as a bearer token, as the
//! password of Basic auth (what Sonarr and Radarr offer) or as `?token=` (for qBittorrent's
//! command line), compared in constant time.

use std::collections::HashMap;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use axum::http::{HeaderMap, header};
use base64::Engine as _;
use shared::settings::{Env, Secret};
use shared::subjects::Source;

/// The tokens webhooks must carry.
#[derive(Debug, Clone, Default)]
pub struct WebhookAuth {
    default: Option<Secret>,
    per_source: HashMap<Source, Secret>,
}

/// Why a webhook was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Wrong,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => {
                "authentication required: send the webhook token as a bearer token, a Basic-auth password or ?token="
            }
            Self::Wrong => "wrong webhook token",
        }
    }
}

impl WebhookAuth {
    pub fn from_env(env: &Env) -> Self {
        let per_source = Source::ALL
            .into_iter()
            .filter_map(|s| {
                let name = format!("TRACKER_WEBHOOK_TOKEN_{}", s.as_str().to_ascii_uppercase());
                shared::settings::setting(&name).and_then(|_| env.secret(&name)).map(|t| (s, t))
            })
            .collect();
        Self { default: env.secret("TRACKER_WEBHOOK_TOKEN"), per_source }
    }

    pub fn with_token(token: &str) -> Self {
        Self { default: Some(Secret::new(token)), per_source: HashMap::new() }
    }

    /// True when webhooks of some source need a token.
    pub fn enabled(&self) -> bool {
        self.default.is_some() || !self.per_source.is_empty()
    }

    /// Checks a webhook of `source` carrying `headers` and the query string `query`.
    pub fn check(&self, source: Source, headers: &HeaderMap, query: Option<&str>) -> Result<(), Refusal> {
        let Some(expected) = self.per_source.get(&source).or(self.default.as_ref()) else {
            return Ok(());
        };
        let offered = offered_tokens(headers, query);
        if offered.is_empty() {
            return Err(Refusal::Missing);
        }
        // Comparing digests hides the token's length as well as its content.
        let want = digest(&SHA256, expected.expose().as_bytes());
        let mut ok = false;
        for candidate in &offered {
            let got = digest(&SHA256, candidate.as_bytes());
            ok |= verify_slices_are_equal(want.as_ref(), got.as_ref()).is_ok();
        }
        if ok { Ok(()) } else { Err(Refusal::Wrong) }
    }
}

/// Every token the request offers: bearer, Basic password (or user name when the password is
/// empty, for senders with a single field), `X-Api-Key`, and `?token=`.
fn offered_tokens(headers: &HeaderMap, query: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for value in headers.get_all(header::AUTHORIZATION).iter().filter_map(|v| v.to_str().ok()) {
        let value = value.trim();
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" => out.push(rest.trim().to_owned()),
            "basic" => {
                let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).unwrap_or_default();
                let text = String::from_utf8_lossy(&decoded);
                let (user, pass) = text.split_once(':').unwrap_or((&text, ""));
                out.push(if pass.is_empty() { user.to_owned() } else { pass.to_owned() });
            }
            _ => out.push(value.to_owned()),
        }
    }
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        out.push(key.trim().to_owned());
    }
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if k == "token" {
            out.push(v.into_owned());
        }
    }
    out.retain(|t| !t.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn bearer_basic_password_and_query_token_are_accepted() {
        let auth = WebhookAuth::with_token("s3cret");
        assert_eq!(auth.check(Source::Sonarr, &headers("Bearer s3cret"), None), Ok(()));
        let basic = base64::engine::general_purpose::STANDARD.encode("sonarr:s3cret");
        assert_eq!(auth.check(Source::Sonarr, &headers(&format!("Basic {basic}")), None), Ok(()));
        assert_eq!(auth.check(Source::Qbittorrent, &HeaderMap::new(), Some("token=s3cret")), Ok(()));
        assert_eq!(
            auth.check(Source::Jellyseerr, &headers("s3cret"), None),
            Ok(()),
            "Jellyseerr sends its auth header verbatim"
        );
    }

    #[test]
    fn missing_and_wrong_tokens_are_refused() {
        let auth = WebhookAuth::with_token("s3cret");
        assert_eq!(auth.check(Source::Radarr, &HeaderMap::new(), None), Err(Refusal::Missing));
        assert_eq!(auth.check(Source::Radarr, &headers("Bearer s3cret2"), None), Err(Refusal::Wrong));
        assert_eq!(auth.check(Source::Radarr, &headers("Bearer "), Some("token=")), Err(Refusal::Missing));
    }

    #[test]
    fn a_source_token_overrides_the_shared_one() {
        let env = Env::from_pairs([("TRACKER_WEBHOOK_TOKEN", "all"), ("TRACKER_WEBHOOK_TOKEN_JELLYFIN", "jf")]);
        let auth = WebhookAuth::from_env(&env);
        assert!(auth.enabled());
        assert_eq!(auth.check(Source::Jellyfin, &headers("Bearer jf"), None), Ok(()));
        assert_eq!(auth.check(Source::Jellyfin, &headers("Bearer all"), None), Err(Refusal::Wrong));
        assert_eq!(auth.check(Source::Radarr, &headers("Bearer all"), None), Ok(()));
    }

    #[test]
    fn no_token_configured_means_open() {
        let auth = WebhookAuth::default();
        assert!(!auth.enabled());
        assert_eq!(auth.check(Source::Radarr, &HeaderMap::new(), None), Ok(()));
    }
}
