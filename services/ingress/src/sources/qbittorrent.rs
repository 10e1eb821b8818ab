//! qBittorrent's "Run external program on torrent finished", posting JSON
//! (`{"hash":"%I","name":"%N","path":"%F","size":"%Z"}`) or a form with the placeholder names
//! of the fixtures (`infohash_v1`, `torrent_id`, `content_path`…).

use shared::events::Fact;
use shared::events::qbittorrent::{Finished, FinishedVia, TorrentEvent};
use shared::ids::InfoHash;
use shared::subjects::Source;

use super::{Adapter, ObjExt, ParseError};
use crate::payload::{Map, Payload};

pub struct Qbittorrent;

impl Adapter for Qbittorrent {
    fn source(&self) -> Source {
        Source::Qbittorrent
    }

    fn content_types(&self) -> &'static [&'static str] {
        &["application/json", "application/x-www-form-urlencoded", "text/plain"]
    }

    fn parse(&self, payload: &Payload) -> Result<Fact, ParseError> {
        let root = payload.object()?;
        let hash = torrent_hash(root)?;
        let tags = root
            .str_of("tags")
            .map(|t| t.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        let path = |k: &str| root.str_of(k).filter(|p| p != "-").map(|p| shared::paths::normalize(&p));
        Ok(Fact::Qbittorrent(TorrentEvent::Finished(Finished {
            hash,
            name: root.str_of("name"),
            content_path: path("path").or_else(|| path("content_path")),
            save_path: path("save_path"),
            size: root.u64_of("size"),
            category: root.str_of("category"),
            tags,
            via: FinishedVia::Hook,
        })))
    }
}

/// `%K` (the id qBittorrent and the *arrs use, also for hybrid torrents) first, then `%I`.
fn torrent_hash(root: &Map<'_>) -> Result<InfoHash, ParseError> {
    let candidates = ["torrent_id", "hash", "infohash_v1", "infohash_v2"];
    let mut seen = None;
    for key in candidates {
        if let Some(v) = root.str_of(key).filter(|v| v != "-") {
            if let Some(h) = InfoHash::parse(&v) {
                return Ok(h);
            }
            seen.get_or_insert((key, v));
        }
    }
    Err(match seen {
        Some((key, v)) => ParseError::new(format!("`{key}` is not a torrent hash: {v:?}")),
        None => ParseError::new(
            "no torrent hash: send \"hash\":\"%I\" (or \"torrent_id\":\"%K\") from qBittorrent's run-on-finish command",
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::test_support::fixture;

    fn finished(content_type: &str, body: &[u8]) -> Result<Finished, ParseError> {
        let payload = crate::payload::decode(Some(content_type), body)?;
        match Qbittorrent.parse(&payload)? {
            Fact::Qbittorrent(TorrentEvent::Finished(f)) => Ok(f),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_documented_json_body_parses() {
        let body = br#"{"hash":"5E3F9A1C7B2D4E6F8091A2B3C4D5E6F708192A3B","name":"The.Batman","path":"/data/torrents/movies/The.Batman","size":"15789453312"}"#;
        let f = finished("application/json", body).unwrap();
        assert_eq!(f.hash.as_str(), "5e3f9a1c7b2d4e6f8091a2b3c4d5e6f708192a3b");
        assert_eq!(f.size, Some(15789453312));
        assert_eq!(f.via, FinishedVia::Hook);
    }

    #[test]
    fn the_fixture_form_body_parses() {
        let exchange: serde_json::Value =
            serde_json::from_slice(&fixture("qbittorrent/run_on_finished_dan_da_dan_pack.json")).unwrap();
        let body = exchange["http_request"]["body"].as_str().unwrap();
        let f = finished("application/x-www-form-urlencoded", body.as_bytes()).unwrap();
        assert_eq!(f.hash.as_str(), "c0ffee4d2a9b8c7d6e5f40312a1b0c9d8e7f6a5b");
        assert_eq!(f.category.as_deref(), Some("sonarr-anime"));
        assert!(f.content_path.unwrap().ends_with("(Dual-Audio)"));
    }

    #[test]
    fn a_missing_or_bad_hash_says_what_to_send() {
        let e = finished("application/json", br#"{"name":"x"}"#).unwrap_err().to_string();
        assert!(e.contains("%I"), "{e}");
        let e = finished("application/json", br#"{"hash":"%I"}"#).unwrap_err().to_string();
        assert!(e.contains("not a torrent hash"), "{e}");
    }
}
