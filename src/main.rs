//! `status-tracker`: one binary for every service.
//!
//! With no argument it runs them all in one process on one HTTP listener (and, when
//! `NATS_URL` is unset, its own `nats-server`). `status-tracker <service>` runs one service,
//! which is what the compose stack does.

mod app;
mod doctor;
mod healthcheck;
mod memory;

use std::process::ExitCode;

use shared::Env;

const USAGE: &str = "\
status-tracker: follows media requests from Jellyseerr to Jellyfin, live.

Usage: status-tracker [COMMAND]

Commands:
  all            every service in one process (the default)
  ingress        webhooks -> NATS
  correlator     NATS -> SQLite state, queries
  dashboard      pages, JSON API, SSE
  poller         qBittorrent progress -> NATS
  shoko-bridge   Shoko SignalR file events -> NATS
  doctor         print the configuration (secrets redacted) and check every configured peer
  healthcheck    exit 0 when this process's /healthz answers (the image's HEALTHCHECK)
  help           this text

Options:
  --rebuild      (correlator, all) rebuild the database from the MEDIA stream before
                 starting; the old database is kept as tracker.db.bak-<time>

Configuration is read from environment variables; see docs/configuration.md.
Without NATS_URL a nats-server child is started with its store under TRACKER_DATA_DIR.";

#[tokio::main]
async fn main() -> ExitCode {
    let env = Env::from_process();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (flags, words): (Vec<&str>, Vec<&str>) = args.iter().map(String::as_str).partition(|a| a.starts_with("--"));
    let command = words.first().copied().unwrap_or("all");
    // `--help` and `--version` answer whatever else is on the line.
    if flags.contains(&"--help") || words.contains(&"-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if flags.contains(&"--version") || words.contains(&"-V") {
        println!("status-tracker {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let mode = match command {
        "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        "doctor" => return doctor::run(&env).await,
        "healthcheck" => return healthcheck::run(&env).await,
        other => match app::Mode::parse(other) {
            Some(mode) => mode,
            None => {
                eprintln!("unknown command {other:?}\n\n{USAGE}");
                return ExitCode::from(2);
            }
        },
    };
    let mut options = app::Options::default();
    for flag in flags {
        match flag {
            "--rebuild" if matches!(mode, app::Mode::All | app::Mode::Correlator) => options.rebuild = true,
            other => {
                eprintln!("unknown option {other:?} for {command}\n\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let _telemetry = shared::telemetry::init(&env, mode.name());
    // Services only: `doctor` and `healthcheck` are over in a moment.
    memory::start_release_thread();
    match app::run(mode, &env, options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("status-tracker: {error:#}");
            ExitCode::FAILURE
        }
    }
}
