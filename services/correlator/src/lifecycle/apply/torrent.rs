//! Applying qBittorrent: completions and progress.

use serde_json::json;
use shared::events::qbittorrent::{Finished, FinishedVia, Progress};
use shared::ids::DownloadId;
use shared::model::State;

use super::Step;

impl Step<'_> {
    pub(super) fn finished(&mut self, f: &Finished) {
        self.evidence();
        let id = DownloadId::Torrent(f.hash.clone());
        let d = self.download(&id);
        let noted = std::mem::replace(&mut d.finish_noted, true);
        if d.content_path.is_none() {
            d.content_path = f.content_path.clone();
        }
        self.finish_download(Some(&id));
        let keys = self.keys_with_download(id.key());
        self.raise_items(&keys, State::Downloaded);
        if noted {
            return self.ignore("download already reported finished");
        }
        let details = json!({ "name": f.name, "size": f.size, "path": f.content_path, "via": f.via });
        self.note_items(&keys, State::Downloaded, "Download finished".into(), details, None);
    }

    pub(super) fn progress(&mut self, p: &Progress) {
        let id = DownloadId::Torrent(p.hash.clone());
        if p.is_complete() {
            let f = Finished {
                hash: p.hash.clone(),
                name: p.name.clone(),
                content_path: None,
                save_path: None,
                size: p.size,
                category: None,
                tags: vec![],
                via: FinishedVia::Poller,
            };
            return self.finished(&f);
        }
        self.evidence();
        let at = self.at;
        let d = self.download(&id);
        let first = d.client_state.is_none();
        // Progress times come from the poller's clock only, so comparing them among
        // themselves is safe even when hosts disagree about the time.
        let stale = d.progress_at.is_some_and(|t| at < t);
        if d.finished || stale {
            // Stale: the download finished or a newer update was applied already. The first
            // progress still counts as "downloading started", whenever it arrives.
            d.client_state.get_or_insert_with(|| p.state.clone());
            if first {
                let keys = self.keys_with_download(id.key());
                self.note_items(&keys, State::Downloading, "Downloading".into(), json!({ "state": p.state }), None);
                return;
            }
            return self.ignore("progress older than what is known");
        }
        let (was_stalled, was_error) = (d.stalled.clone(), d.error.clone());
        d.progress_at = Some(at);
        d.progress = p.progress.clamp(0.0, 1.0);
        d.dlspeed = p.dlspeed;
        d.eta = p.eta;
        d.client_state = Some(p.state.clone());
        d.size = p.size.or(d.size);
        d.stalled = p.stalled.clone();
        d.error = p.error.clone();
        let keys = self.keys_with_download(id.key());
        self.raise_items(&keys, State::Downloading);
        let state = json!({ "state": p.state });
        if first {
            self.note_items(&keys, State::Downloading, "Downloading".into(), state.clone(), None);
        }
        match (&was_stalled, &p.stalled) {
            (None, Some(why)) => {
                self.note_items(&keys, State::Downloading, format!("Stalled: {why}"), state.clone(), None)
            }
            (Some(_), None) if !first => {
                self.note_items(&keys, State::Downloading, "Download resumed".into(), state.clone(), None)
            }
            _ => {}
        }
        if let (None, Some(err)) = (&was_error, &p.error) {
            let message = format!("qBittorrent reports an error: {err}");
            self.note_items(&keys, State::Downloading, message, state, None);
        }
    }
}
