//! Turning a webhook body into JSON, whatever the sender chose to call it.
//!
//! Sonarr, Radarr and Jellyseerr send `application/json`. The Jellyfin webhook plugin sends
//! `text/plain` unless the user adds a header, and its templates may leave raw newlines inside
//! strings. qBittorrent's run-on-finish command sends whatever curl is told: a form, or JSON
//! labelled as a form, sometimes still wrapped in the single quotes of a shell that was not
//! there. All of those decode here into one [`Payload`].

use serde::Deserialize;

use crate::sources::ParseError;

/// A webhook body's JSON: a tree whose strings borrow from the body where they can. The
/// adapters read a few fields of bodies of several kilobytes; building `serde_json`'s tree
/// (a string and a map node allocated for every field, all dropped a moment later) was the
/// largest part of the cost of accepting a webhook.
pub use serde_json_borrow::Value;

/// A JSON object, its fields in their order. A key given twice reads as its first value
/// (`serde_json`'s map kept the last).
pub type Map<'a> = serde_json_borrow::ObjectAsVec<'a>;

/// A decoded webhook body.
#[derive(Debug, Clone)]
pub struct Payload<'a> {
    /// The body as JSON (a form becomes an object of strings).
    pub value: Value<'a>,
    /// The body's text, when it is the JSON `value` was read from (not a form, nor JSON
    /// repaired first): kept as it is, it need not be written out again.
    pub json: Option<&'a str>,
}

impl<'a> Payload<'a> {
    /// The body's top-level object, or an error naming what was there instead.
    pub fn object(&self) -> Result<&Map<'a>, ParseError> {
        self.value
            .as_object()
            .ok_or_else(|| ParseError::new(format!("expected a JSON object, got {}", kind_of(&self.value))))
    }
}

/// Decodes `bytes` according to `content_type` and what the body looks like.
pub fn decode<'a>(content_type: Option<&str>, bytes: &'a [u8]) -> Result<Payload<'a>, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ParseError::new(format!("body is not valid UTF-8 (invalid byte at offset {})", e.valid_up_to()))
    })?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ParseError::new("empty body"));
    }
    let mime =
        content_type.and_then(|ct| ct.split(';').next()).map(|m| m.trim().to_ascii_lowercase()).unwrap_or_default();
    let unquoted = strip_shell_quotes(trimmed);
    let looks_json = unquoted.starts_with('{') || unquoted.starts_with('[');
    if mime == "application/x-www-form-urlencoded" && !looks_json {
        return Ok(Payload { value: decode_form(trimmed)?, json: None });
    }
    if looks_json || mime.ends_with("json") {
        return parse_json(unquoted).map(|(value, verbatim)| Payload { value, json: verbatim.then_some(unquoted) });
    }
    if trimmed.contains('=') && !trimmed.contains(char::is_whitespace) {
        return Ok(Payload { value: decode_form(trimmed)?, json: None });
    }
    Err(ParseError::new(format!(
        "body is neither JSON nor a form ({} bytes of {})",
        bytes.len(),
        if mime.is_empty() { "unlabelled content" } else { &mime }
    )))
}

/// `'{"hash":"…"}'`: a shell-quoted JSON body delivered with its quotes (qBittorrent runs the
/// command without a shell).
fn strip_shell_quotes(s: &str) -> &str {
    s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')).map(str::trim).unwrap_or(s)
}

/// The JSON, and whether it was read from `text` as it is.
fn parse_json(text: &str) -> Result<(Value<'_>, bool), ParseError> {
    match serde_json::from_str(text) {
        Ok(v) => Ok((v, true)),
        Err(first) => {
            // Handlebars templates render raw newlines and tabs inside strings; JSON forbids
            // them. Retry with control characters turned into spaces before giving up.
            if text.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
                || !text.contains(['\n', '\r', '\t'])
            {
                return Err(json_error(&first));
            }
            let repaired: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
            let tree = serde_json::from_str::<serde_json::Value>(&repaired).map_err(|_| json_error(&first))?;
            Ok((owned(tree)?, false))
        }
    }
}

fn json_error(e: &serde_json::Error) -> ParseError {
    ParseError::new(format!("invalid JSON: {e}"))
}

fn decode_form(text: &str) -> Result<Value<'static>, ParseError> {
    let map = form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
        .collect();
    owned(serde_json::Value::Object(map))
}

/// A tree of its own (of a form, or of JSON repaired first: rare, small bodies).
fn owned(tree: serde_json::Value) -> Result<Value<'static>, ParseError> {
    Value::deserialize(tree).map_err(|e| json_error(&e))
}

pub fn kind_of(v: &Value<'_>) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::Str(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_labelled_as_text_is_json() {
        let p = decode(Some("text/plain; charset=utf-8"), b" {\"a\": 1}\n").unwrap();
        assert_eq!(p.value.get("a").as_u64(), Some(1));
        assert_eq!(p.json, Some("{\"a\": 1}"), "its text is kept, trimmed");
    }

    #[test]
    fn forms_become_objects_of_strings() {
        let p = decode(Some("application/x-www-form-urlencoded"), b"name=The+Batman&size=15").unwrap();
        assert_eq!(p.value.get("name").as_str(), Some("The Batman"));
        assert_eq!(p.value.get("size").as_str(), Some("15"));
        assert_eq!(p.json, None);
    }

    #[test]
    fn json_sent_as_a_form_and_shell_quotes_are_tolerated() {
        let body = br#"'{"hash":"abc","name":"x"}'"#;
        let p = decode(Some("application/x-www-form-urlencoded"), body).unwrap();
        assert_eq!(p.value.get("hash").as_str(), Some("abc"));
        assert_eq!(p.json, Some(r#"{"hash":"abc","name":"x"}"#), "without the quotes");
    }

    #[test]
    fn raw_newlines_inside_strings_are_repaired() {
        let body = "{\"Overview\": \"line one\nline two\", \"n\": 1}";
        let p = decode(Some("text/plain"), body.as_bytes()).unwrap();
        assert_eq!(p.value.get("n").as_u64(), Some(1));
        assert_eq!(p.json, None, "the text is not the JSON read");
    }

    #[test]
    fn bad_utf8_empty_and_garbage_are_named() {
        let e = decode(Some("application/json"), &[b'{', 0xff, b'}']).unwrap_err();
        assert!(e.to_string().contains("UTF-8"), "{e}");
        assert!(decode(None, b"   ").unwrap_err().to_string().contains("empty"));
        let e = decode(Some("application/json"), b"{\"a\":").unwrap_err();
        assert!(e.to_string().contains("invalid JSON"), "{e}");
        assert!(decode(Some("text/plain"), b"hello there").is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let body = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(decode(Some("application/json"), body.as_bytes()).is_err());
    }
}
