//! Jellyfin webhook plugin: the Generic destination with the template from
//! `docs/setup/jellyfin.md` (snake_case keys) or "Send All Properties" (PascalCase keys,
//! `Provider_tmdb`…). Sent as `text/plain` unless configured; `{{Name}}` may be HTML-encoded.

use shared::events::Fact;
use shared::events::jellyfin::{JellyfinEvent, normalize_item_id};
use shared::subjects::Source;

use super::{Adapter, ObjExt, ParseError};
use crate::payload::Payload;

pub struct Jellyfin;

impl Adapter for Jellyfin {
    fn source(&self) -> Source {
        Source::Jellyfin
    }

    fn content_types(&self) -> &'static [&'static str] {
        &["application/json", "text/plain"]
    }

    fn parse(&self, payload: &Payload) -> Result<Fact, ParseError> {
        let root = payload.object()?;
        let get = |keys: &[&str]| keys.iter().find_map(|k| root.str_of(k));
        let text = |keys: &[&str]| get(keys).map(|s| html_escape::decode_html_entities(&s).into_owned());
        let number = |keys: &[&str]| get(keys).and_then(|s| s.parse::<u64>().ok()).filter(|n| *n > 0);
        let notification_type = get(&["NotificationType", "notification_type"])
            .ok_or_else(|| ParseError::missing("NotificationType", "Jellyfin webhook"))?;
        let raw_item_id = get(&["ItemId", "item_id"]);
        let item_id = raw_item_id.as_deref().and_then(normalize_item_id);
        if notification_type == "ItemAdded" && item_id.is_none() {
            return Err(match raw_item_id {
                Some(raw) => ParseError::new(format!("ItemAdded: `ItemId` is not a Jellyfin id: {raw:?}")),
                None => ParseError::missing("ItemId", "Jellyfin ItemAdded"),
            });
        }
        Ok(Fact::Jellyfin(JellyfinEvent {
            notification_type,
            item_id,
            item_type: get(&["ItemType", "item_type"]),
            name: text(&["Name", "name"]),
            year: number(&["Year", "year"]).and_then(|y| i32::try_from(y).ok()),
            series_name: text(&["SeriesName", "series_name"]),
            series_id: get(&["SeriesId", "series_id"]).as_deref().and_then(normalize_item_id),
            season: small(number(&["SeasonNumber", "season_number", "SeasonNumber00"])),
            episode: small(number(&["EpisodeNumber", "episode_number", "EpisodeNumber00"])),
            episode_end: small(number(&["EpisodeNumberEnd", "episode_number_end"])),
            tmdb_id: number(&["Provider_tmdb", "tmdb_id"]),
            tvdb_id: number(&["Provider_tvdb", "tvdb_id"]),
            imdb_id: get(&["Provider_imdb", "imdb_id"]),
            series_tmdb_id: None,
            series_tvdb_id: None,
            server_id: get(&["ServerId", "server_id"]),
            server_url: get(&["ServerUrl", "server_url"]).map(|u| u.trim_end_matches('/').to_owned()),
            path: get(&["Path", "path"]).map(|p| shared::paths::normalize(&p)),
        }))
    }
}

fn small(n: Option<u64>) -> Option<u32> {
    n.and_then(|n| u32::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::test_support::parse_fixture;

    fn parse(content_type: &str, body: &[u8]) -> Result<JellyfinEvent, ParseError> {
        let payload = crate::payload::decode(Some(content_type), body)?;
        match Jellyfin.parse(&payload)? {
            Fact::Jellyfin(e) => Ok(e),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn template_movie_item_has_tmdb_and_n_format_id() {
        let Fact::Jellyfin(e) = parse_fixture(Source::Jellyfin, "jellyfin/item_added_movie_the_batman.json").unwrap()
        else {
            panic!()
        };
        assert_eq!(e.item_id.as_deref(), Some("a1b2c3d4e5f6478899aabbccddeeff00"));
        assert_eq!(e.item_type.as_deref(), Some("Movie"));
        assert_eq!(e.tmdb_id, Some(414906));
        assert_eq!(e.server_url.as_deref(), Some("https://jellyfin.example.org"));
    }

    #[test]
    fn template_episode_has_series_id_and_numbers() {
        let Fact::Jellyfin(e) =
            parse_fixture(Source::Jellyfin, "jellyfin/item_added_episode_dan_da_dan_s01e01.json").unwrap()
        else {
            panic!()
        };
        assert_eq!((e.season, e.episode), (Some(1), Some(1)));
        assert_eq!(e.series_name.as_deref(), Some("DAN DA DAN"));
        assert_eq!(e.series_id.as_deref(), Some("d4da0d40517e4c0a9b1c2d3e4f5a6b7c"));
    }

    #[test]
    fn send_all_properties_text_plain_with_html_entities() {
        let body = br#"{"NotificationType":"ItemAdded","ItemId":"a1b2c3d4e5f6478899aabbccddeeff00","ItemType":"Movie",
            "Name":"Am&#233;lie","Year":2001,"Provider_tmdb":"194","ServerUrl":"http://jf:8096/"}"#;
        let e = parse("text/plain; charset=utf-8", body).unwrap();
        assert_eq!(e.name.as_deref(), Some("Amélie"));
        assert_eq!(e.tmdb_id, Some(194));
        assert_eq!(e.year, Some(2001));
        assert_eq!(e.server_url.as_deref(), Some("http://jf:8096"));
    }

    #[test]
    fn item_added_without_item_id_is_rejected() {
        let e = parse("text/plain", br#"{"NotificationType":"ItemAdded"}"#).unwrap_err();
        assert!(e.to_string().contains("ItemId"), "{e}");
        let e = parse("text/plain", br#"{"NotificationType":"ItemAdded","ItemId":"{{ItemId}}"}"#).unwrap_err();
        assert!(e.to_string().contains("not a Jellyfin id"), "{e}");
    }
}
