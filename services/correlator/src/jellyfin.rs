//! Jellyfin's REST API, for what its webhook does not say: an episode's provider ids are the
//! episode's own, so the series is resolved through `GET /Items/{SeriesId}`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use shared::settings::Secret;

/// Provider ids of a series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeriesIds {
    pub tvdb: Option<u64>,
    pub tmdb: Option<u64>,
}

/// A small Jellyfin client with a cache of series lookups.
#[derive(Debug)]
pub struct JellyfinClient {
    http: reqwest::Client,
    base: String,
    key: Option<Secret>,
    series: Mutex<HashMap<String, SeriesIds>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Item {
    #[serde(default)]
    provider_ids: HashMap<String, String>,
}

impl JellyfinClient {
    pub fn new(base: &str, key: Option<Secret>) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        Self { http, base: base.trim_end_matches('/').to_owned(), key, series: Mutex::new(HashMap::new()) }
    }

    /// The provider ids of the series with Jellyfin id `series_id` (N format).
    pub async fn series_ids(&self, series_id: &str) -> Result<SeriesIds, String> {
        if let Some(hit) = self.series.lock().unwrap_or_else(|e| e.into_inner()).get(series_id) {
            return Ok(*hit);
        }
        let mut req = self.http.get(format!("{}/Items/{series_id}", self.base));
        if let Some(key) = &self.key {
            req = req.header("Authorization", format!("MediaBrowser Token=\"{}\"", key.expose()));
        }
        let resp = req.send().await.map_err(|e| format!("Jellyfin unreachable: {}", e.without_url()))?;
        if !resp.status().is_success() {
            return Err(format!("Jellyfin answered {} for series {series_id}", resp.status()));
        }
        let item: Item = resp.json().await.map_err(|e| format!("unexpected Jellyfin answer: {}", e.without_url()))?;
        let id = |k: &str| {
            item.provider_ids.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).and_then(|(_, v)| v.parse().ok())
        };
        let ids = SeriesIds { tvdb: id("Tvdb"), tmdb: id("Tmdb") };
        self.series.lock().unwrap_or_else(|e| e.into_inner()).insert(series_id.to_owned(), ids);
        Ok(ids)
    }
}
