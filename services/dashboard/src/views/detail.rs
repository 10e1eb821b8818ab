//! Everything the request detail page shows: the card's facts, the timeline, the per-episode
//! grid of a series and its downloads.

use std::collections::BTreeMap;

use shared::model::{DownloadView, EpisodeView, RequestDetail, State};

use super::card::{Card, ProgressLine};
use super::format;
use super::timeline::{self, Stamp, Step};

#[derive(Debug, Clone)]
pub struct Detail {
    pub card: Card,
    pub steps: Vec<Step>,
    pub seasons: Vec<Season>,
    /// The states present in the episode grid, for its legend.
    pub legend: Vec<(&'static str, &'static str)>,
    pub downloads: Vec<Download>,
    pub requested: Stamp,
    pub source: String,
    /// The trace that created the request, in the operator's trace UI (`TRACKER_TRACE_URL`).
    pub trace_url: Option<String>,
    /// Offer "Lower quality" (a fallback quality profile is set for this kind of media).
    pub lower_quality: bool,
    trace_id: Option<String>,
}

/// One season of the episode grid.
#[derive(Debug, Clone)]
pub struct Season {
    pub number: u32,
    /// "8/12 available".
    pub summary: String,
    pub episodes: Vec<Episode>,
}

#[derive(Debug, Clone)]
pub struct Episode {
    /// "E01"
    pub short: String,
    /// "S01E01"
    pub code: String,
    pub state: &'static str,
    pub label: &'static str,
    pub reason: Option<String>,
}

/// One torrent or usenet download.
#[derive(Debug, Clone)]
pub struct Download {
    pub id: String,
    pub name: String,
    pub quality: Option<String>,
    pub indexer: Option<String>,
    pub size: Option<String>,
    pub progress: ProgressLine,
    pub finished: bool,
    pub client_state: Option<String>,
    pub stalled: Option<String>,
    /// "12 episodes" for a season pack.
    pub episodes: Option<String>,
}

impl Detail {
    pub fn new(d: &RequestDetail) -> Self {
        let (seasons, legend) = seasons(&d.episodes);
        Self {
            card: Card::new(&d.summary),
            steps: timeline::steps(d),
            seasons,
            legend,
            downloads: d.downloads.iter().map(Download::new).collect(),
            requested: Stamp::new(d.summary.created_at),
            source: d.summary.source.clone(),
            trace_url: None,
            lower_quality: false,
            trace_id: d.summary.trace_id.clone().filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit())),
        }
    }

    /// Links the request's first trace when a trace UI is configured (`{trace_id}` in it).
    pub fn with_trace(mut self, template: Option<&str>) -> Self {
        self.trace_url = template.zip(self.trace_id.as_deref()).map(|(t, id)| t.replace("{trace_id}", id));
        self
    }

    /// Offers "Lower quality" beside Retry when the request needs a hand.
    pub fn with_lower_quality(mut self, offered: bool) -> Self {
        self.lower_quality = offered;
        self
    }
}

impl Download {
    fn new(d: &DownloadView) -> Self {
        Self {
            id: d.download_id.clone(),
            name: d.release_title.clone().unwrap_or_else(|| d.download_id.clone()),
            quality: d.quality.clone(),
            indexer: d.indexer.clone(),
            size: d.size.map(format::bytes),
            progress: ProgressLine::new(if d.finished { 1.0 } else { d.progress }, d.dlspeed, d.eta),
            finished: d.finished,
            client_state: d.client_state.clone(),
            stalled: d.stalled.clone(),
            episodes: (d.episodes > 1).then(|| format!("{} episodes", d.episodes)),
        }
    }
}

fn seasons(episodes: &[EpisodeView]) -> (Vec<Season>, Vec<(&'static str, &'static str)>) {
    let mut by_season: BTreeMap<u32, Vec<&EpisodeView>> = BTreeMap::new();
    for e in episodes {
        by_season.entry(e.season).or_default().push(e);
    }
    let seasons = by_season
        .into_iter()
        .map(|(number, mut eps)| {
            eps.sort_by_key(|e| e.episode);
            let available = eps.iter().filter(|e| matches!(e.state, State::Available | State::Completed)).count();
            Season {
                number,
                summary: format!("{available}/{} available", eps.len()),
                episodes: eps
                    .iter()
                    .map(|e| Episode {
                        short: format!("E{:02}", e.episode),
                        code: format!("S{:02}E{:02}", e.season, e.episode),
                        state: e.state.as_str(),
                        label: e.state.label(),
                        reason: e.reason.clone(),
                    })
                    .collect(),
            }
        })
        .collect();
    let legend = State::ALL
        .into_iter()
        .filter(|s| episodes.iter().any(|e| e.state == *s))
        .map(|s| (s.as_str(), s.label()))
        .collect();
    (seasons, legend)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::card::tests::summary;
    use time::OffsetDateTime;

    fn ep(season: u32, episode: u32, state: State) -> EpisodeView {
        EpisodeView {
            season,
            episode,
            state,
            download_id: None,
            file_path: None,
            reason: None,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn episodes_are_grouped_by_season_in_order_with_a_legend() {
        let eps = vec![ep(1, 2, State::Indexed), ep(1, 1, State::Available), ep(2, 1, State::Downloading)];
        let d = RequestDetail {
            summary: summary(1, "x", State::Downloading),
            downloads: vec![],
            episodes: eps,
            timeline: vec![],
        };
        let view = Detail::new(&d);
        assert_eq!(view.seasons.len(), 2);
        assert_eq!(view.seasons[0].summary, "1/2 available");
        let codes: Vec<_> = view.seasons[0].episodes.iter().map(|e| e.short.as_str()).collect();
        assert_eq!(codes, ["E01", "E02"]);
        let legend: Vec<_> = view.legend.iter().map(|l| l.1).collect();
        assert_eq!(legend, ["Found", "Downloading", "Available"]);
    }

    #[test]
    fn the_trace_link_is_shown_only_with_a_trace_ui_and_a_valid_trace_id() {
        let mut summary = summary(1, "x", State::Requested);
        summary.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
        let d = RequestDetail { summary, downloads: vec![], episodes: vec![], timeline: vec![] };
        let url = Detail::new(&d).with_trace(Some("http://jaeger:16686/trace/{trace_id}")).trace_url;
        assert_eq!(url.as_deref(), Some("http://jaeger:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(Detail::new(&d).with_trace(None).trace_url, None);
        let mut odd = d.clone();
        odd.summary.trace_id = Some("\"><script>".into());
        assert_eq!(Detail::new(&odd).with_trace(Some("http://j/{trace_id}")).trace_url, None);
    }
}
