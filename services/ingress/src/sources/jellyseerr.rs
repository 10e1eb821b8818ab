//! Jellyseerr/Overseerr webhook (the default template). Every value arrives as a string,
//! missing ones as `""`; user-edited templates may drop keys, so everything but
//! `notification_type` is optional, and media notifications must name their media.

use shared::events::jellyseerr::{Issue, Notification, RequestEvent};
use shared::events::{Fact, MediaType};
use shared::ids::{JellyseerrRequestId, TmdbId, TvdbId};
use shared::subjects::Source;

use super::{Adapter, ObjExt, ParseError, split_title_year};
use crate::payload::{Map, Payload, Value};

pub struct Jellyseerr;

impl Adapter for Jellyseerr {
    fn source(&self) -> Source {
        Source::Jellyseerr
    }

    fn content_types(&self) -> &'static [&'static str] {
        &["application/json", "text/plain"]
    }

    fn parse(&self, payload: &Payload) -> Result<Fact, ParseError> {
        let root = payload.object()?;
        let notification_type = root
            .str_of("notification_type")
            .ok_or_else(|| ParseError::missing("notification_type", "Jellyseerr webhook"))?;
        let notification = Notification::parse(&notification_type);
        let media = root.obj("media");
        let request = root.obj("request");
        let (title, year) = match root.str_of("subject") {
            Some(s) => {
                let (t, y) = split_title_year(&s);
                (Some(t), y)
            }
            None => (None, None),
        };
        let event = root.str_of("event");
        let extra = root.array_of("extra");
        let mut parsed = RequestEvent {
            notification,
            notification_type: notification_type.clone(),
            is_4k: event.as_deref().is_some_and(|e| e.contains("4K")),
            event,
            media_type: media.and_then(|m| m.str_of("media_type")).and_then(|t| MediaType::parse(&t)),
            tmdb_id: media.and_then(|m| m.id_of("tmdbId").map(TmdbId)),
            tvdb_id: media.and_then(|m| m.id_of("tvdbId").map(TvdbId)),
            request_id: request.and_then(|r| r.id_of("request_id").map(JellyseerrRequestId)),
            requested_by: request.and_then(|r| r.str_of("requestedBy_username")),
            requested_by_email: request.and_then(|r| r.str_of("requestedBy_email")),
            title,
            year,
            poster_url: root.str_of("image"),
            requested_seasons: extra_value(extra, "Requested Seasons").map(|v| parse_seasons(&v)).unwrap_or_default(),
            media_status: media.and_then(|m| m.str_of("status")),
            message: root.str_of("message"),
            issue: root.obj("issue").map(|i| parse_issue(i, extra)),
        };
        if is_media_notification(notification) {
            if parsed.tmdb_id.is_none() && parsed.tvdb_id.is_none() {
                return Err(ParseError::new(format!(
                    "{notification_type} without media.tmdbId or media.tvdbId: keep {{{{media}}}} in the webhook template"
                )));
            }
            if parsed.media_type.is_none() {
                // Older templates lack media_type; a TVDB id means a series.
                parsed.media_type = Some(if parsed.tvdb_id.is_some() { MediaType::Tv } else { MediaType::Movie });
            }
        }
        Ok(Fact::Jellyseerr(parsed))
    }
}

fn is_media_notification(n: Notification) -> bool {
    matches!(
        n,
        Notification::MediaPending
            | Notification::MediaApproved
            | Notification::MediaAutoApproved
            | Notification::MediaAvailable
            | Notification::MediaFailed
            | Notification::MediaDeclined
    )
}

fn extra_value(extra: &[Value<'_>], name: &str) -> Option<String> {
    extra.iter().filter_map(Value::as_object).find_map(|e| {
        let n = e.str_of("name")?;
        n.eq_ignore_ascii_case(name).then(|| e.str_of("value")).flatten()
    })
}

/// "1, 2, 3" → [1, 2, 3]; also tolerates "1-3" and stray text.
fn parse_seasons(s: &str) -> Vec<u32> {
    let mut seasons = Vec::new();
    for part in s.split([',', ' ']).map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-')
            && let (Ok(a), Ok(b)) = (a.trim().parse::<u32>(), b.trim().parse::<u32>())
            && a <= b
            && b - a < 100
        {
            seasons.extend(a..=b);
        } else if let Ok(n) = part.parse() {
            seasons.push(n);
        }
    }
    seasons.sort_unstable();
    seasons.dedup();
    seasons
}

fn parse_issue(issue: &Map<'_>, extra: &[Value<'_>]) -> Issue {
    Issue {
        id: issue.u64_of("issue_id"),
        issue_type: issue.str_of("issue_type"),
        status: issue.str_of("issue_status"),
        reported_by: issue.str_of("reportedBy_username"),
        affected_season: extra_value(extra, "Affected Season").and_then(|v| v.parse().ok()),
        affected_episode: extra_value(extra, "Affected Episode").and_then(|v| v.parse().ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::test_support::parse_fixture;

    fn parse(path: &str) -> RequestEvent {
        match parse_fixture(Source::Jellyseerr, path).unwrap() {
            Fact::Jellyseerr(e) => e,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn pending_movie_request_carries_ids_user_and_title() {
        let e = parse("jellyseerr/webhook_media_pending_movie_the_batman_req42.json");
        assert_eq!(e.notification, Notification::MediaPending);
        assert_eq!(e.media_type, Some(MediaType::Movie));
        assert_eq!(e.tmdb_id, Some(TmdbId(414906)));
        assert_eq!(e.tvdb_id, None);
        assert_eq!(e.request_id, Some(JellyseerrRequestId(42)));
        assert_eq!(e.requested_by.as_deref(), Some("alice"));
        assert_eq!(e.title.as_deref(), Some("The Batman"));
        assert_eq!(e.year, Some(2022));
        assert!(e.poster_url.unwrap().starts_with("https://image.tmdb.org/"));
        assert!(!e.is_4k);
    }

    #[test]
    fn series_request_lists_requested_seasons() {
        let e = parse("jellyseerr/webhook_media_approved_tv_severance_req44.json");
        assert_eq!(e.media_type, Some(MediaType::Tv));
        assert_eq!(e.tvdb_id, Some(TvdbId(371980)));
        assert_eq!(e.requested_seasons, vec![2]);
    }

    #[test]
    fn test_notification_has_no_media_and_is_a_test() {
        let fact = parse_fixture(Source::Jellyseerr, "jellyseerr/webhook_test_notification.json").unwrap();
        assert!(fact.is_test());
    }

    #[test]
    fn issues_keep_affected_episode() {
        let e = parse("jellyseerr/webhook_issue_created_tv_dan_da_dan.json");
        let issue = e.issue.unwrap();
        assert_eq!((issue.affected_season, issue.affected_episode), (Some(1), Some(2)));
        assert_eq!(issue.reported_by.as_deref(), Some("bob"));
    }

    #[test]
    fn season_lists_are_read_leniently() {
        assert_eq!(parse_seasons("1, 2, 3"), vec![1, 2, 3]);
        assert_eq!(parse_seasons("3,1"), vec![1, 3]);
        assert_eq!(parse_seasons("1-3, 5"), vec![1, 2, 3, 5]);
        assert_eq!(parse_seasons("Season one"), Vec::<u32>::new());
    }

    #[test]
    fn media_notification_without_ids_is_rejected_with_a_reason() {
        let payload = crate::payload::decode(
            Some("application/json"),
            br#"{"notification_type":"MEDIA_PENDING","media":{"media_type":"movie","tmdbId":""}}"#,
        )
        .unwrap();
        let err = Jellyseerr.parse(&payload).unwrap_err();
        assert!(err.to_string().contains("tmdbId"), "{err}");
    }

    #[test]
    fn missing_notification_type_is_rejected() {
        let payload = crate::payload::decode(Some("application/json"), br#"{"subject":"x"}"#).unwrap();
        assert!(Jellyseerr.parse(&payload).unwrap_err().to_string().contains("notification_type"));
    }
}
