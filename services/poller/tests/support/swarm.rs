//! The torrents of the fake qBittorrent: built from the recorded fixture's torrent object, so
//! every key and its size is what qBittorrent 4.5 sends; the active ones advance one step per
//! refresh. Also the `sync/maindata` diffing, per session, as qBittorrent does it.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

pub type Torrent = Map<String, Value>;

const FULL: &str = include_str!("../../../../tests/fixtures/qbittorrent/api_v2_sync_maindata_rid0_full.json");
/// The fixture's downloading torrent (DAN DA DAN, a season pack).
const TEMPLATE: &str = "c0ffee4d2a9b8c7d6e5f40312a1b0c9d8e7f6a5b";
const SIZE: u64 = 16_492_674_416;

/// Every torrent, and which of them download.
pub struct Swarm {
    pub torrents: BTreeMap<String, Torrent>,
    pub server_state: Torrent,
    categories: Value,
    active: Vec<String>,
    /// Download steps per refresh, as a fraction of the size.
    step: f64,
}

/// A stable 40-hex hash for torrent number `i`.
pub fn hash_of(i: usize) -> String {
    format!("{:08x}{:032x}", 0xc0ffee00u32.wrapping_add(i as u32), (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

impl Swarm {
    /// `count` torrents, of which the first `active` download from 0 %, the others seed.
    pub fn new(count: usize, active: usize) -> Self {
        let full: Value = serde_json::from_str(FULL).unwrap();
        let template = full["torrents"][TEMPLATE].as_object().unwrap().clone();
        let mut torrents = BTreeMap::new();
        for i in 0..count {
            let hash = hash_of(i);
            let mut t = template.clone();
            let name = format!("Some.Show.S01E{:03}.1080p.WEB-DL.DDP5.1.H.264-FICTION", i + 1);
            t.insert("name".into(), json!(name));
            t.insert("infohash_v1".into(), json!(hash));
            t.insert("content_path".into(), json!(format!("/data/torrents/tv/{name}")));
            t.insert("magnet_uri".into(), json!(format!("magnet:?xt=urn:btih:{hash}&dn={name}")));
            if i < active {
                set_progress(&mut t, 0.0, 0);
                t.insert("state".into(), json!("stalledDL"));
            } else {
                set_progress(&mut t, 1.0, 0);
                t.insert("state".into(), json!("stalledUP"));
                t.insert("completion_on".into(), json!(1_736_588_890));
            }
            torrents.insert(hash, t);
        }
        let active = torrents.keys().take(active).cloned().collect();
        let server_state = full["server_state"].as_object().unwrap().clone();
        Self { torrents, server_state, categories: full["categories"].clone(), active, step: 0.01 }
    }

    /// Sets how far each refresh moves an active torrent (fraction of its size).
    pub fn with_step(mut self, step: f64) -> Self {
        self.step = step;
        self
    }

    /// Keeps torrent `i` where it is (waiting for peers) from now on.
    pub fn hold(&mut self, i: usize) {
        let hash = hash_of(i);
        self.active.retain(|h| *h != hash);
    }

    /// One of qBittorrent's stats refreshes: active torrents get data (and finish at 100 %).
    pub fn refresh(&mut self, now: i64) {
        let mut total_speed = 0;
        for hash in &self.active {
            let t = self.torrents.get_mut(hash).unwrap();
            let before = t["progress"].as_f64().unwrap();
            if before >= 1.0 {
                continue;
            }
            let after = (before + self.step).min(1.0);
            // A speed that wobbles like a real one, so deltas carry it.
            let speed = 5_000_000 + (now as u64 * 7919 + hash.len() as u64 * 104_729) % 1_000_000;
            set_progress(t, after, if after < 1.0 { speed } else { 0 });
            t.insert("last_activity".into(), json!(now));
            if after >= 1.0 {
                t.insert("state".into(), json!("stalledUP"));
                t.insert("completion_on".into(), json!(now));
            } else {
                t.insert("state".into(), json!("downloading"));
                total_speed += speed;
            }
        }
        let data = self.server_state["dl_info_data"].as_u64().unwrap_or(0) + total_speed * 2;
        self.server_state.insert("dl_info_data".into(), json!(data));
        self.server_state.insert("dl_info_speed".into(), json!(total_speed));
    }

    /// The `torrents/info` answer: an array of every torrent with its hash.
    pub fn info(&self) -> Value {
        let list = self.torrents.iter().map(|(h, t)| {
            let mut t = t.clone();
            t.insert("hash".into(), json!(h));
            Value::Object(t)
        });
        Value::Array(list.collect())
    }

    /// A full `sync/maindata` answer: torrents, categories, tags, trackers, server state.
    pub fn full(&self, rid: u64) -> Value {
        let mut trackers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (h, t) in &self.torrents {
            let url = t["tracker"].as_str().unwrap_or_default().to_owned();
            trackers.entry(url).or_default().push(h.clone());
        }
        json!({ "rid": rid, "full_update": true, "torrents": self.torrents, "categories": self.categories,
                "tags": [], "trackers": trackers, "server_state": self.server_state })
    }
}

/// What a session last received, to diff the next answer against (qBittorrent keeps the
/// same per session).
#[derive(Default, Clone)]
pub struct Sent {
    pub rid: u64,
    torrents: BTreeMap<String, Torrent>,
    server_state: Torrent,
}

/// The answer to `sync/maindata?rid=<asked>` for a session that last got `sent`: a delta of
/// the changed keys if `asked` is the session's current rid, else a full update with rid 1.
pub fn maindata(swarm: &Swarm, sent: &mut Sent, asked: u64) -> Value {
    let answer = if asked != 0 && asked == sent.rid {
        let rid = sent.rid + 1;
        let mut answer = json!({ "rid": rid });
        let changed: Map<String, Value> = swarm
            .torrents
            .iter()
            .filter_map(|(h, t)| {
                let delta = diff(sent.torrents.get(h), t);
                (!delta.is_empty()).then(|| (h.clone(), Value::Object(delta)))
            })
            .collect();
        if !changed.is_empty() {
            answer["torrents"] = Value::Object(changed);
        }
        let removed: Vec<&String> = sent.torrents.keys().filter(|h| !swarm.torrents.contains_key(*h)).collect();
        if !removed.is_empty() {
            answer["torrents_removed"] = json!(removed);
        }
        let state = diff(Some(&sent.server_state), &swarm.server_state);
        if !state.is_empty() {
            answer["server_state"] = Value::Object(state);
        }
        sent.rid = rid;
        answer
    } else {
        sent.rid = 1;
        swarm.full(1)
    };
    sent.torrents = swarm.torrents.clone();
    sent.server_state = swarm.server_state.clone();
    answer
}

fn diff(before: Option<&Torrent>, now: &Torrent) -> Torrent {
    match before {
        None => now.clone(),
        Some(b) => now.iter().filter(|(k, v)| b.get(*k) != Some(v)).map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
}

fn set_progress(t: &mut Torrent, progress: f64, speed: u64) {
    let done = (SIZE as f64 * progress) as u64;
    t.insert("progress".into(), json!(progress));
    t.insert("size".into(), json!(SIZE));
    t.insert("total_size".into(), json!(SIZE));
    t.insert("amount_left".into(), json!(SIZE - done));
    t.insert("completed".into(), json!(done));
    t.insert("downloaded".into(), json!(done));
    t.insert("downloaded_session".into(), json!(done));
    t.insert("dlspeed".into(), json!(speed));
    t.insert("eta".into(), json!((SIZE - done).checked_div(speed).unwrap_or(8_640_000)));
    t.insert("num_seeds".into(), json!(if progress < 1.0 { 17 } else { 0 }));
    t.insert("completion_on".into(), json!(-1));
}
