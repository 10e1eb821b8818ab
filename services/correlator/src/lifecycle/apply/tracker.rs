//! Applying status-tracker's own facts: retries, cancels, stalls, verified availability and
//! archiving.

use serde_json::json;
use shared::events::MediaType;
use shared::events::tracker::TrackerEvent;
use shared::model::State;

use super::Step;
use crate::lifecycle::text::episode_label;
use crate::lifecycle::{FILM, ItemKey, Stall, Watch};

impl Step<'_> {
    pub(super) fn tracker(&mut self, e: &TrackerEvent) {
        match e {
            TrackerEvent::Retry { by, commands, error, quality_profile, .. } => {
                self.retry(by.as_deref(), commands, error.as_deref(), quality_profile.as_deref())
            }
            TrackerEvent::Cancel { by, .. } => {
                let by = by.as_deref().unwrap_or("someone");
                self.set_outcome(State::Cancelled, Some(format!("Cancelled by {by}")));
                self.note(
                    State::Cancelled,
                    format!("Cancelled by {by} (media already downloaded is kept)"),
                    json!({}),
                    None,
                );
            }
            TrackerEvent::Stalled { state, reason, since, .. } => {
                if self.req.state() != *state {
                    return self.ignore("the request moved on before the stall was noticed");
                }
                self.req.stall = Some(Stall { state: *state, reason: reason.clone(), at: self.at });
                let details = json!({ "since": since.unix_timestamp() });
                self.note(*state, format!("Stalled: {reason}"), details, None);
            }
            TrackerEvent::Verified { by, episodes, item_id, server_id, .. } => {
                self.evidence();
                let keys: Vec<ItemKey> = match self.req.media_type {
                    MediaType::Movie => vec![FILM],
                    MediaType::Tv if episodes.is_empty() => {
                        self.raise_stage(State::Available);
                        self.req.items.keys().copied().collect()
                    }
                    MediaType::Tv => episodes.iter().map(|e| (e.season, e.episode)).collect(),
                };
                self.raise_items(&keys, State::Available);
                if let Some(item_id) = item_id {
                    let watch = Watch { item_id: item_id.clone(), server_id: server_id.clone(), server_url: None };
                    self.req.watch = self.req.watch.take().or(Some(watch));
                }
                let message = match by.as_str() {
                    "jellyfin" => "Available: found in Jellyfin's library".to_owned(),
                    app => format!("Already in {}'s library", capitalized(app)),
                };
                self.note_items(&keys, State::Available, message, json!({ "by": by }), episode_label(episodes));
            }
            TrackerEvent::Archived { .. } => {
                self.req.archived_at = Some(self.req.archived_at.map_or(self.at, |t| t.min(self.at)));
                self.note(State::Completed, "Archived".into(), json!({}), None);
            }
        }
    }

    /// A new search was sent: the request goes back to searching for what it still misses.
    /// This is the one fact that moves a request backward. With a `quality_profile` it is
    /// "Lower quality": the film or series was switched to that profile first.
    fn retry(&mut self, by: Option<&str>, commands: &[String], error: Option<&str>, profile: Option<&str>) {
        let by = by.unwrap_or("someone");
        let what = if profile.is_some() { "Lower quality" } else { "Retry" };
        let details = match profile {
            Some(p) => json!({ "commands": commands, "quality_profile": p }),
            None => json!({ "commands": commands }),
        };
        if let Some(error) = error {
            let message = match commands.is_empty() {
                true => format!("{what} by {by} failed: {error}"),
                false => format!("{what} by {by}: {}, but the search failed: {error}", commands.join("; ")),
            };
            return self.remark(message, details);
        }
        let at = self.at;
        self.evidence();
        self.req.outcome = None;
        self.req.stall = None;
        if self.req.path_state() < State::Available {
            self.req.stage = State::Searching;
        }
        let mut dropped = Vec::new();
        for item in self.req.items.values_mut().filter(|i| i.stage < State::Available) {
            item.stage = State::Searching;
            item.updated_at = at;
            item.set_reason(None, at);
            dropped.extend(item.download_id.take());
        }
        for id in dropped {
            if let Some(d) = self.req.downloads.get_mut(&id).filter(|d| !d.finished) {
                d.dropped = true;
            }
        }
        let sent = if commands.is_empty() { "a new search".to_owned() } else { commands.join("; ") };
        self.note(State::Searching, format!("{what} by {by}: {sent}"), details, None);
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}
