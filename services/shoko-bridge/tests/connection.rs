//! The bridge's hold on the hub: reconnecting after a close or a crash, pings against the
//! server's client timeout, the API key, and idling without `SHOKO_URL`.

mod support;

use std::time::Duration;

use shared::health::{HealthStatus, ServiceHealth};
use shared::settings::Env;
use shoko_bridge::ShokoSettings;
use support::{HubOptions, KEY, World, detail, fast_settings, record};

#[tokio::test]
async fn the_bridge_reconnects_after_the_hub_closes_or_drops_the_connection() {
    let mut w = World::start(HubOptions::default()).await;
    w.hub.wait_for_handshakes(1).await;
    w.hub.send(record("signalr_file_detected_s01e01.json"));
    assert_eq!(w.next_event().await.0, "media.shoko.file_detected");

    w.hub.close_with_error("Server is shutting down.");
    w.hub.wait_for_handshakes(2).await;
    w.hub.send(record("signalr_file_hashed_s01e01.json"));
    assert_eq!(w.next_event().await.0, "media.shoko.file_hashed");
    let health = w.health_where(|h| detail(h, "shoko") == "connected").await;
    assert!(detail(&health, "last_error").contains("Server is shutting down."), "{health:?}");

    // No close message, no close frame: the socket just goes away.
    w.hub.abort();
    w.hub.wait_for_handshakes(3).await;
    w.hub.send(record("signalr_file_matched_s01e01.json"));
    assert_eq!(w.next_event().await.0, "media.shoko.file_matched");
    w.stop().await.unwrap();
}

#[tokio::test]
async fn pings_keep_the_connection_open_past_the_hub_client_timeout() {
    let hub = HubOptions { client_timeout: Duration::from_millis(700), ..HubOptions::default() };
    let mut w = World::start(hub).await;
    w.hub.wait_for_handshakes(1).await;
    // Idle for well over three client timeouts: only the pings speak.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(w.hub.client_timeouts(), 0, "the hub dropped the bridge");
    assert_eq!(w.hub.handshakes(), 1, "the bridge had to reconnect");
    assert!(w.hub.pings_received() >= 5, "only {} pings", w.hub.pings_received());
    w.hub.send(record("signalr_file_detected_s01e01.json"));
    assert_eq!(w.next_event().await.0, "media.shoko.file_detected");
    w.stop().await.unwrap();
}

/// The control for the test above: the hub really does drop a silent client, and the
/// bridge comes back after the type-7 close.
#[tokio::test]
async fn a_client_that_does_not_ping_is_dropped_by_the_hub_and_the_bridge_comes_back() {
    let hub = HubOptions { client_timeout: Duration::from_millis(400), ..HubOptions::default() };
    let w = World::start_with(hub, |hub| ShokoSettings {
        ping_interval: Duration::from_secs(60),
        ..fast_settings(hub, Some(KEY))
    })
    .await;
    w.hub.wait_for_handshakes(2).await;
    assert!(w.hub.client_timeouts() >= 1);
    let health = w.health_where(|h| detail(h, "last_error").contains("Server timeout elapsed")).await;
    assert!(detail(&health, "last_error").contains("closed the connection"), "{health:?}");
    w.stop().await.unwrap();
}

#[tokio::test]
async fn a_missing_api_key_is_reported_in_health_as_unauthorized() {
    let w = World::start_with(HubOptions::default(), |hub| fast_settings(hub, None)).await;
    let health = w.health_where(|h| detail(h, "shoko") == "unauthorized").await;
    assert_eq!(health.status, HealthStatus::Degraded);
    let error = detail(&health, "last_error");
    assert!(error.contains("401") && error.contains("SHOKO_API_KEY"), "{error}");
    assert!(w.hub.refused() >= 1);
    assert_eq!(w.hub.handshakes(), 0);
    w.stop().await.unwrap();
}

#[tokio::test]
async fn a_wrong_api_key_never_shows_in_health_or_errors() {
    let wrong = "wrong-key-5d1c";
    let w = World::start_with(HubOptions::default(), |hub| fast_settings(hub, Some(wrong))).await;
    let health = w.health_where(|h| detail(h, "shoko") == "unauthorized").await;
    assert!(!serde_json::to_string(&health).unwrap().contains(wrong), "{health:?}");
    w.stop().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_shoko_is_retried_and_reported() {
    // A port nobody listens on: connection refused, then backoff.
    let port = shared::nats_server::free_port().unwrap();
    let w = World::start_with(HubOptions::default(), |hub| ShokoSettings {
        url: ShokoSettings::for_url(&format!("http://127.0.0.1:{port}"), None).unwrap().url,
        ..fast_settings(hub, None)
    })
    .await;
    let health = w.health_where(|h| detail(h, "shoko") == "disconnected").await;
    assert!(detail(&health, "last_error").contains("negotiate"), "{health:?}");
    w.stop().await.unwrap();
}

#[tokio::test]
async fn without_shoko_url_the_bridge_stays_idle_and_says_so() {
    let w = World::start_with(HubOptions::default(), |_| ShokoSettings::from_env(&Env::default()).unwrap()).await;
    let health = w.health_where(|h| h.status == HealthStatus::Idle && !detail(h, "shoko").is_empty()).await;
    assert!(detail(&health, "shoko").contains("SHOKO_URL"), "{health:?}");
    // The same answer over NATS, where the dashboard asks for it.
    let subject = shared::subjects::health("shoko-bridge");
    let answer: ServiceHealth = w.bus.request(&subject, &serde_json::json!({}), support::WAIT).await.unwrap();
    assert_eq!(answer.status, HealthStatus::Idle);
    assert_eq!(w.hub.handshakes(), 0);
    w.stop().await.unwrap();
}
