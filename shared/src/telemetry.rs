//! Logging set up once per process: `RUST_LOG` filter, text or JSON lines
//! (`TRACKER_LOG_FORMAT=json`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::settings::Env;

/// Installs the global subscriber. Safe to call more than once (later calls do nothing), so
/// tests and the all-in-one can both call it.
pub fn init(env: &Env) {
    let filter = EnvFilter::try_new(env.get("RUST_LOG").unwrap_or_else(|| "info".into()))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = env.get("TRACKER_LOG_FORMAT").as_deref() == Some("json");
    let registry = tracing_subscriber::registry().with(filter);
    let ansi = std::io::stderr().is_terminal();
    let result = if json {
        registry
            .with(tracing_subscriber::fmt::layer().json().with_current_span(true).with_writer(std::io::stderr))
            .try_init()
    } else {
        registry.with(tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr)).try_init()
    };
    drop(result);
}
