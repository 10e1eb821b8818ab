//! Webhooks as the media services send them: the recorded fixtures of `tests/fixtures`, with
//! the ids, titles, paths and hashes changed so that every generated request is its own.
//!
//! A film is 6 webhooks (Jellyseerr pending and approved, Radarr Grab, qBittorrent
//! run-on-finish, Radarr Download, Jellyfin ItemAdded). A series is 28: Jellyseerr
//! auto-approved, a Sonarr season-pack Grab of 12 episodes, qBittorrent run-on-finish, 12
//! per-file Downloads, the "import complete" Download, and 12 Jellyfin episode ItemAdded.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const EPISODES: u64 = 12;

/// One webhook, ready to post to `/hooks/{source}`.
#[derive(Clone)]
pub struct Hook {
    pub source: &'static str,
    pub body: Arc<Vec<u8>>,
}

/// The recorded payloads everything is generated from.
pub struct Fixtures {
    pending: Value,
    approved: Value,
    auto_approved_tv: Value,
    radarr_grab: Value,
    radarr_download: Value,
    jellyfin_movie: Value,
    sonarr_pack_grab: Value,
    sonarr_download: Value,
    sonarr_import_complete: Value,
    jellyfin_episode: Value,
}

impl Fixtures {
    pub fn load(root: &Path) -> Self {
        let read = |name: &str| -> Value {
            let path = root.join("tests/fixtures").join(name);
            serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
        };
        Self {
            pending: read("jellyseerr/webhook_media_pending_movie_the_batman_req42.json"),
            approved: read("jellyseerr/webhook_media_approved_movie_the_batman_req42.json"),
            auto_approved_tv: read("jellyseerr/webhook_media_auto_approved_tv_dan_da_dan_req43.json"),
            radarr_grab: read("radarr/webhook_grab_the_batman.json"),
            radarr_download: read("radarr/webhook_download_the_batman.json"),
            jellyfin_movie: read("jellyfin/item_added_movie_the_batman.json"),
            sonarr_pack_grab: read("sonarr/webhook_grab_dan_da_dan_s01_season_pack.json"),
            sonarr_download: read("sonarr/webhook_download_dan_da_dan_s01e01.json"),
            sonarr_import_complete: read("sonarr/webhook_download_import_complete_dan_da_dan_s01.json"),
            jellyfin_episode: read("jellyfin/item_added_episode_dan_da_dan_s01e01.json"),
        }
    }

    /// A film request that is only requested (`MEDIA_PENDING`), Jellyseerr request id `id`.
    pub fn pending_film(&self, id: u64) -> Hook {
        hook("jellyseerr", self.seerr_film(&self.pending, id))
    }

    /// Film `i` (ids derived from `i`) from request to available.
    pub fn film(&self, i: u64) -> Vec<Hook> {
        let title = format!("Film {i}");
        let imdb = format!("tt{i:08}");
        let hash = format!("{:040x}", 0xf11e_0000_0000_u64 + i);
        let movie = |v: &Value, extra: &[(&str, Value)]| {
            let mut edits = vec![
                ("/movie/id", json!(i)),
                ("/movie/tmdbId", json!(i)),
                ("/movie/imdbId", json!(imdb)),
                ("/movie/title", json!(title)),
                ("/remoteMovie/tmdbId", json!(i)),
                ("/remoteMovie/imdbId", json!(imdb)),
                ("/downloadId", json!(hash.to_uppercase())),
            ];
            edits.extend(extra.iter().cloned());
            edit(v, &edits)
        };
        let path = format!("/data/media/movies/{title} (2020)/{title} (2020).mkv");
        vec![
            hook("jellyseerr", self.seerr_film(&self.pending, i)),
            hook("jellyseerr", self.seerr_film(&self.approved, i)),
            hook("radarr", movie(&self.radarr_grab, &[])),
            hook("qbittorrent", json!({"hash": hash, "name": title, "path": "/data/torrents/movies"})),
            hook("radarr", movie(&self.radarr_download, &[("/movieFile/path", json!(path))])),
            hook(
                "jellyfin",
                edit(
                    &self.jellyfin_movie,
                    &[
                        ("/tmdb_id", json!(i.to_string())),
                        ("/imdb_id", json!(imdb)),
                        ("/item_id", json!(format!("{:032x}", 0xa11_0000_0000_u64 + i))),
                        ("/name", json!(title)),
                    ],
                ),
            ),
        ]
    }

    /// Series `i`, season 1 of 12 episodes, from request to available.
    pub fn series(&self, i: u64) -> Vec<Hook> {
        let title = format!("Series {i}");
        let path = format!("/data/media/tv/{title}");
        let hash = format!("{:040x}", 0x5e1e_0000_0000_u64 + i);
        let episode_id = |e: u64| i * 100 + e;
        let episode_tvdb = |e: u64| 900_000_000 + i * 100 + e;
        let file = |e: u64| format!("Season 01/{title} - S01E{e:02}.mkv");
        let source = format!("/data/torrents/tv/{title} S01");
        let series = |v: &Value, extra: Vec<(String, Value)>| {
            let mut edits: Vec<(String, Value)> = vec![
                ("/series/id".into(), json!(i)),
                ("/series/title".into(), json!(title)),
                ("/series/titleSlug".into(), json!(format!("series-{i}"))),
                ("/series/path".into(), json!(path)),
                ("/series/tvdbId".into(), json!(i)),
                ("/series/tmdbId".into(), json!(i)),
                ("/series/type".into(), json!("standard")),
                ("/downloadId".into(), json!(hash.to_uppercase())),
            ];
            edits.extend(extra);
            let edits: Vec<(&str, Value)> = edits.iter().map(|(p, v)| (p.as_str(), v.clone())).collect();
            edit(v, &edits)
        };
        let episode = |slot: usize, e: u64| {
            vec![
                (format!("/episodes/{slot}/id"), json!(episode_id(e))),
                (format!("/episodes/{slot}/episodeNumber"), json!(e)),
                (format!("/episodes/{slot}/seasonNumber"), json!(1)),
                (format!("/episodes/{slot}/seriesId"), json!(i)),
                (format!("/episodes/{slot}/tvdbId"), json!(episode_tvdb(e))),
            ]
        };
        let all_episodes: Vec<(String, Value)> = (1..=EPISODES).flat_map(|e| episode(e as usize - 1, e)).collect();
        let mut hooks = vec![
            hook(
                "jellyseerr",
                edit(
                    &self.auto_approved_tv,
                    &[
                        ("/media/tmdbId", json!(i.to_string())),
                        ("/media/tvdbId", json!(i.to_string())),
                        ("/request/request_id", json!(i.to_string())),
                        ("/subject", json!(format!("{title} (2024)"))),
                    ],
                ),
            ),
            hook("sonarr", series(&self.sonarr_pack_grab, all_episodes.clone())),
            hook("qbittorrent", json!({"hash": hash, "name": format!("{title} S01"), "path": "/data/torrents/tv"})),
        ];
        for e in 1..=EPISODES {
            let mut extra = episode(0, e);
            extra.extend([
                ("/episodeFile/id".into(), json!(episode_id(e))),
                ("/episodeFile/relativePath".into(), json!(file(e))),
                ("/episodeFile/path".into(), json!(format!("{path}/{}", file(e)))),
                ("/episodeFile/sourcePath".into(), json!(format!("{source}/{title} - {e:02}.mkv"))),
            ]);
            hooks.push(hook("sonarr", series(&self.sonarr_download, extra)));
        }
        let mut extra = all_episodes;
        for e in 1..=EPISODES {
            let slot = e - 1;
            extra.extend([
                (format!("/episodeFiles/{slot}/id"), json!(episode_id(e))),
                (format!("/episodeFiles/{slot}/relativePath"), json!(file(e))),
                (format!("/episodeFiles/{slot}/path"), json!(format!("{path}/{}", file(e)))),
            ]);
        }
        extra.extend([
            ("/sourcePath".into(), json!(source)),
            ("/destinationPath".into(), json!(format!("{path}/Season 01"))),
        ]);
        hooks.push(hook("sonarr", series(&self.sonarr_import_complete, extra)));
        for e in 1..=EPISODES {
            let body = edit(
                &self.jellyfin_episode,
                &[
                    ("/item_id", json!(format!("{:032x}", 0xe9_0000_0000_u64 + episode_id(e)))),
                    ("/name", json!(format!("Episode {e}"))),
                    ("/series_name", json!(title)),
                    ("/series_id", json!(format!("{:032x}", 0x5e_0000_0000_u64 + i))),
                    ("/season_number", json!("01")),
                    ("/episode_number", json!(format!("{e:02}"))),
                    ("/tvdb_id", json!(episode_tvdb(e).to_string())),
                ],
            );
            hooks.push(hook("jellyfin", body));
        }
        hooks
    }

    fn seerr_film(&self, base: &Value, i: u64) -> Value {
        edit(
            base,
            &[
                ("/media/tmdbId", json!(i.to_string())),
                ("/request/request_id", json!(i.to_string())),
                ("/subject", json!(format!("Film {i} (2020)"))),
            ],
        )
    }
}

fn edit(base: &Value, edits: &[(&str, Value)]) -> Value {
    let mut v = base.clone();
    for (pointer, value) in edits {
        *v.pointer_mut(pointer).unwrap_or_else(|| panic!("{pointer} is not in the fixture")) = value.clone();
    }
    v
}

fn hook(source: &'static str, body: Value) -> Hook {
    Hook { source, body: Arc::new(serde_json::to_vec(&body).unwrap()) }
}

/// Posts one webhook and returns how long the answer took; anything but 2xx is an error.
pub async fn post(http: &reqwest::Client, base: &str, hook: &Hook) -> Result<Duration, String> {
    let started = Instant::now();
    let resp = http
        .post(format!("{base}/hooks/{}", hook.source))
        .header("content-type", "application/json")
        .body(hook.body.as_ref().clone())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    Ok(started.elapsed())
}
