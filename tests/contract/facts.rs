//! Facts as the services make them from the fixtures: ingress's adapters over every webhook
//! body, the shoko-bridge's normalizer over the SignalR frames, the poller's worker over
//! qBittorrent's `sync/maindata` answers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poller::maindata::MaindataUpdate;
use poller::{QbitError, Sink, Worker};
use serde_json::Value;
use shared::envelope::{Envelope, content_id};
use shared::events::{EventData, Fact, MediaEnvelope};
use shared::health::{HealthCell, HealthStatus};
use shared::subjects::Source;

use crate::common::{fixture, fixture_path};

/// The sources with webhooks, and the content type each fixture is sent with.
const WEBHOOK_SOURCES: [(Source, &str); 5] = [
    (Source::Jellyseerr, "application/json"),
    (Source::Radarr, "application/json"),
    (Source::Sonarr, "application/json"),
    (Source::Qbittorrent, "application/json"),
    (Source::Jellyfin, "text/plain; charset=utf-8"),
];

/// Every fixture of a webhook source as (source, name, content type, body): the
/// run-on-finish descriptors of qBittorrent become the form their curl command posts.
pub fn webhook_bodies() -> Vec<(Source, String, String, Vec<u8>)> {
    let mut bodies = Vec::new();
    for (source, content_type) in WEBHOOK_SOURCES {
        let mut names: Vec<String> = std::fs::read_dir(fixture_path(source.as_str()))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        for name in names {
            let path = format!("{source}/{name}");
            let (content_type, body) = if name.starts_with("run_on_finished") {
                let v: Value = serde_json::from_slice(&fixture(&path)).unwrap();
                let request = &v["http_request"];
                (request["content_type"].as_str().unwrap().to_owned(), request["body"].as_str().unwrap().into())
            } else {
                (content_type.to_owned(), fixture(&path))
            };
            bodies.push((source, path, content_type, body));
        }
    }
    bodies
}

/// What ingress publishes for a body it could parse (`ingress::handler::accept`).
pub fn ingress_envelope(source: Source, content_type: &str, body: &[u8]) -> Option<MediaEnvelope> {
    let payload = ingress::payload::decode(Some(content_type), body).ok()?;
    let fact = ingress::sources::adapter(source)?.parse(&payload).ok()?;
    let subject = fact.subject();
    let id = content_id(source.as_str(), &[subject.as_bytes(), body]);
    let key = fact.media_key();
    let data = EventData { event: fact, raw: Some(payload.value.into()) };
    Some(Envelope::new(id, format!("/status-tracker/ingress/{source}"), &subject, data).with_subject(key))
}

/// The shoko-bridge's facts for the `signalr_*` fixtures, the import folder resolved as the
/// bridge does from `api_v3_importfolder.json`.
pub fn shoko_envelopes() -> Vec<MediaEnvelope> {
    let folders: Value = serde_json::from_slice(&fixture("shoko/api_v3_importfolder.json")).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(fixture_path("shoko"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("signalr_"))
        .collect();
    names.sort();
    let mut envelopes = Vec::new();
    for name in names {
        let frame: Value = serde_json::from_slice(&fixture(&format!("shoko/{name}"))).unwrap();
        let target = frame["target"].as_str().unwrap();
        let Some(mut event) = shoko_bridge::file_event(target, &frame["arguments"]).unwrap() else { continue };
        let folder = folders.as_array().unwrap().iter().find(|f| f["ID"].as_u64() == event.import_folder_id);
        if let Some(root) = folder.and_then(|f| f["Path"].as_str()) {
            event.path = Some(shared::paths::normalize(&format!("{root}/{}", event.relative_path)));
        }
        let args = serde_json::to_vec(&frame["arguments"]).unwrap();
        let id = shoko_bridge::event_id(&event).unwrap_or_else(|| content_id("shoko", &[target.as_bytes(), &args]));
        let fact = Fact::Shoko(event);
        let subject = fact.subject();
        let key = fact.media_key();
        let data = EventData { event: fact, raw: Some(frame["arguments"].clone()) };
        envelopes.push(Envelope::new(id, shoko_bridge::SOURCE, &subject, data).with_subject(key));
    }
    envelopes
}

/// qBittorrent answering `sync/maindata` with the fixtures' snapshots, one per poll.
pub struct Replay(VecDeque<MaindataUpdate>);

impl Replay {
    fn fixtures() -> Self {
        let rids = ["rid0_full", "rid1_incremental", "rid7_completed_and_removed"];
        let read = |rid: &str| {
            serde_json::from_slice(&fixture(&format!("qbittorrent/api_v2_sync_maindata_{rid}.json"))).unwrap()
        };
        Self(rids.iter().map(|r| read(r)).collect())
    }
}

impl poller::Qbit for Replay {
    async fn maindata(&mut self, rid: u64) -> Result<MaindataUpdate, QbitError> {
        Ok(self.0.pop_front().unwrap_or(MaindataUpdate { rid, ..Default::default() }))
    }
    fn take_new_session(&mut self) -> bool {
        false
    }
    fn webapi_version(&self) -> Option<String> {
        None
    }
}

/// The poller's worker over [`Replay`], following every torrent of the fixtures.
pub fn poller_over_fixtures<S: Sink>(sink: S) -> Worker<Replay, S> {
    let health = HealthCell::new("poller", HealthStatus::Ok);
    let mut worker = Worker::new(Replay::fixtures(), sink, Duration::from_secs(600), health);
    let hashes = ["5e3f9a1c7b2d4e6f8091a2b3c4d5e6f708192a3b", "c0ffee4d2a9b8c7d6e5f40312a1b0c9d8e7f6a5b"];
    let hashes = hashes.into_iter().chain(["9f8e7d6c5b4a39281706f5e4d3c2b1a098765432"]);
    worker.tracked.reset(hashes.map(str::to_owned));
    worker
}

#[derive(Default, Clone)]
pub struct Collected(pub Arc<Mutex<Vec<MediaEnvelope>>>);

impl Sink for Collected {
    async fn publish(&self, _subject: &str, envelope: &MediaEnvelope) -> Result<(), String> {
        self.0.lock().unwrap().push(envelope.clone());
        Ok(())
    }
}
