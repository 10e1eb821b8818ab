//! `status-tracker healthcheck`: asks this container's own `/healthz` and exits 0 when it
//! answers 2xx, 1 otherwise.
//!
//! It is what the image's `HEALTHCHECK` and the compose healthchecks run, so the runtime image
//! needs no curl or wget. Every mode serves `/healthz` on `TRACKER_LISTEN`; a wildcard
//! address (`0.0.0.0`, `[::]`) is asked on the loopback address of the same family.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use shared::Env;

/// Docker's own healthcheck timeout defaults to 30 s; answer well before it.
const TIMEOUT: Duration = Duration::from_secs(3);

pub async fn run(env: &Env) -> ExitCode {
    let listen = env.get("TRACKER_LISTEN").unwrap_or_else(|| "0.0.0.0:8100".into());
    let url = match healthz_url(&listen) {
        Ok(url) => url,
        Err(problem) => {
            eprintln!("healthcheck: TRACKER_LISTEN={listen:?}: {problem}");
            return ExitCode::FAILURE;
        }
    };
    match probe(&url).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("healthcheck: {url}: {problem}");
            ExitCode::FAILURE
        }
    }
}

/// The URL of `/healthz` for a listener bound to `listen` (`host:port`).
fn healthz_url(listen: &str) -> Result<String, String> {
    let authority = match listen.parse::<SocketAddr>() {
        Ok(addr) => {
            let ip = match addr.ip() {
                IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                ip => ip,
            };
            SocketAddr::new(ip, addr.port()).to_string()
        }
        // A host name (`localhost:8100`) is asked as it is.
        Err(_) => match listen.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => listen.to_owned(),
            _ => return Err("expected host:port".into()),
        },
    };
    Ok(format!("http://{authority}/healthz"))
}

async fn probe(url: &str) -> Result<(), String> {
    let client = reqwest::Client::builder().timeout(TIMEOUT).build().map_err(|e| e.to_string())?;
    let response = client.get(url).send().await.map_err(describe)?;
    let status = response.status();
    if status.is_success() { Ok(()) } else { Err(format!("answered {status}")) }
}

/// The error and its causes ("error sending request: ...: Connection refused").
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::healthz_url;

    #[test]
    fn wildcard_addresses_are_asked_on_loopback() {
        assert_eq!(healthz_url("0.0.0.0:8100").unwrap(), "http://127.0.0.1:8100/healthz");
        assert_eq!(healthz_url("[::]:8100").unwrap(), "http://[::1]:8100/healthz");
        assert_eq!(healthz_url("127.0.0.1:9000").unwrap(), "http://127.0.0.1:9000/healthz");
        assert_eq!(healthz_url("localhost:8100").unwrap(), "http://localhost:8100/healthz");
        assert!(healthz_url("8100").is_err());
    }
}
