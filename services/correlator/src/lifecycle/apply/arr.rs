//! Applying sonarr and Radarr events.

use serde_json::json;
use shared::events::MediaType;
use shared::events::arr::{ArrEvent, ArrMedia, ImportedFile};
use shared::ids::DownloadId;
use shared::model::State;
use shared::paths;

use super::Step;
use crate::lifecycle::text::{episode_label, human_bytes};
use crate::lifecycle::{Alert, Download, ItemKey, available_before, upgrade_message};

impl Step<'_> {
    pub(super) fn arr(&mut self, e: &ArrEvent) {
        if let Some(m) = e.media() {
            self.merge_media(m);
        }
        let app = if self.source == "radarr" { "Radarr" } else { "Sonarr" };
        match e {
            ArrEvent::MediaAdded { .. } => {
                self.evidence();
                self.raise_stage(State::Searching);
                self.note(State::Searching, format!("Added to {app}; searching for a release"), json!({}), None);
            }
            ArrEvent::Grab { episodes, release, download_id, download_client, .. } => {
                self.evidence();
                let keys = self.keys_for(episodes);
                // An upgrade: every item was available before this grab (by event time).
                let upgrade = available_before(&self.req.items, &keys, self.at);
                if let Some(id) = download_id {
                    let d = self.download(id);
                    d.release_title = release.release_title.clone().or(d.release_title.take());
                    d.quality = release.quality.clone().or(d.quality.take());
                    d.indexer = release.indexer.clone().or(d.indexer.take());
                    d.size = release.size.or(d.size);
                    d.upgrade |= upgrade;
                    d.items.extend(keys.iter().copied());
                }
                if !upgrade {
                    self.raise_items(&keys, State::Indexed);
                    for key in &keys {
                        self.assign_download(*key, download_id.as_ref());
                    }
                }
                let mut found = format!("Found {}", release.quality.as_deref().unwrap_or("a release"));
                if let Some(size) = release.size {
                    found.push_str(&format!(" ({})", human_bytes(size)));
                }
                if let Some(indexer) = &release.indexer {
                    found.push_str(&format!(" on {indexer}"));
                }
                let message = if upgrade { upgrade_message(&found) } else { found };
                let details = json!({
                    "quality": release.quality, "indexer": release.indexer, "size": release.size,
                    "release_title": release.release_title, "release_type": release.release_type,
                    "download_client": download_client, "download_id": download_id.as_ref().map(DownloadId::key),
                });
                let state = if upgrade { State::Available } else { State::Indexed };
                self.note_items(&keys, state, message, details, episode_label(episodes));
            }
            ArrEvent::Download { episodes, file, is_upgrade, download_id, deleted_files, .. } => {
                self.evidence();
                let eps = if episodes.is_empty() { &file.episodes } else { episodes };
                let keys = self.keys_for(eps);
                self.import_file(&keys, file);
                self.finish_download(download_id.as_ref());
                if self.req.quality.is_none() {
                    self.req.quality = file.quality.clone();
                }
                let name = paths::file_name(&file.path).to_owned();
                let message = if *is_upgrade {
                    format!("Upgraded to {}", file.quality.as_deref().unwrap_or("a better release"))
                } else {
                    format!("Imported {name}")
                };
                let details = json!({ "path": file.path, "quality": file.quality, "size": file.size,
                    "source_path": file.source_path, "replaced": deleted_files });
                self.note_items(&keys, State::Importing, message, details, episode_label(eps));
            }
            ArrEvent::ImportComplete { episodes, files, download_id, destination_path, .. } => {
                self.evidence();
                for file in files {
                    let keys = self.keys_for(&file.episodes);
                    if self.req.media_type == MediaType::Tv && keys.is_empty() {
                        continue;
                    }
                    self.import_file(&keys, file);
                }
                let keys = self.keys_for(episodes);
                self.raise_items(&keys, State::Importing);
                self.finish_download(download_id.as_ref());
                let message =
                    format!("Import complete: {} file{}", files.len(), if files.len() == 1 { "" } else { "s" });
                let details = json!({ "destination": destination_path });
                self.note_items(&keys, State::Importing, message, details, episode_label(episodes));
            }
            ArrEvent::ManualInteractionRequired { episodes, download_id, messages, title, .. } => {
                self.evidence();
                let mut keys = self.keys_for(episodes);
                if let Some(id) = download_id {
                    keys.extend(self.keys_with_download(id.key()));
                    self.finish_download(Some(id));
                }
                keys.sort_unstable();
                keys.dedup();
                self.raise_items(&keys, State::Downloaded);
                let why = if messages.is_empty() { "no reason given".to_owned() } else { messages.join("; ") };
                let reason = format!("{app} needs a manual import: {why}");
                for key in &keys {
                    if let Some(item) = self.req.items.get_mut(key) {
                        item.set_reason(Some(reason.clone()), self.at);
                    }
                }
                let details = json!({ "title": title, "messages": messages });
                self.note_items(&keys, State::Downloaded, reason, details, episode_label(episodes));
            }
            ArrEvent::FileDelete { episodes, file, reason, .. } => {
                let why = reason.clone().unwrap_or_else(|| "unknown reason".into());
                if why != "upgrade" {
                    let path = file.as_ref().map(|f| f.path.clone());
                    let keys: Vec<ItemKey> = self
                        .req
                        .items
                        .iter()
                        .filter(|(k, i)| {
                            i.file_path.is_some() && i.file_path == path || self.keys_for(episodes).contains(k)
                        })
                        .map(|(k, _)| *k)
                        .collect();
                    for key in keys {
                        let item = self.req.items.get_mut(&key).expect("listed above");
                        item.set_reason(Some(format!("File deleted in {app} ({why})")), self.at);
                    }
                }
                let name = file.as_ref().map(|f| paths::file_name(&f.path).to_owned()).unwrap_or_default();
                self.remark(
                    format!("File deleted ({why}): {name}"),
                    json!({ "reason": why, "path": file.as_ref().map(|f| &f.path) }),
                );
            }
            ArrEvent::MediaDelete { deleted_files, .. } => {
                let files = if *deleted_files { ", files deleted" } else { "" };
                let message = format!("Removed from {app}{files}");
                let details = json!({ "deleted_files": deleted_files });
                if self.req.state().is_finished() {
                    self.remark(message, details);
                } else {
                    self.set_outcome(State::Failed, Some(format!("Removed from {app} before it was available")));
                    self.note(State::Failed, message, details, None);
                }
            }
            ArrEvent::Rename { files, .. } => {
                // Files of this request: those whose old name an item has (now renamed) or
                // whose new name it has already.
                let mut renamed = 0;
                for f in files {
                    let mut ours = false;
                    for item in self.req.items.values_mut() {
                        if item.file_path.is_some() && item.file_path == f.previous_path {
                            item.file_path = Some(f.path.clone());
                        }
                        ours |= item.file_path.as_deref() == Some(f.path.as_str());
                    }
                    renamed += usize::from(ours);
                }
                let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
                self.remark(
                    format!("{app} renamed {renamed} file{}", if renamed == 1 { "" } else { "s" }),
                    json!({ "paths": paths }),
                );
            }
            ArrEvent::Health(h) => {
                let at = self.at;
                let check = h.check.clone().unwrap_or_default();
                let message = format!("{app} reports: {}", h.message);
                self.req.alert = Some(Alert { check, message: message.clone(), at });
                self.remark(message, json!({ "level": h.level, "check": h.check, "wiki": h.wiki_url }));
            }
            ArrEvent::HealthRestored(h) => {
                let same =
                    self.req.alert.as_ref().is_some_and(|a| Some(&a.check) == h.check.as_ref() && a.at <= self.at);
                if !same {
                    return self.ignore("no such health problem on this request");
                }
                self.req.alert = None;
                self.remark(format!("{app} is fine again: {}", h.message), json!({ "check": h.check }));
            }
            ArrEvent::Test => self.ignore("test event"),
            _ => self.ignore("event about the application, not a request"),
        }
    }

    pub(super) fn merge_media(&mut self, m: &ArrMedia) {
        let r = &mut *self.req;
        r.arr_id = m.arr_id.or(r.arr_id);
        r.tmdb_id = r.tmdb_id.or(m.tmdb_id);
        r.tvdb_id = r.tvdb_id.or(m.tvdb_id);
        r.imdb_id = r.imdb_id.take().or_else(|| m.imdb_id.clone());
        r.is_anime |= m.anime;
        r.is_4k |= m.is_4k;
        if r.jellyseerr_id.is_none() {
            r.title = m.title.clone();
            r.year = m.year.or(r.year);
        }
        r.poster_url = r.poster_url.take().or_else(|| m.poster_url.clone());
        r.media_path = r.media_path.take().or_else(|| m.path.clone());
    }

    pub(super) fn download(&mut self, id: &DownloadId) -> &mut Download {
        let kind = if id.hash().is_some() { "torrent" } else { "usenet" };
        let at = self.at;
        let d = self.req.downloads.entry(id.key().to_owned()).or_insert_with(|| Download::new(kind, at));
        d.updated_at = d.updated_at.max(at);
        d.grabbed_at = d.grabbed_at.min(at);
        d
    }

    /// Points an item at the download of its most recent grab (by event time).
    pub(super) fn assign_download(&mut self, key: ItemKey, id: Option<&DownloadId>) {
        let at = self.at;
        let Some(id) = id else { return };
        let current = self.req.items[&key].download_id.clone();
        let current_at = current.as_ref().and_then(|c| self.req.downloads.get(c)).map(|d| d.grabbed_at);
        let item = self.req.items.get_mut(&key).expect("created by raise_items");
        if current_at.is_none_or(|t| at >= t) {
            item.download_id = Some(id.key().to_owned());
            item.set_reason(None, at);
        }
        item.updated_at = item.updated_at.max(at);
    }

    pub(super) fn finish_download(&mut self, id: Option<&DownloadId>) {
        if let Some(id) = id {
            let d = self.download(id);
            d.finished = true;
            d.progress = 1.0;
            d.dlspeed = 0;
            d.eta = None;
            d.stalled = None;
        }
    }

    pub(super) fn import_file(&mut self, keys: &[ItemKey], file: &ImportedFile) {
        self.raise_items(keys, State::Importing);
        for key in keys {
            let item = self.req.items.get_mut(key).expect("raised above");
            item.file_path = Some(file.path.clone());
            item.set_reason(None, self.at);
        }
    }
}
