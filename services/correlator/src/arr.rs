//! Radarr's and Sonarr's REST API (v3), for what webhooks cannot do: search again, look up
//! ids, read the queue when an import does not happen, and switch a film or series to a lower
//! quality profile.

use std::time::Duration;

use serde_json::{Value, json};
use shared::ids::{TmdbId, TvdbId};
use shared::settings::Secret;

/// Which *arr this client talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    Radarr,
    Sonarr,
}

impl App {
    pub fn name(self) -> &'static str {
        match self {
            Self::Radarr => "Radarr",
            Self::Sonarr => "Sonarr",
        }
    }

    /// The resource a request's media is in Radarr/Sonarr: `movie` or `series`.
    fn resource(self) -> &'static str {
        match self {
            Self::Radarr => "movie",
            Self::Sonarr => "series",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ArrClient {
    pub app: App,
    http: reqwest::Client,
    base: String,
    key: Secret,
    /// The quality profile "Lower quality" switches to (`RADARR_FALLBACK_PROFILE`,
    /// `SONARR_FALLBACK_PROFILE`): a name, or an id.
    pub fallback_profile: Option<String>,
}

/// A quality profile (`GET /api/v3/qualityprofile`).
#[derive(Debug, Clone, PartialEq)]
pub struct QualityProfile {
    pub id: u64,
    pub name: String,
}

impl QualityProfile {
    /// The profiles in an answer of `GET /api/v3/qualityprofile`.
    pub fn list(body: &Value) -> Vec<Self> {
        body.as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some(Self { id: p["id"].as_u64()?, name: p["name"].as_str()?.to_owned() }))
            .collect()
    }

    /// The profile a setting names: by its name in any case, else by its id.
    pub fn find<'a>(profiles: &'a [Self], wanted: &str) -> Option<&'a Self> {
        let wanted = wanted.trim();
        profiles
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(wanted))
            .or_else(|| profiles.iter().find(|p| wanted.parse() == Ok(p.id)))
    }
}

/// A series as Sonarr knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub id: u64,
    /// Seasons whose every aired episode has a file (monitored or not).
    pub complete_seasons: Vec<u32>,
}

/// One episode in Sonarr.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Episode {
    pub id: u64,
    pub season: u32,
    pub episode: u32,
    pub has_file: bool,
}

/// What Radarr/Sonarr's queue says about a download.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueState {
    /// `importPending`, `importBlocked`, `importing`, `failedPending`, `downloading`…
    pub state: String,
    pub messages: Vec<String>,
}

impl ArrClient {
    pub fn new(app: App, base: &str, key: Secret) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
        Self { app, http, base: base.trim_end_matches('/').to_owned(), key, fallback_profile: None }
    }

    /// With the quality profile "Lower quality" switches to.
    pub fn with_fallback_profile(mut self, profile: Option<String>) -> Self {
        self.fallback_profile = profile.map(|p| p.trim().to_owned()).filter(|p| !p.is_empty());
        self
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).header("X-Api-Key", self.key.expose());
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| format!("{} unreachable: {}", self.app.name(), e.without_url()))?;
        answer(self.app, resp).await
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// `POST /api/v3/command`; returns the command's id.
    pub async fn command(&self, body: Value) -> Result<u64, String> {
        let v = self.send(reqwest::Method::POST, "/api/v3/command", Some(&body)).await?;
        Ok(v["id"].as_u64().unwrap_or_default())
    }

    /// Every quality profile, by id and name.
    pub async fn quality_profiles(&self) -> Result<Vec<QualityProfile>, String> {
        Ok(QualityProfile::list(&self.get("/api/v3/qualityprofile").await?))
    }

    /// The quality profile id of a film (Radarr) or series (Sonarr), by Radarr's/Sonarr's id.
    pub async fn quality_profile_of(&self, id: u64) -> Result<u64, String> {
        let v = self.get(&format!("/api/v3/{}/{id}", self.app.resource())).await?;
        v["qualityProfileId"]
            .as_u64()
            .ok_or_else(|| format!("{} sent {} {id} without a qualityProfileId", self.app.name(), self.app.resource()))
    }

    /// Switches a film or series to another quality profile through the bulk editor
    /// (`PUT /api/v3/movie/editor`, `PUT /api/v3/series/editor`), which changes that field
    /// alone: the whole resource is not sent back.
    pub async fn set_quality_profile(&self, id: u64, profile: u64) -> Result<(), String> {
        let body = match self.app {
            App::Radarr => json!({ "movieIds": [id], "qualityProfileId": profile }),
            App::Sonarr => json!({ "seriesIds": [id], "qualityProfileId": profile }),
        };
        let path = format!("/api/v3/{}/editor", self.app.resource());
        self.send(reqwest::Method::PUT, &path, Some(&body)).await.map(drop)
    }

    /// Radarr's id for a film, and whether it has a file.
    pub async fn movie(&self, tmdb: TmdbId) -> Result<Option<(u64, bool)>, String> {
        let v = self.get(&format!("/api/v3/movie?tmdbId={tmdb}")).await?;
        Ok(v.as_array().and_then(|a| a.first()).and_then(|m| Some((m["id"].as_u64()?, m["hasFile"].as_bool()?))))
    }

    /// Sonarr's series with this TVDB id.
    pub async fn series(&self, tvdb: TvdbId) -> Result<Option<Series>, String> {
        let v = self.get(&format!("/api/v3/series?tvdbId={tvdb}")).await?;
        let Some(s) = v.as_array().and_then(|a| a.first()) else { return Ok(None) };
        let Some(id) = s["id"].as_u64() else { return Ok(None) };
        let complete_seasons = s["seasons"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|season| {
                let stats = &season["statistics"];
                let (files, aired) = (stats["episodeFileCount"].as_u64(), stats["episodeCount"].as_u64());
                matches!((files, aired), (Some(f), Some(a)) if a > 0 && f >= a)
            })
            .filter_map(|season| season["seasonNumber"].as_u64().and_then(|n| u32::try_from(n).ok()))
            .collect();
        Ok(Some(Series { id, complete_seasons }))
    }

    pub async fn episodes(&self, series_id: u64) -> Result<Vec<Episode>, String> {
        let v = self.get(&format!("/api/v3/episode?seriesId={series_id}")).await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                Some(Episode {
                    id: e["id"].as_u64()?,
                    season: u32::try_from(e["seasonNumber"].as_u64()?).ok()?,
                    episode: u32::try_from(e["episodeNumber"].as_u64()?).ok()?,
                    has_file: e["hasFile"].as_bool().unwrap_or(false),
                })
            })
            .collect())
    }

    /// The queue's view of a download (by `downloadId`, compared case-insensitively).
    pub async fn queue_state(&self, download_id: &str) -> Result<Option<QueueState>, String> {
        let v = self.get("/api/v3/queue?page=1&pageSize=500").await?;
        let record = v["records"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["downloadId"].as_str().is_some_and(|d| d.eq_ignore_ascii_case(download_id)));
        Ok(record.map(|r| QueueState {
            state: r["trackedDownloadState"].as_str().unwrap_or_default().to_owned(),
            messages: r["statusMessages"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|m| {
                    m["messages"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned)
                })
                .collect(),
        }))
    }
}

async fn answer(app: App, resp: reqwest::Response) -> Result<Value, String> {
    let status = resp.status();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return Err(format!("{} refused the API key (check {}_API_KEY)", app.name(), app.name().to_uppercase()));
    }
    if !status.is_success() {
        return Err(format!("{} answered {status}", app.name()));
    }
    resp.json().await.map_err(|e| format!("unexpected answer from {}: {}", app.name(), e.without_url()))
}

/// The search command bodies, as Radarr's and Sonarr's API take them.
pub fn movies_search(movie_id: u64) -> Value {
    json!({ "name": "MoviesSearch", "movieIds": [movie_id] })
}

pub fn series_search(series_id: u64) -> Value {
    json!({ "name": "SeriesSearch", "seriesId": series_id })
}

pub fn season_search(series_id: u64, season: u32) -> Value {
    json!({ "name": "SeasonSearch", "seriesId": series_id, "seasonNumber": season })
}

pub fn episode_search(episode_ids: &[u64]) -> Value {
    json!({ "name": "EpisodeSearch", "episodeIds": episode_ids })
}
