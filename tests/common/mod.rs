//! Test harness: the real `status-tracker` binary on a free port with its own data directory
//! (and so its own embedded `nats-server`), fixtures from `tests/fixtures`, and a small SSE
//! client.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::{Child, Command};

pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running all-in-one `status-tracker`.
pub struct App {
    pub child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    pub http: reqwest::Client,
    extra_env: Vec<(String, String)>,
    _tmp: Option<tempfile::TempDir>,
}

impl App {
    /// Starts the all-in-one with the embedded NATS in a fresh temporary data directory.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().to_owned();
        let extra_env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut app = Self {
            child: None,
            port: free_port(),
            data_dir,
            http: reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap(),
            extra_env,
            _tmp: Some(tmp),
        };
        app.launch().await;
        app
    }

    async fn launch(&mut self) {
        let log = std::fs::File::create(self.data_dir.join(format!("app-{}.log", self.port))).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_status-tracker"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TRACKER_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("TRACKER_DATA_DIR", &self.data_dir)
            .env("RUST_LOG", "info,correlator=debug,ingress=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("status-tracker binary"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.http.get(self.url("/api/health")).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("status-tracker exited early ({status}):\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "status-tracker did not become healthy:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join(format!("app-{}.log", self.port))).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The embedded NATS server's URL.
    pub fn nats_url(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("nats/url")).expect("embedded NATS url file")
    }

    /// Kills the process at once (SIGKILL), as a crash or power cut would.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Stops with SIGTERM and waits for a clean exit.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().unwrap();
        std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
        tokio::time::timeout(Duration::from_secs(20), child.wait()).await.expect("exit after SIGTERM").unwrap()
    }

    /// Starts the process again on the same data directory.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.port = free_port();
        self.launch().await;
    }

    pub async fn post_fixture(&self, source: &str, name: &str) -> (u16, Value) {
        let content_type = if source == "jellyfin" { "text/plain; charset=utf-8" } else { "application/json" };
        self.post(source, content_type, fixture(name)).await
    }

    pub async fn post(&self, source: &str, content_type: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(&format!("/hooks/{source}")))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// Polls `GET path` until `pred` holds (10 s), returning the last answer.
    pub async fn wait_for(&self, path: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.http.get(self.url(path)).send().await.unwrap();
            let v: Value = if r.status().is_success() { r.json().await.unwrap() } else { Value::Null };
            if pred(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last answer of {path}: {v:#}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until the request with this id is in `state`.
    pub async fn wait_state(&self, id: i64, state: &str) -> Value {
        self.wait_for(&format!("/api/requests/{id}"), &format!("request {id} to be {state}"), |v| v["state"] == state)
            .await
    }
}

impl Drop for App {
    /// Stops the process with SIGTERM so that it stops its embedded `nats-server` too
    /// (SIGKILL, what `kill_on_drop` sends, would leave that server running).
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let Some(pid) = child.id() else { return };
        let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.start_kill();
    }
}

/// One SSE event as received.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

/// Reads an SSE stream in the background and keeps every event.
#[derive(Clone)]
pub struct SseClient {
    pub events: Arc<Mutex<Vec<SseEvent>>>,
}

impl SseClient {
    pub async fn connect(app: &App, query: &str) -> Self {
        let mut resp =
            app.http.get(app.url(&format!("/api/sse{query}"))).timeout(Duration::from_secs(3600)).send().await.unwrap();
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        tokio::spawn(async move {
            let mut buf = String::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    if let Some(ev) = parse_block(&block) {
                        sink.lock().unwrap().push(ev);
                    }
                }
            }
        });
        Self { events }
    }

    pub fn snapshot(&self) -> Vec<SseEvent> {
        self.events.lock().unwrap().clone()
    }

    /// Waits until an event satisfying `pred` has arrived.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&SseEvent) -> bool) -> SseEvent {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.snapshot().into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(Instant::now() < deadline, "no SSE event {what}; got {:#?}", self.snapshot());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn parse_block(block: &str) -> Option<SseEvent> {
    let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("id:") {
            id = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    if data.is_empty() && id.is_none() {
        return None; // a keep-alive comment
    }
    Some(SseEvent { id, event, data: serde_json::from_str(&data).unwrap_or(Value::String(data)) })
}
