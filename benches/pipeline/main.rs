//! The end-to-end benchmark of status-tracker: the all-in-one binary with its embedded
//! `nats-server` on loopback, driven over HTTP as the media services drive it, watched over
//! SSE as browsers watch it.
//!
//! ```sh
//! cargo bench --bench pipeline              # the full run, a few minutes
//! cargo bench --bench pipeline -- --smoke   # every measurement, tiny sizes
//! cargo bench --bench pipeline -- --only throughput   # one part: floor, idle, throughput,
//!                                           # load, fanout (checkpoints come with throughput)
//! BENCH_BIN=/path/to/status-tracker cargo bench --bench pipeline   # measure another build
//! cargo bench --bench pipeline -- --only throughput --senders 16 --requests 1000 --checkpoints ""
//!                                           # a short run, to compare builds side by side
//! ```
//!
//! It reports the floor (a JetStream publish → durable consume round trip on the same
//! server, and an HTTP round trip to the same listener), webhook → SSE latency idle and under
//! load, sustained webhook throughput with zero loss for several numbers of concurrent
//! senders, the delivery of one update to 1,000 SSE clients, resident memory idle and after
//! 10,000 requests, and the index page at 1,000 and 10,000 requests. docs/performance.md
//! holds the figures.

mod load;
mod sse;
mod stack;

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use load::{Fixtures, Hook};
use stack::{Cpu, Stack};
use tokio::sync::Mutex;

/// Sizes of one run.
#[derive(Debug, Clone)]
pub struct Config {
    pub floor_samples: usize,
    /// Messages of the JetStream throughput floor taken before each throughput run.
    pub floor_messages: u64,
    pub idle_samples: usize,
    /// Concurrent senders of each throughput run.
    pub senders: Vec<usize>,
    /// Requests per throughput run (3 films for each series).
    pub requests_per_run: u64,
    pub load_samples: usize,
    pub sse_clients: usize,
    pub sse_updates: usize,
    /// Request counts at which the index page is measured; the last one is also the memory
    /// checkpoint.
    pub checkpoints: Vec<u64>,
    /// How long the process is left quiet before its memory is read again.
    pub settle: Duration,
    /// Only this part (`floor`, `idle`, `throughput`, `load`, `fanout`, `instructions`), for
    /// profiling.
    pub only: Option<String>,
    /// Requests of each callgrind run (`instructions`), none to skip it.
    pub instruction_requests: Option<u64>,
}

impl Config {
    pub fn full() -> Self {
        Self {
            floor_samples: 2000,
            floor_messages: 5000,
            idle_samples: 500,
            senders: vec![1, 4, 16, 64],
            requests_per_run: 2000,
            load_samples: 300,
            sse_clients: 1000,
            sse_updates: 50,
            checkpoints: vec![1000, 10_000],
            settle: Duration::from_secs(5),
            only: None,
            instruction_requests: Some(40),
        }
    }

    pub fn smoke() -> Self {
        Self {
            floor_samples: 50,
            floor_messages: 100,
            idle_samples: 20,
            senders: vec![4],
            requests_per_run: 24,
            load_samples: 10,
            sse_clients: 20,
            sse_updates: 3,
            checkpoints: vec![40, 80],
            settle: Duration::from_millis(200),
            only: None,
            // The test suite does not need valgrind.
            instruction_requests: None,
        }
    }
}

/// p50/p99/max of a set of durations.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dist {
    pub n: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Dist {
    pub fn of(mut v: Vec<Duration>) -> Self {
        v.sort();
        let at = |q: f64| v.get(((v.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or_default();
        Self { n: v.len(), p50: at(0.50), p99: at(0.99), max: v.last().copied().unwrap_or_default() }
    }
}

#[derive(Debug, Clone)]
pub struct Throughput {
    pub senders: usize,
    pub requests: u64,
    pub webhooks: u64,
    /// Until every webhook was answered 202.
    pub accepted_in: Duration,
    /// Until the correlator had applied every one.
    pub applied_in: Duration,
    pub post: Dist,
    pub errors: u64,
    /// Requests that did not end available (loss).
    pub missing: i64,
    pub cpu: Cpu,
    /// JetStream's own rate at as many publishers, taken just before (fill runs have none).
    pub floor: Option<f64>,
}

impl Throughput {
    pub fn accepted_rate(&self) -> f64 {
        self.webhooks as f64 / self.accepted_in.as_secs_f64()
    }

    pub fn applied_rate(&self) -> f64 {
        self.webhooks as f64 / self.applied_in.as_secs_f64()
    }
}

#[derive(Debug, Clone)]
pub struct Page {
    pub requests: u64,
    pub time: Duration,
    pub bytes: usize,
}

#[derive(Debug, Default, Clone)]
pub struct Report {
    pub floor_jetstream: Dist,
    pub floor_http: Dist,
    pub idle: Dist,
    pub idle_post: Dist,
    /// The correlator's steps at idle, mean per batch: (step, µs, batches).
    pub idle_steps: Vec<(&'static str, f64, f64)>,
    pub runs: Vec<Throughput>,
    pub under_load: Option<(f64, Dist)>,
    pub fanout: Option<(usize, Dist, Dist)>,
    /// (requests, status-tracker RSS, nats-server RSS)
    pub memory: Vec<(String, u64, u64)>,
    pub pages: Vec<Page>,
    pub instructions: Vec<Instructions>,
}

/// What one webhook costs the app in instructions, counted by callgrind.
#[derive(Debug, Clone)]
pub struct Instructions {
    pub senders: usize,
    pub webhooks: u64,
    /// Of the whole run, and of a run that only started and stopped.
    pub total: u64,
    pub fixed: u64,
}

impl Instructions {
    pub fn per_webhook(&self) -> f64 {
        self.total.saturating_sub(self.fixed) as f64 / self.webhooks as f64
    }
}

/// Fresh Jellyseerr ids (7 digits, so that one can never be a prefix of another).
static NEXT_ID: AtomicU64 = AtomicU64::new(1_000_000);

fn next_ids(n: u64) -> u64 {
    NEXT_ID.fetch_add(n, Ordering::Relaxed)
}

pub async fn run(cfg: &Config, bin: &Path, root: &Path, log: &mut dyn FnMut(&str)) -> Report {
    let fx = Arc::new(Fixtures::load(root));
    let mut stack = Stack::start(bin).await;
    let mut report = Report::default();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (app, nats) = stack.rss();
    report.memory.push(("idle, just started".into(), app, nats));
    log(&format!("started: status-tracker {} MiB, nats-server {} MiB", mib(app), mib(nats)));

    let want = |part: &str| cfg.only.as_deref().is_none_or(|only| only == part);
    if want("floor") {
        report.floor_jetstream = floor_jetstream(&stack, cfg.floor_samples).await;
        report.floor_http = floor_http(&stack, cfg.floor_samples).await;
        log(&format!("floor: JetStream {}, HTTP {}", show(&report.floor_jetstream), show(&report.floor_http)));
    }

    let mut requests = 0;
    if want("idle") {
        let mut seen = sse::connect(&stack.url("/api/sse"), 1).await;
        let steps_before = batch_steps(&stack).await;
        let (idle, idle_post) = probe(&stack, &fx, &mut seen, cfg.idle_samples, 1).await;
        report.idle = idle;
        report.idle_post = idle_post;
        requests += cfg.idle_samples as u64;
        log(&format!("webhook → SSE, idle: {} (POST answered: {})", show(&idle), show(&idle_post)));
        report.idle_steps = batch_steps(&stack)
            .await
            .into_iter()
            .zip(steps_before)
            .map(|((step, sum, count), (_, sum0, count0))| {
                (step, (sum - sum0) / (count - count0) * 1e6, count - count0)
            })
            .collect();
        let shown: Vec<String> =
            report.idle_steps.iter().map(|(step, us, n)| format!("{step} {us:.0} µs ({n} batches)")).collect();
        log(&format!("correlator per batch, idle (mean): {}", shown.join(", ")));
    }

    let mut checkpoints: VecDeque<u64> = cfg.checkpoints.iter().copied().collect();
    if !want("throughput") {
        checkpoints.clear();
    }
    for &senders in cfg.senders.iter().filter(|_| want("throughput")) {
        // A checkpoint this run would pass is taken first, at its own count.
        while let Some(c) = checkpoints.front().copied().filter(|c| *c < requests + cfg.requests_per_run) {
            checkpoints.pop_front();
            fill_to(&stack, &fx, &mut report, &mut requests, c, log).await;
            checkpoint(&stack, &mut report, requests, log, cfg.settle).await;
        }
        // What NATS alone sustains at as many publishers, on the machine as it is now: the
        // machine's speed varies by half within an hour, the ratio much less.
        let floor = floor_jetstream_rate(&stack, senders, cfg.floor_messages).await;
        log(&format!("{senders} publishers: JetStream floor {floor:.0} messages/s"));
        let mut run = throughput(&stack, &fx, senders, cfg.requests_per_run).await;
        run.floor = Some(floor);
        requests += run.requests;
        log(&format!(
            "{senders} senders: {} webhooks ({} requests): accepted {:.0}/s, applied {:.0}/s, POST {}, errors {}, missing {}",
            run.webhooks,
            run.requests,
            run.accepted_rate(),
            run.applied_rate(),
            show(&run.post),
            run.errors,
            run.missing
        ));
        report.runs.push(run);
        while checkpoints.front().is_some_and(|c| requests >= *c) {
            checkpoints.pop_front();
            checkpoint(&stack, &mut report, requests, log, cfg.settle).await;
        }
    }
    // Top up to the remaining checkpoints.
    while let Some(c) = checkpoints.pop_front() {
        fill_to(&stack, &fx, &mut report, &mut requests, c, log).await;
        checkpoint(&stack, &mut report, requests, log, cfg.settle).await;
    }
    if want("throughput") {
        // What holding the requests costs, without what the load left in the allocator.
        stack.restart().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (app, nats) = stack.rss();
        report.memory.push((format!("{requests} requests, after a restart, idle"), app, nats));
        log(&format!(
            "restarted with {requests} requests: status-tracker {} MiB, nats-server {} MiB",
            mib(app),
            mib(nats)
        ));
    }

    if want("load") {
        // Latency under load: half the best applied rate, from background senders.
        let best = report.runs.iter().map(Throughput::applied_rate).fold(0.0, f64::max);
        let rate = if best > 0.0 { best / 2.0 } else { 500.0 };
        let (dist, achieved) = under_load(&stack, &fx, rate, cfg.load_samples).await;
        log(&format!("webhook → SSE under {achieved:.0} webhooks/s: {}", show(&dist)));
        report.under_load = Some((achieved, dist));
    }

    if want("fanout") {
        let (each, all) = fanout(&stack, &fx, cfg.sse_clients, cfg.sse_updates).await;
        log(&format!("{} SSE clients: each delivery {}, last client {}", cfg.sse_clients, show(&each), show(&all)));
        report.fanout = Some((cfg.sse_clients, each, all));
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    let (app, nats) = stack.rss();
    report.memory.push((format!("idle again after {requests} requests"), app, nats));
    drop(stack);

    if let Some(requests) = cfg.instruction_requests.filter(|_| want("instructions")) {
        report.instructions = instructions(bin, &fx, requests, log).await;
    }
    report
}

/// The app's instructions per webhook under callgrind, at 1 and at 64 senders: the same for
/// the same build and inputs whatever else the machine is doing, where the rates and CPU times
/// above vary by tens of percent on a shared machine; the figure to compare two builds by.
/// nats-server runs natively (valgrind does not follow children). Each run is a fresh stack;
/// a run that only starts and stops gives the fixed cost, taken off.
async fn instructions(bin: &Path, fx: &Arc<Fixtures>, requests: u64, log: &mut dyn FnMut(&str)) -> Vec<Instructions> {
    if std::process::Command::new("valgrind").arg("--version").output().is_err() {
        log("instructions: skipped, valgrind is not installed (Debian package valgrind)");
        return Vec::new();
    }
    let run = |senders: usize| {
        let fx = fx.clone();
        async move {
            let out = tempfile::tempdir().expect("temporary directory");
            let file = out.path().join("callgrind.out");
            let wrapper =
                ["valgrind".into(), "--tool=callgrind".into(), format!("--callgrind-out-file={}", file.display())];
            let mut stack = Stack::start_under(&wrapper, bin).await;
            let webhooks = match senders {
                0 => 0,
                n => throughput(&stack, &fx, n, requests).await.webhooks,
            };
            stack.stop();
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let total = text.lines().find_map(|l| l.strip_prefix("summary: ")?.trim().parse().ok());
            (webhooks, total.unwrap_or_else(|| panic!("no callgrind summary in {}", file.display())))
        }
    };
    let (_, fixed) = run(0).await;
    let mut out = Vec::new();
    for senders in [1, 64] {
        let (webhooks, total) = run(senders).await;
        let counted = Instructions { senders, webhooks, total, fixed };
        log(&format!(
            "instructions: {senders} senders, {webhooks} webhooks: {:.0} per webhook (callgrind; {total} in all, {fixed} to start and stop)",
            counted.per_webhook()
        ));
        out.push(counted);
    }
    out
}

/// Sends requests until `requests` reaches `to`, at the most senders measured so far (16
/// before any run); the run is reported with the others, so that what it lost shows.
async fn fill_to(
    stack: &Stack,
    fx: &Arc<Fixtures>,
    report: &mut Report,
    requests: &mut u64,
    to: u64,
    log: &mut dyn FnMut(&str),
) {
    if *requests >= to {
        return;
    }
    let senders = report.runs.iter().map(|r| r.senders).max().unwrap_or(16);
    let run = throughput(stack, fx, senders, to - *requests).await;
    *requests += run.requests;
    log(&format!("filled to {requests} requests: missing {}", run.missing));
    report.runs.push(run);
}

async fn checkpoint(stack: &Stack, report: &mut Report, requests: u64, log: &mut dyn FnMut(&str), settle: Duration) {
    let page = index_page(stack, requests).await;
    log(&format!("index at {requests} requests: {:.2} ms, {} bytes (br)", ms(page.time), page.bytes));
    report.pages.push(page);
    let (app, nats) = stack.rss();
    report.memory.push((format!("after {requests} requests, at once"), app, nats));
    log(&format!("memory after {requests} requests: status-tracker {} MiB, nats-server {} MiB", mib(app), mib(nats)));
    // What stays once the load is over and the process has been quiet for a while.
    tokio::time::sleep(settle).await;
    let (app, nats) = stack.rss();
    report.memory.push((format!("after {requests} requests, {settle:?} later"), app, nats));
    log(&format!("{settle:?} later: status-tracker {} MiB, nats-server {} MiB", mib(app), mib(nats)));
}

/// About the size of a webhook's envelope: what the floors publish.
const FLOOR_PAYLOAD: usize = 4096;

/// A file stream `name` on `subject` on the app's NATS server and the messages of a durable
/// pull consumer on it: what the floors publish to and read from.
async fn floor_stream(
    stack: &Stack,
    name: &str,
    subject: &str,
) -> (async_nats::jetstream::Context, async_nats::jetstream::consumer::pull::Stream) {
    use async_nats::jetstream::{self, consumer::pull, stream};
    let client = async_nats::connect(stack.nats_url()).await.unwrap();
    let js = jetstream::new(client);
    let stream = js
        .create_stream(stream::Config {
            name: name.into(),
            subjects: vec![subject.into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(pull::Config { durable_name: Some("bench".into()), ..Default::default() })
        .await
        .unwrap();
    let messages = consumer.messages().await.unwrap();
    (js, messages)
}

/// A JetStream publish (acknowledged) to a file stream → the message at a durable pull
/// consumer, one at a time: what any webhook → NATS → consumer path costs at least.
async fn floor_jetstream(stack: &Stack, samples: usize) -> Dist {
    let (js, mut messages) = floor_stream(stack, "BENCH_FLOOR", "bench.floor").await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = messages.next().await {
            let _ = tx.send(Instant::now());
            let _ = m.ack().await;
        }
    });
    let payload = bytes::Bytes::from(vec![b'x'; FLOOR_PAYLOAD]);
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        js.publish("bench.floor", payload.clone()).await.unwrap().await.unwrap();
        let at = rx.recv().await.unwrap();
        out.push(at - started);
    }
    reader.abort();
    js.delete_stream("BENCH_FLOOR").await.unwrap();
    Dist::of(out)
}

/// JetStream's sustained rate: `publishers` concurrent publishers, each awaiting its ack before
/// the next publish (as each webhook's POST waits for its fact's), into a file stream read by a
/// durable pull consumer that acks every message (as the correlator does); messages per second
/// until the consumer has acked all `messages`. A webhook is at least one such message; the
/// app also publishes its state message to JetStream.
async fn floor_jetstream_rate(stack: &Stack, publishers: usize, messages: u64) -> f64 {
    let (js, mut incoming) = floor_stream(stack, "BENCH_FLOOR_RATE", "bench.rate").await;
    let reader = tokio::spawn(async move {
        let mut acked = 0;
        while acked < messages {
            let m = incoming.next().await.expect("the floor's consumer ended").unwrap();
            m.ack().await.unwrap();
            acked += 1;
        }
    });
    let left = Arc::new(AtomicU64::new(messages));
    let payload = bytes::Bytes::from(vec![b'x'; FLOOR_PAYLOAD]);
    let started = Instant::now();
    let senders: Vec<_> = (0..publishers)
        .map(|_| {
            let (js, left, payload) = (js.clone(), left.clone(), payload.clone());
            tokio::spawn(async move {
                while left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
                    js.publish("bench.rate", payload.clone()).await.unwrap().await.unwrap();
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(120), reader)
        .await
        .expect("the floor's messages were not all consumed")
        .unwrap();
    let rate = messages as f64 / started.elapsed().as_secs_f64();
    js.delete_stream("BENCH_FLOOR_RATE").await.unwrap();
    rate
}

/// `GET /healthz` on the same listener: the HTTP part of any webhook.
async fn floor_http(stack: &Stack, samples: usize) -> Dist {
    let url = stack.url("/healthz");
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        stack.http.get(&url).send().await.unwrap().bytes().await.unwrap();
        out.push(started.elapsed());
    }
    Dist::of(out)
}

/// The correlator's time per step so far (`tracker_correlator_batch_step_seconds`): (step,
/// seconds in all, batches).
async fn batch_steps(stack: &Stack) -> Vec<(&'static str, f64, f64)> {
    let mut out = Vec::new();
    for step in ["look_up", "correlate", "commit"] {
        let metric = |what: &str| format!("tracker_correlator_batch_step_seconds_{what}{{step=\"{step}\"}}");
        out.push((step, stack.metric(&metric("sum")).await, stack.metric(&metric("count")).await));
    }
    out
}

/// Posts `samples` new requests one after the other and measures each from the POST to the
/// change at the SSE client(s) of `seen` (the first of `clients`).
async fn probe(
    stack: &Stack,
    fx: &Fixtures,
    seen: &mut tokio::sync::mpsc::UnboundedReceiver<sse::Seen>,
    samples: usize,
    gap_ms: u64,
) -> (Dist, Dist) {
    let base = stack.url("");
    let (mut latency, mut post) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        let id = next_ids(1);
        let hook = fx.pending_film(id);
        let started = Instant::now();
        post.push(load::post(&stack.http, &base, &hook).await.expect("webhook accepted"));
        let at = wait_seen(seen, id).await;
        latency.push(at - started);
        tokio::time::sleep(Duration::from_millis(gap_ms)).await;
    }
    (Dist::of(latency), Dist::of(post))
}

async fn wait_seen(seen: &mut tokio::sync::mpsc::UnboundedReceiver<sse::Seen>, id: u64) -> Instant {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, seen.recv()).await {
            Ok(Some(s)) if s.jellyseerr_id == id => return s.at,
            Ok(Some(_)) => continue,
            _ => panic!("request {id} never reached the SSE client"),
        }
    }
}

/// `requests` requests (a series for every three films) sent by `senders` concurrent
/// senders, each posting one request's webhooks in order; then waits until the correlator has
/// applied all of them and checks that every request became available.
async fn throughput(stack: &Stack, fx: &Arc<Fixtures>, senders: usize, requests: u64) -> Throughput {
    let first = next_ids(requests);
    let work: VecDeque<Vec<Hook>> =
        (0..requests).map(|k| if k % 4 == 3 { fx.series(first + k) } else { fx.film(first + k) }).collect();
    let webhooks: u64 = work.iter().map(|w| w.len() as u64).sum();
    let consumed_before = stack.metric("tracker_events_consumed_total").await;
    let available_before = stack.metric("tracker_requests{state=\"available\"}").await;
    let work = Arc::new(Mutex::new(work));
    let base = Arc::new(stack.url(""));
    let cpu_before = stack.cpu();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (work, base, http) = (work.clone(), base.clone(), stack.http.clone());
        tasks.push(tokio::spawn(async move {
            let (mut times, mut errors) = (Vec::new(), 0u64);
            loop {
                let Some(hooks) = work.lock().await.pop_front() else { break };
                for hook in &hooks {
                    match load::post(&http, &base, hook).await {
                        Ok(t) => times.push(t),
                        Err(e) => {
                            errors += 1;
                            eprintln!("webhook refused: {e}");
                        }
                    }
                }
            }
            (times, errors)
        }));
    }
    let (mut times, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (t, e) = t.await.unwrap();
        times.extend(t);
        errors += e;
    }
    let accepted_in = started.elapsed();
    let target = consumed_before + webhooks as f64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while stack.metric("tracker_events_consumed_total").await < target && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let applied_in = started.elapsed();
    let cpu = stack.cpu().since(cpu_before);
    // The state gauges follow the commits; give the last batch a moment.
    let mut available = 0.0;
    for _ in 0..100 {
        available = stack.metric("tracker_requests{state=\"available\"}").await;
        if available >= available_before + requests as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Throughput {
        senders,
        requests,
        webhooks,
        accepted_in,
        applied_in,
        post: Dist::of(times),
        errors,
        missing: (available_before + requests as f64 - available) as i64,
        cpu,
        floor: None,
    }
}

/// Webhook → SSE latency while background senders keep `rate` webhooks a second flowing.
async fn under_load(stack: &Stack, fx: &Arc<Fixtures>, rate: f64, samples: usize) -> (Dist, f64) {
    let senders = 8;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let base = Arc::new(stack.url(""));
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (stop, sent, base, http, fx) = (stop.clone(), sent.clone(), base.clone(), stack.http.clone(), fx.clone());
        let per_sender = Duration::from_secs_f64(senders as f64 / rate);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(per_sender);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::Relaxed) {
                let id = next_ids(1);
                let hooks = if id % 4 == 3 { fx.series(id) } else { fx.film(id) };
                for hook in &hooks {
                    tick.tick().await;
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if load::post(&http, &base, hook).await.is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut seen = sse::connect(&stack.url("/api/sse"), 1).await;
    let (sent0, started) = (sent.load(Ordering::Relaxed), Instant::now());
    let (dist, _) = probe(stack, fx, &mut seen, samples, 20).await;
    let achieved = (sent.load(Ordering::Relaxed) - sent0) as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    (dist, achieved)
}

/// `updates` changes, one at a time, each delivered to `clients` SSE clients: the latency of
/// every delivery, and of the last client of each update.
async fn fanout(stack: &Stack, fx: &Fixtures, clients: usize, updates: usize) -> (Dist, Dist) {
    let mut seen = sse::connect(&stack.url("/api/sse"), clients).await;
    let base = stack.url("");
    let (mut each, mut last) = (Vec::new(), Vec::new());
    for _ in 0..updates {
        let id = next_ids(1);
        let started = Instant::now();
        load::post(&stack.http, &base, &fx.pending_film(id)).await.expect("webhook accepted");
        let mut got: HashMap<usize, Instant> = HashMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while got.len() < clients {
            match tokio::time::timeout_at(deadline, seen.recv()).await {
                Ok(Some(s)) if s.jellyseerr_id == id => {
                    got.entry(s.client).or_insert(s.at);
                }
                Ok(Some(_)) => {}
                _ => panic!("update {id} reached {} of {clients} SSE clients", got.len()),
            }
        }
        each.extend(got.values().map(|at| *at - started));
        last.push(got.values().max().copied().unwrap() - started);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (Dist::of(each), Dist::of(last))
}

/// The index page as a browser gets it (brotli), median of 21.
async fn index_page(stack: &Stack, requests: u64) -> Page {
    let url = stack.url("/");
    let mut runs = Vec::new();
    let mut bytes = 0;
    for _ in 0..21 {
        let started = Instant::now();
        let body = stack.http.get(&url).header("accept-encoding", "br").send().await.unwrap().bytes().await.unwrap();
        runs.push(started.elapsed());
        bytes = body.len();
    }
    Page { requests, time: Dist::of(runs).p50, bytes }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(b: u64) -> String {
    format!("{:.1}", b as f64 / (1024.0 * 1024.0))
}

fn show(d: &Dist) -> String {
    format!("p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})", ms(d.p50), ms(d.p99), ms(d.max), d.n)
}

impl Report {
    /// The figures as the Markdown tables of docs/performance.md.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let floor = self.floor_jetstream.p50;
        let ratio = |d: Duration| match floor.is_zero() {
            true => "–".to_owned(),
            false => format!("{:.1}×", d.as_secs_f64() / floor.as_secs_f64()),
        };
        let row = |s: &mut String, what: &str, d: &Dist| {
            if d.n == 0 {
                return;
            }
            let _ = writeln!(
                s,
                "| {what} | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
                ms(d.p50),
                ms(d.p99),
                ms(d.max),
                ratio(d.p50)
            );
        };
        let _ = writeln!(s, "| latency | p50 | p99 | max | p50 / floor |\n|---|---|---|---|---|");
        row(&mut s, "floor: JetStream publish → durable consume", &self.floor_jetstream);
        row(&mut s, "floor: HTTP round trip (`GET /healthz`)", &self.floor_http);
        row(&mut s, "webhook answered (202), idle", &self.idle_post);
        row(&mut s, "**webhook → SSE event, idle**", &self.idle);
        if let Some((rate, d)) = &self.under_load {
            row(&mut s, &format!("webhook → SSE event, under {rate:.0} webhooks/s"), d);
        }
        if let Some((n, each, all)) = &self.fanout {
            row(&mut s, &format!("webhook → SSE event, each of {n} clients"), each);
            row(&mut s, &format!("webhook → SSE event, last of {n} clients"), all);
        }
        if !self.idle_steps.is_empty() {
            let steps: Vec<String> = self.idle_steps.iter().map(|(step, us, _)| format!("{step} {us:.0} µs")).collect();
            let _ = writeln!(s, "\nThe correlator per batch at idle (mean): {}.", steps.join(", "));
        }
        let _ = writeln!(
            s,
            "\n| senders | requests | webhooks | accepted/s | applied/s | floor: JetStream messages/s | applied / floor | POST p50 | POST p99 | lost | CPU status-tracker | CPU nats-server | CPU bench client | CPU per webhook: status-tracker / nats-server |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for r in &self.runs {
            let wall = r.applied_in.as_secs_f64();
            let pct = |d: Duration| format!("{:.0} %", 100.0 * d.as_secs_f64() / wall);
            // Steadier than the rates on a shared machine: what each webhook cost, wherever
            // the time went while waiting for a core.
            let per = |d: Duration| format!("{:.0} µs", 1e6 * d.as_secs_f64() / r.webhooks.max(1) as f64);
            let (floor, share) = match r.floor {
                Some(f) => (format!("{f:.0}"), format!("{:.0} %", 100.0 * r.applied_rate() / f)),
                None => ("–".into(), "–".into()),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.0} | {:.0} | {floor} | {share} | {:.2} ms | {:.2} ms | {} | {} | {} | {} | {} / {} |",
                r.senders,
                r.requests,
                r.webhooks,
                r.accepted_rate(),
                r.applied_rate(),
                ms(r.post.p50),
                ms(r.post.p99),
                r.missing.max(0) + r.errors as i64,
                pct(r.cpu.app),
                pct(r.cpu.nats),
                pct(r.cpu.bench),
                per(r.cpu.app),
                per(r.cpu.nats)
            );
        }
        let _ = writeln!(s, "\n| memory (RSS) | status-tracker | nats-server |\n|---|---|---|");
        for (what, app, nats) in &self.memory {
            let _ = writeln!(s, "| {what} | {} MiB | {} MiB |", mib(*app), mib(*nats));
        }
        let _ = writeln!(s, "\n| index page (`/`, brotli) | time (median of 21) | transferred |\n|---|---|---|");
        for p in &self.pages {
            let _ =
                writeln!(s, "| {} requests | {:.2} ms | {:.1} KB |", p.requests, ms(p.time), p.bytes as f64 / 1000.0);
        }
        if !self.instructions.is_empty() {
            let _ = writeln!(s, "\n| instructions (callgrind), senders | webhooks | per webhook |\n|---|---|---|");
            for i in &self.instructions {
                let _ = writeln!(s, "| {} | {} | {:.2} M |", i.senders, i.webhooks, i.per_webhook() / 1e6);
            }
        }
        s
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[allow(dead_code)]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut cfg = if args.iter().any(|a| a == "--smoke") { Config::smoke() } else { Config::full() };
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1).cloned());
    cfg.only = value("--only");
    // Shorter runs to compare two builds side by side, e.g. `--only throughput --senders 16
    // --requests 1000 --checkpoints ""`.
    fn list<T: std::str::FromStr>(v: String, flag: &str) -> Vec<T> {
        v.split(',').filter(|n| !n.is_empty()).map(|n| n.trim().parse().ok().expect(flag)).collect()
    }
    if let Some(senders) = value("--senders") {
        cfg.senders = list(senders, "--senders takes numbers: 16,64");
    }
    if let Some(checkpoints) = value("--checkpoints") {
        cfg.checkpoints = list(checkpoints, "--checkpoints takes request counts: 1000,10000");
    }
    if let Some(requests) = value("--requests") {
        cfg.requests_per_run = requests.parse().expect("--requests");
    }
    // Another build (or a wrapper that profiles it) can be measured in its place.
    let bin = std::env::var_os("BENCH_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_status-tracker")), PathBuf::from);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let report = runtime.block_on(run(&cfg, &bin, &root(), &mut |line| eprintln!("{line}")));
    println!("{}", report.markdown());
}
