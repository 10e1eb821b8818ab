//! The media services the correlator may call: Radarr and Sonarr (searches, lookups, queue),
//! Jellyfin (series of an episode, availability), Jellyseerr (requests whose webhook never
//! came). Each is optional.

use std::sync::Arc;

use shared::events::MediaType;
use shared::settings::Env;

use crate::arr::{App, ArrClient};
use crate::jellyfin::JellyfinClient;
use crate::jellyseerr::JellyseerrClient;
use crate::lifecycle::Request;

#[derive(Debug, Clone, Default)]
pub struct Peers {
    pub radarr: Option<ArrClient>,
    pub sonarr: Option<ArrClient>,
    /// The Radarr/Sonarr Jellyseerr sends 4K requests to (`RADARR_4K_URL`, `SONARR_4K_URL`).
    pub radarr_4k: Option<ArrClient>,
    pub sonarr_4k: Option<ArrClient>,
    pub jellyfin: Option<Arc<JellyfinClient>>,
    pub jellyseerr: Option<Arc<JellyseerrClient>>,
}

/// The names of one Radarr/Sonarr instance's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrSettings {
    pub url: &'static str,
    pub api_key: &'static str,
    /// The quality profile "Lower quality" switches to.
    pub fallback: &'static str,
}

impl ArrSettings {
    /// The instance that holds films (Radarr) or series (Sonarr), 4K or not.
    pub fn of(media_type: MediaType, is_4k: bool) -> Self {
        let (url, api_key, fallback) = match (media_type, is_4k) {
            (MediaType::Movie, false) => ("RADARR_URL", "RADARR_API_KEY", "RADARR_FALLBACK_PROFILE"),
            (MediaType::Movie, true) => ("RADARR_4K_URL", "RADARR_4K_API_KEY", "RADARR_4K_FALLBACK_PROFILE"),
            (MediaType::Tv, false) => ("SONARR_URL", "SONARR_API_KEY", "SONARR_FALLBACK_PROFILE"),
            (MediaType::Tv, true) => ("SONARR_4K_URL", "SONARR_4K_API_KEY", "SONARR_4K_FALLBACK_PROFILE"),
        };
        Self { url, api_key, fallback }
    }
}

impl Peers {
    pub fn from_env(env: &Env) -> Self {
        let arr = |app, media_type, is_4k| {
            let names = ArrSettings::of(media_type, is_4k);
            let client = ArrClient::new(app, &env.get(names.url)?, env.secret(names.api_key)?);
            Some(client.with_fallback_profile(env.get(names.fallback)))
        };
        Self {
            radarr: arr(App::Radarr, MediaType::Movie, false),
            sonarr: arr(App::Sonarr, MediaType::Tv, false),
            radarr_4k: arr(App::Radarr, MediaType::Movie, true),
            sonarr_4k: arr(App::Sonarr, MediaType::Tv, true),
            jellyfin: env
                .get("JELLYFIN_URL")
                .map(|url| Arc::new(JellyfinClient::new(&url, env.secret("JELLYFIN_API_KEY")))),
            jellyseerr: env
                .get("JELLYSEERR_URL")
                .map(|url| Arc::new(JellyseerrClient::new(&url, env.secret("JELLYSEERR_API_KEY")))),
        }
    }

    /// The Radarr (films) or Sonarr (series) that holds `req`'s media: for a 4K request the
    /// one Jellyseerr sends 4K requests to, which has its own ids, library and queue.
    pub fn arr_of(&self, req: &Request) -> Option<&ArrClient> {
        match (req.media_type, req.is_4k) {
            (MediaType::Movie, false) => self.radarr.as_ref(),
            (MediaType::Movie, true) => self.radarr_4k.as_ref(),
            (MediaType::Tv, false) => self.sonarr.as_ref(),
            (MediaType::Tv, true) => self.sonarr_4k.as_ref(),
        }
    }
}
