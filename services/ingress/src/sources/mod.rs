//! One adapter per source, behind one trait, dispatched from one registry: adding a source
//! means adding a file here and a line in [`ADAPTERS`].

mod arr;
mod jellyfin;
mod jellyseerr;
mod qbittorrent;
mod radarr;
mod sonarr;

use serde_json::{Map, Value};
use shared::events::Fact;
use shared::subjects::Source;

use crate::payload::Payload;

/// Why a body could not become a [`Fact`]; shown to the sender and kept on
/// `media.rejected.<source>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

impl ParseError {
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }

    pub fn missing(field: &str, context: &str) -> Self {
        Self(format!("{context}: missing or empty field `{field}`"))
    }
}

/// Parses one source's webhook bodies.
pub trait Adapter: Send + Sync {
    fn source(&self) -> Source;
    /// Content types this source sends (checked before parsing; `*` accepts any).
    fn content_types(&self) -> &'static [&'static str];
    fn parse(&self, payload: &Payload) -> Result<Fact, ParseError>;
}

/// Every webhook source. Shoko has no webhooks: the shoko-bridge reads its SignalR hub.
pub static ADAPTERS: &[&dyn Adapter] =
    &[&jellyseerr::Jellyseerr, &radarr::Radarr, &sonarr::Sonarr, &qbittorrent::Qbittorrent, &jellyfin::Jellyfin];

pub fn adapter(source: Source) -> Option<&'static dyn Adapter> {
    ADAPTERS.iter().copied().find(|a| a.source() == source)
}

/// Small accessors over a JSON object, shared by the adapters.
pub(crate) trait ObjExt {
    fn obj(&self, key: &str) -> Option<&Map<String, Value>>;
    fn str_of(&self, key: &str) -> Option<String>;
    fn u64_of(&self, key: &str) -> Option<u64>;
    fn bool_of(&self, key: &str) -> Option<bool>;
    fn array_of(&self, key: &str) -> &[Value];
}

impl ObjExt for Map<String, Value> {
    fn obj(&self, key: &str) -> Option<&Map<String, Value>> {
        self.get(key).and_then(Value::as_object)
    }

    fn str_of(&self, key: &str) -> Option<String> {
        shared::ids::lenient_string(self.get(key))
    }

    fn u64_of(&self, key: &str) -> Option<u64> {
        shared::ids::lenient_u64(self.get(key))
    }

    fn bool_of(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn array_of(&self, key: &str) -> &[Value] {
        self.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Splits "Title (2022)" into the title and the year.
pub(crate) fn split_title_year(subject: &str) -> (String, Option<i32>) {
    let s = subject.trim();
    if let Some(open) = s.rfind(" (")
        && let Some(inner) = s[open + 2..].strip_suffix(')')
        && inner.len() == 4
        && let Ok(year) = inner.parse::<i32>()
    {
        return (s[..open].trim().to_owned(), Some(year));
    }
    (s.to_owned(), None)
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// Reads a fixture from `tests/fixtures` (a copy of the shared development set).
    pub fn fixture(path: &str) -> Vec<u8> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/");
        std::fs::read(format!("{dir}{path}")).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
    }

    pub fn parse_fixture(source: Source, path: &str) -> Result<Fact, ParseError> {
        let body = fixture(path);
        let payload = crate::payload::decode(Some("application/json"), &body)?;
        adapter(source).unwrap().parse(&payload)
    }

    #[test]
    fn titles_lose_their_year() {
        assert_eq!(split_title_year("The Batman (2022)"), ("The Batman".into(), Some(2022)));
        assert_eq!(split_title_year("Dune: Part Two (2024)"), ("Dune: Part Two".into(), Some(2024)));
        assert_eq!(split_title_year("Test Notification"), ("Test Notification".into(), None));
        assert_eq!(split_title_year("Movie (Extended)"), ("Movie (Extended)".into(), None));
    }
}
