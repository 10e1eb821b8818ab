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
    pub jellyfin: Option<Arc<JellyfinClient>>,
    pub jellyseerr: Option<Arc<JellyseerrClient>>,
}

impl Peers {
    pub fn from_env(env: &Env) -> Self {
        let arr = |app, url: &str, key: &str, fallback: &str| {
            Some(ArrClient::new(app, &env.get(url)?, env.secret(key)?).with_fallback_profile(env.get(fallback)))
        };
        Self {
            radarr: arr(App::Radarr, "RADARR_URL", "RADARR_API_KEY", "RADARR_FALLBACK_PROFILE"),
            sonarr: arr(App::Sonarr, "SONARR_URL", "SONARR_API_KEY", "SONARR_FALLBACK_PROFILE"),
            jellyfin: env
                .get("JELLYFIN_URL")
                .map(|url| Arc::new(JellyfinClient::new(&url, env.secret("JELLYFIN_API_KEY")))),
            jellyseerr: env
                .get("JELLYSEERR_URL")
                .map(|url| Arc::new(JellyseerrClient::new(&url, env.secret("JELLYSEERR_API_KEY")))),
        }
    }

    /// Radarr for films, Sonarr for series.
    pub fn arr(&self, media_type: MediaType) -> Option<&ArrClient> {
        match media_type {
            MediaType::Movie => self.radarr.as_ref(),
            MediaType::Tv => self.sonarr.as_ref(),
        }
    }

    /// The Radarr/Sonarr that holds `req`'s film or series, when it is the one configured:
    /// not for a 4K request, which Jellyseerr sends to its 4K server, a second instance with
    /// its own ids, library and queue (issues/010).
    pub fn arr_of(&self, req: &Request) -> Option<&ArrClient> {
        if req.is_4k { None } else { self.arr(req.media_type) }
    }

    /// The setting naming the quality profile "Lower quality" switches to, for messages.
    pub fn fallback_setting(media_type: MediaType) -> &'static str {
        match media_type {
            MediaType::Movie => "RADARR_FALLBACK_PROFILE",
            MediaType::Tv => "SONARR_FALLBACK_PROFILE",
        }
    }

    /// The setting to set for the *arr of this media type, for messages.
    pub fn arr_setting(media_type: MediaType) -> &'static str {
        match media_type {
            MediaType::Movie => "RADARR_URL and RADARR_API_KEY",
            MediaType::Tv => "SONARR_URL and SONARR_API_KEY",
        }
    }
}
