//! The test hub's side of one WebSocket: the JSON handshake, then the test's commands, the
//! hub's own pings, and ASP.NET Core's client timeout.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::ws::{Message, WebSocket};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::hub::{Cmd, HubState, record_of};

/// Waits for the handshake, then relays commands, pings and enforces the client timeout.
pub(super) async fn serve_client(mut socket: WebSocket, state: Arc<HubState>) {
    if !handshake(&mut socket, &state).await {
        return;
    }
    let id = state.next_id.fetch_add(1, Ordering::SeqCst);
    let (tx, mut commands) = mpsc::unbounded_channel();
    *state.client.lock().unwrap() = Some((id, tx));
    state.handshakes.send_modify(|n| *n += 1);
    let mut keepalive = tokio::time::interval(state.options.keepalive);
    let mut last_heard = Instant::now();
    loop {
        let deadline = last_heard + state.options.client_timeout;
        tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(text))) => {
                    last_heard = Instant::now();
                    let pings = text.as_str().split('\u{1e}').filter(|r| *r == r#"{"type":6}"#).count();
                    state.pings_received.fetch_add(pings as u64, Ordering::SeqCst);
                }
                Some(Ok(_)) => {}
                _ => break,
            },
            cmd = commands.recv() => match cmd {
                Some(Cmd::Send(text)) => { let _ = socket.send(Message::Text(text.into())).await; }
                Some(Cmd::Close(error)) => { close(&mut socket, &error).await; break; }
                Some(Cmd::Abort) | None => break,
            },
            _ = keepalive.tick() => {
                let _ = socket.send(Message::Text(record_of(&json!({"type": 6})).into())).await;
            }
            _ = tokio::time::sleep_until(deadline) => {
                state.client_timeouts.fetch_add(1, Ordering::SeqCst);
                close(&mut socket, "Server timeout elapsed without receiving a message from the client.").await;
                break;
            }
        }
    }
    let mut client = state.client.lock().unwrap();
    if client.as_ref().is_some_and(|(current, _)| *current == id) {
        *client = None;
    }
}

/// Reads `{"protocol":"json","version":1}\x1e`; answers `{}\x1e` plus the `on_connect`
/// records in the same message.
async fn handshake(socket: &mut WebSocket, state: &HubState) -> bool {
    let first = tokio::time::timeout(state.options.client_timeout, socket.recv()).await;
    let Ok(Some(Ok(Message::Text(text)))) = first else { return false };
    let request = text.as_str().strip_suffix('\u{1e}').and_then(|r| serde_json::from_str::<Value>(r).ok());
    if request != Some(json!({"protocol": "json", "version": 1})) {
        let reply = record_of(&json!({"error": "Requested protocol is not available."}));
        let _ = socket.send(Message::Text(reply.into())).await;
        return false;
    }
    let mut reply = String::from("{}\u{1e}");
    reply.extend(state.options.on_connect.iter().cloned());
    socket.send(Message::Text(reply.into())).await.is_ok()
}

async fn close(socket: &mut WebSocket, error: &str) {
    let message = record_of(&json!({"type": 7, "error": error, "allowReconnect": true}));
    let _ = socket.send(Message::Text(message.into())).await;
    let _ = socket.send(Message::Close(None)).await;
}
