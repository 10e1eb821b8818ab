//! Deployment: the compose files, the Dockerfile, `.env.template`, `status-tracker doctor` and
//! `healthcheck`, and the example subscriber.
//!
//! The compose files and the Dockerfile are parsed and checked against the code: every service
//! runs a mode the binary accepts, every variable is a declared setting or a documented compose
//! variable, ports meet `TRACKER_LISTEN`, state sits in named volumes. (Building the image and
//! running the files needs a Docker engine: `scripts/docker-check.sh`, not part of this run.)
//! What can run here runs: nats-server with the stack's config, `doctor` against a real
//! nats-server and stand-ins speaking Sonarr's and qBittorrent's API, `healthcheck` against the
//! real binary, a start on a data directory the process cannot write, and the example against
//! NATS and an ntfy stand-in.
//!
//! `UPDATE_DOCS=1 cargo test --test deploy` rewrites the generated settings part of
//! `compose/.env.template` after a setting was added or changed.

mod common;

#[path = "../examples/notify_available.rs"]
#[allow(dead_code)]
mod notify_available;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde_json::{Value, json};
use shared::settings::{SETTINGS, Setting, setting};

const SERVICES: [&str; 5] = ["ingress", "poller", "shoko-bridge", "correlator", "dashboard"];
const SPLIT: &str = "compose/docker-compose.yml";
const ALL_IN_ONE: &str = "compose/docker-compose.all-in-one.yml";
const TEMPLATE: &str = "compose/.env.template";

// ------------------------------------------------------------------------------ helpers ---

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A compose file as JSON, with YAML anchors and merge keys applied.
fn compose(path: &str) -> Value {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not valid YAML: {e}"))
}

fn service<'a>(file: &'a Value, name: &str) -> &'a Value {
    let s = &file["services"][name];
    assert!(s.is_object(), "service {name} is missing");
    s
}

/// A service's `environment` as name → value (compose allows a map or `NAME=value` lines).
fn environment(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), scalar(v))).collect(),
        Value::Array(lines) => lines
            .iter()
            .map(|l| {
                let l = scalar(l);
                let (k, v) = l.split_once('=').unwrap_or((&l, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().map(scalar).collect(),
        Value::Null => Vec::new(),
        other => vec![scalar(other)],
    }
}

/// Names of the networks a service joins (compose allows a list or a map).
fn networks(service: &Value) -> Vec<String> {
    match &service["networks"] {
        Value::Object(map) => map.keys().cloned().collect(),
        other => strings(other),
    }
}

/// Every `${NAME…}` a compose file interpolates (comments are not interpolated).
fn interpolated(text: &str) -> BTreeSet<String> {
    let code: String = text.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    code.split("${")
        .skip(1)
        .map(|rest| rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect())
        .collect()
}

/// The port of `host:port`, `${VAR:-8101}:8100` or `127.0.0.1:${VAR:-4222}:4222` on the
/// container's side.
fn container_port(mapping: &str) -> u16 {
    let port = mapping.rsplit(':').next().unwrap().split('/').next().unwrap();
    port.parse().unwrap_or_else(|_| panic!("port mapping {mapping:?}"))
}

fn listen_port(listen: &str) -> u16 {
    listen.rsplit(':').next().unwrap().parse().unwrap_or_else(|_| panic!("TRACKER_LISTEN {listen:?}"))
}

fn default_listen_port() -> u16 {
    listen_port(setting("TRACKER_LISTEN").unwrap().default.unwrap())
}

/// The commands `status-tracker help` lists.
fn binary_commands() -> Vec<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_status-tracker")).arg("help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let commands = text.split("Commands:").nth(1).expect("a Commands: section");
    commands
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect()
}

/// Services a setting is for, from its `used_by` ("correlator, ingress, all-in-one").
fn used_by(s: &Setting) -> Vec<&'static str> {
    s.used_by.split(',').map(str::trim).collect()
}

fn is_for(s: &Setting, service: &str) -> bool {
    used_by(s).iter().any(|u| *u == service || *u == "all")
}

/// A named volume's mount target in a service, if `target` lies under one.
fn named_volume_over(file: &Value, service: &Value, target: &str) -> Option<String> {
    strings(&service["volumes"]).into_iter().find_map(|v| {
        let mut parts = v.split(':');
        let (source, mount) = (parts.next()?, parts.next()?);
        let named = file["volumes"].get(source).is_some();
        let covers = target == mount || target.starts_with(&format!("{}/", mount.trim_end_matches('/')));
        (named && covers).then(|| source.to_owned())
    })
}

// ----------------------------------------------------------------------- compose files ---

#[test]
fn compose_runs_every_service_from_the_one_image_with_its_mode() {
    let file = compose(SPLIT);
    let commands = binary_commands();
    let image = scalar(&service(&file, "ingress")["image"]);
    for name in SERVICES {
        let s = service(&file, name);
        assert_eq!(strings(&s["command"]), vec![name.to_owned()], "{name}: command");
        assert!(commands.contains(&name.to_owned()), "`status-tracker help` does not list {name}: {commands:?}");
        assert_eq!(scalar(&s["image"]), image, "{name}: one image for every service");
        assert_eq!(scalar(&s["build"]["dockerfile"]), "compose/Dockerfile", "{name}: build");
        let context = root().join("compose").join(scalar(&s["build"]["context"]));
        assert_eq!(context.canonicalize().unwrap(), root().canonicalize().unwrap(), "{name}: context = the repo");
        assert_eq!(scalar(&s["restart"]), "unless-stopped", "{name}: restart");
        assert_eq!(scalar(&s["depends_on"]["nats"]["condition"]), "service_healthy", "{name}: waits for NATS");
        assert!(networks(s).contains(&"media".to_owned()), "{name}: joins the media network");
    }
    // The one-shot doctor runs a command the binary has, too.
    let doctor = service(&file, "doctor");
    assert_eq!(strings(&doctor["command"]), vec!["doctor"]);
    assert!(commands.contains(&"doctor".to_owned()) && commands.contains(&"healthcheck".to_owned()));
    let nats = service(&file, "nats");
    let tag = scalar(&nats["image"]);
    let version = tag.strip_prefix("nats:").expect("the official nats image");
    let (major, minor) = version.split_once('.').unwrap();
    let minor: u32 = minor.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
    assert!(major == "2" && minor >= 10, "nats 2.10 or newer, got {tag}");
}

#[test]
fn compose_passes_each_service_the_settings_it_reads_and_no_other_secret() {
    let file = compose(SPLIT);
    for name in SERVICES {
        let env = environment(service(&file, name));
        for s in SETTINGS.iter().filter(|s| is_for(s, name)) {
            assert!(
                env.contains_key(s.name),
                "{name} reads {} (used_by: {}) but compose does not pass it",
                s.name,
                s.used_by
            );
        }
        for key in env.keys() {
            let s =
                setting(key).unwrap_or_else(|| panic!("{name}: {key} is not a setting of shared::settings::SETTINGS"));
            assert!(!s.secret || is_for(s, name), "{name} gets the secret {key}, which only {} reads", s.used_by);
        }
        let required = "${NATS_TRACKER_PASSWORD:?set NATS_TRACKER_PASSWORD in compose/.env}";
        assert_eq!(env["NATS_URL"], format!("nats://tracker:{required}@nats:4222"), "{name}: NATS_URL");
        assert_eq!(listen_port(&env["TRACKER_LISTEN"]), default_listen_port(), "{name}: TRACKER_LISTEN");
    }
    // The doctor sees every setting the services see, so that it prints the stack's configuration.
    let doctor = environment(service(&file, "doctor"));
    for name in SERVICES {
        for key in environment(service(&file, name)).keys() {
            assert!(doctor.contains_key(key), "doctor lacks {key}");
        }
    }
    assert!(file["services"]["nats"].is_object(), "NATS_URL names the nats service");
    // nats.conf reads both users' passwords from the nats container's environment.
    let nats = environment(service(&file, "nats"));
    let conf = read("compose/nats.conf");
    for var in ["NATS_TRACKER_PASSWORD", "NATS_AUTOMATION_PASSWORD"] {
        assert_eq!(nats[var], format!("${{{var}:?set {var} in compose/.env}}"), "nats: {var}");
        assert!(conf.contains(&format!("password: ${var}")), "compose/nats.conf does not read {var}");
    }
}

#[test]
fn compose_variables_and_settings_are_all_in_the_env_template() {
    let template = read(TEMPLATE);
    let (start, stop) = template_markers(&template);
    let (compose_part, generated) = (&template[..start], &template[start..stop]);
    let compose_vars: BTreeSet<String> = assigned(compose_part).into_iter().collect();
    let mut used = BTreeSet::new();
    for path in [SPLIT, ALL_IN_ONE] {
        for var in interpolated(&read(path)) {
            assert!(
                setting(&var).is_some() || compose_vars.contains(&var),
                "{path} uses ${{{var}}}: declare it in SETTINGS or document it in the compose part of {TEMPLATE}"
            );
            used.insert(var);
        }
    }
    for var in &compose_vars {
        assert!(setting(var).is_none(), "{var} is a setting: it belongs in the generated part of {TEMPLATE}");
        assert!(
            used.contains(var) || var == "COMPOSE_PROFILES",
            "{TEMPLATE} documents {var}, which no compose file uses"
        );
    }
    // The generated part: every setting with its documentation.
    let expected = settings_section(&used);
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(root().join(TEMPLATE), format!("{}{expected}{}", &template[..start], &template[stop..]))
            .unwrap();
        return;
    }
    assert_eq!(generated, expected, "{TEMPLATE} is out of date: run UPDATE_DOCS=1 cargo test --test deploy");
    for line in compose_part.lines().chain(generated.lines()) {
        assert!(line.is_empty() || line.starts_with('#') || line.contains('='), "{TEMPLATE}: {line:?}");
    }
}

/// Where the template's generated settings part starts and stops (after it, the hand-written
/// compose part).
fn template_markers(template: &str) -> (usize, usize) {
    let (begin, end) = ("# settings:begin\n", "# settings:end\n");
    let start = template.find(begin).expect("a settings:begin marker") + begin.len();
    let stop = template.find(end).expect("a settings:end marker");
    (start, stop)
}

/// `NAME` of every `NAME=…` line.
fn assigned(text: &str) -> Vec<String> {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once('=')).map(|(k, _)| k.to_owned()).collect()
}

/// The settings part of `.env.template`, from SETTINGS: grouped by who reads them, with their
/// one-line docs; empty values (the default applies); settings the compose files set
/// themselves (never interpolated from .env) are shown commented out.
fn settings_section(interpolated: &BTreeSet<String>) -> String {
    let mut out = String::new();
    let mut group = "";
    for s in SETTINGS {
        if s.used_by != group {
            group = s.used_by;
            out.push_str(&format!("\n# ---- used by: {group} ----\n"));
        }
        out.push_str(&format!("# {}\n", s.doc));
        match (s.default, s.secret) {
            (_, true) => out.push_str("# (secret)\n"),
            (Some(d), false) => out.push_str(&format!("# (default: {d})\n")),
            (None, false) => {}
        }
        if interpolated.contains(s.name) {
            out.push_str(&format!("{}=\n", s.name));
        } else {
            out.push_str(&format!("# (set by the compose files)\n# {}=\n", s.name));
        }
    }
    out.push('\n');
    out
}

#[test]
fn published_ports_meet_the_listener_and_every_service_has_a_healthcheck() {
    let commands = binary_commands();
    for path in [SPLIT, ALL_IN_ONE] {
        let file = compose(path);
        for (name, s) in file["services"].as_object().unwrap() {
            let env = environment(s);
            let is_tracker = strings(&s["command"]).first().is_some_and(|c| commands.contains(c));
            if is_tracker {
                let listen = env.get("TRACKER_LISTEN").map(String::as_str).unwrap_or("0.0.0.0:8100");
                for mapping in strings(&s["ports"]) {
                    assert_eq!(container_port(&mapping), listen_port(listen), "{path}: {name} publishes {mapping}");
                }
                if name == "doctor" {
                    continue;
                }
                let test = strings(&s["healthcheck"]["test"]);
                assert_eq!(test, ["CMD", "status-tracker", "healthcheck"], "{path}: {name} healthcheck");
            } else if name == "nats" {
                let test = strings(&s["healthcheck"]["test"]).join(" ");
                assert!(test.contains("http://127.0.0.1:8222/healthz"), "{path}: nats healthcheck {test}");
            }
        }
    }
    // The host ports: the dashboard on 8100, webhooks on 8101 in the split stack.
    let file = compose(SPLIT);
    assert_eq!(strings(&service(&file, "dashboard")["ports"]), ["${TRACKER_DASHBOARD_PORT:-8100}:8100"]);
    assert_eq!(strings(&service(&file, "ingress")["ports"]), ["${TRACKER_INGRESS_PORT:-8101}:8100"]);
    let aliases = strings(&service(&file, "ingress")["networks"]["media"]["aliases"]);
    assert_eq!(aliases, ["status-tracker"], "webhooks reach the ingress as status-tracker:8100, as the all-in-one");
}

#[test]
fn state_lives_in_named_volumes_and_the_media_network_is_external() {
    let file = compose(SPLIT);
    let nats_conf = read("compose/nats.conf");
    let store = nats_conf.lines().find_map(|l| l.trim().strip_prefix("store_dir:")).expect("store_dir").trim();
    assert!(named_volume_over(&file, service(&file, "nats"), store).is_some(), "NATS store {store} in a named volume");
    assert!(strings(&service(&file, "nats")["volumes"]).iter().any(|v| v.starts_with("./nats.conf:")));
    let correlator = service(&file, "correlator");
    let data = environment(correlator)["TRACKER_DATA_DIR"].clone();
    assert!(named_volume_over(&file, correlator, &format!("{data}/tracker.db")).is_some(), "correlator database");
    let ingress = service(&file, "ingress");
    let spool = format!("{}/spool", environment(ingress)["TRACKER_DATA_DIR"]);
    assert!(named_volume_over(&file, ingress, &spool).is_some(), "ingress spool {spool} in a named volume");

    let aio = compose(ALL_IN_ONE);
    let app = service(&aio, "status-tracker");
    let data = environment(app)["TRACKER_DATA_DIR"].clone();
    for inner in ["tracker.db", "spool", "nats"] {
        assert!(named_volume_over(&aio, app, &format!("{data}/{inner}")).is_some(), "all-in-one {inner}");
    }
    for f in [&file, &aio] {
        assert_eq!(f["networks"]["media"]["external"], json!(true), "the media network is the media stack's");
        assert_eq!(scalar(&f["networks"]["media"]["name"]), "${MEDIA_NETWORK:-media}");
    }
}

#[test]
fn the_tracing_profile_receives_every_services_traces() {
    let template = read(TEMPLATE);
    let endpoint = template
        .lines()
        .find_map(|l| l.split("OTEL_EXPORTER_OTLP_ENDPOINT=").nth(1).filter(|_| l.starts_with('#')))
        .expect("the template shows the tracing endpoint")
        .split(|c: char| c.is_whitespace() || c == ',')
        .next()
        .unwrap();
    let (host, port) = endpoint.trim_start_matches("http://").split_once(':').unwrap();
    let commands = binary_commands();
    for path in [SPLIT, ALL_IN_ONE] {
        let file = compose(path);
        let jaeger = service(&file, host);
        assert_eq!(strings(&jaeger["profiles"]), ["tracing"], "{path}: {host} is optional");
        assert!(scalar(&jaeger["image"]).starts_with("jaegertracing/all-in-one:"), "{path}");
        assert_eq!(environment(jaeger)["COLLECTOR_OTLP_ENABLED"], "true", "{path}: OTLP on");
        assert_eq!(port, "4318", "OTLP/HTTP");
        assert!(strings(&jaeger["expose"]).contains(&port.to_owned()), "{path}: {host} exposes {port}");
        for (name, s) in file["services"].as_object().unwrap() {
            if strings(&s["command"]).first().is_some_and(|c| commands.contains(c)) {
                let env = environment(s);
                assert_eq!(env["OTEL_EXPORTER_OTLP_ENDPOINT"], "${OTEL_EXPORTER_OTLP_ENDPOINT:-}", "{path}: {name}");
            }
        }
    }
}

#[test]
fn the_all_in_one_runs_every_service_with_its_own_nats() {
    let file = compose(ALL_IN_ONE);
    let app = service(&file, "status-tracker");
    assert_eq!(strings(&app["command"]), ["all"]);
    assert!(binary_commands().contains(&"all".to_owned()));
    let env = environment(app);
    assert!(!env.contains_key("NATS_URL"), "NATS_URL stays unset: the embedded server is used");
    for s in SETTINGS.iter().filter(|s| s.name != "NATS_URL") {
        assert!(env.contains_key(s.name), "the all-in-one does not pass {}", s.name);
    }
    assert_eq!(env["NATS_SERVER_BIN"], dockerfile_nats_server_path(), "the image's nats-server");
    assert_eq!(scalar(&app["image"]), scalar(&service(&compose(SPLIT), "ingress")["image"]), "the same image");
    assert_eq!(scalar(&app["restart"]), "unless-stopped");
    assert!(networks(app).contains(&"media".to_owned()));
}

/// nats-server with the stack's config (its store moved to a temp dir, its ports to free ones,
/// the users' passwords in its environment, as compose gives them).
struct StackNats {
    port: u16,
    http_port: u16,
    server: tokio::process::Child,
    _dir: tempfile::TempDir,
}

const TRACKER_PASSWORD: &str = "tr4ck3r0f7e9";
const AUTOMATION_PASSWORD: &str = "aut0m4t10n2c1d";

impl StackNats {
    async fn start() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let conf = read("compose/nats.conf").replace("store_dir: /data", &format!("store_dir: {:?}", tmp.path()));
        std::fs::write(tmp.path().join("nats.conf"), conf).unwrap();
        let (port, http_port) = (common::free_port(), common::free_port());
        let server = tokio::process::Command::new("nats-server")
            .arg("-c")
            .arg(tmp.path().join("nats.conf"))
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-m", &http_port.to_string()])
            .arg("-l")
            .arg(tmp.path().join("log"))
            .env("NATS_TRACKER_PASSWORD", TRACKER_PASSWORD)
            .env("NATS_AUTOMATION_PASSWORD", AUTOMATION_PASSWORD)
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server");
        Self { port, http_port, server, _dir: tmp }
    }

    fn url(&self, user: &str, password: &str) -> String {
        format!("nats://{user}:{password}@127.0.0.1:{}", self.port)
    }
}

/// Asks the URL the nats healthcheck asks, until it answers.
#[tokio::test]
async fn nats_accepts_the_stack_config_and_answers_its_healthcheck() {
    let mut nats = StackNats::start().await;
    let file = compose(SPLIT);
    let test = strings(&service(&file, "nats")["healthcheck"]["test"]);
    let url =
        test.iter().find(|a| a.starts_with("http://")).unwrap().replace(":8222/", &format!(":{}/", nats.http_port));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = reqwest::get(&url).await
            && r.status().is_success()
        {
            assert!(r.text().await.unwrap().contains("ok"));
            break;
        }
        assert!(nats.server.try_wait().unwrap().is_none(), "nats-server refused compose/nats.conf");
        assert!(Instant::now() < deadline, "{url} did not answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nats.server.kill().await.unwrap();
}

/// Issue (known defect) 001: in the stack, NATS wants a user. The services' user may do
/// everything; the automation user reads every event, asks queries and follows the streams,
/// but its commands, facts and stream changes are refused, and it cannot take the services'
/// commands, queries or messages.
#[tokio::test]
async fn the_stack_nats_lets_automations_read_but_not_command() {
    let nats = StackNats::start().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let tracker = loop {
        match shared::Bus::connect(&nats.url("tracker", TRACKER_PASSWORD), "test-services").await {
            Ok(bus) => break bus,
            Err(e) => assert!(Instant::now() < deadline, "the services' user cannot connect: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let anonymous = async_nats::connect(format!("nats://127.0.0.1:{}", nats.port)).await;
    assert!(anonymous.is_err(), "no user, no connection");
    let Err(wrong) = shared::Bus::connect(&nats.url("tracker", "guess"), "test").await else {
        panic!("a wrong password fails")
    };
    assert!(!wrong.to_string().contains("guess"), "the error names no password: {wrong}");
    tracker.ensure_streams().await.unwrap();

    // The services answer commands and queries as the correlator does (a queue group).
    let mut commands = tracker.client.queue_subscribe("tracker.cmd.>", "correlator".into()).await.unwrap();
    let mut queries = tracker.client.queue_subscribe("tracker.query.>", "correlator".into()).await.unwrap();
    tracker.client.flush().await.unwrap();
    let automation =
        shared::Bus::connect(&nats.url("automation", AUTOMATION_PASSWORD), "test-automation").await.unwrap();
    let mut stolen = automation.client.queue_subscribe("tracker.cmd.>", "correlator".into()).await.unwrap();
    let mut changes = automation.client.subscribe("tracker.request.>").await.unwrap();
    automation.client.flush().await.unwrap();

    // A command from the automation user never arrives; a query does, and its answer comes back.
    let refused = automation.client.request("tracker.cmd.cancel", r#"{"id": 1, "by": "intruder"}"#.into());
    let asked = automation.client.request("tracker.query.summary", "{}".into());
    let answer = async {
        let q = queries.next().await.unwrap();
        tracker.client.publish(q.reply.unwrap(), "{\"ok\": {}}".into()).await.unwrap();
    };
    let (refused, asked, ()) = tokio::join!(tokio::time::timeout(Duration::from_secs(2), refused), asked, answer);
    assert!(!matches!(refused, Ok(Ok(_))), "the command was answered: {refused:?}");
    assert_eq!(asked.unwrap().payload.as_ref(), b"{\"ok\": {}}");
    let quiet = tokio::time::timeout(Duration::from_millis(300), commands.next()).await;
    assert!(quiet.is_err(), "the correlator got a command from the automation user");

    // The services' commands reach the correlator, none the automation user's queue member.
    for id in 0..20 {
        tracker.client.publish("tracker.cmd.retry", format!(r#"{{"id": {id}}}"#).into()).await.unwrap();
    }
    tracker.client.flush().await.unwrap();
    for _ in 0..20 {
        tokio::time::timeout(Duration::from_secs(2), commands.next()).await.expect("every command arrives");
    }
    assert!(tokio::time::timeout(Duration::from_millis(300), stolen.next()).await.is_err(), "a command was taken");

    // State changes reach the automation user, live and from the stream.
    let change = shared::subjects::request_state(shared::ids::RequestId(7), "available");
    tracker.js.publish(change.clone(), "{}".into()).await.unwrap().await.unwrap();
    let live = tokio::time::timeout(Duration::from_secs(2), changes.next()).await.unwrap().unwrap();
    assert_eq!(live.subject.as_str(), change);
    let stream = automation.js.get_stream(shared::subjects::STREAM_TRACKER).await.unwrap();
    let ordered = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .expect("an automation follows a stream with a consumer of its own");
    let mut messages = ordered.messages().await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(2), messages.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.subject.as_str(), change);

    // Facts, stream changes and the correlator's consumers are the services' own.
    let fact = automation.js.publish("media.radarr.grab", "{}".into()).await;
    let stored = match fact {
        Ok(ack) => tokio::time::timeout(Duration::from_secs(2), ack).await.is_ok_and(|a| a.is_ok()),
        Err(_) => false,
    };
    assert!(!stored, "the automation user stored a fact");
    assert!(automation.js.delete_stream(shared::subjects::STREAM_MEDIA).await.is_err(), "it deleted MEDIA");
    let durable = |name: &str| async_nats::jetstream::consumer::pull::Config {
        durable_name: Some(name.to_owned()),
        ..Default::default()
    };
    let media = automation.js.get_stream(shared::subjects::STREAM_MEDIA).await.unwrap();
    let made = tokio::time::timeout(Duration::from_secs(3), media.create_consumer(durable("correlator"))).await;
    assert!(!matches!(made, Ok(Ok(_))), "it made the correlator's consumer: {made:?}");
    let own = media.create_consumer(durable("home-assistant")).await;
    assert!(own.is_ok(), "a durable consumer of its own: {:?}", own.err());
    // The correlator's consumer, made by the services' user: the automation user may look at
    // it but not pull its messages.
    tracker.js.publish("media.radarr.grab", "{}".into()).await.unwrap().await.unwrap();
    let theirs = tracker.js.get_stream(shared::subjects::STREAM_MEDIA).await.unwrap();
    theirs.create_consumer(durable(shared::subjects::CONSUMER_CORRELATOR)).await.unwrap();
    let seen: async_nats::jetstream::consumer::PullConsumer =
        media.get_consumer(shared::subjects::CONSUMER_CORRELATOR).await.expect("its info is readable");
    let pulled =
        async { seen.fetch().max_messages(1).expires(Duration::from_secs(1)).messages().await.ok()?.next().await };
    let pulled = tokio::time::timeout(Duration::from_secs(3), pulled).await;
    assert!(!matches!(pulled, Ok(Some(Ok(_)))), "it took a message from the correlator's consumer");
    assert!(tracker.js.get_stream(shared::subjects::STREAM_MEDIA).await.is_ok(), "MEDIA is still there");
}

// -------------------------------------------------------------------------- Dockerfile ---

/// The Dockerfile's instructions: continuation lines joined, comments dropped, `${ARG}`s of
/// `FROM` lines resolved from the global `ARG` defaults.
fn dockerfile() -> Vec<(String, String)> {
    let text = read("compose/Dockerfile");
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                if !current.trim().is_empty() {
                    joined.push(std::mem::take(&mut current));
                }
                current.clear();
            }
        }
    }
    let mut args = BTreeMap::new();
    joined
        .into_iter()
        .map(|l| {
            let (op, rest) = l.trim().split_once(char::is_whitespace).unwrap_or((l.trim(), ""));
            let mut rest = rest.split_whitespace().collect::<Vec<_>>().join(" ");
            if op == "ARG"
                && let Some((k, v)) = rest.split_once('=')
            {
                args.insert(format!("${{{k}}}"), v.to_owned());
            }
            if op == "FROM" {
                for (k, v) in &args {
                    rest = rest.replace(k, v);
                }
            }
            (op.to_uppercase(), rest)
        })
        .collect()
}

/// The instructions of the last stage (the image).
fn final_stage(all: &[(String, String)]) -> &[(String, String)] {
    let last_from = all.iter().rposition(|(op, _)| op == "FROM").expect("a FROM");
    &all[last_from..]
}

fn dockerfile_nats_server_path() -> String {
    let all = dockerfile();
    let copy = final_stage(&all)
        .iter()
        .find(|(op, rest)| op == "COPY" && rest.contains("nats-server"))
        .expect("the image copies nats-server");
    copy.1.split_whitespace().last().unwrap().to_owned()
}

#[test]
fn the_dockerfile_builds_the_one_binary_into_a_small_non_root_image() {
    let all = dockerfile();
    let froms: Vec<&str> = all.iter().filter(|(op, _)| op == "FROM").map(|(_, r)| r.as_str()).collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    assert!(froms.iter().any(|f| f.starts_with("rust:1.95-bookworm AS builder")), "{froms:?}");
    let image = final_stage(&all);
    let from = &image[0].1;
    assert!(from.starts_with("debian:bookworm-slim") || from.starts_with("gcr.io/distroless/"), "runtime {from}");

    let value = |op: &str| image.iter().filter(|(o, _)| o == op).map(|(_, r)| r.clone()).collect::<Vec<_>>();
    let user = value("USER").pop().expect("a USER in the final stage");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "runs as {user}");
    assert_eq!(value("EXPOSE"), [default_listen_port().to_string()], "EXPOSE = TRACKER_LISTEN's port");
    // State lives in the compose files' named volumes; a VOLUME would leave an anonymous
    // volume behind for each stateless container at every `down`.
    assert_eq!(value("VOLUME"), Vec::<String>::new());
    assert!(value("ENV").iter().any(|e| e.contains("TRACKER_DATA_DIR=/data")), "ENV TRACKER_DATA_DIR=/data");
    let healthcheck = value("HEALTHCHECK").pop().expect("a HEALTHCHECK");
    assert!(healthcheck.ends_with(r#"CMD ["status-tracker", "healthcheck"]"#), "{healthcheck}");
    assert!(binary_commands().contains(&"healthcheck".to_owned()));
    assert_eq!(value("ENTRYPOINT"), [r#"["status-tracker"]"#]);
    let binary = value("COPY").into_iter().find(|c| c.ends_with("/usr/local/bin/status-tracker")).expect("the binary");
    assert!(binary.contains("--from=builder"), "{binary}");

    // Both builds name the binary, and the dependency layer knows every workspace crate.
    let runs: Vec<&str> = all.iter().filter(|(op, _)| op == "RUN").map(|(_, r)| r.as_str()).collect();
    assert_eq!(runs.iter().filter(|r| r.contains("cargo build --release --locked --bin status-tracker")).count(), 2);
    let copies: Vec<&str> = all.iter().filter(|(op, _)| op == "COPY").map(|(_, r)| r.as_str()).collect();
    for member in workspace_members() {
        assert!(
            copies.iter().any(|c| c.contains(&format!("{member}/Cargo.toml"))),
            "the Dockerfile copies {member}/Cargo.toml"
        );
        assert!(runs.iter().any(|r| r.contains(&member)), "the dependency layer stubs {member}/src/lib.rs");
        if root().join(&member).join("build.rs").exists() {
            assert!(copies.iter().any(|c| c.contains(&format!("{member}/build.rs"))), "{member}/build.rs");
        }
    }

    let ignore = read(".dockerignore");
    for needed in ["target/", "data/", ".git/", "compose/.env"] {
        assert!(ignore.lines().any(|l| l.trim() == needed), ".dockerignore leaves out {needed}");
    }
}

/// `members = [...]` of the root manifest.
fn workspace_members() -> Vec<String> {
    let manifest = read("Cargo.toml");
    let list = manifest.split("members = [").nth(1).unwrap().split(']').next().unwrap();
    list.split(',').map(|m| m.trim().trim_matches('"').to_owned()).filter(|m| !m.is_empty()).collect()
}

// ------------------------------------------------------------------------ settings used ---

/// Every declared setting is read by some code outside its declaration: documented settings
/// that nothing reads would mislead users. Tests and `doctor` (which reads peers' URLs only to
/// check them) do not count.
#[test]
fn every_setting_is_read_somewhere_in_the_code() {
    let mut sources = String::new();
    for dir in ["services", "shared", "src"] {
        collect_sources(&root().join(dir), &mut sources);
    }
    let unused: Vec<&str> = SETTINGS.iter().map(|s| s.name).filter(|n| !is_read(&sources, n)).collect();
    assert!(unused.is_empty(), "declared and documented, but read by no code: {unused:?}");
}

/// `"NAME"`, or a format string that builds it (`"TRACKER_WEBHOOK_TOKEN_{}"`).
fn is_read(sources: &str, name: &str) -> bool {
    sources.contains(&format!("\"{name}\""))
        || name
            .match_indices('_')
            .map(|(i, _)| &name[..=i])
            .filter(|prefix| prefix.matches('_').count() >= 2)
            .any(|prefix| sources.contains(&format!("\"{prefix}{{")))
}

fn collect_sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path: PathBuf = entry.path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "tests" | "examples" | "benches") {
                collect_sources(&path, out);
            }
        } else if name.ends_with(".rs") && !name.ends_with("_tests.rs") {
            let skip = path.ends_with("shared/src/settings.rs") || path.ends_with("src/doctor.rs");
            if !skip {
                out.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
}

// ------------------------------------------------------------------------------ doctor ---

const SONARR_KEY: &str = "sonarr-key-7f3a9c";
const RADARR_KEY: &str = "radarr-key-11b2e0";
const QBIT_PASSWORD: &str = "qbit-pass-90d1c4";
const JELLYFIN_KEY: &str = "jellyfin-key-5e6f70";
const SHOKO_KEY: &str = "shoko-key-a8b9c0";

/// Serves `router` on a free loopback port and returns its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

/// Sonarr's `GET /api/v3/system/status` and `/api/v3/qualityprofile` (the fixture): with the
/// right `X-Api-Key`, else 401.
fn fake_sonarr() -> Router {
    let keyed = |body: serde_json::Value| {
        get(move |headers: HeaderMap| async move {
            if headers.get("x-api-key").is_some_and(|k| k == SONARR_KEY) {
                (StatusCode::OK, axum::Json(body))
            } else {
                (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "Unauthorized"})))
            }
        })
    };
    let profiles = serde_json::from_slice(&common::fixture("sonarr/api_v3_qualityprofile.json")).unwrap();
    Router::new()
        .route("/api/v3/system/status", keyed(json!({"appName": "Sonarr", "version": "4.0.19.2979"})))
        .route("/api/v3/qualityprofile", keyed(profiles))
}

/// qBittorrent 4.x: `webapiVersion` is 403 without a session; login answers `Ok.` or `Fails.`.
fn fake_qbittorrent() -> Router {
    Router::new().route("/api/v2/app/webapiVersion", get(|| async { (StatusCode::FORBIDDEN, "Forbidden") })).route(
        "/api/v2/auth/login",
        post(|axum::Form(form): axum::Form<BTreeMap<String, String>>| async move {
            let ok = form.get("username").is_some_and(|u| u == "admin")
                && form.get("password").is_some_and(|p| p == QBIT_PASSWORD);
            if ok { "Ok." } else { "Fails." }
        }),
    )
}

/// Jellyfin: the public info for anyone (the fixture), `/System/Info` with the key only.
fn fake_jellyfin() -> Router {
    Router::new()
        .route("/System/Info/Public", get(|| async { common::fixture("jellyfin/api_system_info_public.json") }))
        .route(
            "/System/Info",
            get(|headers: HeaderMap| async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
                let ok = auth.starts_with("MediaBrowser ") && auth.contains(&format!("Token=\"{JELLYFIN_KEY}\""));
                if ok { StatusCode::OK } else { StatusCode::UNAUTHORIZED }
            }),
        )
}

/// Shoko: the import folders (the fixture) with the right `apikey` header, else 401.
fn fake_shoko() -> Router {
    Router::new().route(
        "/api/v3/ImportFolder",
        get(|headers: HeaderMap| async move {
            if headers.get("apikey").is_some_and(|k| k == SHOKO_KEY) {
                (StatusCode::OK, common::fixture("shoko/api_v3_importfolder.json"))
            } else {
                (StatusCode::UNAUTHORIZED, Vec::new())
            }
        }),
    )
}

async fn doctor(env: &[(&str, String)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_status-tracker"));
    cmd.arg("doctor").env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.expect("doctor finishes").unwrap()
}

/// The `Checks:` lines as peer → (label, detail).
fn checks(stdout: &str) -> BTreeMap<String, (String, String)> {
    let section = stdout.split("\nChecks:\n").nth(1).expect("a Checks: section");
    section
        .lines()
        .take_while(|l| l.starts_with("  "))
        .map(|l| {
            let (peer, rest) = l.trim().split_once(' ').unwrap();
            let rest = rest.trim_start();
            let label = ["not configured", "failed", "ok"].into_iter().find(|p| rest.starts_with(p)).unwrap();
            (peer.to_owned(), (label.to_owned(), rest[label.len()..].trim().to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn doctor_checks_each_configured_peer_and_fails_on_the_unreachable_one() {
    let tmp = tempfile::tempdir().unwrap();
    let nats = shared::nats_server::EmbeddedNats::start(tmp.path(), "nats-server").await.unwrap();
    let (sonarr, qbit) = (serve(fake_sonarr()).await, serve(fake_qbittorrent()).await);
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let env = [
        ("NATS_URL", nats.url()),
        ("SONARR_URL", sonarr.clone()),
        ("SONARR_API_KEY", SONARR_KEY.to_owned()),
        ("QBIT_URL", qbit.clone()),
        ("QBIT_PASSWORD", QBIT_PASSWORD.to_owned()),
        ("JELLYFIN_URL", serve(fake_jellyfin()).await),
        ("JELLYFIN_API_KEY", JELLYFIN_KEY.to_owned()),
        ("SHOKO_URL", serve(fake_shoko()).await),
        ("SHOKO_API_KEY", SHOKO_KEY.to_owned()),
        ("RADARR_URL", closed.clone()),
        ("RADARR_API_KEY", RADARR_KEY.to_owned()),
        // Jellyseerr's 4K Sonarr, here the same stand-in.
        ("SONARR_4K_URL", sonarr.clone()),
        ("SONARR_4K_API_KEY", SONARR_KEY.to_owned()),
    ];
    let out = doctor(&env).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "one configured peer is down:\n{all}");
    for secret in [SONARR_KEY, RADARR_KEY, QBIT_PASSWORD, JELLYFIN_KEY, SHOKO_KEY] {
        assert!(!all.contains(secret), "doctor printed a secret:\n{all}");
    }
    for s in SETTINGS {
        let lines = stdout.lines().filter(|l| l.split_whitespace().next() == Some(s.name)).count();
        assert_eq!(lines, 1, "the configuration shows {} once:\n{stdout}", s.name);
    }
    let checks = checks(&stdout);
    let label = |peer: &str| checks.get(peer).map(|(l, _)| l.as_str()).unwrap_or("missing");
    let peers =
        ["nats", "qbittorrent", "shoko", "sonarr", "radarr", "sonarr-4k", "radarr-4k", "jellyfin", "jellyseerr"];
    assert_eq!(
        checks.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        peers.into(),
        "one line per check:\n{stdout}"
    );
    assert_eq!(label("nats"), "ok", "{stdout}");
    assert!(checks["nats"].1.contains("JetStream answers"), "{stdout}");
    assert_eq!(label("sonarr"), "ok", "{stdout}");
    assert!(checks["sonarr"].1.contains("Sonarr 4.0.19.2979"), "{stdout}");
    assert_eq!(label("qbittorrent"), "ok", "{stdout}");
    assert!(checks["qbittorrent"].1.contains("login accepted"), "{stdout}");
    assert_eq!(label("sonarr-4k"), "ok", "{stdout}");
    assert_eq!(label("radarr-4k"), "not configured", "{stdout}");
    assert_eq!(label("radarr"), "failed", "{stdout}");
    assert!(checks["radarr"].1.contains("unreachable"), "{stdout}");
    assert_eq!(label("jellyfin"), "ok", "{stdout}");
    assert!(checks["jellyfin"].1.contains("Jellyfin 10.11.11: API key accepted"), "{stdout}");
    assert_eq!(label("shoko"), "ok", "{stdout}");
    assert!(checks["shoko"].1.contains("2 import folder(s)"), "{stdout}");
    assert_eq!(label("jellyseerr"), "not configured", "{stdout}");

    // Refused credentials fail the check and say which setting to fix.
    let wrong = [
        ("NATS_URL", nats.url()),
        ("SONARR_URL", sonarr.clone()),
        ("SONARR_API_KEY", "not-the-key".to_owned()),
        ("QBIT_URL", qbit.clone()),
        ("QBIT_PASSWORD", "not-the-password".to_owned()),
    ];
    let out = doctor(&wrong).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let checks = self::checks(&stdout);
    assert_eq!(checks["sonarr"].0, "failed", "{stdout}");
    assert!(checks["sonarr"].1.contains("SONARR_API_KEY was refused"), "{stdout}");
    assert_eq!(checks["qbittorrent"].0, "failed", "{stdout}");
    assert!(checks["qbittorrent"].1.contains("refused"), "{stdout}");
    assert!(!stdout.contains("not-the-password") && !stdout.contains("not-the-key"), "{stdout}");

    // A fallback quality profile ("Lower quality") must be one the *arr has.
    let sonarr_with = |fallback: &str| {
        let mut env = env[..3].to_vec();
        env.push(("SONARR_FALLBACK_PROFILE", fallback.to_owned()));
        env
    };
    let out = doctor(&sonarr_with("hd-720p")).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(self::checks(&stdout)["sonarr"].1.ends_with("\"Lower quality\" switches to HD-720p"), "{stdout}");
    let out = doctor(&sonarr_with("Potato")).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "a fallback profile Sonarr lacks fails the check: {stdout}");
    let (label, detail) = &self::checks(&stdout)["sonarr"];
    assert_eq!(label, "failed");
    assert!(
        detail.ends_with(
            "but SONARR_FALLBACK_PROFILE \"Potato\" is not one of Sonarr's quality profiles (Any, HD-720p, HD-1080p)"
        ),
        "{stdout}"
    );

    // Beside a 4K instance, Jellyfin's API is what tells HD and 4K requests apart: without a
    // URL the line says so, a URL without a key fails.
    let jellyfin = env[5].1.clone();
    let four_k = |jellyfin_url: Option<&str>| {
        let mut env = vec![("NATS_URL", nats.url()), ("RADARR_4K_URL", closed.clone())];
        env.extend(jellyfin_url.map(|url| ("JELLYFIN_URL", url.to_owned())));
        env
    };
    let stdout = String::from_utf8_lossy(&doctor(&four_k(None)).await.stdout).into_owned();
    let (label, detail) = &self::checks(&stdout)["jellyfin"];
    assert_eq!(label, "not configured", "{stdout}");
    assert!(detail.contains("with RADARR_4K_URL set") && detail.contains("goes to the newer request"), "{stdout}");
    let stdout = String::from_utf8_lossy(&doctor(&four_k(Some(&jellyfin))).await.stdout).into_owned();
    let (label, detail) = &self::checks(&stdout)["jellyfin"];
    assert_eq!(label, "failed", "{stdout}");
    assert!(detail.contains("Jellyfin 10.11.11, but no JELLYFIN_API_KEY set: with RADARR_4K_URL set"), "{stdout}");

    // Everything configured answers: exit 0.
    let out = doctor(&env[..9]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(self::checks(&stdout)["radarr"].0, "not configured", "{stdout}");
    nats.stop().await;
}

// ------------------------------------------------------------------------- healthcheck ---

async fn healthcheck(listen: &str) -> Option<i32> {
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_status-tracker"))
        .arg("healthcheck")
        .env_clear()
        .env("TRACKER_LISTEN", listen)
        .stderr(std::process::Stdio::null())
        .status();
    tokio::time::timeout(Duration::from_secs(20), status).await.expect("healthcheck finishes").unwrap().code()
}

#[tokio::test]
async fn healthcheck_passes_against_a_running_app_and_fails_on_a_closed_port() {
    let app = common::App::start().await;
    assert_eq!(healthcheck(&format!("127.0.0.1:{}", app.port)).await, Some(0));
    // In a container TRACKER_LISTEN is 0.0.0.0:8100: asked on loopback.
    assert_eq!(healthcheck(&format!("0.0.0.0:{}", app.port)).await, Some(0));
    assert_eq!(healthcheck(&format!("127.0.0.1:{}", common::free_port())).await, Some(1));
}

// ------------------------------------------------------------------ the data directory ---

/// A bind mount the image's user cannot write (a host directory owned by root): the start stops
/// at once and says which user needs the directory. Run as `nobody` (through `setpriv` when the
/// tests run as root, whom permissions do not stop).
#[tokio::test]
async fn a_data_directory_the_process_cannot_write_stops_the_start_with_what_to_do() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o555)).unwrap();
    let binary = env!("CARGO_BIN_EXE_status-tracker");
    let root = rustix::process::getuid().is_root();
    let mut cmd = if root {
        let mut cmd = tokio::process::Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", binary]);
        cmd
    } else {
        tokio::process::Command::new(binary)
    };
    cmd.arg("all")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TRACKER_DATA_DIR", &data)
        .env("TRACKER_LISTEN", format!("127.0.0.1:{}", common::free_port()));
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output()).await.expect("it stops").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let (uid, gid) = match root {
        true => (65534, 65534),
        false => (rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw()),
    };
    let said = format!("TRACKER_DATA_DIR {} is not writable by this process (uid {uid}, gid {gid})", data.display());
    assert!(stderr.contains(&said), "{stderr}");
    assert!(stderr.contains(&format!("chown -R {uid}:{gid}")), "{stderr}");
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0, "nothing was started in it");
}

// ------------------------------------------------------------- the embedded nats-server ---

/// The environment of the all-in-one's nats-server child, found by its pid file.
fn embedded_nats_environment(app: &common::App) -> Vec<String> {
    let pid =
        std::fs::read_to_string(app.data_dir.join("nats/nats-server.pid")).expect("the embedded server's pid file");
    let environ = std::fs::read(format!("/proc/{}/environ", pid.trim())).expect("the embedded server runs");
    environ.split(|b| *b == 0).map(|v| String::from_utf8_lossy(v).into_owned()).collect()
}

#[tokio::test]
async fn the_embedded_nats_server_runs_under_the_memory_limit() {
    let app = common::App::start().await;
    assert!(embedded_nats_environment(&app).contains(&"GOMEMLIMIT=512MiB".to_owned()), "the default");
    let app = common::App::start_with(&[("TRACKER_NATS_MEMORY_LIMIT", "off")]).await;
    assert!(embedded_nats_environment(&app).contains(&"GOMEMLIMIT=off".to_owned()));
    // The setting, not a GOMEMLIMIT the all-in-one itself was started with.
    let app = common::App::start_with(&[("GOMEMLIMIT", "2GiB"), ("TRACKER_NATS_MEMORY_LIMIT", "1GiB")]).await;
    let environment = embedded_nats_environment(&app);
    assert!(environment.contains(&"GOMEMLIMIT=1GiB".to_owned()), "{environment:?}");
    assert!(!environment.contains(&"GOMEMLIMIT=2GiB".to_owned()));
}

#[tokio::test]
async fn a_memory_limit_nats_server_would_misread_stops_the_start_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_status-tracker"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TRACKER_DATA_DIR", dir.path())
        .env("TRACKER_LISTEN", "127.0.0.1:0")
        .env("TRACKER_NATS_MEMORY_LIMIT", "512MB")
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), run).await.expect("exits").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("TRACKER_NATS_MEMORY_LIMIT=\"512MB\"") && stderr.contains("512MiB or 1GiB"), "{stderr}");
    assert!(!dir.path().join("nats/nats-server.pid").exists(), "no server was started");
}

// --------------------------------------------------------------------- example: ntfy ---

/// What the ntfy stand-in received: headers and body of each post.
type Posts = Arc<Mutex<Vec<(HeaderMap, String)>>>;

fn fake_ntfy(posts: Posts) -> Router {
    Router::new().route(
        "/media-topic",
        post(move |headers: HeaderMap, body: String| {
            let posts = posts.clone();
            async move {
                posts.lock().unwrap().push((headers, body));
                axum::Json(json!({"id": "x1", "event": "message"}))
            }
        }),
    )
}

/// A request snapshot as the correlator publishes it (see correlate.rs `queue`), typed through
/// `RequestChange` so that the test follows the contract.
fn available_envelope(state: &str) -> shared::Envelope<shared::model::RequestChange> {
    let change: shared::model::RequestChange = serde_json::from_value(json!({
        "request": {
            "id": 1, "title": "The Batman", "year": 2022, "media_type": "movie", "state": state,
            "progress": 1.0, "source": "jellyseerr", "requested_by": "alice", "tmdb_id": 414906,
            "watch_url": "http://jellyfin.local:8096/web/index.html#/details?id=a1b2c3d4e5f6478899aabbccddeeff00",
            "created_at": "2025-01-10T18:00:00Z", "updated_at": "2025-01-10T19:10:00Z"
        },
        "previous_state": "importing"
    }))
    .expect("a RequestChange");
    let subject = shared::subjects::request_state(shared::ids::RequestId(1), state);
    shared::Envelope::new(format!("tracker-{state}-1"), "/status-tracker/correlator", &subject, change)
        .with_subject(Some("request:1".into()))
}

#[tokio::test]
async fn the_example_posts_each_available_request_once_to_ntfy() {
    let tmp = tempfile::tempdir().unwrap();
    let nats = shared::nats_server::EmbeddedNats::start(tmp.path(), "nats-server").await.unwrap();
    let posts: Posts = Arc::default();
    let ntfy_url = format!("{}/media-topic", serve(fake_ntfy(posts.clone())).await);

    let client = async_nats::connect(nats.url()).await.unwrap();
    let subscription = notify_available::subscribe(&client).await.unwrap();
    let ntfy = notify_available::Ntfy { url: ntfy_url, token: Some("tk_example".into()), http: reqwest::Client::new() };
    let forwarder = tokio::spawn(notify_available::forward(subscription, ntfy));

    // Published as the correlator does: to the TRACKER stream, with Nats-Msg-Id.
    let bus = shared::Bus::connect(&nats.url(), "test").await.unwrap();
    bus.ensure_streams().await.unwrap();
    for state in ["downloading", "available", "available"] {
        let subject = shared::subjects::request_state(shared::ids::RequestId(1), state);
        bus.publish_event(&subject, &available_envelope(state)).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while posts.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "ntfy got nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let posts = posts.lock().unwrap().clone();
    assert_eq!(posts.len(), 1, "one post per available request, not for other states: {posts:?}");
    let (headers, body) = &posts[0];
    assert!(body.starts_with("The Batman (2022) is available"), "{body}");
    let watch = "http://jellyfin.local:8096/web/index.html#/details?id=a1b2c3d4e5f6478899aabbccddeeff00";
    assert!(body.contains(watch), "{body}");
    assert_eq!(headers["click"], watch);
    assert_eq!(headers["title"], "Available");
    assert_eq!(headers["authorization"], "Bearer tk_example");
    forwarder.abort();
    nats.stop().await;
}
