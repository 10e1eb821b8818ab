//! `tracker.cmd.retry` and `tracker.cmd.cancel`: what a person asks of a request.
//!
//! Retry sends Radarr `MoviesSearch`, or Sonarr `EpisodeSearch`/`SeasonSearch`/`SeriesSearch`
//! for what is still missing, then publishes a `media.tracker.retry` fact with what was sent
//! (or why nothing could be), so the timeline says so and a rebuild replays it. Cancel
//! publishes `media.tracker.cancel`. Who may act is the dashboard's business (it checks the
//! auth settings before asking).

use std::collections::BTreeMap;

use futures_util::StreamExt;
use shared::Bus;
use shared::bus::reply_bytes;
use shared::envelope::{Envelope, content_id};
use shared::events::tracker::TrackerEvent;
use shared::events::{EventData, Fact, MediaType};
use shared::model::{CommandReply, CommandRequest, Reply, State};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::arr::{self, ArrClient};
use crate::lifecycle::Request;
use crate::peers::Peers;
use crate::store::{self, Store};

pub(crate) async fn serve(bus: Bus, store: Store, peers: Peers, cancel: CancellationToken) -> anyhow::Result<()> {
    let mut sub = bus.client.queue_subscribe(shared::subjects::cmd(">"), "correlator".into()).await?;
    loop {
        let msg = tokio::select! {
            _ = cancel.cancelled() => break,
            m = sub.next() => match m { Some(m) => m, None => break },
        };
        let Some(reply_to) = msg.reply.clone() else { continue };
        let (bus, store, peers) = (bus.clone(), store.clone(), peers.clone());
        tokio::spawn(async move {
            let verb = msg.subject.as_str().trim_start_matches("tracker.cmd.").to_owned();
            let reply = match serde_json::from_slice::<CommandRequest>(&msg.payload) {
                Ok(cmd) => run(&bus, &store, &peers, &verb, cmd).await,
                Err(e) => Reply::Error(format!("bad command: {e}")),
            };
            if let Err(error) = bus.client.publish(reply_to, reply_bytes(&reply)).await {
                tracing::debug!(%error, "command reply not sent");
            }
        });
    }
    Ok(())
}

async fn run(bus: &Bus, store: &Store, peers: &Peers, verb: &str, cmd: CommandRequest) -> Reply<CommandReply> {
    let req = match store.pool().acquire().await {
        Ok(mut conn) => store::load(&mut conn, cmd.id).await,
        Err(e) => Err(e.into()),
    };
    let req = match req {
        Ok(Some(r)) => r,
        Ok(None) => return Reply::Error(format!("no request {}", cmd.id)),
        Err(e) => return Reply::Error(e.to_string()),
    };
    let (fact, message) = match verb {
        "retry" => {
            let (commands, error) = match search_again(&req, peers).await {
                Ok(c) => (c, None),
                Err(e) => (Vec::new(), Some(e)),
            };
            let message = match &error {
                None => format!("Searching again: {}", commands.join("; ")),
                Some(e) => format!("Could not search again: {e}"),
            };
            (TrackerEvent::Retry { request_id: req.id, by: cmd.by.clone(), commands, error }, message)
        }
        "cancel" => (TrackerEvent::Cancel { request_id: req.id, by: cmd.by.clone() }, "Request cancelled".to_owned()),
        other => return Reply::Error(format!("unknown command {other:?}")),
    };
    let now = OffsetDateTime::now_utc();
    let subject = Fact::Tracker(fact.clone()).subject();
    let id = content_id(
        "tracker",
        &[subject.as_bytes(), &now.unix_timestamp_nanos().to_be_bytes(), &req.id.0.to_be_bytes()],
    );
    let envelope = Envelope::new(
        id,
        "/status-tracker/correlator/commands",
        &subject,
        EventData { event: Fact::Tracker(fact), raw: None },
    )
    .with_subject(Some(format!("request:{}", req.id)));
    let failed = matches!(&envelope.data.event, Fact::Tracker(TrackerEvent::Retry { error: Some(_), .. }));
    match bus.publish_event(&subject, &envelope).await {
        Ok(_) if failed => Reply::Error(message),
        Ok(_) => Reply::Ok(CommandReply { message }),
        Err(e) => Reply::Error(format!("{message}, but it could not be recorded: {e}")),
    }
}

/// Asks Radarr/Sonarr to search for what the request still misses; returns what was sent.
async fn search_again(req: &Request, peers: &Peers) -> Result<Vec<String>, String> {
    let arr = peers.arr(req.media_type).ok_or_else(|| {
        format!("{} are not set, so status-tracker cannot ask for a search", Peers::arr_setting(req.media_type))
    })?;
    match req.media_type {
        MediaType::Movie => {
            let id = match req.arr_id {
                Some(id) => id.0,
                None => {
                    arr.movie(req.tmdb_id.ok_or("the request has no TMDB id")?)
                        .await?
                        .ok_or("Radarr does not know this film")?
                        .0
                }
            };
            let command = arr.command(arr::movies_search(id)).await?;
            Ok(vec![format!("Radarr MoviesSearch for movie {id} (command {command})")])
        }
        MediaType::Tv => search_series(req, arr).await,
    }
}

/// A whole season missing → `SeasonSearch`; some episodes → `EpisodeSearch`; nothing known
/// yet → the requested seasons, or the whole series.
async fn search_series(req: &Request, sonarr: &ArrClient) -> Result<Vec<String>, String> {
    let series = match req.arr_id {
        Some(id) => id.0,
        None => {
            sonarr
                .series(req.tvdb_id.ok_or("the request has no TVDB id")?)
                .await?
                .ok_or("Sonarr does not know this series")?
                .id
        }
    };
    let missing: Vec<(u32, u32)> =
        req.items.iter().filter(|(_, i)| i.stage < State::Available).map(|(k, _)| *k).collect();
    let mut sent = Vec::new();
    if req.items.is_empty() {
        if req.requested_seasons.is_empty() {
            let c = sonarr.command(arr::series_search(series)).await?;
            sent.push(format!("Sonarr SeriesSearch for series {series} (command {c})"));
        }
        for &season in &req.requested_seasons {
            let c = sonarr.command(arr::season_search(series, season)).await?;
            sent.push(format!("Sonarr SeasonSearch for season {season} (command {c})"));
        }
        return Ok(sent);
    }
    if missing.is_empty() {
        return Err("every episode is available already".into());
    }
    let mut by_season: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (s, e) in &missing {
        by_season.entry(*s).or_default().push(*e);
    }
    let episodes = sonarr.episodes(series).await?;
    let mut single = Vec::new();
    for (season, wanted) in by_season {
        let in_season = req.items.keys().filter(|(s, _)| *s == season).count();
        if wanted.len() == in_season && in_season > 1 {
            let c = sonarr.command(arr::season_search(series, season)).await?;
            sent.push(format!("Sonarr SeasonSearch for season {season} (command {c})"));
        } else {
            single.extend(episodes.iter().filter(|e| e.season == season && wanted.contains(&e.episode)).map(|e| e.id));
        }
    }
    if !single.is_empty() {
        let c = sonarr.command(arr::episode_search(&single)).await?;
        sent.push(format!(
            "Sonarr EpisodeSearch for {} episode{} (command {c})",
            single.len(),
            if single.len() == 1 { "" } else { "s" }
        ));
    }
    if sent.is_empty() {
        return Err("Sonarr does not list the missing episodes".into());
    }
    Ok(sent)
}
