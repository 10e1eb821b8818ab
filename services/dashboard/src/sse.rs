//! Live updates: `/api/sse`.
//!
//! One NATS subscription on `tracker.request.>` feeds a hub that keeps a ring of recent
//! events; every SSE client is woken by each new one and reads what it has not sent yet from
//! the ring, so a change is decoded once however many browsers watch, and not at all while none
//! does (the hub keeps the message as published and reads it when it is first sent, live or
//! to a client catching up). Each event has an id `<epoch>-<seq>`; a client that reconnects
//! with `Last-Event-ID`, or falls behind, gets what it missed from the ring, or a `resync`
//! event telling it to reload when the gap is too old (or the dashboard restarted). The ring
//! is the only place changes wait, so its bounds are all the memory the live updates hold.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt, stream};
use serde::Deserialize;
use serde_json::value::RawValue;
use shared::Bus;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Dashboard;

/// Recent events kept for clients that reconnect or fall behind: at most this many, and this
/// many bytes of state messages (a few kilobytes each: the request's full snapshot).
const RING: usize = 2048;
const RING_BYTES: usize = 2 << 20;
/// Heartbeat interval (the contract says at most 15 s).
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// One change, as published; its SSE data is read from it once, when first sent.
#[derive(Debug)]
pub struct SseMessage {
    pub seq: u64,
    pub request_id: i64,
    /// `request` (a state or other change, data = `RequestChange`) or `progress`
    /// (data = `ProgressUpdate`).
    pub event: &'static str,
    /// The state message (a CloudEvents envelope), copied out of the NATS client's buffer.
    payload: Box<[u8]>,
    data: OnceLock<Option<String>>,
}

impl SseMessage {
    /// The event's data ([`sse_data`]); `None` for a message that cannot be read, which is
    /// logged once and sent to nobody.
    fn data(&self) -> Option<&str> {
        let data = self.data.get_or_init(|| match sse_data(&self.payload, self.event == "request") {
            Ok(data) => Some(data),
            Err(error) => {
                tracing::warn!(request.id = self.request_id, %error, "undecodable request change skipped");
                None
            }
        });
        data.as_deref()
    }
}

/// Fans request changes out to SSE clients.
#[derive(Debug)]
pub struct Hub {
    /// The newest event's sequence number; clients wait on it.
    newest: watch::Sender<u64>,
    ring: Mutex<Ring>,
    epoch: u64,
    clients: AtomicUsize,
    /// Fired when the dashboard stops: every stream ends, so that a graceful shutdown does
    /// not wait for browsers that would stay connected forever.
    closing: CancellationToken,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Self {
        let epoch = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as u64 / 1_000_000;
        Self {
            newest: watch::Sender::new(0),
            ring: Mutex::new(Ring::default()),
            epoch,
            clients: AtomicUsize::new(0),
            closing: CancellationToken::new(),
        }
    }

    /// The id of the newest event (`<epoch>-<seq>`). A page rendered now carries it, so that
    /// its script resumes the stream from there and misses nothing that changed meanwhile.
    pub fn last_event_id(&self) -> String {
        format!("{}-{}", self.epoch, *self.newest.borrow())
    }

    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    /// Hands a state message (`payload`, as published) to the clients and the ring.
    pub fn publish(&self, request_id: i64, event: &'static str, payload: &[u8]) {
        let payload: Box<[u8]> = payload.into();
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.newest += 1;
        let seq = ring.newest;
        ring.bytes += payload.len();
        ring.events.push_back(Arc::new(SseMessage { seq, request_id, event, payload, data: OnceLock::new() }));
        while ring.events.len() > RING || ring.bytes > RING_BYTES {
            let Some(old) = ring.events.pop_front() else { break };
            ring.bytes -= old.payload.len();
        }
        // Under the lock: a client woken for `seq` finds it in the ring (or finds it gone, and
        // resyncs).
        self.newest.send_replace(seq);
    }

    /// Events after `last` (an id this hub gave out), or `None` if they are no longer kept.
    /// Also gives the newest sequence number at that moment.
    fn since(&self, last: &str) -> Option<(Vec<Arc<SseMessage>>, u64)> {
        let (epoch, seq) = last.split_once('-')?;
        let (epoch, seq): (u64, u64) = (epoch.parse().ok()?, seq.parse().ok()?);
        if epoch != self.epoch {
            return None;
        }
        self.ring.lock().unwrap_or_else(|e| e.into_inner()).after(seq)
    }

    /// The SSE event of `m`; `None` when its message cannot be read.
    fn event(&self, m: &SseMessage) -> Option<Event> {
        let data = m.data()?;
        Some(Event::default().id(format!("{}-{}", self.epoch, m.seq)).event(m.event).data(data))
    }

    /// Ends every stream (clients reconnect with `Last-Event-ID` to whoever serves next).
    pub fn close_streams(&self) {
        self.closing.cancel();
    }

    /// Subscribes to `tracker.request.>` and publishes every change until `cancel` fires.
    pub async fn follow(self: Arc<Self>, bus: Bus, cancel: CancellationToken) -> anyhow::Result<()> {
        let _close_streams = self.closing.clone().drop_guard();
        let mut sub = bus.client.subscribe(shared::subjects::REQUEST_ALL).await?;
        loop {
            let msg = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                m = sub.next() => match m { Some(m) => m, None => return Ok(()) },
            };
            let mut parts = msg.subject.as_str().split('.').skip(2);
            let (Some(id), Some(verb)) = (parts.next().and_then(|i| i.parse::<i64>().ok()), parts.next()) else {
                continue;
            };
            // The last step of a change's trace: handing it to the browsers.
            let span = tracing::info_span!(
                "sse push",
                otel.kind = "consumer",
                messaging.destination.name = %msg.subject,
                request.id = id,
                sse.clients = self.clients(),
            );
            shared::telemetry::set_parent_from_headers(&span, msg.headers.as_ref());
            let _entered = span.enter();
            let event = if verb == "progress" { "progress" } else { "request" };
            self.publish(id, event, &msg.payload);
        }
    }
}

/// The recent events and their size.
#[derive(Debug, Default)]
struct Ring {
    events: VecDeque<Arc<SseMessage>>,
    bytes: usize,
    /// The newest event's sequence number (events are numbered from 1, without gaps).
    newest: u64,
}

impl Ring {
    /// The events after sequence number `seq` and the newest sequence number; `None` when some
    /// of them are no longer kept.
    fn after(&self, seq: u64) -> Option<(Vec<Arc<SseMessage>>, u64)> {
        let oldest = self.events.front().map_or(self.newest + 1, |m| m.seq);
        if seq + 1 < oldest {
            return None;
        }
        let skip = usize::try_from(seq + 1 - oldest).unwrap_or(usize::MAX);
        Some((self.events.iter().skip(skip).cloned().collect(), self.newest))
    }
}

/// Where a client's live stream is.
struct Follower {
    newest: watch::Receiver<u64>,
    /// The last sequence number sent (or passed over).
    sent: u64,
    /// Taken from the ring, not sent yet.
    pending: VecDeque<Arc<SseMessage>>,
    guard: ClientGuard,
}

/// What the dashboard reads of a state message: its data, as sent.
#[derive(Deserialize)]
struct ChangeEnvelope<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
}

/// A `request` event's data, read in one pass: the request's fields and the change's other
/// fields as sent, without the request's heavy fields.
#[derive(Deserialize)]
struct TrimmedEnvelope<'a> {
    #[serde(borrow)]
    data: Trimmed<'a>,
}

/// The change's fields in their order: as sent (JSON text), but the request, trimmed.
struct Trimmed<'a>(Vec<(&'a str, Part<'a>)>);

enum Part<'a> {
    Raw(&'a RawValue),
    Request(Vec<(&'a str, &'a RawValue)>),
}

/// The request's fields a `request` event leaves out.
const HEAVY: [&str; 3] = ["downloads", "episodes", "timeline"];

/// The SSE data of a state message: its CloudEvents `data`, copied as sent.
///
/// A `request` event (`trim`) carries the request's summary and what changed, not its
/// downloads, episodes and whole timeline: a page fetches those when it shows them, and a
/// series late in its life would otherwise send every browser tens of kilobytes per episode.
/// The message is read once, without building a tree of it: the parts kept are copied
/// verbatim. (Reading the envelope, then its data, then the request, each as a map of raw
/// values, was a tenth of the process's instructions per webhook.)
fn sse_data(payload: &[u8], trim: bool) -> serde_json::Result<String> {
    if trim && let Ok(TrimmedEnvelope { data }) = serde_json::from_slice::<TrimmedEnvelope>(payload) {
        return Ok(data.to_json());
    }
    // Progress, or a change of an unusual shape (data or request not an object…): as sent.
    let data = serde_json::from_slice::<ChangeEnvelope>(payload)?.data;
    Ok(data.get().to_owned())
}

impl Trimmed<'_> {
    /// Keys are written as they were read: borrowed, so they held no escapes.
    fn to_json(&self) -> String {
        fn object<'a, T: 'a>(out: &mut String, fields: &'a [(&str, T)], mut value: impl FnMut(&mut String, &'a T)) {
            out.push('{');
            for (i, (key, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('"');
                out.push_str(key);
                out.push_str("\":");
                value(out, v);
            }
            out.push('}');
        }
        let mut out = String::with_capacity(1024);
        object(&mut out, &self.0, |out, part| match part {
            Part::Raw(raw) => out.push_str(raw.get()),
            Part::Request(request) => object(out, request, |out, raw| out.push_str(raw.get())),
        });
        out
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Trimmed<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Change<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Change<'a> {
            type Value = Trimmed<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a request change")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(8);
                while let Some(key) = map.next_key::<&'a str>()? {
                    let part = match key {
                        "request" => Part::Request(map.next_value::<RequestFields>()?.0),
                        _ => Part::Raw(map.next_value()?),
                    };
                    fields.push((key, part));
                }
                Ok(Trimmed(fields))
            }
        }
        deserializer.deserialize_map(Change(std::marker::PhantomData))
    }
}

/// A request's fields but the heavy ones.
struct RequestFields<'a>(Vec<(&'a str, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for RequestFields<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Fields<'a> {
            type Value = RequestFields<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a request")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(32);
                while let Some(key) = map.next_key::<&'a str>()? {
                    if HEAVY.contains(&key) {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    } else {
                        fields.push((key, map.next_value()?));
                    }
                }
                Ok(RequestFields(fields))
            }
        }
        deserializer.deserialize_map(Fields(std::marker::PhantomData))
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct SseParams {
    /// Only changes of this request.
    request: Option<i64>,
}

/// One connected client, counted from its start to its end (`tracker_sse_clients`).
struct ClientGuard(Arc<Hub>);

impl ClientGuard {
    fn new(hub: Arc<Hub>) -> Self {
        let n = hub.clients.fetch_add(1, Ordering::Relaxed) + 1;
        shared::metrics::metrics().sse_clients.set(n as i64);
        Self(hub)
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        let n = self.0.clients.fetch_sub(1, Ordering::Relaxed) - 1;
        shared::metrics::metrics().sse_clients.set(n as i64);
    }
}

/// The events after the follower's, as they come; `resync` when it fell behind by more than
/// the ring keeps.
fn live(follower: Follower, wanted: impl Fn(&SseMessage) -> bool) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold((follower, wanted), |(mut f, wanted)| async move {
        loop {
            while let Some(m) = f.pending.pop_front() {
                if wanted(&m)
                    && let Some(event) = f.guard.0.event(&m)
                {
                    return Some((Ok(event), (f, wanted)));
                }
            }
            // Woken for each new event, or once for several when it was busy sending.
            f.newest.changed().await.ok()?;
            let newest = *f.newest.borrow_and_update();
            let caught_up = f.guard.0.ring.lock().unwrap_or_else(|e| e.into_inner()).after(f.sent);
            match caught_up {
                Some((new, newest)) => {
                    f.sent = newest;
                    f.pending.extend(new);
                }
                None => {
                    f.sent = newest;
                    return Some((Ok(resync()), (f, wanted)));
                }
            }
        }
    })
}

fn resync() -> Event {
    Event::default().event("resync").data("{}")
}

pub(crate) async fn stream(
    State(d): State<Dashboard>,
    Query(p): Query<SseParams>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let hub = d.hub.clone();
    let guard = ClientGuard::new(hub.clone());
    let mut newest = hub.newest.subscribe();
    let wanted = move |m: &SseMessage| p.request.is_none_or(|r| r == m.request_id);
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    // Events up to `sent` were replayed already, or came before the client.
    let (first, sent): (Vec<Event>, u64) = match last.map(|last| hub.since(last)) {
        None => {
            let hello = Event::default().event("hello").data(format!(r#"{{"epoch":{}}}"#, hub.epoch));
            (vec![hello], *newest.borrow_and_update())
        }
        Some(Some((missed, newest))) => {
            (missed.iter().filter(|m| wanted(m)).filter_map(|m| hub.event(m)).collect(), newest)
        }
        Some(None) => (vec![resync()], *newest.borrow_and_update()),
    };
    let live = live(Follower { newest, sent, pending: VecDeque::new(), guard }, wanted);
    let events = stream::iter(first.into_iter().map(Ok)).chain(live).take_until(hub.closing.clone().cancelled_owned());
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnecting_clients_get_what_they_missed_or_a_resync() {
        let hub = Hub::new();
        for i in 0..5 {
            hub.publish(i, "request", format!("{{\"n\":{i}}}").as_bytes());
        }
        let (missed, newest) = hub.since(&format!("{}-3", hub.epoch)).unwrap();
        assert_eq!(newest, 5);
        assert_eq!(missed.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![4, 5]);
        assert!(hub.since("1-3").is_none(), "another epoch means a restart: resync");
        assert!(hub.since("garbage").is_none());
        for i in 0..(RING as i64 + 10) {
            hub.publish(i, "progress", b"{}");
        }
        assert!(hub.since(&format!("{}-3", hub.epoch)).is_none(), "too old: resync");
    }

    /// A client following `hub` from sequence number `sent`.
    fn follower(hub: &Arc<Hub>, sent: u64) -> Follower {
        Follower {
            newest: hub.newest.subscribe(),
            sent,
            pending: VecDeque::new(),
            guard: ClientGuard::new(hub.clone()),
        }
    }

    /// The sequence number in an event's id, `None` for an event without one.
    fn seq(event: &Event, hub: &Hub) -> Option<u64> {
        let text = format!("{event:?}");
        let (_, after) = text.split_once(&format!("id: {}-", hub.epoch))?;
        after.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    }

    async fn next(events: &mut (impl Stream<Item = Result<Event, Infallible>> + Unpin)) -> Event {
        let next = tokio::time::timeout(Duration::from_secs(5), events.next()).await.expect("an event");
        next.expect("the stream goes on").unwrap()
    }

    #[tokio::test]
    async fn a_client_that_falls_behind_gets_what_it_missed_from_the_ring() {
        let hub = Arc::new(Hub::new());
        let mut events = Box::pin(live(follower(&hub, 0), |_: &SseMessage| true));
        // More than a browser is sent at once, while it reads nothing.
        for i in 0..1500 {
            hub.publish(i, "progress", &envelope(serde_json::json!({"id": i})));
        }
        for expected in 1..=1500 {
            assert_eq!(seq(&next(&mut events).await, &hub), Some(expected));
        }
        hub.publish(7, "progress", &envelope(serde_json::json!({"id": 7})));
        assert_eq!(seq(&next(&mut events).await, &hub), Some(1501), "and then the live ones");
    }

    #[tokio::test]
    async fn a_client_that_falls_behind_the_ring_resyncs_then_follows_again() {
        let hub = Arc::new(Hub::new());
        let mut events = Box::pin(live(follower(&hub, 0), |m: &SseMessage| m.request_id != 2));
        hub.publish(1, "progress", &envelope(serde_json::json!({"id": 1})));
        assert_eq!(seq(&next(&mut events).await, &hub), Some(1));
        for _ in 0..RING + 1 {
            hub.publish(2, "progress", &envelope(serde_json::json!({"id": 2})));
        }
        let resync = next(&mut events).await;
        assert!(format!("{resync:?}").contains("event: resync"), "{resync:?}");
        hub.publish(2, "progress", &envelope(serde_json::json!({"id": 2})));
        hub.publish(3, "progress", &envelope(serde_json::json!({"id": 3})));
        assert_eq!(seq(&next(&mut events).await, &hub), Some(RING as u64 + 4), "request 2's are not wanted");
        assert_eq!(hub.clients(), 1);
        drop(events);
        assert_eq!(hub.clients(), 0);
    }

    #[test]
    fn the_ring_is_bounded_by_size_too() {
        let hub = Hub::new();
        let big = "x".repeat(64 << 10);
        for i in 0..200 {
            hub.publish(i, "request", big.as_bytes());
        }
        let ring = hub.ring.lock().unwrap();
        assert!(ring.bytes <= RING_BYTES, "{} bytes kept", ring.bytes);
        assert_eq!(ring.bytes, ring.events.len() * big.len());
        assert_eq!(ring.events.back().unwrap().seq, 200, "the newest are kept");
    }

    fn envelope(data: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"specversion": "1.0", "id": "x", "data": data})).unwrap()
    }

    #[test]
    fn a_change_is_read_when_first_sent_and_only_once() {
        let hub = Hub::new();
        let change = serde_json::json!({"request": {"id": 3, "state": "grabbed", "timeline": [{}]}, "event_id": "e"});
        hub.publish(3, "request", &envelope(change));
        let (kept, _) = hub.since(&format!("{}-0", hub.epoch)).unwrap();
        let m = &kept[0];
        assert!(m.data.get().is_none(), "nobody watched: not read yet");
        assert!(hub.event(m).is_some());
        assert_eq!(m.data(), Some(r#"{"event_id":"e","request":{"id":3,"state":"grabbed"}}"#));
        let first = m.data().unwrap().as_ptr();
        assert!(hub.event(m).is_some());
        assert_eq!(m.data().unwrap().as_ptr(), first, "the second client gets the same text");
    }

    #[test]
    fn a_change_that_cannot_be_read_is_sent_to_nobody() {
        let hub = Hub::new();
        hub.publish(3, "request", b"{not json");
        hub.publish(4, "progress", &envelope(serde_json::json!({"id": 4, "progress": 0.5})));
        let (kept, newest) = hub.since(&format!("{}-0", hub.epoch)).unwrap();
        assert_eq!(newest, 2);
        let sent: Vec<i64> = kept.iter().filter(|m| hub.event(m).is_some()).map(|m| m.request_id).collect();
        assert_eq!(sent, [4]);
    }

    fn parsed(data: &str) -> serde_json::Value {
        serde_json::from_str(data).unwrap()
    }

    #[test]
    fn request_events_carry_the_summary_and_the_change_not_the_whole_request() {
        let change = serde_json::json!({
            "request": {"id": 3, "title": "Dune \"Part\" Two ✓", "state": "downloading", "downloads": [{}],
                        "episodes": [{}], "timeline": [{}, {}], "progress": 0.25},
            "previous_state": "indexed",
            "event_id": "radarr-1",
            "timeline_added": [{"message": "Downloading"}],
        });
        let data = sse_data(&envelope(change), true).unwrap();
        assert_eq!(
            parsed(&data),
            serde_json::json!({
                "request": {"id": 3, "title": "Dune \"Part\" Two ✓", "state": "downloading", "progress": 0.25},
                "previous_state": "indexed",
                "event_id": "radarr-1",
                "timeline_added": [{"message": "Downloading"}],
            })
        );
    }

    #[test]
    fn the_parts_kept_are_copied_byte_for_byte_in_their_order() {
        let payload = br#"{"specversion":"1.0","data":{"request":{"id":3,"title":"Caf\u00e9 \"Noir\"","progress":1.50,"timeline":[{"a":"}"}],"state":"available"},"previous_state":"importing","timeline_added":[ {"message":"x"} ]},"id":"x"}"#;
        assert_eq!(
            sse_data(payload, true).unwrap(),
            r#"{"request":{"id":3,"title":"Caf\u00e9 \"Noir\"","progress":1.50,"state":"available"},"previous_state":"importing","timeline_added":[ {"message":"x"} ]}"#
        );
    }

    #[test]
    fn progress_events_and_odd_changes_are_passed_on_as_sent() {
        let progress = serde_json::json!({"id": 3, "progress": 0.5, "downloads": [{"hash": "ab"}]});
        assert_eq!(parsed(&sse_data(&envelope(progress.clone()), false).unwrap()), progress);
        // Nothing to trim: no request, or a request that is not an object.
        for odd in [serde_json::json!({"event_id": "e"}), serde_json::json!({"request": null}), serde_json::json!(7)] {
            assert_eq!(parsed(&sse_data(&envelope(odd.clone()), true).unwrap()), odd);
        }
    }

    #[test]
    fn an_undecodable_message_is_an_error_not_a_panic() {
        for bad in [&b"not json"[..], b"{}", b"{\"data\": ", b"{\"data\": {\"request\": {\"a\": }}}"] {
            assert!(sse_data(bad, true).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
