//! One adapter per source, behind one trait, dispatched from one registry: adding a source
//! means adding a file here and a line in [`ADAPTERS`].

mod arr;
mod jellyfin;
mod jellyseerr;
mod qbittorrent;
mod radarr;
mod sonarr;

use shared::events::Fact;
use shared::subjects::Source;

use crate::payload::{Map, Payload, Value};

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

/// Small accessors over a JSON object, shared by the adapters. Numbers and strings are read
/// leniently: senders write ids as either, and blanks mean "none".
pub(crate) trait ObjExt<'a> {
    fn obj(&self, key: &str) -> Option<&Map<'a>>;
    /// A non-empty string, trimmed; a number is rendered.
    fn str_of(&self, key: &str) -> Option<String>;
    /// A number, or a string holding one.
    fn u64_of(&self, key: &str) -> Option<u64>;
    /// An id: a number or numeric string, `0` meaning none (test payloads use it).
    fn id_of(&self, key: &str) -> Option<u64>;
    fn bool_of(&self, key: &str) -> Option<bool>;
    fn array_of(&self, key: &str) -> &[Value<'a>];
}

impl<'a> ObjExt<'a> for Map<'a> {
    fn obj(&self, key: &str) -> Option<&Map<'a>> {
        self.get(key).and_then(Value::as_object)
    }

    fn str_of(&self, key: &str) -> Option<String> {
        lenient_string(self.get(key)?)
    }

    fn u64_of(&self, key: &str) -> Option<u64> {
        match self.get(key)? {
            Value::Number(n) => n.as_u64(),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn id_of(&self, key: &str) -> Option<u64> {
        self.u64_of(key).filter(|n| *n != 0)
    }

    fn bool_of(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn array_of(&self, key: &str) -> &[Value<'a>] {
        self.get(key).and_then(Value::as_array).unwrap_or(&[])
    }
}

/// A non-empty string, trimmed; a number is rendered.
pub(crate) fn lenient_string(value: &Value<'_>) -> Option<String> {
    match value {
        Value::Str(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
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
    fn numbers_and_strings_are_read_leniently() {
        let body = br#"{"num": 414906, "text": " 414906 ", "blank": "", "zero": 0, "negative": -4, "huge": 1e300,
            "null": null, "name": "  The Batman ", "flag": "true", "esc\u0061ped": "\u00e9t\u00e9"}"#;
        let payload = crate::payload::decode(Some("application/json"), body).unwrap();
        let root = payload.object().unwrap();
        assert_eq!(root.id_of("num"), Some(414906));
        assert_eq!(root.id_of("text"), Some(414906), "Jellyseerr writes ids as strings");
        for none in ["blank", "zero", "negative", "huge", "null", "missing", "name"] {
            assert_eq!(root.id_of(none), None, "{none}");
        }
        assert_eq!(root.u64_of("zero"), Some(0));
        assert_eq!(root.str_of("name").as_deref(), Some("The Batman"));
        assert_eq!(root.str_of("num").as_deref(), Some("414906"));
        assert_eq!(root.str_of("blank"), None);
        assert_eq!(root.bool_of("flag"), Some(true));
        assert_eq!(root.str_of("escaped").as_deref(), Some("été"), "escaped keys and values are read too");
    }

    #[test]
    fn titles_lose_their_year() {
        assert_eq!(split_title_year("The Batman (2022)"), ("The Batman".into(), Some(2022)));
        assert_eq!(split_title_year("Dune: Part Two (2024)"), ("Dune: Part Two".into(), Some(2024)));
        assert_eq!(split_title_year("Test Notification"), ("Test Notification".into(), None));
        assert_eq!(split_title_year("Movie (Extended)"), ("Movie (Extended)".into(), None));
    }
}
