//! A `nats-server -js` child process: the embedded default of the all-in-one mode (when
//! `NATS_URL` is unset) and the real server every test starts for itself.
//!
//! The server listens on a free loopback port, keeps its JetStream store in the given
//! directory, and is stopped with SIGTERM (then SIGKILL) when [`EmbeddedNats::stop`] is called
//! or the handle is dropped. A server left behind by a killed parent is found through its pid
//! file and stopped before a new one takes over the store.

use std::fmt;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use tokio::process::{Child, Command};

const READY_TIMEOUT: Duration = Duration::from_secs(15);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedNatsError {
    #[error(
        "`{bin}` was not found. status-tracker needs nats-server (2.9 or newer) when NATS_URL is not set.\n\
         Install it with:  sudo apt-get install -y nats-server   (Debian/Ubuntu)\n\
         or download it from https://github.com/nats-io/nats-server/releases,\n\
         or set NATS_URL to a running server started with JetStream (-js)."
    )]
    NotInstalled { bin: String },
    // The cause is part of the message, not also a `source()`: a report that prints the
    // chain (`{:#}`) would say it twice.
    #[error("cannot prepare the NATS store directory {dir}: {cause}")]
    Store { dir: PathBuf, cause: std::io::Error },
    #[error("cannot start `{bin}`: {cause}")]
    Spawn { bin: String, cause: std::io::Error },
    #[error("nats-server exited before it was ready ({status}); its log says:\n{log}")]
    Exited { status: String, log: String },
    #[error("nats-server did not accept connections within {0:?}")]
    NotReady(Duration),
}

/// A running child `nats-server`.
#[derive(Debug)]
pub struct EmbeddedNats {
    child: Option<Child>,
    port: u16,
    store: PathBuf,
    /// How it was started, to start it again the same way ([`EmbeddedNats::restart`]).
    bin: String,
    memory: Option<MemoryLimit>,
}

/// A soft limit on the memory of nats-server's Go runtime, given to it as `GOMEMLIMIT`, in
/// that variable's syntax: a whole number of bytes with an optional `B`, `KiB`, `MiB`, `GiB`
/// or `TiB`, or `off`. Near the limit the runtime collects garbage more often and gives freed
/// memory back sooner; it never refuses to allocate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLimit(String);

impl FromStr for MemoryLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = s.split_at(digits);
        let valid = s == "off"
            || (!number.is_empty()
                && number.parse::<u64>().is_ok()
                && matches!(unit, "" | "B" | "KiB" | "MiB" | "GiB" | "TiB"));
        match valid {
            true => Ok(Self(s.to_owned())),
            false => {
                Err(format!("expected a size like 512MiB or 1GiB (units B, KiB, MiB, GiB, TiB), or off; got {s:?}"))
            }
        }
    }
}

impl fmt::Display for MemoryLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl EmbeddedNats {
    /// Starts `bin` (usually `nats-server`) with JetStream, its store under `dir`.
    pub async fn start(dir: &Path, bin: &str) -> Result<Self, EmbeddedNatsError> {
        Self::start_with(dir, bin, None).await
    }

    /// Like [`start`](Self::start), with a soft memory limit for the server (else it inherits
    /// this process's `GOMEMLIMIT`, if any).
    pub async fn start_with(dir: &Path, bin: &str, memory: Option<&MemoryLimit>) -> Result<Self, EmbeddedNatsError> {
        std::fs::create_dir_all(dir).map_err(|cause| EmbeddedNatsError::Store { dir: dir.to_owned(), cause })?;
        let store = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
        stop_stale_server(&store).await;
        // A port taken between probing and binding makes the server exit: try a few times.
        let mut last_err = None;
        for _ in 0..3 {
            let port = free_port().map_err(|cause| EmbeddedNatsError::Spawn { bin: bin.into(), cause })?;
            match Self::spawn_once(&store, bin, port, memory).await {
                Ok(server) => return Ok(server),
                Err(e @ EmbeddedNatsError::Exited { .. }) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or(EmbeddedNatsError::NotReady(READY_TIMEOUT)))
    }

    /// Starts on a given port (tests that stop and restart "the same" server use this).
    pub async fn start_on(dir: &Path, bin: &str, port: u16) -> Result<Self, EmbeddedNatsError> {
        std::fs::create_dir_all(dir).map_err(|cause| EmbeddedNatsError::Store { dir: dir.to_owned(), cause })?;
        let store = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
        stop_stale_server(&store).await;
        Self::spawn_once(&store, bin, port, None).await
    }

    async fn spawn_once(
        store: &Path,
        bin: &str,
        port: u16,
        memory: Option<&MemoryLimit>,
    ) -> Result<Self, EmbeddedNatsError> {
        let log = store.join("nats-server.log");
        // The log is appended to across starts: this start's lines begin here.
        let log_start = std::fs::metadata(&log).map_or(0, |m| m.len());
        let mut cmd = Command::new(bin);
        cmd.arg("-js")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .arg("-sd")
            .arg(store)
            .arg("-P")
            .arg(store.join("nats-server.pid"))
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some(limit) = memory {
            cmd.env("GOMEMLIMIT", &limit.0);
        }
        let child = cmd.spawn().map_err(|cause| match cause.kind() {
            std::io::ErrorKind::NotFound => EmbeddedNatsError::NotInstalled { bin: bin.into() },
            _ => EmbeddedNatsError::Spawn { bin: bin.into(), cause },
        })?;
        let mut server =
            Self { child: Some(child), port, store: store.to_owned(), bin: bin.to_owned(), memory: memory.cloned() };
        server.wait_ready(&log, log_start).await?;
        // Operators (and tests) find the embedded server here, e.g. `nats -s $(cat data/nats/url) sub '>'`.
        if let Err(error) = std::fs::write(store.join("url"), server.url()) {
            tracing::warn!(%error, "cannot write the embedded NATS url file");
        }
        tracing::info!(port, store = %store.display(), "embedded nats-server started");
        Ok(server)
    }

    async fn wait_ready(&mut self, log: &Path, log_start: u64) -> Result<(), EmbeddedNatsError> {
        let started = Instant::now();
        while started.elapsed() < READY_TIMEOUT {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(EmbeddedNatsError::Exited { status: status.to_string(), log: log_tail(log) });
            }
            if self.says_ready(log, log_start) && TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(EmbeddedNatsError::NotReady(READY_TIMEOUT))
    }

    /// Whether this server (by its pid, in the lines this start wrote from `log_start` on) has
    /// said it is ready. A connection alone is not enough: another process may hold the port,
    /// and this server then exits a moment later (`bind: address already in use`) while the
    /// probe has reached the other one.
    fn says_ready(&self, log: &Path, log_start: u64) -> bool {
        use std::io::{Read, Seek, SeekFrom};
        let Some(pid) = self.child.as_ref().and_then(|c| c.id()) else { return false };
        let ours = format!("[{pid}] ");
        let mut text = String::new();
        let read = std::fs::File::open(log)
            .and_then(|mut f| f.seek(SeekFrom::Start(log_start)).and_then(|_| f.read_to_string(&mut text)));
        read.is_ok() && text.lines().any(|line| line.starts_with(&ours) && line.ends_with("Server is ready"))
    }

    /// Waits until the server exits on its own (it was killed, or failed); gives its exit
    /// status and the last lines of its log. Never returns once [`stop`](Self::stop)ped.
    /// Cancel-safe.
    pub async fn exited(&mut self) -> String {
        let Some(child) = self.child.as_mut() else { return std::future::pending().await };
        let status = child.wait().await;
        self.child = None;
        let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
        format!("{status}; its log says:\n{}", log_tail(&self.store.join("nats-server.log")))
    }

    /// Starts the server again, on the same port and store, the same way; clients connected
    /// to it reconnect by themselves. A server still running is stopped first.
    pub async fn restart(&mut self) -> Result<(), EmbeddedNatsError> {
        self.stop_inner().await;
        let server = Self::spawn_once(&self.store, &self.bin, self.port, self.memory.as_ref()).await?;
        *self = server;
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn store_dir(&self) -> &Path {
        &self.store
    }

    /// Stops the server: SIGTERM, so JetStream flushes its store, then SIGKILL if it hangs.
    pub async fn stop(mut self) {
        self.stop_inner().await;
    }

    async fn stop_inner(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id().and_then(|id| Pid::from_raw(id as i32)) {
            let _ = kill_process(pid, Signal::TERM);
        }
        match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
            Ok(_) => tracing::debug!(port = self.port, "embedded nats-server stopped"),
            Err(_) => {
                tracing::warn!(port = self.port, "nats-server ignored SIGTERM; killing it");
                drop(child.kill().await);
            }
        }
    }

    /// Kills the server at once (SIGKILL), as a crash would. For tests.
    pub async fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.kill().await);
        }
    }
}

impl Drop for EmbeddedNats {
    fn drop(&mut self) {
        // `kill_on_drop` sends SIGKILL; prefer SIGTERM so the store is flushed.
        if let Some(child) = self.child.as_ref()
            && let Some(pid) = child.id().and_then(|id| Pid::from_raw(id as i32))
        {
            let _ = kill_process(pid, Signal::TERM);
        }
    }
}

/// The last lines of the server's log.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(8).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// Stops a nats-server that a killed parent left running on this store.
async fn stop_stale_server(store: &Path) {
    let pid_file = store.join("nats-server.pid");
    let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|s| s.trim().parse::<i32>().ok()) else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    let ours = cmdline.contains("nats-server") && cmdline.contains(&*store.to_string_lossy());
    let Some(pid) = Pid::from_raw(pid).filter(|_| ours) else {
        return;
    };
    tracing::warn!(pid = pid.as_raw_nonzero().get(), "stopping a nats-server left over from an earlier run");
    let _ = kill_process(pid, Signal::TERM);
    for _ in 0..200 {
        if !Path::new(&format!("/proc/{}", pid.as_raw_nonzero())).exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = kill_process(pid, Signal::KILL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_binary_says_how_to_install() {
        let dir = tempfile::tempdir().unwrap();
        let err = EmbeddedNats::start(dir.path(), "nats-server-that-does-not-exist").await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("apt-get install -y nats-server"), "{text}");
        assert!(text.contains("NATS_URL"), "{text}");
    }

    #[tokio::test]
    async fn starts_a_jetstream_server_and_stops_it() {
        let dir = tempfile::tempdir().unwrap();
        let server = EmbeddedNats::start(dir.path(), "nats-server").await.unwrap();
        let port = server.port();
        let bus = crate::Bus::connect(&server.url(), "test").await.unwrap();
        bus.ensure_streams().await.unwrap();
        server.stop().await;
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
    }

    #[tokio::test]
    async fn the_memory_limit_reaches_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let limit: MemoryLimit = "96MiB".parse().unwrap();
        let server = EmbeddedNats::start_with(dir.path(), "nats-server", Some(&limit)).await.unwrap();
        let pid = server.child.as_ref().unwrap().id().unwrap();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        assert!(vars.contains(&&b"GOMEMLIMIT=96MiB"[..]), "{}", String::from_utf8_lossy(&environ));
        server.stop().await;
    }

    #[tokio::test]
    async fn a_server_that_died_is_seen_and_started_again_on_its_port() {
        let dir = tempfile::tempdir().unwrap();
        let limit: MemoryLimit = "128MiB".parse().unwrap();
        let mut server = EmbeddedNats::start_with(dir.path(), "nats-server", Some(&limit)).await.unwrap();
        let (port, url) = (server.port(), server.url());
        let pid = server.child.as_ref().unwrap().id().unwrap();
        kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::KILL).unwrap();
        let said = tokio::time::timeout(Duration::from_secs(10), server.exited()).await.expect("exit seen");
        assert!(said.contains("SIGKILL") || said.contains("signal: 9"), "{said}");
        assert!(said.contains("Server is ready"), "with its log: {said}");
        server.restart().await.unwrap();
        assert_eq!((server.port(), server.url()), (port, url));
        let pid = server.child.as_ref().unwrap().id().unwrap();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(environ.split(|b| *b == 0).any(|v| v == b"GOMEMLIMIT=128MiB"), "started the same way");
        let bus = crate::Bus::connect(&server.url(), "test").await.unwrap();
        bus.ensure_streams().await.unwrap();
        server.stop().await;
    }

    #[test]
    fn memory_limits_are_read_as_go_reads_them() {
        for ok in ["512MiB", "1GiB", "1073741824", "64B", "2TiB", "off", " 256MiB "] {
            assert_eq!(ok.parse::<MemoryLimit>().map(|l| l.to_string()), Ok(ok.trim().to_owned()));
        }
        for bad in ["", "MiB", "512MB", "512 MiB", "1.5GiB", "-1GiB", "512mib", "unlimited"] {
            let err = bad.parse::<MemoryLimit>().unwrap_err();
            assert!(err.contains("512MiB"), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn a_port_held_by_another_process_is_an_error_not_a_server() {
        let dir = tempfile::tempdir().unwrap();
        let other = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = other.local_addr().unwrap().port();
        let err = EmbeddedNats::start_on(dir.path(), "nats-server", port).await.unwrap_err();
        assert!(matches!(err, EmbeddedNatsError::Exited { .. }), "{err}");
        assert!(err.to_string().contains("address already in use"), "{err}");
    }

    #[tokio::test]
    async fn a_server_left_by_a_killed_parent_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let first = EmbeddedNats::start(dir.path(), "nats-server").await.unwrap();
        // Simulate our process dying without stopping the child: forget the handle.
        let pid = first.child.as_ref().unwrap().id().unwrap();
        std::mem::forget(first);
        let second = EmbeddedNats::start(dir.path(), "nats-server").await.unwrap();
        assert!(
            !Path::new(&format!("/proc/{pid}/cmdline")).exists() || {
                // a zombie until reaped by nobody: check it is not running
                std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(" Z ")
            }
        );
        second.stop().await;
    }
}
