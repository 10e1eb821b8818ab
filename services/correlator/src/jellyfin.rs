//! Jellyfin's REST API, for what its webhook does not say: an episode's provider ids are the
//! episode's own, so the series is resolved through `GET /Items/{SeriesId}`; the stock
//! template has no file path, which `GET /Items/{ItemId}` gives (it tells a film's HD and 4K
//! copies apart).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use shared::settings::Secret;

/// Provider ids of a series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeriesIds {
    pub tvdb: Option<u64>,
    pub tmdb: Option<u64>,
}

/// After Jellyfin could not be reached, how long it is not asked again: the correlator reads
/// an added item's file before correlating it, and must not wait a timeout per event while
/// Jellyfin is down.
pub const UNREACHABLE_PAUSE: Duration = Duration::from_secs(60);

/// A small Jellyfin client with a cache of series lookups.
#[derive(Debug)]
pub struct JellyfinClient {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) key: Option<Secret>,
    series: Mutex<HashMap<String, SeriesIds>>,
    /// Until when Jellyfin is not asked, after it could not be reached.
    paused_until: Mutex<Option<Instant>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Item {
    #[serde(default)]
    provider_ids: HashMap<String, String>,
    #[serde(default)]
    path: Option<String>,
}

impl JellyfinClient {
    pub fn new(base: &str, key: Option<Secret>) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key,
            series: Mutex::new(HashMap::new()),
            paused_until: Mutex::new(None),
        }
    }

    /// The provider ids of the series with Jellyfin id `series_id` (N format).
    pub async fn series_ids(&self, series_id: &str) -> Result<SeriesIds, String> {
        if let Some(hit) = self.series.lock().unwrap_or_else(|e| e.into_inner()).get(series_id) {
            return Ok(*hit);
        }
        let item = self.item(series_id).await?;
        let id = |k: &str| {
            item.provider_ids.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).and_then(|(_, v)| v.parse().ok())
        };
        let ids = SeriesIds { tvdb: id("Tvdb"), tmdb: id("Tmdb") };
        self.series.lock().unwrap_or_else(|e| e.into_inner()).insert(series_id.to_owned(), ids);
        Ok(ids)
    }

    /// The file of the item with Jellyfin id `item_id` (a film's or an episode's), if it has one.
    pub async fn item_path(&self, item_id: &str) -> Result<Option<String>, String> {
        Ok(self.item(item_id).await?.path.filter(|p| !p.is_empty()))
    }

    async fn item(&self, id: &str) -> Result<Item, String> {
        self.get(&format!("/Items/{id}")).await.map_err(|e| format!("{e} for item {id}"))
    }

    /// `GET {JELLYFIN_URL}{path_and_query}` with the API key, read as JSON. Not sent for
    /// [`UNREACHABLE_PAUSE`] after Jellyfin could not be reached.
    async fn get<T: serde::de::DeserializeOwned>(&self, path_and_query: &str) -> Result<T, String> {
        let paused = || self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = *paused()
            && let Some(left) = until.checked_duration_since(Instant::now())
        {
            return Err(format!("Jellyfin was unreachable; not asked again for {} s", left.as_secs() + 1));
        }
        let mut req = self.http.get(format!("{}{path_and_query}", self.base));
        if let Some(key) = &self.key {
            req = req.header("Authorization", format!("MediaBrowser Token=\"{}\"", key.expose()));
        }
        let sent = req.send().await;
        *paused() = sent.is_err().then(|| Instant::now() + UNREACHABLE_PAUSE);
        let resp = sent.map_err(|e| format!("Jellyfin unreachable: {}", e.without_url()))?;
        if !resp.status().is_success() {
            return Err(format!("Jellyfin answered {}", resp.status()));
        }
        resp.json().await.map_err(|e| format!("unexpected Jellyfin answer: {}", e.without_url()))
    }
}

/// A library item that is really there: it has a file (not a metadata-only stub).
#[derive(Debug, Clone, PartialEq)]
pub struct LibraryItem {
    pub id: String,
    pub server_id: Option<String>,
    pub season: Option<u32>,
    pub episode: Option<u32>,
    /// Its file (or folder), as Jellyfin mounts it.
    pub path: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ItemList {
    #[serde(default)]
    items: Vec<ListedItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedItem {
    id: String,
    #[serde(default)]
    server_id: Option<String>,
    #[serde(default)]
    provider_ids: HashMap<String, String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    location_type: Option<String>,
    #[serde(default)]
    index_number: Option<u32>,
    #[serde(default)]
    parent_index_number: Option<u32>,
}

impl ListedItem {
    fn has_file(&self) -> bool {
        self.path.as_deref().is_some_and(|p| !p.is_empty()) && self.location_type.as_deref() != Some("Virtual")
    }

    fn provider(&self, key: &str) -> Option<&str> {
        self.provider_ids.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
    }

    fn into_library(self) -> LibraryItem {
        LibraryItem {
            id: self.id.to_ascii_lowercase(),
            server_id: self.server_id,
            season: self.parent_index_number,
            episode: self.index_number,
            path: self.path.map(|p| shared::paths::normalize(&p)),
        }
    }
}

impl JellyfinClient {
    async fn list(&self, query: &str) -> Result<Vec<ListedItem>, String> {
        Ok(self.get::<ItemList>(query).await?.items)
    }

    /// The films with this TMDB id whose file the library has (an HD and a 4K copy are two).
    /// Jellyfin has no "provider id equals" filter (that is Emby's), so the title narrows the
    /// search and the id is compared here.
    pub async fn movies(&self, tmdb: u64, title: &str) -> Result<Vec<LibraryItem>, String> {
        let q = format!(
            "/Items?Recursive=true&IncludeItemTypes=Movie&HasTmdbId=true&Fields=ProviderIds,Path&SearchTerm={}",
            encode(title)
        );
        let tmdb = tmdb.to_string();
        let found =
            self.list(&q).await?.into_iter().filter(|i| i.provider("Tmdb") == Some(tmdb.as_str()) && i.has_file());
        Ok(found.map(ListedItem::into_library).collect())
    }

    /// The series with this TVDB id, each with its episodes that have a file (an HD and a 4K
    /// library hold two).
    pub async fn series_episodes(
        &self,
        tvdb: u64,
        title: &str,
    ) -> Result<Vec<(LibraryItem, Vec<LibraryItem>)>, String> {
        let q =
            format!("/Items?Recursive=true&IncludeItemTypes=Series&Fields=ProviderIds&SearchTerm={}", encode(title));
        let tvdb = tvdb.to_string();
        let mut copies = Vec::new();
        for series in self.list(&q).await?.into_iter().filter(|i| i.provider("Tvdb") == Some(tvdb.as_str())) {
            let episodes = self.list(&format!("/Shows/{}/Episodes?Fields=Path", series.id)).await?;
            let present = episodes.into_iter().filter(ListedItem::has_file).map(ListedItem::into_library).collect();
            copies.push((series.into_library(), present));
        }
        Ok(copies)
    }
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_jellyfin_is_not_asked_again_at_once() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = JellyfinClient::new(&format!("http://127.0.0.1:{port}"), None);
        let first = client.item_path("a1b2").await.unwrap_err();
        assert!(first.starts_with("Jellyfin unreachable"), "{first}");
        let second = client.item_path("a1b2").await.unwrap_err();
        assert!(second.starts_with("Jellyfin was unreachable; not asked again for 6"), "{second}");
    }
}
