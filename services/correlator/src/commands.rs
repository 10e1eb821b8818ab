//! `tracker.cmd.retry`, `tracker.cmd.lower_quality` and `tracker.cmd.cancel`: what a person
//! asks of a request.
//!
//! Retry sends Radarr `MoviesSearch`, or Sonarr `EpisodeSearch`/`SeasonSearch`/`SeriesSearch`
//! for what is still missing, then publishes a `media.tracker.retry` fact with what was sent
//! (or why nothing could be), so the timeline says so and a rebuild replays it. Lower quality
//! first switches the film or series to the fallback quality profile
//! (`RADARR_FALLBACK_PROFILE`, `SONARR_FALLBACK_PROFILE`), then does what Retry does; its fact
//! is a retry that names the profile. Cancel publishes `media.tracker.cancel`. Who may act is
//! the dashboard's business (it checks the auth settings before asking).

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

use crate::arr::{self, ArrClient, QualityProfile};
use crate::lifecycle::Request;
use crate::peers::{ArrSettings, Peers};
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
    let req = match store::read_snapshot(store.pool()).await {
        Ok(mut tx) => store::load(&mut tx, cmd.id).await,
        Err(e) => Err(e),
    };
    let req = match req {
        Ok(Some(r)) => r,
        Ok(None) => return Reply::Error(format!("no request {}", cmd.id)),
        Err(e) => return Reply::Error(e.to_string()),
    };
    let (fact, message) = match verb {
        "retry" | "lower_quality" => {
            let attempt = if verb == "retry" { retry(&req, peers).await } else { lower_quality(&req, peers).await };
            let (message, error) = (attempt.message(), attempt.fact_error());
            let Attempt { commands, quality_profile, .. } = attempt;
            (TrackerEvent::Retry { request_id: req.id, by: cmd.by.clone(), commands, error, quality_profile }, message)
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

/// What a retry did: what was sent, the quality profile switched to, and why it stopped.
#[derive(Debug, Default)]
struct Attempt {
    /// "Lower quality" rather than a plain retry.
    lower: bool,
    commands: Vec<String>,
    error: Option<String>,
    quality_profile: Option<String>,
}

impl Attempt {
    /// The command's answer.
    fn message(&self) -> String {
        let sent = self.commands.join("; ");
        match (self.lower, &self.quality_profile, &self.error) {
            (false, _, None) => format!("Searching again: {sent}"),
            (false, _, Some(e)) => format!("Could not search again: {e}"),
            (true, None, Some(e)) => format!("Could not lower the quality: {e}"),
            (true, _, None) => format!("Lower quality: {sent}"),
            (true, Some(p), Some(e)) => format!("Switched to the quality profile {p}, but could not search again: {e}"),
        }
    }

    /// The fact's `error`: says what failed when it was not the search.
    fn fact_error(&self) -> Option<String> {
        let e = self.error.as_deref()?;
        Some(match self.lower && self.quality_profile.is_none() {
            true => format!("could not lower the quality: {e}"),
            false => e.to_owned(),
        })
    }
}

async fn retry(req: &Request, peers: &Peers) -> Attempt {
    let searched = async {
        let arr = arr_for(req, peers, "ask for a search")?;
        search_again(req, arr, arr_id(req, arr).await?).await
    };
    match searched.await {
        Ok(commands) => Attempt { commands, ..Attempt::default() },
        Err(e) => Attempt { error: Some(e), ..Attempt::default() },
    }
}

/// Switches to the fallback quality profile, then searches again. Nothing is recorded as a
/// lower-quality retry unless the profile was switched.
async fn lower_quality(req: &Request, peers: &Peers) -> Attempt {
    let switched = async {
        let arr = arr_for(req, peers, "change the quality profile")?;
        let wanted = arr.fallback_profile.as_deref().ok_or_else(|| {
            format!(
                "{} is not set (the quality profile to switch to)",
                ArrSettings::of(req.media_type, req.is_4k).fallback
            )
        })?;
        let id = arr_id(req, arr).await?;
        let (done, profile) = switch_profile(req, arr, wanted, id).await?;
        Ok::<_, String>((arr, id, done, profile))
    };
    let (arr, id, done, profile) = match switched.await {
        Ok(switched) => switched,
        Err(e) => return Attempt { lower: true, error: Some(e), ..Attempt::default() },
    };
    let mut attempt = Attempt { lower: true, commands: vec![done], error: None, quality_profile: Some(profile) };
    match search_again(req, arr, id).await {
        Ok(commands) => attempt.commands.extend(commands),
        Err(e) => attempt.error = Some(e),
    }
    attempt
}

/// Radarr/Sonarr for the request ([`Peers::arr_of`]), or why status-tracker cannot call it.
fn arr_for<'p>(req: &Request, peers: &'p Peers, to: &str) -> Result<&'p ArrClient, String> {
    peers.arr_of(req).ok_or_else(|| {
        let names = ArrSettings::of(req.media_type, req.is_4k);
        let four_k = if req.is_4k { " for a 4K request (Jellyseerr sends those to its 4K server)" } else { "" };
        format!("{} and {} are not set, so status-tracker cannot {to}{four_k}", names.url, names.api_key)
    })
}

/// Radarr's id of the film or Sonarr's of the series: from its webhooks, else looked up.
async fn arr_id(req: &Request, arr: &ArrClient) -> Result<u64, String> {
    if let Some(id) = req.arr_id {
        return Ok(id.0);
    }
    match req.media_type {
        MediaType::Movie => Ok(arr
            .movie(req.tmdb_id.ok_or("the request has no TMDB id")?)
            .await?
            .ok_or("Radarr does not know this film")?
            .0),
        MediaType::Tv => Ok(arr
            .series(req.tvdb_id.ok_or("the request has no TVDB id")?)
            .await?
            .ok_or("Sonarr does not know this series")?
            .id),
    }
}

/// Sets the film's or series' (Radarr's/Sonarr's `id`) quality profile to the one `wanted`
/// names (its name, or its id); returns what was done, in words, and the profile's name.
async fn switch_profile(req: &Request, arr: &ArrClient, wanted: &str, id: u64) -> Result<(String, String), String> {
    let app = arr.app.name();
    let profiles = arr.quality_profiles().await?;
    let target = QualityProfile::find(&profiles, wanted).ok_or_else(|| {
        let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
        format!("{app} has no quality profile {wanted:?} (it has {})", names.join(", "))
    })?;
    let (what, resource) = match req.media_type {
        MediaType::Movie => ("film", "movie"),
        MediaType::Tv => ("series", "series"),
    };
    let current = arr.quality_profile_of(id).await?;
    if current == target.id {
        return Err(format!("the {what} already has the quality profile {}: Retry searches again", target.name));
    }
    let from = profiles.iter().find(|p| p.id == current).map_or_else(|| format!("#{current}"), |p| p.name.clone());
    arr.set_quality_profile(id, target.id).await?;
    Ok((format!("{app} quality profile {from} → {} for {resource} {id}", target.name), target.name.clone()))
}

/// Asks Radarr/Sonarr to search for what the request still misses (`id`: Radarr's film or
/// Sonarr's series); returns what was sent.
async fn search_again(req: &Request, arr: &ArrClient, id: u64) -> Result<Vec<String>, String> {
    match req.media_type {
        MediaType::Movie => {
            let command = arr.command(arr::movies_search(id)).await?;
            Ok(vec![format!("Radarr MoviesSearch for movie {id} (command {command})")])
        }
        MediaType::Tv => search_series(req, arr, id).await,
    }
}

/// A whole season missing → `SeasonSearch`; some episodes → `EpisodeSearch`; nothing known
/// yet → the requested seasons, or the whole series.
async fn search_series(req: &Request, sonarr: &ArrClient, series: u64) -> Result<Vec<String>, String> {
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
