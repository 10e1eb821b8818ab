//! The NATS contract of `docs/subjects.md`, held against the real thing: every fact the
//! adapters make of the fixtures, every message the running all-in-one stores or publishes and
//! every reply it gives must match its schema in `docs/schemas/`; and the `nats` commands the
//! page shows are run here over async-nats, with exactly the subjects and bodies it writes.

mod common;
mod contract;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use common::{App, fixture};
use contract::facts::{Collected, ingress_envelope, poller_over_fixtures, shoko_envelopes, webhook_bodies};
use contract::{NatsCommand, Schemas};
use futures_util::StreamExt;
use serde_json::{Value, json};
use shared::envelope::Envelope;
use shared::events::tracker::TrackerEvent;
use shared::events::{EventData, Fact};
use shared::ids::RequestId;
use shared::model::State;
use shared::subjects::Source;

#[tokio::test]
async fn facts_made_from_every_fixture_match_the_media_event_schema() {
    let schemas = Schemas::load();
    let (mut parsed, mut webhooks) = (0, 0);
    for (source, name, content_type, body) in webhook_bodies() {
        let envelope = ingress_envelope(source, &content_type, &body);
        // The others are answers of the services' APIs: ingress may refuse them.
        let is_webhook = ["webhook_", "item_added_", "run_on_finished_"].iter().any(|p| name.contains(p));
        assert!(envelope.is_some() || !is_webhook, "{name} did not parse");
        webhooks += usize::from(is_webhook);
        if let Some(envelope) = envelope {
            schemas.check("media-event.json", &name, &serde_json::to_value(&envelope).unwrap());
            parsed += 1;
        }
    }
    assert!(webhooks >= 35 && parsed >= webhooks, "{parsed} facts from {webhooks} webhook fixtures");

    let shoko = shoko_envelopes();
    assert!(shoko.len() >= 7, "{} Shoko facts", shoko.len());
    let mut poller = poller_over_fixtures(Collected::default());
    for _ in 0..3 {
        poller.poll_once().await;
    }
    let polled = poller.sink().0.lock().unwrap().clone();
    let kinds: Vec<&str> = polled.iter().map(|e| e.kind.as_str()).collect();
    assert!(
        kinds.contains(&"media.qbittorrent.progress") && kinds.contains(&"media.qbittorrent.finished"),
        "{kinds:?}"
    );

    let since = time::macros::datetime!(2025-01-10 18:00 UTC);
    let stalled =
        TrackerEvent::Stalled { request_id: RequestId(1), state: State::Searching, reason: "x".into(), since };
    let (fact, source) = (Fact::Tracker(stalled), "/status-tracker/correlator/watchdog");
    let subject = fact.subject();
    let tracker = Envelope::new("tracker-1".into(), source, &subject, EventData { event: fact, raw: None });
    for envelope in shoko.iter().chain(&polled).chain([&tracker]) {
        schemas.check("media-event.json", &envelope.kind, &serde_json::to_value(envelope).unwrap());
    }
}

#[test]
fn docs_subjects_md_links_every_schema_and_its_examples_match_them() {
    let schemas = Schemas::load();
    let linked = contract::linked_schemas();
    for file in &linked {
        assert!(schemas.has(file), "docs/subjects.md links schemas/{file}, which does not exist");
    }
    for file in shared::schema::schemas().iter().map(|s| s.file) {
        assert!(linked.iter().any(|l| l == file), "docs/subjects.md does not link schemas/{file}");
    }
    let examples = contract::doc_examples();
    assert!(examples.len() >= 8, "{} examples", examples.len());
    for (file, text) in examples {
        let example: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e} in the example:\n{text}"));
        let subject = example["type"].as_str().unwrap_or(&file).to_owned();
        schemas.check(&file, &format!("the example of {subject} in docs/subjects.md"), &example);
    }
}

#[tokio::test]
async fn a_schema_that_does_not_describe_the_message_fails_the_check() {
    let schemas = Schemas::load();
    let (source, content_type, body) =
        (Source::Radarr, "application/json", fixture("radarr/webhook_grab_the_batman.json"));
    let envelope = serde_json::to_value(ingress_envelope(source, content_type, &body).unwrap()).unwrap();
    schemas.check("media-event.json", "the grab", &envelope);

    let mut wrong = envelope.clone();
    wrong["time"] = json!("yesterday");
    assert!(!schemas.errors("media-event.json", &wrong).is_empty(), "a time that is not RFC 3339");
    wrong = envelope.clone();
    wrong["data"]["event"]["download_id"]["id"] = json!("5E3F9A1C7B2D4E6F8091A2B3C4D5E6F708192A3B");
    assert!(!schemas.errors("media-event.json", &wrong).is_empty(), "an upper-case info-hash");
    wrong = envelope.clone();
    wrong["data"]["event"]["event"] = json!("grabbed");
    assert!(!schemas.errors("media-event.json", &wrong).is_empty(), "an unknown event");

    let mut schema: Value =
        serde_json::from_slice(&std::fs::read(contract::docs().join("schemas/media-event.json")).unwrap()).unwrap();
    schema["$defs"]["ArrMedia"]["properties"]["title"] = json!({"type": "integer"});
    assert!(!contract::compile(&schema).is_valid(&envelope), "a schema that says titles are numbers");
}

/// Messages received on one core subscription.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<async_nats::Message>>>);

impl Received {
    async fn subscribe(client: &async_nats::Client, subject: &str) -> Self {
        let mut sub = client.subscribe(subject.to_owned()).await.unwrap();
        let received = Self::default();
        let sink = received.0.clone();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                sink.lock().unwrap().push(m);
            }
        });
        received
    }

    fn all(&self) -> Vec<async_nats::Message> {
        self.0.lock().unwrap().clone()
    }

    /// Waits until nothing new has arrived for a second.
    async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = usize::MAX;
        while seen != self.all().len() && Instant::now() < deadline {
            seen = self.all().len();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Checks one message on `subject`: its schema, `type` = the subject without its ids (the
/// request's, the torrent's), `Nats-Msg-Id` = `id`.
fn check_event(schemas: &Schemas, subject: &str, headers: Option<&async_nats::HeaderMap>, payload: &[u8]) {
    let message: Value = serde_json::from_slice(payload).unwrap_or_else(|e| panic!("{subject}: not JSON: {e}"));
    schemas.check(contract::event_schema(subject), subject, &message);
    let tokens: Vec<&str> = subject.split('.').collect();
    let expected = match tokens[..] {
        ["tracker", "request", id, event] if id.parse::<i64>().is_ok() => format!("tracker.request.{event}"),
        ["media", "qbittorrent", "progress", hash] if hash.len() == 40 => "media.qbittorrent.progress".to_owned(),
        _ => subject.to_owned(),
    };
    assert_eq!(message["type"], expected, "{subject}: the envelope's type");
    let msg_id = headers.and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.as_str());
    assert_eq!(msg_id, message["id"].as_str(), "{subject}: Nats-Msg-Id is the envelope's id");
}

/// The film and the anime series through every service, as in production: webhooks to
/// ingress, the poller's facts from qBittorrent's answers, the shoko-bridge's file events.
async fn play_the_story(app: &App, bus: &shared::Bus) {
    let post = |source: &'static str, name: &'static str| app.post_fixture(source, name);
    for (source, name) in [
        ("jellyseerr", "jellyseerr/webhook_media_pending_movie_the_batman_req42.json"),
        ("jellyseerr", "jellyseerr/webhook_media_approved_movie_the_batman_req42.json"),
        ("radarr", "radarr/webhook_movie_added_the_batman.json"),
        ("radarr", "radarr/webhook_grab_the_batman.json"),
        ("jellyseerr", "jellyseerr/webhook_media_auto_approved_tv_dan_da_dan_req43.json"),
        ("sonarr", "sonarr/webhook_series_add_dan_da_dan.json"),
        ("sonarr", "sonarr/webhook_grab_dan_da_dan_s01_season_pack.json"),
    ] {
        assert_eq!(post(source, name).await.0, 202, "{name}");
    }
    app.wait_state(2, "indexed").await;
    let mut poller = poller_over_fixtures(bus.clone());
    poller.poll_once().await;
    poller.poll_once().await;
    app.wait_state(2, "downloading").await;
    for (source, name) in [
        ("radarr", "radarr/webhook_download_the_batman.json"),
        ("jellyfin", "jellyfin/item_added_movie_the_batman.json"),
    ] {
        assert_eq!(post(source, name).await.0, 202, "{name}");
    }
    app.wait_state(1, "available").await;
    poller.poll_once().await;
    for name in [
        "sonarr/webhook_download_dan_da_dan_s01e01.json",
        "sonarr/webhook_download_dan_da_dan_s01e02.json",
        "sonarr/webhook_download_import_complete_dan_da_dan_s01.json",
    ] {
        assert_eq!(post("sonarr", name).await.0, 202, "{name}");
    }
    for envelope in shoko_envelopes() {
        bus.publish_event(&envelope.kind, &envelope).await.unwrap();
    }
}

/// Every other fixture, and bodies ingress must refuse (kept on `media.rejected.<source>`).
async fn post_everything_else(app: &App) {
    for (source, name, content_type, body) in webhook_bodies() {
        let (status, answer) = app.post(source.as_str(), &content_type, body).await;
        assert!([200, 202, 400].contains(&status), "{name}: {status} {answer}");
    }
    let (status, _) = app.post("radarr", "application/json", vec![0xff, 0xfe, b'{']).await;
    assert_eq!(status, 400, "a body that is not UTF-8");
    let (status, _) = app.post("sonarr", "text/html", "<p>hello</p>").await;
    assert_eq!(status, 415, "a content type Sonarr never sends");
}

#[tokio::test]
async fn the_running_stack_sends_what_the_schemas_and_docs_subjects_md_say() {
    let schemas = Schemas::load();
    let commands = contract::doc_commands();
    let app = App::start().await;
    let bus = shared::Bus::connect(&app.nats_url(), "subjects-test").await.unwrap();
    let changes = Received::subscribe(&bus.client, shared::subjects::REQUEST_ALL).await;
    let mut page_subs = Vec::new();
    for command in &commands {
        if let NatsCommand::Sub { subject, deliver: None } = command {
            page_subs.push((subject.clone(), Received::subscribe(&bus.client, subject).await));
        }
    }
    bus.client.flush().await.unwrap();

    play_the_story(&app, &bus).await;
    post_everything_else(&app).await;
    changes.settle().await;
    run_requests(&schemas, &bus, &commands).await;
    changes.settle().await;

    let changes = changes.all();
    for m in &changes {
        check_event(&schemas, &m.subject, m.headers.as_ref(), &m.payload);
    }
    let subjects: Vec<&str> = changes.iter().map(|m| m.subject.as_str()).collect();
    for expected in ["tracker.request.1.available", "tracker.request.1.progress", "tracker.request.2.updated"] {
        assert!(subjects.contains(&expected), "no {expected} in {subjects:?}");
    }
    let stored = check_stream(&schemas, &bus, "MEDIA", None).await;
    for prefix in ["media.rejected.radarr", "media.rejected.sonarr", "media.shoko.file_matched", "media.tracker."] {
        assert!(stored.iter().any(|s| s.starts_with(prefix)), "MEDIA holds no {prefix}");
    }
    assert!(!check_stream(&schemas, &bus, "MEDIA_PROGRESS", None).await.is_empty());
    for (subject, received) in page_subs {
        let received = received.all();
        assert!(!received.is_empty(), "`nats sub '{subject}'` of docs/subjects.md received nothing");
        for m in received {
            check_event(&schemas, &m.subject, m.headers.as_ref(), &m.payload);
        }
    }
    run_stream_reads(&schemas, &bus, &commands).await;
}

/// The page's `nats req` commands, in its order, with exactly its bodies.
async fn run_requests(schemas: &Schemas, bus: &shared::Bus, commands: &[NatsCommand]) {
    let mut asked = Vec::new();
    for command in commands {
        let NatsCommand::Req { subject, body } = command else { continue };
        let (request_schema, reply_schema) = contract::request_reply_schemas(subject);
        let request: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{subject} '{body}': {e}"));
        if let Some(file) = request_schema.filter(|f| schemas.has(f)) {
            schemas.check(&file, &format!("the body of `nats req {subject}`"), &request);
        }
        let answer = bus.client.request(subject.clone(), body.clone().into()).await.unwrap();
        let reply: Value = serde_json::from_slice(&answer.payload).unwrap();
        schemas.check(&reply_schema, &format!("the reply to `nats req {subject} '{body}'`"), &reply);
        // No Radarr/Sonarr here: a search cannot be sent (the answer is still checked above).
        let may_fail = subject == "tracker.cmd.retry" || subject == "tracker.cmd.lower_quality";
        assert!(reply.get("ok").is_some() || may_fail, "`nats req {subject} '{body}'` answered {reply}");
        asked.push(subject.rsplit('.').next().unwrap_or_default().to_owned());
    }
    for what in ["list", "get", "timeline", "tracked", "stats", "summary", "retry", "lower_quality", "correlator"] {
        assert!(asked.iter().any(|a| a == what), "docs/subjects.md shows no request for {what}: {asked:?}");
    }
}

/// The page's `nats sub` with a JetStream start and its `nats stream` reads, done with
/// consumers of the same delivery policy.
async fn run_stream_reads(schemas: &Schemas, bus: &shared::Bus, commands: &[NatsCommand]) {
    for command in commands {
        let read = match command {
            NatsCommand::Sub { subject, deliver: Some(flag) } => {
                let stream = bus.js.stream_by_subject(subject.clone()).await.unwrap();
                let policy = match flag.as_str() {
                    "--all" => DeliverPolicy::All,
                    "--last" => DeliverPolicy::Last,
                    _ => DeliverPolicy::LastPerSubject,
                };
                check_stream(schemas, bus, &stream, Some((subject.as_str(), policy))).await
            }
            NatsCommand::StreamView { stream, subject } => {
                check_stream(schemas, bus, stream, subject.as_deref().map(|s| (s, DeliverPolicy::All))).await
            }
            NatsCommand::StreamGet { stream, last_for } => {
                let stream = bus.js.get_stream(stream).await.unwrap();
                let m = stream.get_last_raw_message_by_subject(last_for).await.unwrap();
                check_event(schemas, &m.subject, Some(&m.headers), &m.payload);
                vec![m.subject.to_string()]
            }
            NatsCommand::Req { .. } | NatsCommand::Sub { deliver: None, .. } => continue,
        };
        assert!(!read.is_empty(), "{command:?} of docs/subjects.md reads nothing");
    }
}

/// Reads a stream (all of it, or what a consumer with this filter and policy is given) and
/// checks every message; returns their subjects.
async fn check_stream(
    schemas: &Schemas,
    bus: &shared::Bus,
    stream: &str,
    filter: Option<(&str, DeliverPolicy)>,
) -> Vec<String> {
    let stream = bus.js.get_stream(stream).await.unwrap();
    let (filter_subject, deliver_policy) = filter.map_or((String::new(), DeliverPolicy::All), |(s, p)| (s.into(), p));
    let config = pull::Config { filter_subject, deliver_policy, ack_policy: AckPolicy::None, ..Default::default() };
    let consumer = stream.create_consumer(config).await.unwrap();
    let mut batch = consumer.fetch().max_messages(10_000).expires(Duration::from_secs(1)).messages().await.unwrap();
    let mut subjects = Vec::new();
    while let Some(Ok(m)) = batch.next().await {
        check_event(schemas, &m.subject, m.headers.as_ref(), &m.payload);
        subjects.push(m.subject.to_string());
    }
    subjects
}
