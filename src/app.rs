//! Composes the services' libraries into a running process: NATS (embedded or not), the
//! HTTP listener, the service loops, and one shutdown path for Ctrl-C and SIGTERM.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::serve::ListenerExt;
use shared::nats_server::{EmbeddedNats, MemoryLimit};
use shared::{Bus, Env};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long the services get to finish once the HTTP server has drained: under the 10 s a
/// container runtime waits after SIGTERM before it kills. With NATS reachable they need well
/// under a second; without it, what they would still publish stays in the outbox and the
/// spool, and unacknowledged messages are delivered again at the next start.
const STOP_GRACE: Duration = Duration::from_secs(8);
/// How long the last flush to NATS may take, after the services.
const FLUSH_GRACE: Duration = Duration::from_secs(1);

/// Which services this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    All,
    Ingress,
    Correlator,
    Dashboard,
    Poller,
    ShokoBridge,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "all" => Self::All,
            "ingress" => Self::Ingress,
            "correlator" => Self::Correlator,
            "dashboard" => Self::Dashboard,
            "poller" => Self::Poller,
            "shoko-bridge" => Self::ShokoBridge,
            _ => return None,
        })
    }

    fn runs(self, service: Mode) -> bool {
        self == Mode::All || self == service
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::All => "status-tracker",
            Self::Ingress => "ingress",
            Self::Correlator => "correlator",
            Self::Dashboard => "dashboard",
            Self::Poller => "poller",
            Self::ShokoBridge => "shoko-bridge",
        }
    }
}

/// Command-line options.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Rebuild the correlator's database from `MEDIA` before starting.
    pub rebuild: bool,
}

pub async fn run(mode: Mode, env: &Env, options: Options) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(signals(shutdown.clone()));

    // The listener first: the embedded nats-server's free port can then never be this one.
    let addr = env.get("TRACKER_LISTEN").unwrap_or_else(|| "0.0.0.0:8100".into());
    let listener = TcpListener::bind(&addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let data_dir = PathBuf::from(env.get("TRACKER_DATA_DIR").unwrap_or_else(|| "./data".into()));
    // The embedded nats-server's store, the correlator's database and the ingress's spool.
    if env.get("NATS_URL").is_none() || mode.runs(Mode::Correlator) || mode.runs(Mode::Ingress) {
        writable_data_dir(&data_dir)?;
    }
    let (nats_url, embedded) = match env.get("NATS_URL") {
        Some(url) => (url, None),
        None => {
            let bin = env.get("NATS_SERVER_BIN").unwrap_or_else(|| "nats-server".into());
            let memory: Option<MemoryLimit> = env.parse("TRACKER_NATS_MEMORY_LIMIT")?;
            let server = EmbeddedNats::start_with(&data_dir.join("nats"), &bin, memory.as_ref()).await?;
            let url = server.url();
            let stop = CancellationToken::new();
            (url, Some((tokio::spawn(supervise(server, stop.clone())), stop)))
        }
    };
    let result = run_services(mode, env, &nats_url, listener, options, shutdown).await;
    if let Some((supervisor, stop)) = embedded {
        stop.cancel();
        drop(supervisor.await);
    }
    result
}

/// Creates the data directory if it is missing and checks that this process can write in it,
/// so that a volume or bind mount the service user cannot write stops the start with what to
/// do, instead of failing later inside nats-server, SQLite or the spool.
fn writable_data_dir(dir: &Path) -> anyhow::Result<()> {
    let probe = dir.join(format!(".write-test-{}", std::process::id()));
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&probe, b""))
        .and_then(|()| std::fs::remove_file(&probe));
    match written {
        Ok(()) => Ok(()),
        Err(error) if matches!(error.kind(), ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem) => {
            let uid = rustix::process::getuid().as_raw();
            let gid = rustix::process::getgid().as_raw();
            anyhow::bail!(
                "TRACKER_DATA_DIR {dir} is not writable by this process (uid {uid}, gid {gid}): {error}. \
                 Give that user the directory (for a bind mount, on the host: chown -R {uid}:{gid} <the \
                 mounted directory>), or mount a named volume there, which Docker gives the image's user.",
                dir = dir.display()
            )
        }
        Err(error) => Err(error).with_context(|| format!("cannot prepare TRACKER_DATA_DIR {}", dir.display())),
    }
}

/// Keeps the embedded nats-server running until `stop` fires, then stops it. A server that
/// exits on its own (killed, out of memory) is started again on its port and store, and the
/// services' clients reconnect to it; what they published meanwhile waited in the ingress's
/// spool and the correlator's outbox.
async fn supervise(mut server: EmbeddedNats, stop: CancellationToken) {
    loop {
        let said = tokio::select! {
            _ = stop.cancelled() => return server.stop().await,
            said = server.exited() => said,
        };
        tracing::error!(port = server.port(), "the embedded nats-server exited ({said}); starting it again");
        let mut pause = Duration::from_millis(200);
        loop {
            let restarted = tokio::select! {
                _ = stop.cancelled() => return,
                r = server.restart() => r,
            };
            match restarted {
                Ok(()) => {
                    tracing::info!(port = server.port(), "the embedded nats-server runs again");
                    break;
                }
                Err(error) => {
                    tracing::error!(%error, "cannot start the embedded nats-server again; retrying in {pause:?}")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }
}

async fn run_services(
    mode: Mode,
    env: &Env,
    nats_url: &str,
    listener: TcpListener,
    options: Options,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let bus = Bus::connect_patiently(nats_url, mode.name(), &shutdown).await?;
    bus.ensure_streams().await.context("declaring the JetStream streams")?;

    // Services stop after the HTTP server has drained, so in-flight webhooks can still publish.
    let stop_services = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mut names = HashMap::new();
    // Every mode serves its metrics and a liveness probe; ingress and dashboard add theirs.
    let mut router = Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .route("/healthz", axum::routing::get(|| async { "ok" }));

    if mode.runs(Mode::Correlator) {
        let settings = correlator::CorrelatorSettings::from_env(env)?;
        if options.rebuild {
            let report = correlator::Correlator::rebuild(&settings, &bus).await.context("rebuilding the database")?;
            tracing::info!(events = report.events, requests = report.requests, "rebuild done");
        }
        let correlator = correlator::Correlator::build(settings, bus.clone()).await?;
        names.insert(tasks.spawn(correlator.run(stop_services.clone())).id(), "correlator");
    }
    if mode.runs(Mode::Ingress) {
        let settings = ingress::IngressSettings::from_env(env)?;
        let ingress = ingress::Ingress::build(bus.clone(), settings).context("opening the ingress spool")?;
        router = router.merge(ingress.router());
        names.insert(tasks.spawn(ingress.run(stop_services.clone())).id(), "ingress");
    }
    if mode.runs(Mode::Poller) {
        let poller = poller::Poller::new(bus.clone(), poller::PollerSettings::from_env(env)?);
        names.insert(tasks.spawn(poller.run(stop_services.clone())).id(), "poller");
    }
    if mode.runs(Mode::ShokoBridge) {
        let bridge = shoko_bridge::ShokoBridge::new(bus.clone(), shoko_bridge::ShokoSettings::from_env(env)?);
        names.insert(tasks.spawn(bridge.run(stop_services.clone())).id(), "shoko-bridge");
    }
    if mode.runs(Mode::Dashboard) {
        let dashboard = dashboard::Dashboard::new(bus.clone(), dashboard::DashboardSettings::from_env(env)?);
        router = router.merge(dashboard.router());
        dashboard.end_streams_on(shutdown.clone());
        names.insert(tasks.spawn(dashboard.run(stop_services.clone())).id(), "dashboard");
    }

    let local = listener.local_addr()?;
    if mode.runs(Mode::Dashboard) {
        tracing::info!(addr = %local, "listening: dashboard on http://localhost:{}/", local.port());
    } else {
        tracing::info!(addr = %local, "listening (/metrics, /healthz)");
    }
    // The peer address is what TRACKER_AUTH=proxy checks against TRACKER_TRUSTED_PROXIES.
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    // Without TCP_NODELAY a response written in two segments waits for the client's delayed
    // ACK: up to 40 ms on a webhook's answer or an SSE event.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
    });
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
        .context("HTTP server")?;
    tracing::info!("shutting down");
    stop_services.cancel();
    let stopped = tokio::time::timeout(STOP_GRACE, async {
        while let Some(result) = tasks.join_next_with_id().await {
            match result {
                Ok((id, Ok(()))) => _ = names.remove(&id),
                Ok((id, Err(error))) => {
                    let service = names.remove(&id).unwrap_or("?");
                    tracing::warn!(%error, service, "a service stopped with an error");
                }
                Err(error) => {
                    names.remove(&error.id());
                    tracing::error!(%error, "a service panicked");
                }
            }
        }
    });
    if stopped.await.is_err() {
        let mut waiting: Vec<&str> = names.into_values().collect();
        waiting.sort_unstable();
        tracing::warn!(
            services = ?waiting,
            nats = %bus.client.connection_state(),
            "not stopped after {STOP_GRACE:?}; exiting anyway (what was not published is published at the next start)"
        );
        tasks.abort_all();
    }
    // What the client still buffers goes out; a flush waits for a connection, so it is not
    // attempted without one (it waited forever when the embedded server had died).
    if bus.client.connection_state() == async_nats::connection::State::Connected
        && tokio::time::timeout(FLUSH_GRACE, bus.client.flush()).await.is_err()
    {
        tracing::warn!("NATS did not confirm the last messages within {FLUSH_GRACE:?}");
    }
    Ok(())
}

/// `GET /metrics`: the Prometheus text format.
async fn metrics() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], shared::metrics::render())
}

/// Cancels `token` on Ctrl-C or SIGTERM.
async fn signals(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGTERM");
            drop(ctrl_c.await);
            return token.cancel();
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("stop requested");
    token.cancel();
}
