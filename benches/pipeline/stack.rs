//! The system under test: the all-in-one `status-tracker` with its embedded `nats-server`, in
//! a fresh data directory, and what the kernel says about both processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Stack {
    child: Child,
    pub port: u16,
    pub http: reqwest::Client,
    nats_pid: u32,
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// A command the binary runs under (`valgrind …`), if any.
    wrapper: Vec<String>,
}

/// CPU time used so far, per process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub app: Duration,
    pub nats: Duration,
    pub bench: Duration,
}

impl Cpu {
    pub fn since(self, before: Cpu) -> Cpu {
        Cpu { app: self.app - before.app, nats: self.nats - before.nats, bench: self.bench - before.bench }
    }
}

impl Stack {
    pub async fn start(bin: &Path) -> Stack {
        Self::start_under(&[], bin).await
    }

    /// Starts the binary as an argument of `wrapper` (a profiler: `valgrind --tool=callgrind …`).
    pub async fn start_under(wrapper: &[String], bin: &Path) -> Stack {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (child, port) = spawn(wrapper, bin, dir.path());
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let mut stack = Stack { child, port, http, nats_pid: 0, dir, bin: bin.to_owned(), wrapper: wrapper.to_vec() };
        stack.wait_ready().await;
        stack
    }

    /// Stops the process (SIGTERM) and starts it again on the same data.
    pub async fn restart(&mut self) {
        self.stop();
        let (child, port) = spawn(&self.wrapper, &self.bin, self.dir.path());
        (self.child, self.port) = (child, port);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let stack = self;
        let patience = if stack.wrapper.is_empty() { 30 } else { 180 };
        let deadline = Instant::now() + Duration::from_secs(patience);
        loop {
            if let Ok(r) = stack.http.get(stack.url("/api/health")).send().await
                && r.status().is_success()
            {
                break;
            }
            if let Ok(Some(status)) = stack.child.try_wait() {
                panic!("status-tracker exited ({status}):\n{}", stack.log());
            }
            assert!(Instant::now() < deadline, "status-tracker did not start:\n{}", stack.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let pid_file = stack.dir.path().join("nats/nats-server.pid");
        stack.nats_pid = std::fs::read_to_string(pid_file).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    }

    /// Stops the process (SIGTERM; SIGKILL if it has not ended in time).
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        // Under a profiler, ending (and writing the profile) takes longer.
        let patience = if self.wrapper.is_empty() { 10 } else { 120 };
        let deadline = Instant::now() + Duration::from_secs(patience);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn nats_url(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats/url")).expect("the embedded NATS url")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("status-tracker.log")).unwrap_or_default()
    }

    /// Resident memory of status-tracker and of its nats-server, in bytes.
    pub fn rss(&self) -> (u64, u64) {
        (rss(self.child.id()), rss(self.nats_pid))
    }

    pub fn cpu(&self) -> Cpu {
        Cpu { app: cpu(self.child.id()), nats: cpu(self.nats_pid), bench: cpu(std::process::id()) }
    }

    /// The sum of a Prometheus metric's series whose line starts with `prefix`
    /// (e.g. `tracker_events_consumed_total` or `tracker_requests{state="available"}`).
    pub async fn metric(&self, prefix: &str) -> f64 {
        let text = self.http.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap();
        text.lines()
            .filter(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(wrapper: &[String], bin: &Path, dir: &Path) -> (Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("status-tracker.log")).unwrap();
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let child = command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TRACKER_LISTEN", format!("127.0.0.1:{port}"))
        .env("TRACKER_DATA_DIR", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    (child, port)
}

fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// User + system CPU time of a process (all its threads).
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let Some((_, rest)) = stat.rsplit_once(')') else { return Duration::ZERO };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_secs_f64((ticks(14) + ticks(15)) as f64 / clock_ticks() as f64)
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        let out = Command::new("getconf").arg("CLK_TCK").output().ok();
        out.and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(100)
    })
}
