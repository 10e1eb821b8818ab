//! The client against a local server speaking qBittorrent's real wire format: both login
//! styles, the session cookie whatever its name, re-login on 403, refused credentials and
//! bans, API keys, and never an `Origin`/`Referer` header.

mod support;

use std::time::Duration;

use poller::{Credentials, Qbit, QbitClient, QbitError};
use shared::settings::Secret;
use support::fake_qbit::{API_KEY, BAN_AFTER, FakeQbit, Flavour, PASSWORD, USER};
use support::swarm::Swarm;

fn password(pw: &str) -> Credentials {
    Credentials::Password { username: USER.into(), password: Secret::new(pw) }
}

async fn fake(flavour: Flavour) -> FakeQbit {
    FakeQbit::start(flavour, Swarm::new(3, 1)).await
}

fn header<'a>(seen: &'a support::fake_qbit::Seen, name: &str) -> Option<&'a str> {
    seen.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn qbittorrent_4_login_keeps_the_sid_cookie_and_asks_only_for_deltas() {
    let q = fake(Flavour::V4).await;
    let mut client = QbitClient::new(&q.url, password(PASSWORD));
    let full = client.maindata(0).await.unwrap();
    assert!(full.full_update);
    assert_eq!(full.torrents.len(), 3);
    assert!(client.take_new_session());
    let delta = client.maindata(full.rid).await.unwrap();
    assert!(!delta.full_update, "same session, current rid: a delta");
    assert!(!client.take_new_session());
    assert_eq!(client.webapi_version().as_deref(), Some("2.8.19"));
    assert_eq!(
        q.calls(),
        [
            ("POST /api/v2/auth/login".into(), 200),
            ("GET /api/v2/app/webapiVersion".into(), 200),
            ("GET /api/v2/sync/maindata?rid=0".into(), 200),
            ("GET /api/v2/sync/maindata?rid=1".into(), 200),
        ]
    );
    let requests = q.requests();
    assert!(header(&requests[2], "cookie").unwrap().starts_with("SID="));
    for r in &requests {
        assert_eq!((header(r, "origin"), header(r, "referer")), (None, None), "{} sent Origin/Referer", r.path);
    }
}

#[tokio::test]
async fn qbittorrent_5_2_login_answers_204_and_names_its_cookie_after_the_port() {
    let q = fake(Flavour::V5_2).await;
    let mut client = QbitClient::new(&q.url, password(PASSWORD));
    client.maindata(0).await.unwrap();
    assert_eq!(q.calls()[0], ("POST /api/v2/auth/login".into(), 204));
    let port = q.url.rsplit(':').next().unwrap();
    let cookie = header(&q.requests()[2], "cookie").unwrap().to_owned();
    assert!(cookie.starts_with(&format!("QBT_SID_{port}=")), "{cookie}");
    assert_eq!(client.webapi_version().as_deref(), Some("2.14.1"));
}

#[tokio::test]
async fn an_api_key_is_sent_as_a_bearer_token_without_any_login() {
    let q = fake(Flavour::V5_2).await;
    let mut client = QbitClient::new(&q.url, Credentials::ApiKey(Secret::new(API_KEY)));
    let full = client.maindata(0).await.unwrap();
    client.maindata(full.rid).await.unwrap();
    let calls = q.calls();
    assert!(calls.iter().all(|(c, status)| !c.contains("login") && *status == 200), "{calls:?}");
    assert_eq!(header(&q.requests()[1], "authorization"), Some(format!("Bearer {API_KEY}").as_str()));
}

#[tokio::test]
async fn an_expired_session_is_renewed_once_after_403_and_starts_over_at_rid_0() {
    let q = fake(Flavour::V4).await;
    let mut client = QbitClient::new(&q.url, password(PASSWORD));
    let full = client.maindata(0).await.unwrap();
    client.take_new_session();
    q.expire_sessions();
    let again = client.maindata(full.rid).await.unwrap();
    assert!(again.full_update);
    assert!(client.take_new_session(), "the caller must forget the old rid");
    let calls: Vec<_> = q.calls().into_iter().skip(3).collect();
    assert_eq!(
        calls,
        [
            ("GET /api/v2/sync/maindata?rid=1".into(), 403),
            ("POST /api/v2/auth/login".into(), 200),
            ("GET /api/v2/app/webapiVersion".into(), 200),
            ("GET /api/v2/sync/maindata?rid=0".into(), 200),
        ]
    );
}

#[tokio::test]
async fn wrong_credentials_are_refused_for_good_without_leaking_the_password() {
    for flavour in [Flavour::V4, Flavour::V5_2] {
        let q = fake(flavour).await;
        let mut client = QbitClient::new(&q.url, password("hunter2"));
        let err = client.maindata(0).await.unwrap_err();
        let QbitError::Refused { reason, retry } = &err else { panic!("{flavour:?}: {err:?}") };
        assert_eq!(*retry, None, "{flavour:?}: never retried into a ban");
        assert!(reason.contains("QBIT_PASSWORD"), "{reason}");
        assert!(!format!("{err} {err:?}").contains("hunter2"));
        let expected = if flavour == Flavour::V4 { 200 } else { 401 };
        assert_eq!(q.calls(), [("POST /api/v2/auth/login".into(), expected)], "{flavour:?}");
    }
}

#[tokio::test]
async fn a_banned_address_waits_out_the_ban() {
    let q = fake(Flavour::V4).await;
    q.inner.lock().unwrap().failed_logins = BAN_AFTER;
    let mut client = QbitClient::new(&q.url, password(PASSWORD));
    match client.maindata(0).await {
        Err(QbitError::Refused { reason, retry }) => {
            assert!(reason.contains("banned"), "{reason}");
            assert_eq!(retry, Some(Duration::from_secs(3600)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(q.calls(), [("POST /api/v2/auth/login".into(), 403)]);
}

#[tokio::test]
async fn an_api_key_sent_to_an_older_qbittorrent_is_refused_naming_the_setting() {
    let q = fake(Flavour::V4).await;
    let mut client = QbitClient::new(&q.url, Credentials::ApiKey(Secret::new(API_KEY)));
    let err = client.maindata(0).await.unwrap_err();
    assert!(matches!(&err, QbitError::Refused { reason, retry: None } if reason.contains("QBIT_API_KEY")), "{err:?}");
    assert!(!err.to_string().contains(API_KEY));
}

#[tokio::test]
async fn no_credentials_and_a_403_asks_for_a_password() {
    let q = fake(Flavour::V4).await;
    let mut client = QbitClient::new(&q.url, Credentials::None);
    let err = client.maindata(0).await.unwrap_err();
    assert!(matches!(&err, QbitError::Refused { reason, .. } if reason.contains("QBIT_PASSWORD")), "{err:?}");
}

#[tokio::test]
async fn a_closed_port_is_unreachable_and_the_url_loses_its_credentials() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut client = QbitClient::new(&format!("http://admin:hunter2@127.0.0.1:{port}"), password("hunter2"));
    let err = client.maindata(0).await.unwrap_err();
    let QbitError::Unreachable(text) = &err else { panic!("{err:?}") };
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn the_fake_refuses_a_mismatched_referer_as_qbittorrent_does() {
    // What the client avoids by never sending one: a proxy's host in Referer gives 401.
    let q = fake(Flavour::V4).await;
    let form = [("username", USER), ("password", PASSWORD)];
    let http = reqwest::Client::new();
    let url = format!("{}/api/v2/auth/login", q.url);
    let r = http.post(&url).header("Referer", "http://qbittorrent:8080").form(&form).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http.post(&url).form(&form).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.text().await.unwrap()), (200, "Ok.".into()));
}
