//! Applying jellyseerr and Overseerr notifications.

use serde_json::json;
use shared::events::arr::EpisodeRef;
use shared::events::jellyseerr::{CAUGHT_UP, Notification, RequestEvent};
use shared::model::State;

use super::Step;
use crate::lifecycle::text::episode_label;

impl Step<'_> {
    pub(super) fn jellyseerr(&mut self, e: &RequestEvent) {
        self.merge_jellyseerr(e);
        let user = e.requested_by.clone().unwrap_or_else(|| "someone".into());
        let via = match e.event.as_deref() {
            Some(CAUGHT_UP) => " (caught up from Jellyseerr's request list)",
            _ => "",
        };
        let details =
            json!({ "requested_by": e.requested_by, "jellyseerr_id": e.request_id, "seasons": e.requested_seasons });
        match e.notification {
            Notification::MediaPending => {
                self.evidence();
                self.raise_stage(State::Requested);
                self.note(State::Requested, format!("Requested by {user}{via}"), details, None);
            }
            Notification::MediaApproved => {
                self.evidence();
                self.raise_stage(State::Approved);
                self.note(State::Approved, format!("Approved{via}"), details, None);
            }
            Notification::MediaAutoApproved => {
                self.evidence();
                self.raise_stage(State::Approved);
                self.note(State::Approved, format!("Requested by {user}, approved automatically{via}"), details, None);
            }
            Notification::MediaAvailable => {
                self.evidence();
                self.raise_stage(State::Available);
                self.req.available_at = Some(self.req.available_at.map_or(self.at, |t| t.max(self.at)));
                self.note(State::Available, format!("Available (Jellyseerr){via}"), details, None);
            }
            Notification::MediaFailed => {
                let reason = "Jellyseerr could not send the request to Radarr/Sonarr (see Jellyseerr's log)";
                self.set_outcome(State::Failed, Some(reason.into()));
                self.note(State::Failed, format!("{reason}{via}"), details, None);
            }
            Notification::MediaDeclined => {
                self.set_outcome(State::Declined, Some("Declined in Jellyseerr".into()));
                self.note(State::Declined, format!("Declined{via}"), details, None);
            }
            Notification::IssueCreated
            | Notification::IssueComment
            | Notification::IssueResolved
            | Notification::IssueReopened => {
                let issue = e.issue.as_ref();
                let what = issue.and_then(|i| i.issue_type.clone()).unwrap_or_else(|| "An".into()).to_lowercase();
                let by = issue.and_then(|i| i.reported_by.clone()).unwrap_or_else(|| "someone".into());
                let verb = match e.notification {
                    Notification::IssueCreated => "reported",
                    Notification::IssueComment => "commented",
                    Notification::IssueResolved => "resolved",
                    _ => "reopened",
                };
                let ep = issue.and_then(|i| match (i.affected_season, i.affected_episode) {
                    (Some(s), Some(ep)) => episode_label(&[EpisodeRef { season: s, episode: ep }]),
                    (Some(s), None) => Some(format!("S{s:02}")),
                    _ => None,
                });
                let where_ = ep.map(|e| format!(" ({e})")).unwrap_or_default();
                self.remark(
                    format!("Issue {verb}: {what}{where_} by {by}"),
                    json!({ "issue": issue.and_then(|i| i.id) }),
                );
            }
            _ => self.ignore("Jellyseerr notification that does not concern a request's progress"),
        }
    }

    pub(super) fn merge_jellyseerr(&mut self, e: &RequestEvent) {
        let r = &mut *self.req;
        if r.jellyseerr_id.is_none() {
            r.jellyseerr_id = e.request_id;
        }
        if r.requested_by.is_none() {
            r.requested_by = e.requested_by.clone();
            r.requested_by_email = e.requested_by_email.clone();
        }
        if e.request_id.is_some() {
            // Jellyseerr's title and poster are what the requester saw; they win.
            if let Some(t) = &e.title {
                r.title = t.clone();
            }
            r.year = e.year.or(r.year);
            r.poster_url = e.poster_url.clone().or(r.poster_url.take());
            r.source = "jellyseerr".into();
        }
        r.tmdb_id = r.tmdb_id.or(e.tmdb_id);
        r.tvdb_id = r.tvdb_id.or(e.tvdb_id);
        r.is_4k |= e.is_4k;
        for s in &e.requested_seasons {
            if !r.requested_seasons.contains(s) {
                r.requested_seasons.push(*s);
            }
        }
        r.requested_seasons.sort_unstable();
    }
}
