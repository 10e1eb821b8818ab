//! Tests of the observer: what a sequence of merged polls makes the poller publish.

use serde_json::json;

use super::*;
use crate::maindata::MaindataUpdate;

const H: &str = "c0ffee4d2a9b8c7d6e5f40312a1b0c9d8e7f6a5b";
const OTHER: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432";
const NOW_UNIX: i64 = 1_736_590_000;
const STALL: Duration = Duration::from_secs(600);

fn hash(s: &str) -> InfoHash {
    InfoHash::parse(s).unwrap()
}

fn tracked(hashes: &[&str]) -> HashSet<InfoHash> {
    hashes.iter().map(|h| hash(h)).collect()
}

/// Applies one `sync/maindata` answer given as JSON torrents.
fn poll(data: &mut Maindata, torrents: serde_json::Value) {
    let rid = data.rid() + 1;
    let update: MaindataUpdate = serde_json::from_value(json!({ "rid": rid, "torrents": torrents })).unwrap();
    data.apply(update);
}

fn downloading(progress: f64, dlspeed: u64) -> serde_json::Value {
    json!({ "name": "DAN DA DAN S01", "state": "downloading", "progress": progress, "dlspeed": dlspeed,
            "eta": 1431, "size": 1000, "total_size": 1000, "amount_left": ((1.0 - progress) * 1000.0) as u64,
            "num_seeds": 17, "completion_on": -1, "last_activity": NOW_UNIX, "has_metadata": true })
}

/// Observes and commits everything, as a poll whose publications all succeeded.
fn publish_all(o: &mut Observer, t: &HashSet<InfoHash>, d: &Maindata, now: Instant) -> Vec<TorrentEvent> {
    let pending = o.observe(t, d, now, NOW_UNIX);
    pending.iter().for_each(|p| o.published(p));
    pending.into_iter().map(|p| p.event).collect()
}

fn progress_of(events: &[TorrentEvent]) -> &Progress {
    match events {
        [TorrentEvent::Progress(p)] => p,
        other => panic!("expected one progress fact, got {other:?}"),
    }
}

#[test]
fn progress_is_published_again_only_when_something_visible_changes() {
    let (mut o, mut d, t, now) = (Observer::new(STALL), Maindata::default(), tracked(&[H]), Instant::now());
    poll(&mut d, json!({ H: downloading(0.5, 5_767_168) }));
    let first = publish_all(&mut o, &t, &d, now);
    assert_eq!(progress_of(&first).progress, 0.5);

    // Bytes counters and a speed wobble within "5.7 MB/s" are not news.
    poll(&mut d, json!({ H: { "dlspeed": 5_705_000, "downloaded": 123, "last_activity": NOW_UNIX + 2 } }));
    assert!(publish_all(&mut o, &t, &d, now).is_empty());

    poll(&mut d, json!({ H: { "progress": 0.502, "amount_left": 498 } }));
    let next = publish_all(&mut o, &t, &d, now);
    assert_eq!(progress_of(&next).progress, 0.502);
    assert_eq!(progress_of(&next).amount_left, Some(498));
}

#[test]
fn a_publication_that_failed_is_proposed_again() {
    let (mut o, mut d, t, now) = (Observer::new(STALL), Maindata::default(), tracked(&[H]), Instant::now());
    poll(&mut d, json!({ H: downloading(0.5, 1000) }));
    let failed = o.observe(&t, &d, now, NOW_UNIX);
    assert_eq!(failed.len(), 1);
    let again = o.observe(&t, &d, now, NOW_UNIX);
    assert_eq!(again.len(), 1, "not committed, so still pending");
    assert_eq!(again[0].id, failed[0].id, "same observation, same id: JetStream dedupes a retry");
}

#[test]
fn only_tracked_torrents_are_published() {
    let (mut o, mut d, now) = (Observer::new(STALL), Maindata::default(), Instant::now());
    poll(&mut d, json!({ H: downloading(0.5, 1000), OTHER: downloading(0.1, 1000) }));
    let events = publish_all(&mut o, &tracked(&[H]), &d, now);
    assert_eq!(progress_of(&events).hash, hash(H));
    assert!(publish_all(&mut o, &tracked(&[]), &d, now).is_empty());
    // Tracked again: published afresh, the correlator may have missed it.
    assert_eq!(publish_all(&mut o, &tracked(&[H]), &d, now).len(), 1);
}

#[test]
fn completion_is_published_once_as_finished_with_an_id_stable_across_restarts() {
    let (mut o, mut d, t, now) = (Observer::new(STALL), Maindata::default(), tracked(&[H]), Instant::now());
    poll(&mut d, json!({ H: downloading(0.99, 1000) }));
    publish_all(&mut o, &t, &d, now);
    poll(
        &mut d,
        json!({ H: { "progress": 1, "amount_left": 0, "state": "stalledUP", "completion_on": NOW_UNIX,
                              "content_path": "/data/torrents/anime/DAN DA DAN S01", "category": "sonarr-anime" } }),
    );
    let pending = o.observe(&t, &d, now, NOW_UNIX);
    let [Pending { event: TorrentEvent::Finished(f), id, .. }] = pending.as_slice() else {
        panic!("expected finished, got {pending:?}")
    };
    assert_eq!(f.content_path.as_deref(), Some("/data/torrents/anime/DAN DA DAN S01"));
    assert_eq!(f.via, shared::events::qbittorrent::FinishedVia::Poller);
    o.published(&pending[0]);
    assert!(o.observe(&t, &d, now, NOW_UNIX).is_empty(), "once");

    // A restarted poller sees the same completion and proposes the same id.
    let mut fresh = Observer::new(STALL);
    assert_eq!(&fresh.observe(&t, &d, now, NOW_UNIX + 3600)[0].id, id);
}

#[test]
fn qbittorrent_5_stopped_up_is_complete_like_paused_up() {
    let (mut o, mut d, t, now) = (Observer::new(STALL), Maindata::default(), tracked(&[H]), Instant::now());
    poll(&mut d, json!({ H: { "state": "stoppedUP", "progress": 1, "size": 10, "total_size": 10, "amount_left": 0 } }));
    assert!(matches!(publish_all(&mut o, &t, &d, now).as_slice(), [TorrentEvent::Finished(_)]));
}

#[test]
fn a_torrent_without_peers_is_stalled_once_the_threshold_has_passed_and_resumes() {
    let (mut o, mut d, t, start) = (Observer::new(STALL), Maindata::default(), tracked(&[H]), Instant::now());
    poll(&mut d, json!({ H: downloading(0.5, 1000) }));
    publish_all(&mut o, &t, &d, start);
    poll(&mut d, json!({ H: { "state": "stalledDL", "dlspeed": 0, "eta": 8640000, "num_seeds": 0 } }));
    let events = publish_all(&mut o, &t, &d, start + Duration::from_secs(1));
    assert_eq!(progress_of(&events).stalled, None, "stalledDL for a second is not a stall");
    assert_eq!(progress_of(&events).eta, None);
    assert!(publish_all(&mut o, &t, &d, start + Duration::from_secs(600)).is_empty(), "599 s: not yet");
    let events = publish_all(&mut o, &t, &d, start + Duration::from_secs(601));
    assert_eq!(progress_of(&events).stalled.as_deref(), Some("no peers"));

    poll(&mut d, json!({ H: { "state": "downloading", "dlspeed": 4000, "num_seeds": 2 } }));
    let events = publish_all(&mut o, &t, &d, start + Duration::from_secs(602));
    assert_eq!(progress_of(&events).stalled, None);
}

#[test]
fn a_magnet_without_metadata_stalls_with_its_own_reason_and_is_never_done() {
    let (mut o, mut d, t, start) = (Observer::new(STALL), Maindata::default(), tracked(&[H]), Instant::now());
    poll(
        &mut d,
        json!({ H: { "state": "metaDL", "progress": 0, "size": 0, "total_size": -1, "amount_left": 0,
                              "has_metadata": false, "eta": 8640000 } }),
    );
    let events = publish_all(&mut o, &t, &d, start);
    assert_eq!(progress_of(&events).size, None);
    let events = publish_all(&mut o, &t, &d, start + STALL);
    assert_eq!(progress_of(&events).stalled.as_deref(), Some("waiting for metadata, no peers"));
}

#[test]
fn a_torrent_stalled_long_before_the_poller_started_is_stalled_at_first_sight() {
    let (mut o, mut d, t) = (Observer::new(STALL), Maindata::default(), tracked(&[H]));
    let mut stalled = downloading(0.3, 0);
    stalled["state"] = json!("stalledDL");
    stalled["last_activity"] = json!(NOW_UNIX - 3600);
    poll(&mut d, json!({ H: stalled }));
    // Far from the clock's origin, so that "an hour ago" exists as an Instant.
    let now = Instant::now() + Duration::from_secs(7200);
    assert_eq!(progress_of(&publish_all(&mut o, &t, &d, now)).stalled.as_deref(), Some("no peers"));
}

#[test]
fn shown_precision_follows_what_a_person_reads() {
    assert_eq!(two_digits(2_345_678), 2_300_000);
    assert_eq!(two_digits(99), 99);
    assert_eq!(eta_bucket(47), 45);
    assert_eq!(eta_bucket(250), 240);
    assert_eq!(eta_bucket(4000), 3600);
}
