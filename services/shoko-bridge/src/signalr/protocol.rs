//! The SignalR JSON hub protocol, as far as a receive-only client needs it: records ended by
//! 0x1E, the handshake, and the message types a server sends.
//!
//! A WebSocket message may hold several records (ASP.NET Core batches what it flushes
//! together, e.g. the handshake reply and the first event) and, in principle, a record may
//! span messages, so records are cut from a running buffer, never from one message alone.

use serde_json::Value;

/// The record separator that ends every JSON hub protocol message.
pub const RECORD_SEPARATOR: u8 = 0x1E;

/// What the client sends first on a new connection.
pub const HANDSHAKE_REQUEST: &str = "{\"protocol\":\"json\",\"version\":1}\u{1e}";

/// A keep-alive; the server resets its client timeout on any message, this is the cheapest.
pub const PING: &str = "{\"type\":6}\u{1e}";

/// Accumulates received bytes and hands out complete records.
#[derive(Debug, Default)]
pub struct RecordBuffer {
    pending: Vec<u8>,
}

impl RecordBuffer {
    /// Appends one WebSocket message and returns the records it completed, in order.
    /// Empty records (two separators in a row) are skipped.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(bytes);
        let Some(last) = self.pending.iter().rposition(|&b| b == RECORD_SEPARATOR) else {
            return Vec::new();
        };
        let rest = self.pending.split_off(last + 1);
        let complete = std::mem::replace(&mut self.pending, rest);
        complete.split(|&b| b == RECORD_SEPARATOR).filter(|r| !r.is_empty()).map(<[u8]>::to_vec).collect()
    }

    /// Bytes of a record not yet ended by a separator.
    pub fn incomplete_len(&self) -> usize {
        self.pending.len()
    }
}

/// A message from the server, by its `type`.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// Type 1: the server calls `target` on the client. `arguments` is the JSON array as sent.
    Invocation { target: String, arguments: Value },
    /// Type 6.
    Ping,
    /// Type 7: the server ends the connection, with its reason when it gives one.
    Close { error: Option<String>, allow_reconnect: bool },
    /// Any other type (completions, stream items, acks…): nothing a receive-only client needs.
    Other(i64),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    #[error("a hub message is not JSON: {0}")]
    NotJson(String),
    #[error("a hub message has no numeric `type`")]
    NoType,
    #[error("an invocation has no `target`")]
    NoTarget,
    #[error("the server refused the handshake: {0}")]
    HandshakeRefused(String),
}

/// Parses one record (without its separator).
pub fn parse_message(record: &[u8]) -> Result<ServerMessage, ProtocolError> {
    let value: Value = serde_json::from_slice(record).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
    let kind = value.get("type").and_then(Value::as_i64).ok_or(ProtocolError::NoType)?;
    Ok(match kind {
        1 => {
            let target = value.get("target").and_then(Value::as_str).ok_or(ProtocolError::NoTarget)?;
            // Absent arguments happen for parameterless calls; keep the shape an array.
            let arguments = value.get("arguments").cloned().unwrap_or_else(|| Value::Array(Vec::new()));
            ServerMessage::Invocation { target: target.to_owned(), arguments }
        }
        6 => ServerMessage::Ping,
        7 => ServerMessage::Close {
            error: value.get("error").and_then(Value::as_str).map(str::to_owned),
            allow_reconnect: value.get("allowReconnect").and_then(Value::as_bool).unwrap_or(false),
        },
        other => ServerMessage::Other(other),
    })
}

/// Checks the handshake reply (`{}` or `{"error": "..."}`).
pub fn parse_handshake_response(record: &[u8]) -> Result<(), ProtocolError> {
    let value: Value = serde_json::from_slice(record).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
    match value.get("error").and_then(Value::as_str) {
        Some(error) => Err(ProtocolError::HandshakeRefused(error.to_owned())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(records: Vec<Vec<u8>>) -> Vec<String> {
        records.into_iter().map(|r| String::from_utf8(r).unwrap()).collect()
    }

    #[test]
    fn one_message_may_carry_several_records() {
        let mut buf = RecordBuffer::default();
        let got = buf.push(b"{}\x1e{\"type\":6}\x1e{\"type\":1,\"target\":\"a\",\"arguments\":[]}\x1e");
        assert_eq!(texts(got), ["{}", "{\"type\":6}", "{\"type\":1,\"target\":\"a\",\"arguments\":[]}"]);
        assert_eq!(buf.incomplete_len(), 0);
    }

    #[test]
    fn a_record_split_across_messages_is_joined() {
        let mut buf = RecordBuffer::default();
        assert!(buf.push(b"{\"type\":1,\"tar").is_empty());
        assert_eq!(buf.incomplete_len(), 14);
        let got = buf.push(b"get\":\"x\"}\x1e{\"ty");
        assert_eq!(texts(got), ["{\"type\":1,\"target\":\"x\"}"]);
        assert_eq!(texts(buf.push(b"pe\":6}\x1e")), ["{\"type\":6}"]);
    }

    #[test]
    fn empty_records_are_skipped() {
        let mut buf = RecordBuffer::default();
        assert_eq!(texts(buf.push(b"\x1e\x1e{}\x1e")), ["{}"]);
    }

    #[test]
    fn separators_inside_strings_cannot_occur_because_json_escapes_them() {
        // JSON writers must escape control characters, so 0x1E never appears inside a record.
        let encoded = serde_json::to_string("a\u{1e}b").unwrap();
        assert!(!encoded.as_bytes().contains(&RECORD_SEPARATOR), "{encoded}");
    }

    #[test]
    fn invocations_pings_and_closes_are_recognized() {
        let inv = parse_message(br#"{"type":1,"target":"ShokoEvent:FileHashed","arguments":[{"FileID":1}]}"#);
        assert_eq!(
            inv.unwrap(),
            ServerMessage::Invocation {
                target: "ShokoEvent:FileHashed".into(),
                arguments: serde_json::json!([{"FileID": 1}])
            }
        );
        assert_eq!(parse_message(br#"{"type":6}"#).unwrap(), ServerMessage::Ping);
        assert_eq!(
            parse_message(br#"{"type":7,"error":"Server timeout elapsed","allowReconnect":true}"#).unwrap(),
            ServerMessage::Close { error: Some("Server timeout elapsed".into()), allow_reconnect: true }
        );
        assert_eq!(parse_message(br#"{"type":3,"invocationId":"1"}"#).unwrap(), ServerMessage::Other(3));
    }

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        assert!(matches!(parse_message(b"nope"), Err(ProtocolError::NotJson(_))));
        assert_eq!(parse_message(br#"{"target":"x"}"#), Err(ProtocolError::NoType));
        assert_eq!(parse_message(br#"{"type":1}"#), Err(ProtocolError::NoTarget));
    }

    #[test]
    fn a_handshake_error_is_reported() {
        assert!(parse_handshake_response(b"{}").is_ok());
        let refused = parse_handshake_response(br#"{"error":"Requested protocol 'json' is not available."}"#);
        assert_eq!(refused, Err(ProtocolError::HandshakeRefused("Requested protocol 'json' is not available.".into())));
    }
}
