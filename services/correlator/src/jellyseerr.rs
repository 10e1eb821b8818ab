//! Jellyseerr's (and Overseerr's) REST API, to catch up on requests whose webhook never came:
//! the tracker was down, the webhook agent was off, or the request predates the tracker.
//! `GET /api/v1/request` lists the newest requests; each unknown one becomes the Jellyseerr
//! fact its status implies, published on `media.jellyseerr.*` like a webhook would be.

use std::time::Duration;

use serde::Deserialize;
use shared::events::MediaType;
use shared::events::jellyseerr::{CAUGHT_UP, Notification, RequestEvent};
use shared::ids::{JellyseerrRequestId, TmdbId, TvdbId};
use shared::settings::Secret;
use time::OffsetDateTime;

/// How many of the newest requests one catch-up round reads.
pub const PAGE: usize = 50;

#[derive(Debug)]
pub struct JellyseerrClient {
    http: reqwest::Client,
    base: String,
    key: Option<Secret>,
}

/// One entry of `GET /api/v1/request` (the fields used here).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedRequest {
    pub id: u64,
    /// 1 pending, 2 approved, 3 declined, 4 failed, 5 completed (Jellyseerr 2.7+).
    pub status: u8,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub is4k: bool,
    pub media: ListedMedia,
    #[serde(default)]
    pub seasons: Vec<ListedSeason>,
    #[serde(default)]
    pub requested_by: Option<ListedUser>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedMedia {
    pub media_type: MediaType,
    #[serde(default)]
    pub tmdb_id: Option<u64>,
    #[serde(default)]
    pub tvdb_id: Option<u64>,
    /// 1 unknown, 2 pending, 3 processing, 4 partially available, 5 available, 6 blocklisted, 7 deleted.
    #[serde(default)]
    pub status: Option<u8>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedSeason {
    pub season_number: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedUser {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Deserialize)]
struct Page {
    results: Vec<ListedRequest>,
}

/// What `/api/v1/movie/{id}` and `/api/v1/tv/{id}` say about a title (TMDB data).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TitleInfo {
    /// Films.
    #[serde(default)]
    title: Option<String>,
    /// Series.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    release_date: Option<String>,
    #[serde(default)]
    first_air_date: Option<String>,
    #[serde(default)]
    poster_path: Option<String>,
}

impl ListedRequest {
    /// The notification this request's status stands for.
    pub fn notification(&self) -> Option<Notification> {
        Some(match self.status {
            1 => Notification::MediaPending,
            2 if self.media.status == Some(5) => Notification::MediaAvailable,
            2 => Notification::MediaApproved,
            3 => Notification::MediaDeclined,
            4 => Notification::MediaFailed,
            5 => Notification::MediaAvailable,
            _ => return None,
        })
    }

    /// When the request last changed: its creation while it is pending.
    pub fn changed_at(&self) -> OffsetDateTime {
        match self.status {
            1 => self.created_at,
            _ => self.updated_at.unwrap_or(self.created_at),
        }
    }

    /// The fact a webhook would have carried, as far as the API tells it.
    pub fn to_event(&self, title: Option<&TitleInfo>) -> Option<RequestEvent> {
        let notification = self.notification()?;
        let title_text = title.and_then(|t| t.title.clone().or_else(|| t.name.clone()));
        let year = title
            .and_then(|t| t.release_date.as_deref().or(t.first_air_date.as_deref()))
            .and_then(|d| d.get(..4)?.parse().ok());
        let notification_type = serde_json::to_value(notification).ok()?.as_str()?.to_owned();
        let media_status = self.media.status.and_then(media_status_name).map(str::to_owned);
        Some(RequestEvent {
            notification,
            notification_type,
            event: Some(CAUGHT_UP.into()),
            media_type: Some(self.media.media_type),
            tmdb_id: self.media.tmdb_id.map(TmdbId),
            tvdb_id: self.media.tvdb_id.map(TvdbId),
            request_id: Some(JellyseerrRequestId(self.id)),
            requested_by: self.requested_by.as_ref().and_then(|u| u.display_name.clone()),
            requested_by_email: self.requested_by.as_ref().and_then(|u| u.email.clone()),
            title: title_text,
            year,
            poster_url: title
                .and_then(|t| t.poster_path.as_deref())
                .map(|p| format!("https://image.tmdb.org/t/p/w600_and_h900_bestv2{p}")),
            is_4k: self.is4k,
            requested_seasons: self.seasons.iter().map(|s| s.season_number).collect(),
            media_status,
            message: None,
            issue: None,
        })
    }
}

fn media_status_name(n: u8) -> Option<&'static str> {
    Some(match n {
        1 => "UNKNOWN",
        2 => "PENDING",
        3 => "PROCESSING",
        4 => "PARTIALLY_AVAILABLE",
        5 => "AVAILABLE",
        6 => "BLOCKLISTED",
        7 => "DELETED",
        _ => return None,
    })
}

impl JellyseerrClient {
    pub fn new(base: &str, key: Option<Secret>) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
        Self { http, base: base.trim_end_matches('/').to_owned(), key }
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(key) = &self.key {
            req = req.header("X-Api-Key", key.expose());
        }
        let resp = req.send().await.map_err(|e| format!("Jellyseerr unreachable: {}", e.without_url()))?;
        match resp.status() {
            s if s.is_success() => {}
            s @ (reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN) => {
                return Err(format!("Jellyseerr refused the API key ({s}): check JELLYSEERR_API_KEY"));
            }
            s => return Err(format!("Jellyseerr answered {s} for {path}")),
        }
        resp.json().await.map_err(|e| format!("unexpected Jellyseerr answer for {path}: {}", e.without_url()))
    }

    /// The newest requests, newest first.
    pub async fn recent_requests(&self) -> Result<Vec<ListedRequest>, String> {
        let page: Page = self.get(&format!("/api/v1/request?take={PAGE}&skip=0&sort=added")).await?;
        Ok(page.results)
    }

    /// Title, year and poster of a request's media (the request list does not carry them).
    pub async fn title(&self, media: &ListedMedia) -> Result<Option<TitleInfo>, String> {
        let Some(tmdb) = media.tmdb_id else { return Ok(None) };
        let kind = match media.media_type {
            MediaType::Movie => "movie",
            MediaType::Tv => "tv",
        };
        self.get(&format!("/api/v1/{kind}/{tmdb}")).await.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed() -> Vec<ListedRequest> {
        let body = std::fs::read("../../tests/fixtures/jellyseerr/api_v1_request_list.json").unwrap();
        serde_json::from_slice::<Page>(&body).unwrap().results
    }

    #[test]
    fn the_request_list_fixture_reads_with_statuses_users_and_seasons() {
        let all = listed();
        assert!(all.len() >= 2, "fixture lists several requests");
        let first = &all[0];
        assert_eq!(first.id, 45);
        assert_eq!(first.media.tmdb_id, Some(693134));
        assert_eq!(first.requested_by.as_ref().and_then(|u| u.display_name.as_deref()), Some("alice"));
        let tv = all.iter().find(|r| r.media.media_type == MediaType::Tv).expect("a series request");
        assert!(!tv.seasons.is_empty());
        let event = tv.to_event(None).unwrap();
        assert_eq!(event.requested_seasons, tv.seasons.iter().map(|s| s.season_number).collect::<Vec<_>>());
        assert_eq!(event.media_type, Some(MediaType::Tv));
    }

    #[test]
    fn statuses_map_to_the_notification_a_webhook_would_have_sent() {
        let mut r = listed().remove(0);
        let cases = [
            (1, None, Some(Notification::MediaPending)),
            (2, Some(3), Some(Notification::MediaApproved)),
            (2, Some(5), Some(Notification::MediaAvailable)),
            (2, Some(4), Some(Notification::MediaApproved)),
            (3, None, Some(Notification::MediaDeclined)),
            (4, None, Some(Notification::MediaFailed)),
            (5, None, Some(Notification::MediaAvailable)),
            (9, None, None),
        ];
        for (status, media, want) in cases {
            r.status = status;
            r.media.status = media;
            assert_eq!(r.notification(), want, "status {status}, media {media:?}");
        }
        r.status = 2;
        r.media.status = Some(3);
        let e = r.to_event(None).unwrap();
        assert_eq!(e.notification_type, "MEDIA_APPROVED");
        assert_eq!(e.media_status.as_deref(), Some("PROCESSING"));
        assert_eq!(r.changed_at(), r.updated_at.unwrap());
    }

    #[test]
    fn title_and_year_come_from_the_media_details() {
        let r = listed().remove(0);
        let info: TitleInfo = serde_json::from_value(serde_json::json!({
            "title": "Dune: Part Two", "releaseDate": "2024-02-27", "posterPath": "/p.jpg"
        }))
        .unwrap();
        let e = r.to_event(Some(&info)).unwrap();
        assert_eq!(e.title.as_deref(), Some("Dune: Part Two"));
        assert_eq!(e.year, Some(2024));
        assert_eq!(e.poster_url.as_deref(), Some("https://image.tmdb.org/t/p/w600_and_h900_bestv2/p.jpg"));
        let series: TitleInfo =
            serde_json::from_value(serde_json::json!({ "name": "Severance", "firstAirDate": "2022-02-17" })).unwrap();
        let e = r.to_event(Some(&series)).unwrap();
        assert_eq!((e.title.as_deref(), e.year), (Some("Severance"), Some(2022)));
    }
}
