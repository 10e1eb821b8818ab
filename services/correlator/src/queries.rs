//! Request–reply answers for the dashboard and anyone else: `tracker.query.list`, `.get`,
//! `.timeline`, `.tracked`, `.stats`, `.summary`. The dashboard never opens the database; it
//! asks here.

use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use shared::Bus;
use shared::bus::reply_bytes;
use shared::model::{GetQuery, ListQuery, Reply, TimelineReply, TrackedReply};
use tokio_util::sync::CancellationToken;

use crate::store::{self, Store};

pub(crate) async fn serve(
    bus: Bus,
    store: Store,
    public_jellyfin: Option<String>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut sub = bus.client.queue_subscribe(shared::subjects::query(">"), "correlator".into()).await?;
    loop {
        let msg = tokio::select! {
            _ = cancel.cancelled() => break,
            m = sub.next() => match m { Some(m) => m, None => break },
        };
        let Some(reply_to) = msg.reply.clone() else {
            continue;
        };
        let (bus, store, public) = (bus.clone(), store.clone(), public_jellyfin.clone());
        tokio::spawn(async move {
            let what = msg.subject.as_str().trim_start_matches("tracker.query.").to_owned();
            let body = answer(&store, &what, &msg.payload, public.as_deref()).await;
            if let Err(error) = bus.client.publish(reply_to, body).await {
                tracing::debug!(%error, "query reply not sent");
            }
        });
    }
    Ok(())
}

async fn answer(store: &Store, what: &str, payload: &[u8], public: Option<&str>) -> bytes::Bytes {
    let payload = if payload.is_empty() { b"{}".as_slice() } else { payload };
    match what {
        "list" => match decode::<ListQuery>(payload) {
            Ok(q) => reply(store::list(store.pool(), &q).await.map_err(|e| e.to_string())),
            Err(e) => reply::<()>(Err(e)),
        },
        "get" => match decode::<GetQuery>(payload) {
            Ok(q) => reply(match store::detail(store.pool(), q.id, public).await {
                Ok(Some(d)) => Ok(d),
                Ok(None) => Err(not_found(q)),
                Err(e) => Err(e.to_string()),
            }),
            Err(e) => reply::<()>(Err(e)),
        },
        "timeline" => match decode::<GetQuery>(payload) {
            Ok(q) => reply(timeline(store, q).await),
            Err(e) => reply::<()>(Err(e)),
        },
        "stats" => reply(crate::stats::stats(store.pool()).await.map_err(|e| e.to_string())),
        "summary" => reply(crate::stats::summary(store.pool()).await.map_err(|e| e.to_string())),
        "tracked" => {
            let result = store::tracked_hashes(store.pool()).await.map(|hashes| TrackedReply { hashes });
            reply(result.map_err(|e| e.to_string()))
        }
        other => reply::<()>(Err(format!("unknown query {other:?}"))),
    }
}

async fn timeline(store: &Store, q: GetQuery) -> Result<TimelineReply, String> {
    let mut tx = store::read_snapshot(store.pool()).await.map_err(|e| e.to_string())?;
    match store::load(&mut tx, q.id).await.map_err(|e| e.to_string())? {
        Some(_) => {
            let timeline = store::timeline(&mut tx, q.id).await.map_err(|e| e.to_string())?;
            Ok(TimelineReply { timeline })
        }
        None => Err(not_found(q)),
    }
}

fn not_found(q: GetQuery) -> String {
    format!("no request {}", q.id)
}

fn decode<Q: DeserializeOwned>(payload: &[u8]) -> Result<Q, String> {
    serde_json::from_slice(payload).map_err(|e| format!("bad query: {e}"))
}

fn reply<T: Serialize>(r: Result<T, String>) -> bytes::Bytes {
    match r {
        Ok(t) => reply_bytes(&Reply::Ok(t)),
        Err(e) => reply_bytes(&Reply::<()>::Error(e)),
    }
}
