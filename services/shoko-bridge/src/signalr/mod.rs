//! A small receive-only ASP.NET Core SignalR client: negotiate, WebSocket, JSON hub protocol,
//! keep-alive pings. Reconnecting is the caller's loop; see `docs/shoko-signalr.md` for why
//! this exists instead of the `signalrs-client` crate.

mod connect;
mod connection;
pub mod protocol;

use std::time::Duration;

use reqwest::Url;
use serde_json::Value;
use shared::settings::Secret;

pub use connect::HubClient;
pub(crate) use connect::check_status;
pub use connection::Connection;

/// Where a hub is and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct HubEndpoint {
    /// The server's base URL (`http(s)://host:port[/prefix]`).
    pub base: Url,
    /// The hub's path below the base, e.g. `signalr/aggregate`.
    pub hub_path: String,
    /// Query parameters of the hub URL, e.g. `feeds=shoko`.
    pub query: Vec<(String, String)>,
    /// Sent as the `apikey` header and query parameter (Shoko's API-key scheme).
    pub api_key: Option<Secret>,
}

/// Timings of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub ping_interval: Duration,
    pub server_timeout: Duration,
    pub connect_timeout: Duration,
}

/// A server-to-client call: `target` and its JSON `arguments` array, as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub target: String,
    pub arguments: Value,
}

/// Why a connection could not be made or was lost. Texts never carry the API key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HubError {
    #[error("Shoko refused the API key (HTTP {status} on {step}): check SHOKO_API_KEY")]
    Unauthorized { step: &'static str, status: u16 },
    #[error("{step} answered HTTP {status}")]
    Http { step: &'static str, status: u16 },
    #[error("{step} failed: {message}")]
    Transport { step: &'static str, message: String },
    #[error("negotiate: {0}")]
    Negotiate(String),
    #[error("{0}")]
    Protocol(#[from] protocol::ProtocolError),
    #[error("{step} took longer than {after:?}")]
    Timeout { step: &'static str, after: Duration },
    #[error("the hub closed the connection: {}", .error.as_deref().unwrap_or("no reason given"))]
    ClosedByServer { error: Option<String> },
    #[error("the connection ended: {0}")]
    Ended(String),
    #[error("nothing received from the hub for {0:?}: connection presumed dead")]
    Silent(Duration),
    #[error("{0} Shoko events wait for NATS: the bridge leaves the hub until they are stored, then catches up")]
    Backlog(usize),
}

impl HubError {
    /// True when retrying cannot help until the operator fixes the key.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Self::Unauthorized { .. })
    }
}

/// Removes the API key from a text that may quote a URL (a transport error, say).
pub(crate) fn redact(text: impl Into<String>, key: Option<&Secret>) -> String {
    let mut text = text.into();
    if let Some(key) = key.map(Secret::expose).filter(|k| !k.is_empty()) {
        let encoded: String = form_urlencoded::byte_serialize(key.as_bytes()).collect();
        text = text.replace(key, "[redacted]").replace(&encoded, "[redacted]");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_the_key_plain_and_url_encoded() {
        let key = Secret::new("a b+c");
        let text = "error for url (http://shoko/x?apikey=a+b%2Bc) with a b+c";
        let out = redact(text, Some(&key));
        assert!(!out.contains("a b+c") && !out.contains("a+b%2Bc"), "{out}");
        assert_eq!(redact("plain", None), "plain");
    }
}
