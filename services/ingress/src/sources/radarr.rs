//! Radarr webhook (v4–v6).

use shared::events::arr::{ArrEvent, ArrMedia};
use shared::events::{Fact, MediaType};
use shared::ids::{ArrId, TmdbId};
use shared::subjects::Source;

use super::{Adapter, ObjExt, ParseError, arr};
use crate::payload::{Map, Payload};

pub struct Radarr;

impl Adapter for Radarr {
    fn source(&self) -> Source {
        Source::Radarr
    }

    fn content_types(&self) -> &'static [&'static str] {
        &["application/json"]
    }

    fn parse(&self, payload: &Payload) -> Result<Fact, ParseError> {
        let root = payload.object()?;
        let event_type = root.str_of("eventType").ok_or_else(|| ParseError::missing("eventType", "Radarr webhook"))?;
        if let Some(event) = arr::media_free_event(&event_type, root) {
            return Ok(Fact::Radarr(event));
        }
        let known = matches!(
            event_type.as_str(),
            "Grab"
                | "Download"
                | "MovieAdded"
                | "MovieDelete"
                | "MovieFileDelete"
                | "Rename"
                | "ManualInteractionRequired"
        );
        if !known {
            return Ok(Fact::Radarr(ArrEvent::Other { event_type }));
        }
        let context = format!("Radarr {event_type}");
        let media = movie(root, &context)?;
        let event = match event_type.as_str() {
            "Grab" => ArrEvent::Grab {
                media,
                episodes: vec![],
                release: arr::release(root.obj("release")),
                download_id: arr::download_id(root),
                download_client: root.str_of("downloadClient"),
            },
            "Download" => {
                let file = root
                    .obj("movieFile")
                    .and_then(arr::file)
                    .ok_or_else(|| ParseError::missing("movieFile.path", &context))?;
                ArrEvent::Download {
                    media,
                    episodes: vec![],
                    file,
                    is_upgrade: root.bool_of("isUpgrade").unwrap_or(false),
                    download_id: arr::download_id(root),
                    deleted_files: arr::deleted_files(root),
                    release: root.obj("release").map(|r| arr::release(Some(r))),
                }
            }
            "MovieAdded" => ArrEvent::MediaAdded { media, add_method: root.str_of("addMethod") },
            "MovieDelete" => {
                ArrEvent::MediaDelete { media, deleted_files: root.bool_of("deletedFiles").unwrap_or(false) }
            }
            "MovieFileDelete" => ArrEvent::FileDelete {
                media,
                episodes: vec![],
                file: root.obj("movieFile").and_then(arr::file),
                reason: root.str_of("deleteReason"),
            },
            "Rename" => ArrEvent::Rename { media, files: arr::renamed(root.array_of("renamedMovieFiles")) },
            _ => ArrEvent::ManualInteractionRequired {
                media,
                episodes: vec![],
                download_id: arr::download_id(root),
                title: root.obj("downloadInfo").and_then(|d| d.str_of("title")),
                status: root.str_of("downloadStatus"),
                messages: arr::status_messages(root),
            },
        };
        Ok(Fact::Radarr(event))
    }
}

fn movie(root: &Map<'_>, context: &str) -> Result<ArrMedia, ParseError> {
    let movie = root.obj("movie").ok_or_else(|| ParseError::missing("movie", context))?;
    let remote = root.obj("remoteMovie");
    let tmdb_id = movie
        .id_of("tmdbId")
        .map(TmdbId)
        .or_else(|| remote.and_then(|r| r.id_of("tmdbId").map(TmdbId)))
        .ok_or_else(|| ParseError::missing("movie.tmdbId", context))?;
    let tags = arr::tags(movie);
    Ok(ArrMedia {
        media_type: MediaType::Movie,
        arr_id: movie.id_of("id").map(ArrId),
        title: movie.str_of("title").ok_or_else(|| ParseError::missing("movie.title", context))?,
        year: movie.u64_of("year").and_then(|y| i32::try_from(y).ok()).filter(|y| *y > 0),
        tmdb_id: Some(tmdb_id),
        tvdb_id: None,
        imdb_id: movie.str_of("imdbId").or_else(|| remote.and_then(|r| r.str_of("imdbId"))),
        anime: tags.iter().any(|t| t.eq_ignore_ascii_case("anime")),
        path: movie.str_of("folderPath").map(|p| shared::paths::normalize(&p)),
        poster_url: arr::poster(movie),
        tags,
        is_4k: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::test_support::parse_fixture;
    use shared::ids::DownloadId;

    fn parse(path: &str) -> ArrEvent {
        match parse_fixture(Source::Radarr, path).unwrap() {
            Fact::Radarr(e) => e,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn grab_has_release_and_lower_cased_download_id() {
        let ArrEvent::Grab { media, release, download_id, .. } = parse("radarr/webhook_grab_the_batman.json") else {
            panic!("not a grab")
        };
        assert_eq!(media.tmdb_id, Some(TmdbId(414906)));
        assert_eq!(media.arr_id, Some(ArrId(7)));
        assert_eq!(media.year, Some(2022));
        assert!(!media.anime);
        assert_eq!(release.quality.as_deref(), Some("Bluray-1080p"));
        assert_eq!(release.indexer.as_deref(), Some("ExampleTracker (Prowlarr)"));
        assert_eq!(release.size, Some(15789453312));
        assert_eq!(download_id.unwrap(), DownloadId::parse("5e3f9a1c7b2d4e6f8091a2b3c4d5e6f708192a3b").unwrap());
        assert!(media.poster_url.unwrap().contains("74xTEgt7R36Fpooo50r9T25onhq"));
    }

    #[test]
    fn download_has_the_library_path() {
        let ArrEvent::Download { file, is_upgrade, .. } = parse("radarr/webhook_download_the_batman.json") else {
            panic!("not a download")
        };
        assert_eq!(file.path, "/data/media/movies/The Batman (2022)/The Batman (2022) [Bluray-1080p].mkv");
        assert!(!is_upgrade);
    }

    #[test]
    fn every_radarr_fixture_parses_to_its_event() {
        let cases = [
            ("radarr/webhook_test.json", "test"),
            ("radarr/webhook_health.json", "health"),
            ("radarr/webhook_manual_interaction_required_oppenheimer.json", "manual_interaction_required"),
            ("radarr/webhook_movie_added_the_batman.json", "movie_added"),
            ("radarr/webhook_movie_delete_the_batman.json", "movie_delete"),
            ("radarr/webhook_movie_file_delete_the_batman.json", "movie_file_delete"),
        ];
        for (path, name) in cases {
            let fact = parse_fixture(Source::Radarr, path).unwrap();
            assert_eq!(fact.event_name(), name, "{path}");
        }
    }

    #[test]
    fn manual_interaction_keeps_status_messages() {
        let ArrEvent::ManualInteractionRequired { messages, status, .. } =
            parse("radarr/webhook_manual_interaction_required_oppenheimer.json")
        else {
            panic!()
        };
        assert_eq!(status.as_deref(), Some("Warning"));
        assert!(messages[0].starts_with("No files found are eligible for import"));
    }

    #[test]
    fn unknown_event_types_are_kept_not_rejected() {
        let payload = crate::payload::decode(None, br#"{"eventType":"MovieTeleported"}"#).unwrap();
        let fact = Radarr.parse(&payload).unwrap();
        assert_eq!(fact.subject(), "media.radarr.movie_teleported");
    }

    #[test]
    fn grab_without_movie_is_rejected_naming_the_field() {
        let payload = crate::payload::decode(None, br#"{"eventType":"Grab"}"#).unwrap();
        let err = Radarr.parse(&payload).unwrap_err().to_string();
        assert_eq!(err, "Radarr Grab: missing or empty field `movie`");
    }
}
