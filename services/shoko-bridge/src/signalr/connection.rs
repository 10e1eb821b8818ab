//! One open hub connection: hands out invocations in arrival order, sends a SignalR ping every
//! `ping_interval`, and gives up when the server falls silent or says goodbye.
//!
//! All state lives in the struct, so dropping a pending [`Connection::next_invocation`] (in a
//! `select!` with shutdown) loses nothing that was already received.

use std::collections::VecDeque;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::connect::close_reason;
use super::protocol::{self, PING, RecordBuffer, ServerMessage};
use super::{HubError, Invocation, Timings};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Connection {
    ws: Ws,
    buffer: RecordBuffer,
    ready: VecDeque<Vec<u8>>,
    ping: Interval,
    last_seen: Instant,
    timings: Timings,
}

impl Connection {
    pub(crate) fn new(ws: Ws, buffer: RecordBuffer, ready: VecDeque<Vec<u8>>, timings: Timings) -> Self {
        let now = Instant::now();
        // The handshake just went out, so the first ping is due one interval from now.
        let mut ping = tokio::time::interval_at(now + timings.ping_interval, timings.ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { ws, buffer, ready, ping, last_seen: now, timings }
    }

    /// The next server-to-client call. Pings and other message types are consumed on the way;
    /// a close message, the end of the stream or a silent server end the connection.
    pub async fn next_invocation(&mut self) -> Result<Invocation, HubError> {
        loop {
            while let Some(record) = self.ready.pop_front() {
                match protocol::parse_message(&record) {
                    Ok(ServerMessage::Invocation { target, arguments }) => {
                        return Ok(Invocation { target, arguments });
                    }
                    Ok(ServerMessage::Close { error, allow_reconnect }) => {
                        tracing::debug!(?error, allow_reconnect, "hub sent close");
                        return Err(HubError::ClosedByServer { error });
                    }
                    Ok(ServerMessage::Ping | ServerMessage::Other(_)) => {}
                    // One bad record should not cost the events around it.
                    Err(error) => tracing::warn!(%error, "skipped an unreadable hub message"),
                }
            }
            let silent_at = self.last_seen + self.timings.server_timeout;
            tokio::select! {
                msg = self.ws.next() => self.receive(msg)?,
                _ = self.ping.tick() => self.send_ping().await?,
                _ = tokio::time::sleep_until(silent_at) => {
                    return Err(HubError::Silent(self.timings.server_timeout));
                }
            }
        }
    }

    fn receive(&mut self, msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) -> Result<(), HubError> {
        self.last_seen = Instant::now();
        let bytes = match msg {
            Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
            Some(Ok(Message::Binary(b))) => b.to_vec(),
            // WebSocket-level pings are answered by tungstenite itself.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => return Ok(()),
            Some(Ok(Message::Close(frame))) => return Err(HubError::Ended(close_reason(frame))),
            Some(Err(e)) => return Err(HubError::Ended(e.to_string())),
            None => return Err(HubError::Ended("the stream ended".into())),
        };
        self.ready.extend(self.buffer.push(&bytes));
        Ok(())
    }

    async fn send_ping(&mut self) -> Result<(), HubError> {
        self.ws
            .send(Message::text(PING))
            .await
            .map_err(|e| HubError::Transport { step: "sending a ping", message: e.to_string() })
    }

    /// Says goodbye politely (a WebSocket close), for shutdown; a stuck socket cannot hold
    /// shutdown up for more than a second.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.ws.close(None)).await;
    }
}
