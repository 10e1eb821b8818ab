//! The correlator's consumers: durable pull consumers on `MEDIA` and `MEDIA_PROGRESS`, fed
//! into one loop that applies messages in batches, one SQLite transaction per batch, and
//! acknowledges only after the commit. Then the outbox is published.
//!
//! A batch is committed while the next one is correlated ([`Session::batch`]); the next one
//! is committed only after it, and when it does not commit, both are applied again.
//!
//! A message that cannot be decoded is terminated (it stays in the stream) and logged; a
//! database error rolls the batch back and retries its messages one by one, so one bad
//! message never blocks the others.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;
use futures_util::future::OptionFuture;
use shared::Bus;
use shared::events::MediaEnvelope;
use shared::health::HealthCell;
use shared::metrics::{OutcomeLabel, StepLabel, count, metrics};
use shared::subjects;
use shared::telemetry;
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

use crate::correlate::{Outcome, Processor};
use crate::session::{Commit, Done, Finished, Prior, Session};
use crate::store::{self, Store};

/// Most messages applied in one transaction.
const MAX_BATCH: usize = 256;

/// Consumes until `cancel` fires; returns after the last batch is committed and acked.
pub(crate) async fn run(
    bus: Bus,
    store: Store,
    processor: Arc<Processor>,
    health: HealthCell,
    cancel: CancellationToken,
) {
    // Which events were processed and which keys name requests, known without a query once
    // loaded; until then all are looked up. Loading starts before the first batch, so that
    // none commits behind its back.
    processor.cache.seen.start_loading();
    let loader = {
        let (processor, pool) = (processor.clone(), store.pool().clone());
        tokio::spawn(async move {
            if let Err(error) = processor.cache.seen.load(&pool).await {
                tracing::warn!(%error, "the processed events and request keys were not loaded; all are looked up");
            }
        })
    };
    // Messages arrive decoded: the feeds decode them while the loop applies the last batch. One
    // batch's worth waits; two held more memory at full load and applied no faster
    // (docs/performance.md, "Memory").
    let (tx, rx) = mpsc::channel::<(jetstream::Message, Decoded)>(MAX_BATCH);
    let feeds = [
        (subjects::STREAM_MEDIA, subjects::CONSUMER_CORRELATOR, subjects::MEDIA_ALL, DeliverPolicy::All),
        (
            subjects::STREAM_MEDIA_PROGRESS,
            subjects::CONSUMER_CORRELATOR_PROGRESS,
            subjects::QBIT_PROGRESS_ALL,
            DeliverPolicy::LastPerSubject,
        ),
    ];
    let stop_feeds = CancellationToken::new();
    let mut tasks = Vec::new();
    for (stream, durable, filter, deliver) in feeds {
        let consumer = ConsumerSpec { stream, durable, filter, deliver };
        tasks.push(tokio::spawn(feed(bus.clone(), consumer, tx.clone(), stop_feeds.clone())));
    }
    drop(tx);
    // State messages are published by their own task, so that the next batch is applied while
    // the last one's changes go out.
    let outbox = Arc::new(Outbox::default());
    let stop_publisher = CancellationToken::new();
    let publisher = tokio::spawn(outbox_publisher(bus.clone(), store.clone(), outbox.clone(), stop_publisher.clone()));
    let applier = apply_until_cancelled(rx, store.clone(), processor, outbox.clone(), health, cancel);
    match on_own_thread("correlator", applier) {
        Ok(done) => {
            if done.await.is_err() {
                tracing::error!("the correlator's thread ended early (panicked); no further event is applied");
            }
        }
        Err(error) => tracing::error!(%error, "cannot start the correlator's thread; no event is applied"),
    }
    loader.abort();
    // Stop pulling; messages already delivered but not processed are redelivered later.
    stop_feeds.cancel();
    for t in tasks {
        drop(t.await);
    }
    // What was committed goes out before the process ends (or at the next start).
    stop_publisher.cancel();
    drop(publisher.await);
    publish_new(&bus, &store, &outbox).await;
    delete_published(&store, &outbox).await;
}

/// Runs `fut` on a thread of its own, with a single-threaded runtime; the returned receiver
/// gets its output. The loop that applies batches is the pipeline's one serial step: on the
/// shared runtime each of its awaits (a SQLite round trip, an ack) put it back in the queue
/// behind every HTTP handler, and under load it waited there longer than it worked
/// (docs/performance.md).
fn on_own_thread<F>(name: &str, fut: F) -> std::io::Result<tokio::sync::oneshot::Receiver<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    // The thread reports to the spawner's subscriber, which may be scoped to it (tests).
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    std::thread::Builder::new().name(name.into()).spawn(move || {
        tracing::dispatcher::with_default(&dispatch, || drop(tx.send(runtime.block_on(fut))));
    })?;
    Ok(rx)
}

/// Receives decoded messages and applies them in batches until `cancel` fires or the feeds
/// end; returns after the last batch is committed and acked.
async fn apply_until_cancelled(
    mut rx: mpsc::Receiver<(jetstream::Message, Decoded)>,
    store: Store,
    processor: Arc<Processor>,
    outbox: Arc<Outbox>,
    health: HealthCell,
    cancel: CancellationToken,
) {
    update_state_gauges(&store).await;
    // State gauges are refreshed after a commit, at most once a second, and once more after
    // the last one.
    let mut gauges_at = std::time::Instant::now();
    let mut gauges_stale = false;
    // The batch being committed, and what the next one needs of it.
    let mut committing: Option<(tokio::task::JoinHandle<Option<Failed>>, Prior)> = None;
    loop {
        let first = tokio::select! {
            _ = cancel.cancelled() => break,
            Some(ended) = OptionFuture::from(committing.as_mut().map(|(task, _)| task)) => {
                committing = None;
                gauges_stale = true;
                if let Some(failed) = ended_commit(ended) {
                    reapply(&store, &processor, &outbox, failed.batch, failed.decoded).await;
                }
                continue;
            }
            m = rx.recv() => match m { Some(m) => m, None => break },
            _ = tokio::time::sleep(Duration::from_secs(1)), if gauges_stale => {
                update_state_gauges(&store).await;
                (gauges_at, gauges_stale) = (std::time::Instant::now(), false);
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let (batch, mut decoded): (Vec<jetstream::Message>, Vec<Decoded>) = batch.into_iter().unzip();
        for d in &mut decoded {
            if let Decoded::Event(env) = d {
                processor.enrich(env).await;
            }
        }
        let (previous, prior) = committing.take().unzip();
        gauges_stale |= previous.is_some();
        let prepared = correlate(&store, &processor, &batch, &decoded, prior).await;
        // This batch rests on the previous one: it is committed only after that one.
        if let Some(failed) = OptionFuture::from(previous).await.and_then(ended_commit) {
            drop(prepared);
            reapply(&store, &processor, &outbox, failed.batch, failed.decoded).await;
            reapply(&store, &processor, &outbox, batch, decoded).await;
        } else {
            match prepared {
                Ok((prepared, prior)) => {
                    let task = tokio::spawn(commit_and_ack(prepared, batch, decoded, store.clone(), outbox.clone()));
                    committing = Some((task, prior));
                }
                Err(error) => {
                    tracing::warn!(%error, size = batch.len(), "batch not applied; applying its messages one by one");
                    reapply(&store, &processor, &outbox, batch, decoded).await;
                    gauges_stale = true;
                }
            }
        }
        // Only what has committed: the batch just handed over may not have yet (its end sets
        // the gauges stale again).
        if gauges_stale && gauges_at.elapsed() >= Duration::from_secs(1) {
            update_state_gauges(&store).await;
            (gauges_at, gauges_stale) = (std::time::Instant::now(), false);
        }
        for (name, count) in processor.counters.snapshot() {
            health.set_detail(name, count);
        }
    }
    if let Some((task, _)) = committing
        && let Some(failed) = ended_commit(task.await)
    {
        reapply(&store, &processor, &outbox, failed.batch, failed.decoded).await;
    }
}

/// A batch that did not commit: its messages, to apply again.
struct Failed {
    batch: Vec<jetstream::Message>,
    decoded: Vec<Decoded>,
}

/// What a batch's commit task ended with: `None` when it committed, else the messages to
/// apply again ([`reapply`] also empties the cache, which holds what the batch wrote and what
/// the next batch correlated on top of it).
fn ended_commit(ended: Result<Option<Failed>, tokio::task::JoinError>) -> Option<Failed> {
    match ended {
        Ok(failed) => failed,
        Err(error) => {
            // Its messages went with the task, unacked: JetStream redelivers them after `ack_wait`.
            tracing::error!(%error, "a batch's commit ended early (panicked); its events are redelivered in a minute");
            Some(Failed { batch: Vec::new(), decoded: Vec::new() })
        }
    }
}

/// Commits a correlated batch and acknowledges its messages; returns them when it did not
/// commit.
async fn commit_and_ack(
    prepared: Prepared,
    batch: Vec<jetstream::Message>,
    decoded: Vec<Decoded>,
    store: Store,
    outbox: Arc<Outbox>,
) -> Option<Failed> {
    match commit(prepared, &store, &outbox).await {
        Ok(()) => {
            for (msg, d) in batch.iter().zip(&decoded) {
                ack(msg, matches!(d, Decoded::Poison(_))).await;
            }
            // The next batch commits after this task ends: not before the publisher keeps up.
            outbox.make_room().await;
            None
        }
        Err(error) => {
            tracing::warn!(%error, size = batch.len(), "batch rolled back; applying its messages one by one");
            Some(Failed { batch, decoded })
        }
    }
}

/// Applies the messages one by one, each in its own transaction: a batch did not commit, and
/// one bad message must not hold the others back. One that still fails is redelivered later.
async fn reapply(
    store: &Store,
    processor: &Processor,
    outbox: &Outbox,
    batch: Vec<jetstream::Message>,
    decoded: Vec<Decoded>,
) {
    processor.cache.clear();
    for (msg, d) in batch.into_iter().zip(decoded) {
        let (one, d) = (std::slice::from_ref(&msg), std::slice::from_ref(&d));
        let result = match correlate(store, processor, one, d, None).await {
            Ok((prepared, _)) => commit(prepared, store, outbox).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => ack(&msg, matches!(d[0], Decoded::Poison(_))).await,
            Err(error) => {
                processor.cache.clear();
                tracing::error!(subject = %msg.subject, %error, "event not applied; redelivery in 5 s");
                drop(msg.ack_with(AckKind::Nak(Some(Duration::from_secs(5)))).await);
            }
        }
    }
}

/// Between the consumer and the task that publishes its state messages.
#[derive(Default)]
struct Outbox {
    /// A batch was committed: there is something to publish.
    ready: Notify,
    /// The publisher took rows from the handoff: there may be room for more.
    taken: Notify,
    /// Rows up to this id are published. The consumer deletes them in its next transaction
    /// (SQLite has one writer: a second one would make both wait), or the publisher does once
    /// the consumer is idle.
    published: AtomicI64,
    deleted: AtomicI64,
    /// Rows just committed, in id order, so that the publisher need not read them back.
    handoff: std::sync::Mutex<Handoff>,
    /// The newest row handed over (kept or not).
    handed_up_to: AtomicI64,
    /// The publisher has read the table to its end once: every row since was handed over.
    caught_up: std::sync::atomic::AtomicBool,
}

/// The rows waiting for the publisher, and their payloads' size.
#[derive(Default)]
struct Handoff {
    rows: std::collections::VecDeque<store::OutboxMessage>,
    bytes: usize,
    /// The publisher fell behind (NATS away): rows are not kept until it has read the table
    /// to its end.
    spilled: bool,
}

impl Handoff {
    fn pop_front(&mut self) -> Option<store::OutboxMessage> {
        let row = self.rows.pop_front()?;
        self.bytes -= row.payload.len();
        Some(row)
    }
}

/// More than this waiting in the handoff (bytes of state messages, a few kilobytes each): the
/// next batch waits for the publisher to take some before it commits. In a burst the consumer
/// commits faster than JetStream acknowledges the state messages, and the handoff held up to
/// 6 MB of them (docs/performance.md, "Memory").
const HANDOFF_BYTES: usize = 1 << 20;
/// How long a batch waits for room in the handoff. A publisher that takes nothing for so long
/// cannot publish (NATS away): the handoff is emptied, the consumer goes on, and the publisher
/// reads the rows from the database when it can again.
const HANDOFF_WAIT: Duration = Duration::from_secs(1);

impl Outbox {
    /// Takes rows just committed and wakes the publisher: before the batch's messages are
    /// acknowledged, so that the changes go out first (at idle, the acks took about a tenth
    /// of a millisecond of the way to the browser).
    fn hand_over(&self, rows: Vec<store::OutboxMessage>) {
        let Some(last) = rows.last() else { return };
        {
            let mut handoff = self.handoff.lock().unwrap_or_else(|e| e.into_inner());
            self.handed_up_to.fetch_max(last.id, Ordering::AcqRel);
            if !handoff.spilled {
                handoff.bytes += rows.iter().map(|m| m.payload.len()).sum::<usize>();
                handoff.rows.extend(rows);
            }
        }
        self.ready.notify_one();
    }

    /// Returns once the handoff holds at most [`HANDOFF_BYTES`]. When the publisher takes
    /// nothing for [`HANDOFF_WAIT`], the handoff is emptied and keeps nothing until the
    /// publisher has caught up from the database ([`Outbox::read_to_end`]): the consumer then
    /// goes on at its own pace, as it would without NATS to publish to.
    async fn make_room(&self) {
        loop {
            let taken = self.taken.notified();
            let mut taken = std::pin::pin!(taken);
            taken.as_mut().enable();
            {
                let handoff = self.handoff.lock().unwrap_or_else(|e| e.into_inner());
                if handoff.spilled || handoff.bytes <= HANDOFF_BYTES {
                    return;
                }
            }
            if tokio::time::timeout(HANDOFF_WAIT, taken).await.is_err() {
                let mut handoff = self.handoff.lock().unwrap_or_else(|e| e.into_inner());
                tracing::warn!(
                    rows = handoff.rows.len(),
                    "state messages not taken by the publisher for a second; it will read them from the database"
                );
                *handoff = Handoff { spilled: true, ..Handoff::default() };
                return;
            }
        }
    }

    /// The publisher has read the table to its end: every row from now on is handed over.
    fn read_to_end(&self) {
        let mut handoff = self.handoff.lock().unwrap_or_else(|e| e.into_inner());
        handoff.spilled = false;
        self.caught_up.store(true, Ordering::Release);
    }

    /// The handed-over rows right after `after`, if they continue it without a gap; none when
    /// nothing is left after it. `None` when the database must be read: rows not handed over
    /// (from before this process, or dropped when the publisher could not take them) may
    /// follow `after`.
    fn take_after(&self, after: i64, limit: usize) -> Option<Vec<store::OutboxMessage>> {
        let mut handoff = self.handoff.lock().unwrap_or_else(|e| e.into_inner());
        let before = handoff.rows.len();
        while handoff.rows.front().is_some_and(|m| m.id <= after) {
            handoff.pop_front();
        }
        let taken = match handoff.rows.front() {
            Some(first) if first.id == after + 1 => {
                let n = handoff.rows.len().min(limit);
                Some(std::iter::from_fn(|| handoff.pop_front()).take(n).collect())
            }
            Some(_) => None,
            None => (self.caught_up.load(Ordering::Acquire) && after >= self.handed_up_to.load(Ordering::Acquire))
                .then(Vec::new),
        };
        // Only rows leaving make room: a publisher that keeps failing must not hold the
        // consumer by merely asking.
        if handoff.rows.len() < before {
            self.taken.notify_waiters();
        }
        taken
    }
}

/// Publishes the outbox whenever a batch was committed, and retries every second while
/// messages are left (NATS unreachable).
async fn outbox_publisher(bus: Bus, store: Store, outbox: Arc<Outbox>, cancel: CancellationToken) {
    let mut left = true;
    loop {
        if left {
            left = !publish_new(&bus, &store, &outbox).await;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = outbox.ready.notified() => left = true,
            _ = tokio::time::sleep(Duration::from_secs(1)), if left => {}
            // Quiet: nobody else writes now, so the published rows can go.
            _ = tokio::time::sleep(Duration::from_millis(250)), if !left => delete_published(&store, &outbox).await,
        }
    }
}

/// Publishes the rows after the last published one; true when none is left.
async fn publish_new(bus: &Bus, store: &Store, outbox: &Outbox) -> bool {
    loop {
        let after = outbox.published.load(Ordering::Acquire);
        let read = match outbox.take_after(after, 500) {
            Some(rows) => Ok(rows),
            None => store::outbox(store.pool(), after, 500).await,
        };
        let msgs = match read {
            Ok(m) if m.is_empty() => {
                outbox.read_to_end();
                return true;
            }
            Ok(m) => m,
            Err(error) => {
                tracing::error!(%error, "cannot read the outbox");
                return false;
            }
        };
        let last = msgs.last().map_or(after, |m| m.id);
        if !publish_rows(bus, msgs).await {
            return false;
        }
        outbox.published.store(last, Ordering::Release);
    }
}

async fn delete_published(store: &Store, outbox: &Outbox) {
    let published = outbox.published.load(Ordering::Acquire);
    if published <= outbox.deleted.load(Ordering::Acquire) {
        return;
    }
    let deleted = match store.writer().acquire().await {
        Ok(mut conn) => store::delete_outbox(&mut conn, published).await,
        Err(e) => Err(e.into()),
    };
    match deleted {
        Ok(()) => _ = outbox.deleted.fetch_max(published, Ordering::AcqRel),
        // Published rows left behind are published again later, and JetStream drops them as
        // duplicates (Nats-Msg-Id).
        Err(error) => tracing::warn!(%error, "cannot clear the published outbox rows"),
    }
}

struct ConsumerSpec {
    stream: &'static str,
    durable: &'static str,
    filter: &'static str,
    deliver: DeliverPolicy,
}

/// The bound on (re)creating a consumer. A JetStream request in flight when NATS goes away is
/// never answered, and the client's request timeout is 10 s: without this bound a consumer set
/// up just before an outage would resume that long after NATS is back.
const SETUP_TIMEOUT: Duration = Duration::from_secs(3);

/// `setup`, or an error once [`SETUP_TIMEOUT`] has passed without an answer.
async fn within_setup_timeout<T>(setup: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(SETUP_TIMEOUT, setup)
        .await
        .map_err(|_| anyhow::anyhow!("JetStream did not answer within {SETUP_TIMEOUT:?}"))?
}

/// Pulls from one durable consumer forever, recreating it after errors (NATS restarts…).
async fn feed(
    bus: Bus,
    spec: ConsumerSpec,
    tx: mpsc::Sender<(jetstream::Message, Decoded)>,
    cancel: CancellationToken,
) {
    let mut delay = Duration::from_millis(200);
    let stream_name = spec.stream;
    if let Err(error) = resume_from_ack_floor(&bus, &spec).await {
        tracing::warn!(stream = stream_name, %error, "could not reset the consumer to its ack floor");
    }
    loop {
        let result = async {
            let setup = async {
                let stream = bus.js.get_stream(spec.stream).await?;
                let consumer: jetstream::consumer::Consumer<pull::Config> =
                    stream.get_or_create_consumer(spec.durable, consumer_config(&spec)).await?;
                anyhow::Ok(consumer.messages().await?)
            };
            let mut messages = within_setup_timeout(setup).await?;
            while let Some(msg) = tokio::select! { _ = cancel.cancelled() => None, m = messages.next() => m } {
                let msg = msg?;
                let decoded = decode(&msg);
                if tx.send((msg, decoded)).await.is_err() {
                    break;
                }
            }
            anyhow::Ok(())
        }
        .await;
        if cancel.is_cancelled() || tx.is_closed() {
            return;
        }
        if let Err(error) = result {
            tracing::warn!(stream = stream_name, %error, retry_in = ?delay, "consumer interrupted");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// A previous run may have stopped (or been killed) with messages delivered but not acked.
/// JetStream would redeliver those only after `ack_wait`, behind newer ones; recreating the
/// consumer at its ack floor redelivers them now, in stream order. What was committed but not
/// acked is then skipped as a duplicate.
///
/// Only the look-up is bounded by [`SETUP_TIMEOUT`]: cut between the delete and the create,
/// the consumer would be created anew from the stream's start.
async fn resume_from_ack_floor(bus: &Bus, spec: &ConsumerSpec) -> anyhow::Result<()> {
    if spec.deliver != DeliverPolicy::All {
        return Ok(());
    }
    let look_up = async {
        let stream = bus.js.get_stream(spec.stream).await?;
        let Ok(mut consumer) = stream.get_consumer::<pull::Config>(spec.durable).await else { return Ok(None) };
        let info = consumer.info().await?;
        anyhow::Ok(Some((stream, info.num_ack_pending, info.ack_floor.stream_sequence)))
    };
    let Some((stream, unacked, ack_floor)) = within_setup_timeout(look_up).await? else { return Ok(()) };
    if unacked == 0 {
        return Ok(());
    }
    let from = ack_floor + 1;
    tracing::info!(stream = spec.stream, from, unacked, "resuming after unacked messages");
    stream.delete_consumer(spec.durable).await?;
    stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from },
            ..consumer_config(spec)
        })
        .await?;
    Ok(())
}

fn consumer_config(spec: &ConsumerSpec) -> pull::Config {
    pull::Config {
        durable_name: Some(spec.durable.to_owned()),
        description: Some("status-tracker correlator".into()),
        ack_policy: AckPolicy::Explicit,
        ack_wait: Duration::from_secs(60),
        deliver_policy: spec.deliver,
        filter_subject: spec.filter.to_owned(),
        max_ack_pending: 20_000,
        ..Default::default()
    }
}

enum Decoded {
    Event(Box<MediaEnvelope>),
    Poison(String),
}

fn decode(msg: &jetstream::Message) -> Decoded {
    match crate::correlate::decode_fact(&msg.payload) {
        Ok(env) => Decoded::Event(Box::new(env)),
        Err(e) => Decoded::Poison(e.to_string()),
    }
}

/// The span of one message: a child of the trace that published it.
fn consume_span(msg: &jetstream::Message, decoded: &Decoded) -> Span {
    let span = tracing::info_span!(
        "consume",
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.destination.name = %msg.subject,
        event.id = tracing::field::Empty,
        request.id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    telemetry::set_parent_from_headers(&span, msg.headers.as_ref());
    telemetry::record_trace_id(&span);
    if let Decoded::Event(env) = decoded {
        span.record("event.id", env.id.as_str());
    }
    span
}

/// A batch correlated, not committed yet.
struct Prepared {
    commit: Commit,
    done: Done,
    spans: Vec<Span>,
    correlates: Vec<Span>,
    outcomes: Vec<Option<(Outcome, time::OffsetDateTime)>>,
}

/// Correlates the messages in one session, while `prior` (the previous batch) may still be
/// committing; returns the batch to commit and what the next batch needs of it.
async fn correlate(
    store: &Store,
    processor: &Processor,
    batch: &[jetstream::Message],
    decoded: &[Decoded],
    prior: Option<Prior>,
) -> store::Result<(Prepared, Prior)> {
    let spans: Vec<Span> = batch.iter().zip(decoded).map(|(m, d)| consume_span(m, d)).collect();
    let mut session = Session::batch(store, &processor.cache, prior);
    let ids: Vec<&str> = decoded
        .iter()
        .filter_map(|d| match d {
            Decoded::Event(env) => Some(env.id.as_str()),
            Decoded::Poison(_) => None,
        })
        .collect();
    let keys: Vec<String> = decoded
        .iter()
        .flat_map(|d| match d {
            Decoded::Event(env) => crate::correlate::lookup_keys(&env.data.event),
            Decoded::Poison(_) => Vec::new(),
        })
        .collect();
    let started = std::time::Instant::now();
    session.prefetch(&ids, &keys).await?;
    let looked_up = std::time::Instant::now();
    step(LOOK_UP, looked_up - started);
    let mut outcomes = Vec::with_capacity(batch.len());
    // Kept until after the commit. sqlx runs each statement on its connection's thread inside
    // the span current when it was sent (a `correlate` span) and drops that handle there when
    // done. When that is the last handle, the span closes on sqlx's thread, and the registry
    // hands the close of its parent (`consume`) to that thread's default subscriber: the global
    // one in the product, but none where the subscriber is set per thread (tests), and the
    // parent then never closes nor is exported. Once the commit has answered, sqlx's thread
    // has finished every earlier statement, so the last handles are dropped there.
    let mut correlates = Vec::with_capacity(batch.len());
    for ((msg, d), span) in batch.iter().zip(decoded).zip(&spans) {
        match d {
            Decoded::Poison(error) => {
                let _enter = span.enter();
                tracing::error!(subject = %msg.subject, %error, "undecodable message terminated (kept in the stream)");
                outcomes.push(None);
            }
            Decoded::Event(env) => {
                let correlate = tracing::info_span!(
                    parent: span,
                    "correlate",
                    request.id = tracing::field::Empty,
                    tmdb.id = tracing::field::Empty,
                    tvdb.id = tracing::field::Empty,
                    outcome = tracing::field::Empty,
                );
                let outcome =
                    processor.process_in(&mut session, env, &msg.subject).instrument(correlate.clone()).await?;
                correlate.record("outcome", outcome.label().as_str());
                if let Outcome::Applied(ids) = &outcome {
                    let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
                    span.record("request.id", ids.join(",").as_str());
                }
                tracing::debug!(parent: span, event = %env.id, outcome = %outcome.label(), "event processed");
                outcomes.push(Some((outcome, env.time)));
                correlates.push(correlate);
            }
        }
    }
    step(CORRELATE, looked_up.elapsed());
    let Finished { commit, next, done } = session.finish();
    Ok((Prepared { commit, done, spans, correlates, outcomes }, next))
}

/// Commits a correlated batch and hands its state messages to the publisher. The next batch
/// learns whether it committed once nothing of this one needs the writer any more.
async fn commit(prepared: Prepared, store: &Store, outbox: &Outbox) -> store::Result<()> {
    let Prepared { commit, done, spans, correlates, outcomes } = prepared;
    let published = outbox.published.load(Ordering::Acquire);
    let delete_up_to = (published > outbox.deleted.load(Ordering::Acquire)).then_some(published);
    // One commit for the batch, shown in the trace of each of its messages.
    let commits: Vec<Span> = spans.iter().map(|s| tracing::info_span!(parent: s, "commit")).collect();
    let started = std::time::Instant::now();
    let written = commit.run(delete_up_to).await;
    step(COMMIT, started.elapsed());
    drop(commits);
    drop(correlates);
    let written = match written {
        Ok(written) => written,
        Err(error) => {
            done.send(false);
            return Err(error);
        }
    };
    outbox.hand_over(written);
    if let Some(up_to) = delete_up_to {
        outbox.deleted.fetch_max(up_to, Ordering::AcqRel);
    }
    if let Err(error) = store.restart_long_log().await {
        tracing::warn!(%error, "the write-ahead log was not restarted; it will be after a later checkpoint");
    }
    done.send(true);
    let now = time::OffsetDateTime::now_utc();
    for outcome in outcomes {
        let label = match &outcome {
            None => "undecodable".to_owned(),
            Some((o, at)) => {
                metrics().correlation_latency.observe((now - *at).as_seconds_f64().max(0.0));
                o.label().split(':').next().unwrap_or_default().to_owned()
            }
        };
        count(&metrics().events, OutcomeLabel { outcome: label });
    }
    Ok(())
}

const LOOK_UP: &str = "look_up";
const CORRELATE: &str = "correlate";
const COMMIT: &str = "commit";

/// Counts the time a batch spent in one step (`tracker_correlator_batch_step_seconds`).
fn step(step: &'static str, took: Duration) {
    metrics().batch_steps.get_or_create(&StepLabel { step }).observe(took.as_secs_f64());
}

async fn ack(msg: &jetstream::Message, poison: bool) {
    let result = if poison { msg.ack_with(AckKind::Term).await } else { msg.ack().await };
    if let Err(error) = result {
        tracing::debug!(%error, "ack not sent; the message will be redelivered and skipped as a duplicate");
    }
}

/// Sets the `tracker_requests{state}` and `tracker_orphaned_events` gauges (at most once a
/// second, after a batch).
async fn update_state_gauges(store: &Store) {
    let Ok(mut conn) = store.pool().acquire().await else { return };
    if let Ok(orphans) = store::orphan_count(&mut conn).await {
        metrics().orphans.set(orphans);
    }
    let Ok(by_state) = store::count_by_state(&mut conn).await else { return };
    for state in shared::model::State::ALL {
        let n = by_state.iter().find(|(s, _)| *s == state.as_str()).map_or(0, |(_, n)| *n);
        metrics().requests.get_or_create(&shared::metrics::StateLabel { state: state.as_str().into() }).set(n);
    }
}

/// Publishes every queued state message to `TRACKER`, oldest first, and forgets those
/// JetStream has. On failure the rest stay queued for the next start; returns whether all
/// were published.
pub(crate) async fn publish_outbox(bus: &Bus, store: &Store) -> bool {
    let outbox = Outbox::default();
    let published = publish_new(bus, store, &outbox).await;
    delete_published(store, &outbox).await;
    published
}

/// Publishes state messages and waits for JetStream to store them all. The rows are consumed:
/// what is not acknowledged is read from the database again.
async fn publish_rows(bus: &Bus, msgs: Vec<store::OutboxMessage>) -> bool {
    {
        let mut pending = Vec::with_capacity(msgs.len());
        for m in msgs {
            // The change continues the trace of the event that caused it.
            let span = tracing::info_span!(
                "publish state",
                otel.kind = "producer",
                messaging.system = "nats",
                messaging.destination.name = %m.subject,
            );
            if let Some(tp) = &m.traceparent {
                telemetry::set_parent_from_traceparent(&span, tp);
            }
            let headers = span.in_scope(|| shared::bus::event_headers(&m.msg_id, None));
            match bus.js.publish_with_headers(m.subject, headers, m.payload.into()).await {
                Ok(ack) => pending.push(ack),
                Err(error) => {
                    tracing::warn!(%error, "state messages not published yet; will retry");
                    return false;
                }
            }
        }
        for ack in pending {
            if let Err(error) = ack.await {
                tracing::warn!(%error, "state message not acknowledged; will retry");
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(ids: std::ops::RangeInclusive<i64>) -> Vec<store::OutboxMessage> {
        ids.map(|id| store::OutboxMessage {
            id,
            subject: format!("tracker.request.{id}.requested"),
            msg_id: id.to_string(),
            payload: Vec::new(),
            traceparent: None,
        })
        .collect()
    }

    fn ids(rows: Option<Vec<store::OutboxMessage>>) -> Option<Vec<i64>> {
        rows.map(|r| r.iter().map(|m| m.id).collect())
    }

    #[test]
    fn the_handoff_gives_only_rows_that_continue_what_was_published() {
        let outbox = Outbox::default();
        outbox.hand_over(rows(5..=7));
        assert_eq!(ids(outbox.take_after(4, 2)), Some(vec![5, 6]));
        assert_eq!(ids(outbox.take_after(6, 10)), Some(vec![7]));
        assert_eq!(ids(outbox.take_after(7, 10)), None, "nothing left");
        outbox.hand_over(rows(10..=11));
        assert_eq!(ids(outbox.take_after(7, 10)), None, "8 and 9 must be read from the database");
        assert_eq!(ids(outbox.take_after(9, 10)), Some(vec![10, 11]), "rows already published are skipped");
    }

    #[test]
    fn the_database_is_read_only_for_rows_not_handed_over() {
        let outbox = Outbox::default();
        assert_eq!(ids(outbox.take_after(0, 10)), None, "rows of an earlier run may wait in the database");
        outbox.read_to_end();
        assert_eq!(ids(outbox.take_after(0, 10)), Some(vec![]), "read to its end, and nothing handed over since");
        outbox.hand_over(rows(1..=3));
        assert_eq!(ids(outbox.take_after(0, 10)), Some(vec![1, 2, 3]));
        assert_eq!(ids(outbox.take_after(3, 10)), Some(vec![]), "everything handed over is published");
    }

    /// Six rows from `first`, each a quarter of the handoff's limit.
    fn over_the_limit(first: i64) -> Vec<store::OutboxMessage> {
        let mut rows = rows(first..=first + 5);
        for row in &mut rows {
            row.payload = vec![b' '; HANDOFF_BYTES / 4];
        }
        rows
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_handoff_holds_the_next_batch_until_the_publisher_takes_rows() {
        let outbox = Arc::new(Outbox::default());
        outbox.hand_over(rows(1..=3));
        tokio::time::timeout(Duration::from_millis(1), outbox.make_room()).await.expect("room left: no wait");

        outbox.hand_over(over_the_limit(4));
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.make_room().await }
        });
        tokio::time::sleep(HANDOFF_WAIT / 2).await;
        assert!(!waiting.is_finished(), "over the limit: the batch waits");
        assert_eq!(ids(outbox.take_after(0, 4)), Some(vec![1, 2, 3, 4]), "one of the large rows taken");
        tokio::time::sleep(HANDOFF_WAIT * 3 / 4).await;
        assert!(!waiting.is_finished(), "still over the limit, and the publisher took some: no time-out");
        assert_eq!(ids(outbox.take_after(4, 1)), Some(vec![5]));
        tokio::time::timeout(HANDOFF_WAIT / 4, waiting).await.expect("room again: the batch goes on").unwrap();
        assert_eq!(ids(outbox.take_after(5, 10)), Some(vec![6, 7, 8, 9]), "nothing was dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_publisher_that_takes_nothing_for_a_second_gets_the_rows_from_the_database() {
        let outbox = Arc::new(Outbox::default());
        outbox.read_to_end();
        outbox.hand_over(rows(1..=1));
        assert_eq!(ids(outbox.take_after(0, 10)), Some(vec![1]));
        // Row 1 was not published (NATS away); the publisher retries from the database.
        outbox.hand_over(over_the_limit(2));
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.make_room().await }
        });
        let started = tokio::time::Instant::now();
        for _ in 0..3 {
            tokio::time::sleep(HANDOFF_WAIT / 2).await;
            assert_eq!(ids(outbox.take_after(0, 10)), None, "row 1 is not in the handoff");
        }
        waiting.await.unwrap();
        assert!(started.elapsed() <= HANDOFF_WAIT * 3 / 2, "a publisher that only asks does not hold the batch");
        assert_eq!(ids(outbox.take_after(1, 10)), None, "the dropped rows are read from the database");

        // Until the publisher has caught up, nothing is kept and nothing waits.
        outbox.hand_over(over_the_limit(8));
        tokio::time::timeout(Duration::from_millis(1), outbox.make_room()).await.expect("no wait");
        assert_eq!(ids(outbox.take_after(7, 10)), None, "8 to 13 are in the database only");
        assert_eq!(ids(outbox.take_after(13, 10)), Some(vec![]), "published up to the last one handed over");
        outbox.read_to_end();
        outbox.hand_over(rows(14..=14));
        assert_eq!(ids(outbox.take_after(13, 10)), Some(vec![14]), "the handoff is used again");
    }
}

#[cfg(test)]
mod resume_tests {
    use std::time::Instant;

    use rustix::process::{Pid, Signal, kill_process};
    use shared::nats_server::{EmbeddedNats, free_port};

    use super::*;

    fn signal(pid: &str, signal: Signal) {
        let pid = Pid::from_raw(pid.parse().unwrap()).unwrap();
        kill_process(pid, signal).unwrap();
    }

    /// A server that dies with the feed's setup request unanswered (frozen, then killed: the
    /// request was sent and is lost with it). The client's own request timeout is 10 s; the
    /// feed must not wait for it once NATS is back. From the start of the stream the first
    /// request is the look-up for the reset to the ack floor; from its last message (like any
    /// policy but `All`) it is the consumer's own setup.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_feed_whose_setup_request_died_with_nats_resumes_soon_after_it_is_back() {
        for deliver in [DeliverPolicy::All, DeliverPolicy::Last] {
            a_setup_request_dies_with_nats(deliver).await;
        }
    }

    async fn a_setup_request_dies_with_nats(deliver: DeliverPolicy) {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, port) = (tmp.path().join("nats"), free_port().unwrap());
        let nats = EmbeddedNats::start_on(&dir, "nats-server", port).await.unwrap();
        let bus = Bus::connect(&nats.url(), "feed-test").await.unwrap();
        bus.ensure_streams().await.unwrap();
        let pid = std::fs::read_to_string(dir.join("nats-server.pid")).unwrap().trim().to_owned();
        signal(&pid, Signal::STOP);

        let (tx, mut rx) = mpsc::channel(8);
        let cancel = CancellationToken::new();
        let spec = ConsumerSpec { stream: "MEDIA", durable: "feed-test", filter: "media.>", deliver };
        let feed = tokio::spawn(feed(bus.clone(), spec, tx, cancel.clone()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        signal(&pid, Signal::KILL);
        nats.stop().await;

        let nats = EmbeddedNats::start_on(&dir, "nats-server", port).await.unwrap();
        let back = Instant::now();
        loop {
            let published = async { bus.js.publish("media.jellyseerr.test", "{}".into()).await?.await };
            match tokio::time::timeout(Duration::from_secs(2), published).await {
                Ok(Ok(_)) => break,
                _ if back.elapsed() < Duration::from_secs(10) => tokio::time::sleep(Duration::from_millis(50)).await,
                other => panic!("cannot publish after the restart: {other:?}"),
            }
        }
        let got = tokio::time::timeout(Duration::from_secs(7), rx.recv()).await;
        assert!(
            matches!(got, Ok(Some(_))),
            "delivering {deliver:?}, the feed did not deliver within 7 s of NATS being back ({:?} after)",
            back.elapsed()
        );
        cancel.cancel();
        feed.await.unwrap();
        nats.stop().await;
    }
}
