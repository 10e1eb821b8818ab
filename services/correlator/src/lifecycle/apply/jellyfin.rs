//! Applying jellyfin's ItemAdded: the proof a film or episode is watchable.

use serde_json::json;
use shared::events::arr::EpisodeRef;
use shared::events::{JellyfinEvent, MediaType};
use shared::model::State;

use super::Step;
use crate::lifecycle::text::episode_label;
use crate::lifecycle::{FILM, ItemKey, Watch};

impl Step<'_> {
    pub(super) fn jellyfin(&mut self, e: &JellyfinEvent) {
        if e.notification_type != "ItemAdded" {
            return self.ignore("Jellyfin notification other than ItemAdded");
        }
        let item_type = e.item_type.as_deref().unwrap_or_default();
        let watch = |id: &Option<String>| {
            id.clone().map(|item_id| Watch {
                item_id,
                server_id: e.server_id.clone(),
                server_url: e.server_url.clone(),
            })
        };
        match (item_type, self.req.media_type) {
            ("Movie", MediaType::Movie) => {
                self.evidence();
                self.raise_items(&[FILM], State::Available);
                if let Some(item) = self.req.items.get_mut(&FILM) {
                    item.jellyfin_item_id = e.item_id.clone();
                    item.set_reason(None, self.at);
                }
                self.req.watch = watch(&e.item_id).or(self.req.watch.take());
                let details = json!({ "item_id": e.item_id, "name": e.name });
                self.note_items(&[FILM], State::Available, "Available in Jellyfin".into(), details, None);
            }
            ("Episode", MediaType::Tv) => {
                let (Some(season), Some(first)) = (e.season, e.episode) else {
                    return self.ignore("Jellyfin episode without season and episode numbers");
                };
                self.evidence();
                let last = e.episode_end.unwrap_or(first).max(first);
                let keys: Vec<ItemKey> = (first..=last).map(|ep| (season, ep)).collect();
                self.raise_items(&keys, State::Available);
                for key in &keys {
                    let item = self.req.items.get_mut(key).expect("raised above");
                    item.jellyfin_item_id = e.item_id.clone();
                    item.set_reason(None, self.at);
                }
                self.req.watch = watch(&e.series_id).or_else(|| self.req.watch.take()).or_else(|| watch(&e.item_id));
                let eps: Vec<EpisodeRef> =
                    keys.iter().map(|&(season, episode)| EpisodeRef { season, episode }).collect();
                let details = json!({ "item_id": e.item_id, "name": e.name });
                self.note_items(&keys, State::Available, "Available in Jellyfin".into(), details, episode_label(&eps));
            }
            ("Season" | "Series", MediaType::Tv) => {
                let id = if item_type == "Series" { &e.item_id } else { &e.series_id };
                self.req.watch = self.req.watch.take().or_else(|| watch(id));
                let what = match (item_type, e.season) {
                    ("Season", Some(n)) => format!("Season {n}"),
                    ("Season", None) => "A season".to_owned(),
                    _ => "The series".to_owned(),
                };
                self.remark(format!("{what} added to Jellyfin"), json!({ "item_id": e.item_id }));
            }
            _ => self.ignore("Jellyfin item of another kind"),
        }
    }
}
