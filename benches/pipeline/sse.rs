//! SSE clients of `/api/sse` that report when each request change reaches them. They do not
//! decode the JSON: they look for the `"jellyseerr_id":N` of the changes they wait for, so
//! that a thousand of them cost the benchmark little.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// A change seen by client `client`: the request's Jellyseerr id and when it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub client: usize,
    pub jellyseerr_id: u64,
    pub at: Instant,
}

/// Opens `n` clients (each on its own connection); every `request` event they receive is
/// reported on the returned channel. Returns once all are connected.
pub async fn connect(url: &str, n: usize) -> mpsc::UnboundedReceiver<Seen> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(n.max(1));
    for client in 0..n {
        let (url, tx, ready) = (url.to_owned(), tx.clone(), ready_tx.clone());
        tokio::spawn(async move {
            // One client per connection, as browsers have.
            let http = reqwest::Client::builder().timeout(Duration::from_secs(24 * 3600)).build().unwrap();
            let mut resp = match http.get(&url).send().await {
                Ok(r) if r.status().is_success() => r,
                Ok(r) => panic!("SSE client {client}: {}", r.status()),
                Err(e) => panic!("SSE client {client}: {e}"),
            };
            let _ = ready.send(()).await;
            let mut buf = Vec::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                let at = Instant::now();
                buf.extend_from_slice(&chunk);
                while let Some(end) = find(&buf, b"\n\n") {
                    let block: Vec<u8> = buf.drain(..end + 2).collect();
                    if (block.starts_with(b"id:") || block.starts_with(b"event:"))
                        && let Some(id) = request_event_id(&block)
                    {
                        let _ = tx.send(Seen { client, jellyseerr_id: id, at });
                    }
                }
            }
        });
    }
    drop(ready_tx);
    for _ in 0..n {
        ready_rx.recv().await.expect("SSE clients connect");
    }
    rx
}

/// The Jellyseerr id of a `request` event.
fn request_event_id(block: &[u8]) -> Option<u64> {
    find(block, b"event: request\n").or_else(|| find(block, b"event:request\n"))?;
    const KEY: &[u8] = b"\"jellyseerr_id\":";
    let at = find(block, KEY)? + KEY.len();
    let digits = block[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&block[at..at + digits]).ok()?.parse().ok()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
