//! Applying shoko file events: the Matching stage of anime.

use serde_json::json;
use shared::events::MediaType;
use shared::events::arr::EpisodeRef;
use shared::events::shoko::{FileEvent, FileEventKind};
use shared::model::State;
use shared::paths;

use super::Step;
use crate::lifecycle::ItemKey;
use crate::lifecycle::text::episode_label;

impl Step<'_> {
    pub(super) fn shoko(&mut self, e: &FileEvent) {
        let keys = self.items_for_file(e);
        if keys.is_empty() {
            return self.ignore("Shoko file event matches no imported file of this request");
        }
        self.evidence();
        self.req.is_anime = true;
        let name = paths::file_name(&e.relative_path).to_owned();
        let episodes: Vec<EpisodeRef> = keys.iter().map(|&(season, episode)| EpisodeRef { season, episode }).collect();
        let label = if self.req.media_type == MediaType::Tv { episode_label(&episodes) } else { None };
        let details = json!({ "path": e.path, "file_id": e.file_id, "cross_refs": e.cross_refs });
        let message = match e.kind {
            FileEventKind::Detected => format!("Shoko found {name}"),
            FileEventKind::Hashed => format!("Shoko hashed {name}"),
            FileEventKind::Matched => {
                let anidb = e.cross_refs.iter().find_map(|c| c.anidb_anime_id);
                anidb.map_or_else(|| "Matched by Shoko".to_owned(), |id| format!("Matched by Shoko (AniDB {id})"))
            }
            FileEventKind::NotMatched => "Shoko could not match this file: link it manually in Shoko".to_owned(),
            FileEventKind::Renamed | FileEventKind::Moved => {
                format!("Shoko moved or renamed {name}")
            }
            FileEventKind::Deleted => format!("Shoko saw {name} deleted"),
        };
        if e.kind != FileEventKind::Deleted {
            self.raise_items(&keys, State::Matching);
        }
        let at = self.at;
        for key in &keys {
            let item = self.req.items.get_mut(key).expect("found above");
            match e.kind {
                FileEventKind::NotMatched => item.set_reason(Some(message.clone()), at),
                FileEventKind::Matched => item.set_reason(None, at),
                FileEventKind::Renamed | FileEventKind::Moved => {
                    item.file_path = e.path.clone().or(item.file_path.take())
                }
                _ => {}
            }
        }
        self.note_items(&keys, State::Matching, message, details, label);
    }

    /// Items whose imported file is the one Shoko names: exact path, then the path map, then
    /// the file name, then the episode numbers in the name.
    pub(super) fn items_for_file(&self, e: &FileEvent) -> Vec<ItemKey> {
        let candidates: Vec<String> = [e.path.as_deref(), e.previous_path.as_deref()]
            .into_iter()
            .flatten()
            .flat_map(|p| self.ctx.path_map.aliases(p))
            .collect();
        let by = |pred: &dyn Fn(&str) -> bool| -> Vec<ItemKey> {
            self.req.items.iter().filter(|(_, i)| i.file_path.as_deref().is_some_and(pred)).map(|(k, _)| *k).collect()
        };
        let exact = by(&|p| candidates.iter().any(|c| c == p));
        if !exact.is_empty() {
            return exact;
        }
        let name = paths::file_name(&e.relative_path);
        let by_name = by(&|p| paths::file_name(p) == name);
        if !by_name.is_empty() {
            return by_name;
        }
        let eps = paths::episode_numbers(&e.relative_path);
        match self.req.media_type {
            MediaType::Tv => eps
                .iter()
                .map(|e| (e.season, e.episode))
                .filter(|k| self.req.items.get(k).is_some_and(|i| i.stage >= State::Downloaded))
                .collect(),
            MediaType::Movie => Vec::new(),
        }
    }
}
