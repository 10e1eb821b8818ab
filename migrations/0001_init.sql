-- status-tracker correlator state. The correlator is the only writer; times are Unix
-- nanoseconds (UTC), so they sort and compare as integers.

CREATE TABLE requests (
    id                  INTEGER PRIMARY KEY,
    media_type          TEXT    NOT NULL,            -- movie | tv
    title               TEXT    NOT NULL,
    year                INTEGER,
    poster_url          TEXT,
    tmdb_id             INTEGER,
    tvdb_id             INTEGER,
    imdb_id             TEXT,
    arr_id              INTEGER,                     -- Radarr movie id / Sonarr series id
    jellyseerr_id       INTEGER,
    requested_by        TEXT,
    requested_by_email  TEXT,
    is_anime            INTEGER NOT NULL DEFAULT 0,
    is_4k               INTEGER NOT NULL DEFAULT 0,
    source              TEXT    NOT NULL,            -- jellyseerr | radarr | sonarr
    requested_seasons   TEXT    NOT NULL DEFAULT '[]',
    stage               TEXT    NOT NULL,            -- request-level evidence
    outcome_state       TEXT,                        -- failed | declined | cancelled
    outcome_reason      TEXT,
    outcome_at          INTEGER,
    evidence_at         INTEGER,
    available_at        INTEGER,
    quality             TEXT,
    media_path          TEXT,                        -- the series or film folder of Sonarr/Radarr
    watch_item_id       TEXT,
    watch_server_id     TEXT,
    watch_server_url    TEXT,
    trace_parent        TEXT,                        -- W3C traceparent of the trace that created it
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    archived_at         INTEGER,
    state_since         INTEGER NOT NULL,            -- when it entered its current state
    stall_state         TEXT,                        -- a stall the watchdog noticed, in this state
    stall_reason        TEXT,
    stall_at            INTEGER,
    alert_check         TEXT,                        -- a Radarr/Sonarr health problem about it
    alert_message       TEXT,
    alert_at            INTEGER,
    -- Derived from the above and the items, kept for filtering and listing.
    state               TEXT    NOT NULL,
    summary             TEXT    NOT NULL             -- JSON RequestSummary, what lists show
);
CREATE INDEX requests_by_state ON requests (state, updated_at);
CREATE INDEX requests_by_jellyseerr ON requests (jellyseerr_id);
CREATE INDEX requests_by_user ON requests (requested_by COLLATE NOCASE);

-- The film (season 0, episode 0) or one episode of a series.
CREATE TABLE items (
    request_id          INTEGER NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    season              INTEGER NOT NULL,
    episode             INTEGER NOT NULL,
    stage               TEXT    NOT NULL,
    download_id         TEXT,
    file_path           TEXT,
    reason              TEXT,
    reason_at           INTEGER,
    available_at        INTEGER,
    jellyfin_item_id    TEXT,
    updated_at          INTEGER NOT NULL,
    PRIMARY KEY (request_id, season, episode)
) WITHOUT ROWID;

CREATE TABLE downloads (
    request_id          INTEGER NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    download_id         TEXT    NOT NULL,            -- lower-case hash, or usenet id
    kind                TEXT    NOT NULL,            -- torrent | usenet
    release_title       TEXT,
    quality             TEXT,
    indexer             TEXT,
    size                INTEGER,
    progress            REAL    NOT NULL DEFAULT 0,
    dlspeed             INTEGER NOT NULL DEFAULT 0,
    eta                 INTEGER,
    client_state        TEXT,
    stalled             TEXT,
    error               TEXT,
    finished            INTEGER NOT NULL DEFAULT 0,
    upgrade             INTEGER NOT NULL DEFAULT 0,
    content_path        TEXT,
    grabbed_at          INTEGER NOT NULL,
    progress_at         INTEGER,
    finish_noted        INTEGER NOT NULL DEFAULT 0,
    dropped             INTEGER NOT NULL DEFAULT 0,  -- given up on by a retry
    updated_at          INTEGER NOT NULL,
    PRIMARY KEY (request_id, download_id)
) WITHOUT ROWID;

CREATE TABLE timeline (
    id                  INTEGER PRIMARY KEY,
    request_id          INTEGER NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    state               TEXT    NOT NULL,
    at                  INTEGER NOT NULL,
    source              TEXT    NOT NULL,
    message             TEXT    NOT NULL,
    details             TEXT    NOT NULL DEFAULT '{}',
    episode             TEXT,
    late                INTEGER NOT NULL DEFAULT 0,
    event_id            TEXT
);
CREATE INDEX timeline_by_request ON timeline (request_id, at);

-- Everything a request can be found by: media ids, download ids, file paths…
CREATE TABLE request_keys (
    key                 TEXT    NOT NULL,
    request_id          INTEGER NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    PRIMARY KEY (key, request_id)
) WITHOUT ROWID;
CREATE INDEX request_keys_by_request ON request_keys (request_id);

-- Exactly-once effect: an event id is stored in the same transaction as its effects.
CREATE TABLE processed_events (
    event_id            TEXT    PRIMARY KEY,
    subject             TEXT    NOT NULL,
    processed_at        INTEGER NOT NULL,
    outcome             TEXT    NOT NULL             -- applied | orphaned | ignored: <why>
) WITHOUT ROWID;

-- Events waiting for their request to appear (a qBittorrent completion before its grab…).
CREATE TABLE orphans (
    event_id            TEXT    NOT NULL,
    key                 TEXT    NOT NULL,
    envelope            TEXT    NOT NULL,
    received_at         INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    PRIMARY KEY (event_id, key)
) WITHOUT ROWID;
CREATE INDEX orphans_by_key ON orphans (key);

-- Messages to publish after commit (transactional outbox): a crash between commit and
-- publish loses nothing, the next start publishes them.
CREATE TABLE outbox (
    -- Never reused: the publisher remembers the last id it published, and an emptied table
    -- would otherwise start again at 1.
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    subject             TEXT    NOT NULL,
    msg_id              TEXT    NOT NULL,
    payload             BLOB    NOT NULL,
    traceparent         TEXT                         -- the change's trace, continued when published
);
