//! What one request card shows, computed once from a [`RequestSummary`] so that the templates
//! stay free of logic: the badge, the progress line, the episode count, the reason, the links.

use shared::events::MediaType;
use shared::model::{RequestSummary, State};

use super::format;

/// A request as a card on the index and history pages (and the `/fragments/card/{id}` swap).
#[derive(Debug, Clone)]
pub struct Card {
    pub id: i64,
    pub title: String,
    pub year: Option<i32>,
    /// "Film" or "Series".
    pub kind: &'static str,
    /// The title's first letter: the poster placeholder when there is no image (or it cannot
    /// load, e.g. offline).
    pub initial: String,
    /// The state token (`downloading`), used as a CSS class and `data-state`.
    pub state: &'static str,
    /// What a requester reads: "Found", "Downloading"…
    pub label: &'static str,
    pub stalled: bool,
    /// Why it failed or is stalled.
    pub reason: Option<String>,
    pub poster: Option<String>,
    pub progress: Option<ProgressLine>,
    /// "8/12 episodes available" for series.
    pub episodes: Option<String>,
    pub requested_by: Option<String>,
    pub quality: Option<String>,
    pub is_4k: bool,
    pub is_anime: bool,
    pub watch_url: Option<String>,
    pub updated_iso: String,
    pub updated_utc: String,
}

/// The progress bar and its caption while a request downloads.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressLine {
    pub percent: u32,
    pub speed: String,
    pub eta: String,
}

impl ProgressLine {
    pub fn new(progress: f64, dlspeed: u64, eta: Option<u64>) -> Self {
        Self { percent: format::percent(progress), speed: format::speed(dlspeed), eta: format::eta(eta) }
    }
}

impl Card {
    pub fn new(s: &RequestSummary) -> Self {
        let series = s.media_type == MediaType::Tv;
        let downloading = s.state == State::Downloading;
        let show_reason = s.stalled || s.state.is_off_path();
        Self {
            id: s.id.0,
            title: s.title.clone(),
            year: s.year,
            kind: if series { "Series" } else { "Film" },
            initial: s.title.chars().find(|c| c.is_alphanumeric()).map_or("?".into(), |c| c.to_uppercase().collect()),
            state: s.state.as_str(),
            label: s.state.label(),
            stalled: s.stalled,
            reason: s.reason.clone().filter(|r| show_reason && !r.trim().is_empty()),
            poster: format::web_url(s.poster_url.as_deref()),
            progress: downloading.then(|| ProgressLine::new(s.progress, s.dlspeed, s.eta)),
            episodes: s.episodes_summary.as_ref().filter(|e| e.total > 0).map(|e| {
                let mut text = format!("{}/{} episodes available", e.available, e.total);
                if e.downloading > 0 {
                    text.push_str(&format!(" · {} downloading", e.downloading));
                }
                text
            }),
            requested_by: s.requested_by.clone().filter(|u| !u.trim().is_empty()),
            quality: s.quality.clone(),
            is_4k: s.is_4k,
            is_anime: s.is_anime,
            watch_url: format::web_url(s.watch_url.as_deref()),
            updated_iso: format::iso(s.updated_at),
            updated_utc: format::utc(s.updated_at),
        }
    }

    /// Failed and stalled requests are the ones a person can help.
    pub fn needs_action(&self) -> bool {
        self.stalled || self.state == State::Failed.as_str()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use shared::ids::RequestId;
    use shared::model::EpisodeCounts;
    use time::OffsetDateTime;

    /// A plausible summary for tests and the render benchmark.
    pub(crate) fn summary(id: i64, title: &str, state: State) -> RequestSummary {
        RequestSummary {
            id: RequestId(id),
            title: title.to_owned(),
            year: Some(2022),
            media_type: MediaType::Movie,
            state,
            stalled: false,
            reason: None,
            progress: 0.0,
            dlspeed: 0,
            eta: None,
            requested_by: Some("alice".into()),
            tmdb_id: None,
            tvdb_id: None,
            imdb_id: None,
            jellyseerr_id: None,
            arr_id: None,
            poster_url: Some("https://image.tmdb.org/t/p/w600_and_h900_bestv2/74xTEgt7R36Fpooo50r9T25onhq.jpg".into()),
            is_anime: false,
            is_4k: false,
            source: "jellyseerr".into(),
            quality: None,
            watch_url: None,
            requested_seasons: vec![],
            episodes_summary: None,
            trace_id: None,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_downloading_film_shows_its_progress_speed_and_eta() {
        let mut s = summary(1, "The Batman", State::Downloading);
        (s.progress, s.dlspeed, s.eta) = (0.67, 2_300_000, Some(272));
        let card = Card::new(&s);
        assert_eq!(card.label, "Downloading");
        assert_eq!(card.progress, Some(ProgressLine { percent: 67, speed: "2.3 MB/s".into(), eta: "4m 32s".into() }));
        assert_eq!((card.kind, card.initial.as_str()), ("Film", "T"));
    }

    #[test]
    fn a_series_counts_its_available_episodes() {
        let mut s = summary(2, "DAN DA DAN", State::Importing);
        s.media_type = MediaType::Tv;
        s.episodes_summary = Some(EpisodeCounts { total: 12, downloading: 0, downloaded: 4, available: 8 });
        let card = Card::new(&s);
        assert_eq!(card.episodes.as_deref(), Some("8/12 episodes available"));
        assert!(card.progress.is_none(), "no bar outside downloading");
    }

    #[test]
    fn the_reason_shows_only_when_failed_or_stalled() {
        let mut s = summary(3, "Dune: Part Two", State::Failed);
        s.reason = Some("Radarr add failed".into());
        assert_eq!(Card::new(&s).reason.as_deref(), Some("Radarr add failed"));
        assert!(Card::new(&s).needs_action());
        s.state = State::Searching;
        assert_eq!(Card::new(&s).reason, None);
        s.stalled = true;
        assert_eq!(Card::new(&s).reason.as_deref(), Some("Radarr add failed"));
    }

    #[test]
    fn unsafe_links_are_dropped() {
        let mut s = summary(4, "x", State::Available);
        s.watch_url = Some("javascript:alert(1)".into());
        s.poster_url = Some("javascript:alert(2)".into());
        let card = Card::new(&s);
        assert_eq!((card.watch_url, card.poster), (None, None));
    }
}
