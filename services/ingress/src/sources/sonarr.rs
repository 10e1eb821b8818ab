//! Sonarr webhook (v3, v4, v5-develop). A season pack is one Grab listing every episode; a
//! `Download` is either one imported file ("On File Import") or, since v4.0.6, the end of an
//! import ("On Import Complete", with `episodeFiles`/`fileCount` and no `episodeFile`).

use shared::events::arr::{ArrEvent, ArrMedia, EpisodeRef};
use shared::events::{Fact, MediaType};
use shared::ids::{ArrId, TmdbId, TvdbId};
use shared::subjects::Source;

use super::{Adapter, ObjExt, ParseError, arr};
use crate::payload::{Map, Payload, Value};

pub struct Sonarr;

impl Adapter for Sonarr {
    fn source(&self) -> Source {
        Source::Sonarr
    }

    fn content_types(&self) -> &'static [&'static str] {
        &["application/json"]
    }

    fn parse(&self, payload: &Payload) -> Result<Fact, ParseError> {
        let root = payload.object()?;
        let event_type = root.str_of("eventType").ok_or_else(|| ParseError::missing("eventType", "Sonarr webhook"))?;
        if let Some(event) = arr::media_free_event(&event_type, root) {
            return Ok(Fact::Sonarr(event));
        }
        let known = matches!(
            event_type.as_str(),
            "Grab"
                | "Download"
                | "SeriesAdd"
                | "SeriesDelete"
                | "EpisodeFileDelete"
                | "Rename"
                | "ManualInteractionRequired"
        );
        if !known {
            return Ok(Fact::Sonarr(ArrEvent::Other { event_type }));
        }
        let context = format!("Sonarr {event_type}");
        let media = series(root, &context)?;
        let episodes = episodes(root);
        let event = match event_type.as_str() {
            "Grab" => {
                if episodes.is_empty() {
                    return Err(ParseError::missing("episodes", &context));
                }
                ArrEvent::Grab {
                    media,
                    episodes,
                    release: arr::release(root.obj("release")),
                    download_id: arr::download_id(root),
                    download_client: root.str_of("downloadClient"),
                }
            }
            "Download" if root.contains_key("episodeFiles") || root.contains_key("fileCount") => {
                ArrEvent::ImportComplete {
                    media,
                    episodes,
                    files: root
                        .array_of("episodeFiles")
                        .iter()
                        .filter_map(Value::as_object)
                        .filter_map(arr::file)
                        .collect(),
                    download_id: arr::download_id(root),
                    source_path: root.str_of("sourcePath").map(|p| shared::paths::normalize(&p)),
                    destination_path: root.str_of("destinationPath").map(|p| shared::paths::normalize(&p)),
                }
            }
            "Download" => {
                let mut file = root
                    .obj("episodeFile")
                    .and_then(arr::file)
                    .ok_or_else(|| ParseError::missing("episodeFile.path", &context))?;
                if !episodes.is_empty() {
                    file.episodes = episodes.clone();
                }
                ArrEvent::Download {
                    media,
                    episodes,
                    file,
                    is_upgrade: root.bool_of("isUpgrade").unwrap_or(false),
                    download_id: arr::download_id(root),
                    deleted_files: arr::deleted_files(root),
                    release: root.obj("release").map(|r| arr::release(Some(r))),
                }
            }
            "SeriesAdd" => ArrEvent::MediaAdded { media, add_method: None },
            "SeriesDelete" => {
                ArrEvent::MediaDelete { media, deleted_files: root.bool_of("deletedFiles").unwrap_or(false) }
            }
            "EpisodeFileDelete" => ArrEvent::FileDelete {
                media,
                episodes,
                file: root.obj("episodeFile").and_then(arr::file),
                reason: root.str_of("deleteReason"),
            },
            "Rename" => ArrEvent::Rename { media, files: arr::renamed(root.array_of("renamedEpisodeFiles")) },
            _ => ArrEvent::ManualInteractionRequired {
                media,
                episodes,
                download_id: arr::download_id(root),
                title: root.obj("downloadInfo").and_then(|d| d.str_of("title")),
                status: root.str_of("downloadStatus"),
                messages: arr::status_messages(root),
            },
        };
        Ok(Fact::Sonarr(event))
    }
}

fn series(root: &Map<'_>, context: &str) -> Result<ArrMedia, ParseError> {
    let series = root.obj("series").ok_or_else(|| ParseError::missing("series", context))?;
    let tvdb_id = series.id_of("tvdbId").map(TvdbId);
    let tmdb_id = series.id_of("tmdbId").map(TmdbId);
    if tvdb_id.is_none() && tmdb_id.is_none() {
        return Err(ParseError::missing("series.tvdbId", context));
    }
    Ok(ArrMedia {
        media_type: MediaType::Tv,
        arr_id: series.id_of("id").map(ArrId),
        title: series.str_of("title").ok_or_else(|| ParseError::missing("series.title", context))?,
        year: series.u64_of("year").and_then(|y| i32::try_from(y).ok()).filter(|y| *y > 0),
        tmdb_id,
        tvdb_id,
        imdb_id: series.str_of("imdbId"),
        anime: series.str_of("type").is_some_and(|t| t.eq_ignore_ascii_case("anime")),
        path: series.str_of("path").map(|p| shared::paths::normalize(&p)),
        poster_url: arr::poster(series),
        tags: arr::tags(series),
        is_4k: false,
    })
}

fn episodes(root: &Map<'_>) -> Vec<EpisodeRef> {
    let mut eps: Vec<EpisodeRef> = root
        .array_of("episodes")
        .iter()
        .filter_map(Value::as_object)
        .filter_map(|e| {
            let season = u32::try_from(e.u64_of("seasonNumber")?).ok()?;
            let episode = u32::try_from(e.u64_of("episodeNumber")?).ok()?;
            Some(EpisodeRef { season, episode })
        })
        .collect();
    eps.sort_unstable();
    eps.dedup();
    eps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::test_support::parse_fixture;

    fn parse(path: &str) -> ArrEvent {
        match parse_fixture(Source::Sonarr, path).unwrap() {
            Fact::Sonarr(e) => e,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn season_pack_grab_lists_all_twelve_episodes_of_an_anime() {
        let ArrEvent::Grab { media, episodes, release, download_id, .. } =
            parse("sonarr/webhook_grab_dan_da_dan_s01_season_pack.json")
        else {
            panic!()
        };
        assert!(media.anime);
        assert_eq!(media.tvdb_id, Some(TvdbId(432832)));
        assert_eq!(episodes.len(), 12);
        assert_eq!(episodes[0], EpisodeRef { season: 1, episode: 1 });
        assert_eq!(release.quality.as_deref(), Some("WEBDL-1080p"));
        assert_eq!(download_id.unwrap().key(), "c0ffee4d2a9b8c7d6e5f40312a1b0c9d8e7f6a5b");
    }

    #[test]
    fn per_file_download_and_import_complete_are_told_apart() {
        let ArrEvent::Download { file, episodes, .. } = parse("sonarr/webhook_download_dan_da_dan_s01e01.json") else {
            panic!("per-file import")
        };
        assert_eq!(episodes, vec![EpisodeRef { season: 1, episode: 1 }]);
        assert_eq!(file.episodes, episodes);
        let ArrEvent::ImportComplete { files, episodes, .. } =
            parse("sonarr/webhook_download_import_complete_dan_da_dan_s01.json")
        else {
            panic!("import complete")
        };
        assert_eq!(files.len(), 12);
        assert_eq!(episodes.len(), 12);
        assert_eq!(files[1].episodes, vec![EpisodeRef { season: 1, episode: 2 }]);
    }

    #[test]
    fn every_sonarr_fixture_parses_to_its_event() {
        let cases = [
            ("sonarr/webhook_test.json", "test"),
            ("sonarr/webhook_health.json", "health"),
            ("sonarr/webhook_health_restored.json", "health_restored"),
            ("sonarr/webhook_application_update.json", "application_update"),
            ("sonarr/webhook_series_add_dan_da_dan.json", "series_add"),
            ("sonarr/webhook_series_delete_severance.json", "series_delete"),
            ("sonarr/webhook_episode_file_delete_dan_da_dan_s01e02.json", "episode_file_delete"),
            ("sonarr/webhook_rename_dan_da_dan.json", "rename"),
            ("sonarr/webhook_manual_interaction_required_severance_s02e03.json", "manual_interaction_required"),
            ("sonarr/webhook_grab_severance_s02e01.json", "grab"),
            ("sonarr/webhook_grab_severance_s02e02.json", "grab"),
            ("sonarr/webhook_download_severance_s02e01.json", "download"),
        ];
        for (path, name) in cases {
            let fact = parse_fixture(Source::Sonarr, path).unwrap();
            assert_eq!(fact.event_name(), name, "{path}");
        }
    }

    #[test]
    fn sonarr_v3_grab_without_v4_fields_parses() {
        // v3: no instanceName, applicationUrl, tmdbId, year; episodes without seriesId/tvdbId.
        let body = br#"{"eventType":"Grab","series":{"id":3,"title":"Old Show","path":"/tv/Old Show","tvdbId":81189,"type":"standard"},
            "episodes":[{"id":1,"episodeNumber":5,"seasonNumber":2,"title":"x"}],
            "release":{"quality":"HDTV-720p","qualityVersion":1,"size":123},"downloadClient":"qBit","downloadId":"ABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCD"}"#;
        let payload = crate::payload::decode(None, body).unwrap();
        let Fact::Sonarr(ArrEvent::Grab { media, episodes, .. }) = Sonarr.parse(&payload).unwrap() else { panic!() };
        assert_eq!(media.tvdb_id, Some(TvdbId(81189)));
        assert_eq!(media.year, None);
        assert_eq!(episodes, vec![EpisodeRef { season: 2, episode: 5 }]);
    }
}
