//! Replays facts into a real correlator store (a SQLite file per world) without NATS, so that
//! scenarios can be run in any order, many times: the parsers of `ingress` turn fixtures into
//! facts exactly as in production, and `correlator::Processor` applies them.
#![allow(dead_code)]

use std::time::Duration;

use correlator::Processor;
use correlator::correlate::Outcome;
use correlator::store::{self, Store};
use serde_json::Value;
use shared::envelope::{Envelope, content_id};
use shared::events::qbittorrent::{Progress, TorrentEvent};
use shared::events::shoko::{CrossRef, FileEvent, FileEventKind};
use shared::events::{EventData, Fact, MediaEnvelope};
use shared::ids::InfoHash;
use shared::model::{ListQuery, RequestDetail, State};
use shared::paths::PathMap;
use shared::subjects::Source;
use time::OffsetDateTime;
use time::macros::datetime;

pub const BASE: OffsetDateTime = datetime!(2025-01-10 18:00 UTC);

pub fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One fact at a given minute after [`BASE`].
#[derive(Debug, Clone)]
pub struct Step {
    pub fact: Fact,
    pub raw: Value,
    pub minute: i64,
    pub name: String,
}

impl Step {
    pub fn at(&self) -> OffsetDateTime {
        BASE + time::Duration::minutes(self.minute)
    }

    pub fn envelope(&self) -> MediaEnvelope {
        let subject = self.fact.subject();
        let id = content_id(self.fact.source_name(), &[subject.as_bytes(), self.raw.to_string().as_bytes()]);
        Envelope::new(id, "/test", &subject, EventData { event: self.fact.clone(), raw: Some(self.raw.clone()) })
            .with_time(self.at())
    }
}

/// Parses a webhook body the way ingress does.
pub fn hook(source: Source, content_type: &str, body: &[u8], minute: i64) -> Step {
    let payload = ingress::payload::decode(Some(content_type), body).expect("decodable");
    let fact = ingress::sources::adapter(source).expect("webhook source").parse(&payload).expect("parsable");
    Step { fact, raw: payload.value.into(), minute, name: String::from_utf8_lossy(&body[..body.len().min(60)]).into() }
}

/// A webhook fixture (`radarr/webhook_grab_the_batman.json`…).
pub fn fx(source: Source, name: &str, minute: i64) -> Step {
    let mut s = hook(source, "application/json", &fixture(name), minute);
    s.name = name.to_owned();
    s
}

/// A fixture with some fields replaced (`/movie/tmdbId` style JSON pointers).
pub fn fx_with(source: Source, name: &str, minute: i64, edits: &[(&str, Value)]) -> Step {
    let mut v: Value = serde_json::from_slice(&fixture(name)).unwrap();
    for (pointer, value) in edits {
        *v.pointer_mut(pointer).unwrap_or_else(|| panic!("{pointer} in {name}")) = value.clone();
    }
    let mut s = hook(source, "application/json", v.to_string().as_bytes(), minute);
    s.name = format!("{name} (edited)");
    s
}

/// qBittorrent's run-on-finish hook for a torrent.
pub fn finished(hash: &str, minute: i64) -> Step {
    let body = format!(r#"{{"hash":"{hash}","name":"torrent {hash}"}}"#);
    let mut s = hook(Source::Qbittorrent, "application/json", body.as_bytes(), minute);
    s.name = format!("finished {hash}");
    s
}

/// The poller's progress of a torrent.
pub fn progress(hash: &str, progress: f64, size: u64, minute: i64) -> Step {
    let p = Progress {
        hash: InfoHash::parse(hash).unwrap(),
        name: None,
        progress,
        dlspeed: 2_300_000,
        eta: Some(240),
        state: "downloading".into(),
        size: Some(size),
        amount_left: Some(((1.0 - progress) * size as f64) as u64),
        num_seeds: Some(12),
        stalled: None,
        error: None,
    };
    let raw = serde_json::to_value(&p).unwrap();
    Step {
        fact: Fact::Qbittorrent(TorrentEvent::Progress(p)),
        raw,
        minute,
        name: format!("progress {hash} {progress}"),
    }
}

/// A Shoko file event as the shoko-bridge publishes it, from a `signalr_*` fixture frame.
pub fn shoko(name: &str, import_folder: &str, minute: i64) -> Step {
    let frame: Value = serde_json::from_slice(&fixture(name)).unwrap();
    let kind = FileEventKind::from_target(frame["target"].as_str().unwrap()).unwrap();
    let arg = &frame["arguments"][0];
    let relative = arg["RelativePath"].as_str().unwrap().to_owned();
    let cross_refs = arg["CrossReferences"]
        .as_array()
        .map(|refs| {
            refs.iter()
                .map(|r| CrossRef {
                    anidb_anime_id: r["AnidbAnimeID"].as_u64(),
                    anidb_episode_id: r["AnidbEpisodeID"].as_u64(),
                    shoko_series_id: r["SeriesID"].as_u64(),
                    shoko_episode_id: r["EpisodeID"].as_u64(),
                    shoko_group_id: r["GroupID"].as_u64(),
                })
                .collect()
        })
        .unwrap_or_default();
    let mut event = FileEvent::new(kind, relative.clone());
    event.file_id = arg["FileID"].as_u64();
    event.import_folder_id = arg["ImportFolderID"].as_u64();
    event.path = Some(shared::paths::normalize(&format!("{import_folder}/{relative}")));
    event.cross_refs = cross_refs;
    Step { fact: Fact::Shoko(event), raw: frame["arguments"].clone(), minute, name: name.to_owned() }
}

/// A correlator store in a temporary SQLite file.
pub struct World {
    _dir: tempfile::TempDir,
    pub store: Store,
    pub processor: Processor,
}

impl World {
    pub async fn new() -> Self {
        Self::with(Processor::new(PathMap::default(), Duration::from_secs(7 * 86400), None)).await
    }

    pub async fn with(processor: Processor) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("tracker.db")).await.unwrap();
        Self { _dir: dir, store, processor }
    }

    /// Applies one step in its own transaction, like one consumer batch.
    pub async fn apply(&self, step: &Step) -> Outcome {
        let mut env = step.envelope();
        self.processor.enrich(&mut env).await;
        let mut tx = self.store.begin().await.unwrap();
        let outcome = self.processor.process(&mut tx, &env, &env.kind).await.unwrap();
        tx.commit().await.unwrap();
        outcome
    }

    pub async fn replay(&self, steps: &[Step]) {
        for s in steps {
            self.apply(s).await;
        }
    }

    /// The steps' envelopes, enriched as the consumer enriches them before a batch.
    async fn envelopes(&self, steps: &[Step]) -> Vec<MediaEnvelope> {
        let mut envs = Vec::new();
        for step in steps {
            let mut env = step.envelope();
            self.processor.enrich(&mut env).await;
            envs.push(env);
        }
        envs
    }

    /// Correlates a batch's envelopes in `session` as the consumer does: first which events
    /// were processed and which requests the batch's keys name, read before the batch writes.
    async fn correlate(&self, session: &mut correlator::session::Session<'_>, envs: &[MediaEnvelope]) {
        let ids: Vec<&str> = envs.iter().map(|e| e.id.as_str()).collect();
        let keys: Vec<String> = envs.iter().flat_map(|e| correlator::correlate::lookup_keys(&e.data.event)).collect();
        session.prefetch(&ids, &keys).await.unwrap();
        for env in envs {
            self.processor.process_in(session, env, &env.kind).await.unwrap();
        }
    }

    /// Applies steps `size` at a time, each chunk in one session and transaction, as the
    /// consumer applies a batch.
    pub async fn replay_batched(&self, steps: &[Step], size: usize) {
        for chunk in steps.chunks(size) {
            let envs = self.envelopes(chunk).await;
            let mut tx = self.store.begin().await.unwrap();
            let mut session = correlator::session::Session::new(&mut tx, &self.processor.cache);
            self.correlate(&mut session, &envs).await;
            session.flush().await.unwrap();
            drop(session);
            tx.commit().await.unwrap();
        }
    }

    /// Applies steps `size` at a time as the consumer does: each chunk correlated in a batch
    /// session while the chunk before it has not committed yet. That commit is held back until
    /// the chunk needs it or has been correlated, the longest the consumer can leave it.
    pub async fn replay_pipelined(&self, steps: &[Step], size: usize) {
        use correlator::session::{Commit, Done, Finished, Session};
        let mut previous: Option<(Commit, Done)> = None;
        let mut prior = None;
        for chunk in steps.chunks(size) {
            let envs = self.envelopes(chunk).await;
            let correlated = tokio::sync::Notify::new();
            let correlate = async {
                let mut session = Session::batch(&self.store, &self.processor.cache, prior.take());
                self.correlate(&mut session, &envs).await;
                correlated.notify_one();
                session.finish()
            };
            let commit_previous = async {
                if let Some((commit, done)) = previous.take() {
                    tokio::select! {
                        _ = done.needed() => {}
                        _ = correlated.notified() => {}
                    }
                    commit.run(None).await.unwrap();
                    done.send(true);
                }
            };
            let (Finished { commit, next, done }, ()) = tokio::join!(correlate, commit_previous);
            previous = Some((commit, done));
            prior = Some(next);
        }
        if let Some((commit, done)) = previous {
            commit.run(None).await.unwrap();
            done.send(true);
        }
    }

    pub async fn requests(&self) -> Vec<RequestDetail> {
        let list =
            store::list(self.store.pool(), &ListQuery { limit: Some(1000), ..Default::default() }).await.unwrap();
        let mut out = Vec::new();
        for r in list.requests {
            out.push(store::detail(self.store.pool(), r.id, None).await.unwrap().unwrap());
        }
        out.sort_by(|a, b| {
            (a.summary.title.as_str(), a.summary.jellyseerr_id)
                .cmp(&(b.summary.title.as_str(), b.summary.jellyseerr_id))
        });
        out
    }

    pub async fn only(&self) -> RequestDetail {
        let mut all = self.requests().await;
        assert_eq!(
            all.len(),
            1,
            "expected one request, got {:#?}",
            all.iter().map(|r| &r.summary.title).collect::<Vec<_>>()
        );
        all.remove(0)
    }

    pub async fn titled(&self, title: &str) -> RequestDetail {
        self.requests()
            .await
            .into_iter()
            .find(|r| r.summary.title == title)
            .unwrap_or_else(|| panic!("no request {title}"))
    }

    /// Everything about the requests that must not depend on arrival order.
    pub async fn outcome(&self) -> Vec<Comparable> {
        self.requests().await.iter().map(Comparable::of).collect()
    }
}

/// An episode as compared: season, episode, state, reason, file.
pub type EpisodeFacts = (u32, u32, State, Option<String>, Option<String>);

/// A request reduced to what must be the same whatever the arrival order.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparable {
    pub title: String,
    pub state: State,
    pub reason: Option<String>,
    pub quality: Option<String>,
    pub progress_permille: i64,
    pub requested_by: Option<String>,
    pub source: String,
    pub is_anime: bool,
    pub watch_url: Option<String>,
    pub created_at: OffsetDateTime,
    pub episodes: Vec<EpisodeFacts>,
    pub downloads: Vec<(String, bool)>,
    /// (time, state, message, episode), sorted.
    pub timeline: Vec<(OffsetDateTime, State, String, Option<String>)>,
}

impl Comparable {
    pub fn of(r: &RequestDetail) -> Self {
        let s = &r.summary;
        let mut timeline: Vec<_> =
            r.timeline.iter().map(|e| (e.at, e.state, e.message.clone(), e.episode.clone())).collect();
        timeline.sort();
        Self {
            title: s.title.clone(),
            state: s.state,
            reason: s.reason.clone(),
            quality: s.quality.clone(),
            progress_permille: (s.progress * 1000.0).round() as i64,
            requested_by: s.requested_by.clone(),
            source: s.source.clone(),
            is_anime: s.is_anime,
            watch_url: s.watch_url.clone(),
            created_at: s.created_at,
            episodes: r
                .episodes
                .iter()
                .map(|e| (e.season, e.episode, e.state, e.reason.clone(), e.file_path.clone()))
                .collect(),
            downloads: r.downloads.iter().map(|d| (d.download_id.clone(), d.finished)).collect(),
            timeline,
        }
    }
}

/// States of a series' episodes as `(season, episode) -> state`.
pub fn episode_states(r: &RequestDetail) -> Vec<((u32, u32), State)> {
    r.episodes.iter().map(|e| ((e.season, e.episode), e.state)).collect()
}

/// The timeline as `(state, message)` in time order.
pub fn timeline(r: &RequestDetail) -> Vec<(State, String)> {
    r.timeline.iter().map(|e| (e.state, e.message.clone())).collect()
}

/// The six facts of one synthetic film `i` (its own TMDB/IMDb ids, Jellyseerr request, torrent
/// and file), at minutes `base + 0..6`: for tests that need thousands of distinct events.
pub fn synthetic_film(i: usize, base: i64) -> Vec<Step> {
    use serde_json::json;
    use shared::subjects::Source::{Jellyfin, Jellyseerr, Qbittorrent, Radarr};
    let tmdb = 500_000 + i as u64;
    let imdb = format!("tt9{i:06}");
    let title = format!("Film {i}");
    let hash = format!("{:040x}", 0xf11e_0000_u64 + i as u64);
    let path = format!("/data/media/movies/{title}/{title}.mkv");
    let request = json!((10_000 + i).to_string());
    let movie = |name: &str, minute: i64, extra: &[(&str, serde_json::Value)]| {
        let mut edits = vec![
            ("/movie/tmdbId", json!(tmdb)),
            ("/movie/imdbId", json!(imdb)),
            ("/movie/title", json!(title)),
            ("/remoteMovie/tmdbId", json!(tmdb)),
            ("/remoteMovie/imdbId", json!(imdb)),
            ("/downloadId", json!(hash.to_uppercase())),
        ];
        edits.extend(extra.iter().cloned());
        fx_with(Radarr, name, minute, &edits)
    };
    let seerr = |name: &str, minute: i64| {
        fx_with(
            Jellyseerr,
            name,
            minute,
            &[
                ("/media/tmdbId", json!(tmdb.to_string())),
                ("/request/request_id", request.clone()),
                ("/subject", json!(format!("{title} (2020)"))),
            ],
        )
    };
    let finished = {
        let body = format!(r#"{{"hash":"{hash}","name":"{title}"}}"#);
        let mut s = hook(Qbittorrent, "application/json", body.as_bytes(), base + 3);
        s.name = format!("finished {i}");
        s
    };
    let guid = format!("{:032x}", 0xa11_0000_u64 + i as u64);
    vec![
        seerr("jellyseerr/webhook_media_pending_movie_the_batman_req42.json", base),
        seerr("jellyseerr/webhook_media_approved_movie_the_batman_req42.json", base + 1),
        movie("radarr/webhook_grab_the_batman.json", base + 2, &[]),
        finished,
        movie("radarr/webhook_download_the_batman.json", base + 4, &[("/movieFile/path", json!(path))]),
        fx_with(
            Jellyfin,
            "jellyfin/item_added_movie_the_batman.json",
            base + 5,
            &[
                ("/tmdb_id", json!(tmdb.to_string())),
                ("/imdb_id", json!(imdb)),
                ("/item_id", json!(guid)),
                ("/name", json!(title)),
            ],
        ),
    ]
}

/// Publishes steps to JetStream as ingress would (ids as `Nats-Msg-Id`), many in flight.
pub async fn publish_all(bus: &shared::Bus, steps: &[Step]) {
    let mut acks = Vec::with_capacity(512);
    for s in steps {
        let env = s.envelope();
        let payload = serde_json::to_vec(&env).unwrap();
        let headers = shared::bus::event_headers(&env.id, None);
        acks.push(bus.js.publish_with_headers(env.kind.clone(), headers, payload.into()).await.unwrap());
        if acks.len() == 512 {
            for a in acks.drain(..) {
                a.await.unwrap();
            }
        }
    }
    for a in acks {
        a.await.unwrap();
    }
}

/// Every request of a database, reduced for comparison, keyed by Jellyseerr id.
pub async fn dump(db: &std::path::Path) -> Vec<(Option<u64>, Comparable, usize)> {
    let store = Store::open(db).await.unwrap();
    let list = store::list(store.pool(), &ListQuery { limit: Some(1000), ..Default::default() }).await.unwrap();
    let mut all = Vec::new();
    let mut offset = 0;
    let mut page = list;
    loop {
        for r in &page.requests {
            let d = store::detail(store.pool(), r.id, None).await.unwrap().unwrap();
            all.push((d.summary.jellyseerr_id.map(|i| i.0), Comparable::of(&d), d.timeline.len()));
        }
        offset += page.requests.len() as u32;
        if page.requests.is_empty() || offset as u64 >= page.total {
            break;
        }
        let q = ListQuery { limit: Some(1000), offset: Some(offset), ..Default::default() };
        page = store::list(store.pool(), &q).await.unwrap();
    }
    store.close().await;
    all.sort_by(|a, b| (a.0, &a.1.title).cmp(&(b.0, &b.1.title)));
    all
}
