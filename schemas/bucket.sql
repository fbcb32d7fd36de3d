-- bucket.sql - the sealpipe buckets: where device data lands.
--
-- The daemon applies this file to <data_dir>/sealpipe.db every time it starts
-- (every statement is IF NOT EXISTS), in WAL mode, so you can read the tables
-- with the sqlite3 shell while the daemon writes:
--
--     sqlite3 /var/lib/sealpipe/sealpipe.db \
--       "SELECT time_iso, variable, value, unit FROM data_iso
--        WHERE device = 'sensor-01' ORDER BY time DESC LIMIT 10"
--
-- Only the daemon writes data, dead_letters, delivery_log, device_counters,
-- device_status and device_status_pending; treat them as read-only while it
-- runs.

-- One row per TagoIO data record.
CREATE TABLE IF NOT EXISTS data (
    id          INTEGER PRIMARY KEY,
    device      TEXT NOT NULL,   -- the device's serial
    variable    TEXT NOT NULL,   -- lowercase TagoIO variable name
    type        TEXT NOT NULL CHECK (type = 'number' OR type = 'string' OR type = 'boolean' OR type = 'none'),
    -- No declared type, so SQLite keeps what the daemon stores: numbers as
    -- INTEGER when integral (42, not 42.0) else REAL, strings as TEXT,
    -- booleans as INTEGER 0/1, and NULL for records without a value.
    value,
    unit        TEXT,
    time        INTEGER NOT NULL,  -- Unix milliseconds; the receive time when the record had none
    group_id    TEXT,              -- TagoIO "group" (formerly "serie")
    lat         REAL,              -- location, NULL when the record had none
    lng         REAL,
    alt         REAL,
    metadata    TEXT,              -- a JSON object; query with json_extract(metadata, '$.key')
    received_at INTEGER NOT NULL,  -- Unix milliseconds when the daemon received the message
    -- Written without IN (...) lists, which would cost SQLite a temporary
    -- table on every insert.
    CHECK ((type = 'number' AND (typeof(value) = 'integer' OR typeof(value) = 'real'))
        OR (type = 'string' AND typeof(value) = 'text')
        OR (type = 'boolean' AND typeof(value) = 'integer' AND (value = 0 OR value = 1))
        OR (type = 'none' AND value IS NULL))
);
CREATE INDEX IF NOT EXISTS data_device_variable_time ON data (device, variable, time);

-- data with human-readable UTC times, e.g. 2026-11-24T10:00:00.123Z.
CREATE VIEW IF NOT EXISTS data_iso AS
SELECT *,
       strftime('%Y-%m-%dT%H:%M:%fZ', time / 1000.0, 'unixepoch') AS time_iso,
       strftime('%Y-%m-%dT%H:%M:%fZ', received_at / 1000.0, 'unixepoch') AS received_iso
FROM data;

-- Messages of a batch that was cut short (its analysis results outgrew the
-- batch memory), written with the part committed before them so that every
-- message the batch read may be acknowledged at once. Processed before
-- anything new; each row is deleted in the transaction that stores its
-- message.
CREATE TABLE IF NOT EXISTS deferred (
    id        INTEGER PRIMARY KEY,
    topic     TEXT NOT NULL,
    payload   BLOB NOT NULL,     -- as kept by the daemon (the head of an oversized one)
    full_len  INTEGER NOT NULL,  -- its size as received
    qos       INTEGER NOT NULL,
    retain    INTEGER NOT NULL,
    publisher TEXT,              -- the broker plugin's sealpipe-device stamp
    hops      INTEGER NOT NULL   -- sealpipe-hops
);

-- Messages the daemon could not store (bad payload, unknown device, replayed
-- counter, analysis error...), with the original payload bytes.
CREATE TABLE IF NOT EXISTS dead_letters (
    id          INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL,  -- Unix milliseconds
    topic       TEXT,              -- MQTT topic
    device      TEXT,              -- serial, NULL when the device is unknown
    reason      TEXT NOT NULL,     -- e.g. 'invalid_body', 'replay', 'auth_failed' (README)
    detail      TEXT,              -- free text for operators
    payload     BLOB,              -- exactly the bytes received
    digest      BLOB               -- bucket_digest(topic, payload) of a message that is one of
                                   -- a kind (an envelope, a whole frame with "!N"), else NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_reason ON dead_letters (reason);

-- Internal: (MQTT packet id, payload digest) of the most recently committed
-- messages, so a message redelivered after a crash is not stored twice. One
-- row per batch, written in the batch's transaction; entries numbered first
-- to last; pruned to a fixed number of entries.
CREATE TABLE IF NOT EXISTS delivery_log (
    first   INTEGER PRIMARY KEY,
    last    INTEGER NOT NULL,
    entries BLOB NOT NULL  -- per message: packet id (4 bytes, big-endian), then
                           -- the first 16 bytes of SHA-256(topic, 0x00, payload)
);

-- Internal: the last TagoTiP/S counter the server used to seal for a device
-- key (sealed answers, publish{seal_for=...} and commands), so a nonce never
-- repeats for a key. key_id is a fingerprint of the key (8 bytes of BLAKE2b);
-- a rotated key starts at 1. Advanced in the transaction that commits the
-- message answered (or whose analysis published), or the command, before
-- anything is sent.
CREATE TABLE IF NOT EXISTS downlink_counters (
    key_id BLOB PRIMARY KEY,
    last   INTEGER NOT NULL
) WITHOUT ROWID;

-- Internal: the key a device last opened an envelope with, while that is
-- not its current key (after `sealpipe key rotate`, a device still on the old
-- key inside the grace window). Commands and sealed publishes for it are
-- sealed with that key, which it can open; the row goes when the device
-- uses its current key. key_id as in downlink_counters.
CREATE TABLE IF NOT EXISTS device_key_use (
    serial TEXT PRIMARY KEY,
    key_id BLOB NOT NULL,
    at     INTEGER NOT NULL     -- Unix milliseconds
) WITHOUT ROWID;

-- Internal: the last accepted TagoTiP/S counter of each device (replay
-- protection). `sealpipe device rm` deletes the device's row. The counters of
-- the last seconds wait in device_status_pending (below) and in the daemon's
-- memory until it folds them in; a daemon stopping or starting folds what is
-- left. updated_at: when the message of the last counter came.
CREATE TABLE IF NOT EXISTS device_counters (
    serial       TEXT PRIMARY KEY,
    last_counter INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL  -- Unix milliseconds
);

-- Commands for devices (TagoTiP "CMD|..." on the device's ack topic),
-- queued by `sealpipe device cmd` and sent by the running daemon within a
-- second. sealed = 1: a TagoTiP/S envelope on $tips/{serial}/ack sealed with
-- the device's current key; 0: plain on $tip/{serial}/ack. payload is the
-- exact bytes published (sealed once, with a nonce seed that is committed
-- before it leaves, so a resend after a crash is the same envelope);
-- sent_at is set once the broker took it; error says why it was not sent.
CREATE TABLE IF NOT EXISTS commands (
    id         INTEGER PRIMARY KEY,
    serial     TEXT NOT NULL,
    command    TEXT NOT NULL,
    sealed     INTEGER NOT NULL CHECK (sealed IN (0, 1)),
    created_at INTEGER NOT NULL,   -- Unix milliseconds
    payload    BLOB,
    sent_at    INTEGER,
    error      TEXT
);
CREATE INDEX IF NOT EXISTS commands_pending ON commands (id) WHERE sent_at IS NULL AND error IS NULL;
CREATE INDEX IF NOT EXISTS commands_serial ON commands (serial, id);

-- Commands handed to the device with the answer to one of its HTTP, UDP or
-- TCP requests (TagoTipServers.md section 2.6; those bindings have no topic
-- to publish on): each command once, to the first such request after it was
-- queued (a sealed one to a sealed request, sealed then if it was not yet; a
-- plain one to a plain request), with that request's digest (as in
-- net_retries): a retry of the request gets the same commands again and no
-- new one. Recorded in the transaction that commits the request.
-- Independent of sent_at: every command is also published on MQTT.
CREATE TABLE IF NOT EXISTS command_pickups (
    command_id INTEGER PRIMARY KEY,
    digest     BLOB NOT NULL,
    at         INTEGER NOT NULL     -- Unix milliseconds
);
CREATE INDEX IF NOT EXISTS command_pickups_digest ON command_pickups (digest);

-- Internal: recent requests over HTTP, UDP and TCP that their device may send
-- again byte for byte when it missed the answer (an envelope, a frame with a
-- "!N" counter, readings that all carry a timestamp): the digest of topic and
-- payload, remembered until `until` (Unix ms) in the transaction that stores
-- the request. A retry before then is answered again and not stored twice.
-- Expired rows are deleted as batches commit. MQTT's redeliveries use
-- delivery_log instead.
CREATE TABLE IF NOT EXISTS net_retries (
    digest BLOB PRIMARY KEY,
    until  INTEGER NOT NULL
) WITHOUT ROWID;

-- Where an ingest source that keeps its own log stands: for 'journal' (the
-- device journal the broker plugin writes, <data_dir>/journal/), the highest
-- journal id whose message is stored or dead-lettered, written in the same
-- transaction. The broker plugin reads it at start, so that it never gives a
-- committed id again.
CREATE TABLE IF NOT EXISTS source_positions (
    name     TEXT PRIMARY KEY,
    position INTEGER NOT NULL
) WITHOUT ROWID;

-- Each device's status, as `sealpipe device list` and `device show` report
-- it. Written by the daemon only: connections as the broker plugin reports
-- them (a new broker, or a daemon that missed some, gets the whole roster
-- again), the rest in the transaction that commits the device's messages,
-- through device_status_pending below. Counts are since the device first
-- sent; times are Unix milliseconds.
CREATE TABLE IF NOT EXISTS device_status (
    serial          TEXT PRIMARY KEY,
    connections     INTEGER NOT NULL DEFAULT 0,  -- MQTT connections open now
    last_connect    INTEGER,
    last_disconnect INTEGER,
    client_id       TEXT,      -- of the last connection
    address         TEXT,
    protocol        TEXT,      -- e.g. 'MQTT 5'
    last_reason     TEXT,      -- why the last connection ended
    last_sent       INTEGER,   -- the last message received from it, any transport
    last_stored     INTEGER,   -- the last time records were stored for it
    messages        INTEGER NOT NULL DEFAULT 0,  -- stored or dead-lettered
    records         INTEGER NOT NULL DEFAULT 0,
    dead_letters    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Internal: device_status's counts and times and device_counters' counters
-- not yet added to them. A batch of messages writes one row, its devices'
-- tallies, in its transaction; the daemon adds the rows to the two tables and
-- deletes them in one transaction within a second once the messages pause,
-- and every 5 s while they keep coming (a start folds what a stopped or
-- crashed daemon left, before it reads anything). `sealpipe device list` and
-- `device show` add these rows, so they count what is committed;
-- device_status alone may lag by that much. tallies: per device, one byte n,
-- the serial's n bytes, then last_sent, last_stored, messages, records,
-- dead_letters, counter (-1: none) and the device's created_at (0: not known)
-- as 8-byte little-endian integers.
CREATE TABLE IF NOT EXISTS device_status_pending (
    id      INTEGER PRIMARY KEY,
    tallies BLOB NOT NULL
);

-- Retries of dead letters asked for by `sealpipe dead-letter retry`: one row
-- per dead letter (asking twice is asking once). The running daemon reads
-- them within a second (transport/dlretry.c) and runs each dead letter's
-- original bytes through the pipeline again; in the transaction that stores
-- the message it deletes the dead letter and this row, or, when it fails
-- again, keeps the dead letter under its id with the new reason and deletes
-- this row. force = 1: asked with --force (a 'replay' dead letter).
-- The daemon adds three columns to dead_letters at start when they are missing:
-- retries (how many retries failed), first_reason (the reason before them)
-- and digest (see above; rows of older versions have none), with the index
-- dead_letters_digest (digest) WHERE digest IS NOT NULL: a retried message
-- that is one of a kind, once stored, takes the dead letters of the same
-- bytes (and their requests) with it.
CREATE TABLE IF NOT EXISTS dead_letter_retries (
    dead_letter_id INTEGER PRIMARY KEY,
    requested_at   INTEGER NOT NULL,  -- Unix milliseconds
    force          INTEGER NOT NULL DEFAULT 0
);

-- The highest dead letter id ever given. The daemon inserts a dead letter
-- with id last + 1, so an id is never given twice, even once the newest dead
-- letter is retried away or deleted (SQLite's own choice, max(id) + 1, gave
-- it again: a console's Retry of the old row then retried another message).
-- The trigger keeps it right whoever inserts. Made when missing (a bucket of
-- an older version) from the highest id still to be seen, in dead_letters
-- or in a pending retry request: an id deleted before that is not known.
CREATE TABLE IF NOT EXISTS dead_letter_ids (last INTEGER NOT NULL);
INSERT INTO dead_letter_ids (last)
    SELECT max(coalesce((SELECT max(id) FROM dead_letters), 0),
               coalesce((SELECT max(dead_letter_id) FROM dead_letter_retries), 0))
    WHERE NOT EXISTS (SELECT 1 FROM dead_letter_ids);
CREATE TRIGGER IF NOT EXISTS dead_letters_ids AFTER INSERT ON dead_letters
    BEGIN UPDATE dead_letter_ids SET last = max(last, NEW.id); END;

-- How long a device's rows are kept when it differs from the daemon's
-- `retention` option: set by `sealpipe device set SERIAL --retention 30d`
-- (retention_ms 0: forever, even under a global retention), removed by
-- `--retention default`. The running daemon deletes rows of data older
-- than now minus the window by their `time` (the record's time, as TagoIO
-- does) and of dead_letters by their received_at, a few thousand at a time
-- between batches (runtime/storage/retention.c).
CREATE TABLE IF NOT EXISTS device_retention (
    serial       TEXT PRIMARY KEY,
    retention_ms INTEGER NOT NULL CHECK (retention_ms >= 0)
);
-- The retention walk of dead_letters: one device's oldest rows first. (data
-- is walked by data_device_variable_time, above.)
CREATE INDEX IF NOT EXISTS dead_letters_device_received ON dead_letters (device, received_at);

-- Analysis runs that no device message starts: a schedule's tick, a
-- run_analysis() call (sdk/lua/README.md, "Triggers"). One row per run
-- waiting, read oldest first by the daemon's trigger source
-- (runtime/transport/trigsrc.c) and deleted in the transaction that stores
-- the run's outcome, or that moves it to `deferred` (a run still going when
-- its batch commits). ctx is the JSON object its handler receives.
-- AUTOINCREMENT: a row id is never given twice.
CREATE TABLE IF NOT EXISTS trigger_queue (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    analysis   TEXT NOT NULL,
    kind       TEXT NOT NULL,     -- tick, run
    serial     TEXT,              -- the device it runs for, if one
    ctx        TEXT NOT NULL,
    hops       INTEGER NOT NULL,  -- analyses that led to it (run_analysis chains)
    created_at INTEGER NOT NULL   -- Unix milliseconds
);
CREATE INDEX IF NOT EXISTS trigger_queue_analysis ON trigger_queue (analysis, kind);
-- Read by kind: ticks, events and conditions before the runs of
-- run_analysis(), so a chain that fans out cannot hold them up.
CREATE INDEX IF NOT EXISTS trigger_queue_kind ON trigger_queue (kind, id);

-- Where each analysis's schedule stands (times in Unix milliseconds):
-- last_due is the last due time dealt with, last_tick the due time of the
-- last tick queued (NULL: none yet). A tick is queued when a later due time
-- has come and none of the analysis is waiting, so ticks never overlap and
-- the due times missed while the daemon was down make one tick. A new or
-- changed spec starts at its next due time. Rows of removed analyses stay.
CREATE TABLE IF NOT EXISTS schedules (
    analysis  TEXT PRIMARY KEY,
    spec      TEXT NOT NULL,
    last_due  INTEGER NOT NULL,
    last_tick INTEGER
) WITHOUT ROWID;

-- Device connections and disconnections for the analyses whose `on` lists
-- them (sdk/lua/README.md, "Device events"): one row per change of
-- device_status.connections between 0 and more, written by the TRIGGERs
-- below in the transaction that records the change, so an event is exactly
-- a committed change. The daemon turns each row into a trigger_queue row per
-- interested analysis and deletes it (core/devevents.c). A roster (the
-- broker plugin's list of the connections open when it (re)connects) marks
-- connected devices -1 while it runs: -1 -> 1 (still connected) is no event,
-- 0 -> 1 (came while unobserved) is a connection, -1 -> 0 (left while
-- unobserved) a disconnection. `at` is Unix milliseconds: the connection's
-- or disconnection's time as the broker plugin reported it; for a roster's
-- connection (its time unknown) when the daemon learnt it.
CREATE TABLE IF NOT EXISTS device_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    serial    TEXT NOT NULL,
    kind      TEXT NOT NULL,  -- connected, disconnected
    at        INTEGER NOT NULL,
    reason    TEXT,
    client_id TEXT,
    address   TEXT,
    protocol  TEXT
);
CREATE TRIGGER IF NOT EXISTS device_events_first AFTER INSERT ON device_status
    WHEN NEW.connections > 0
    BEGIN
        INSERT INTO device_events (serial, kind, at, client_id, address, protocol)
        VALUES (NEW.serial, 'connected',
                coalesce(NEW.last_connect,
                         CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
                NEW.client_id, NEW.address, NEW.protocol);
    END;
-- A connection sets last_connect; a roster's does not (its time is unknown).
CREATE TRIGGER IF NOT EXISTS device_events_connected AFTER UPDATE OF connections ON device_status
    WHEN OLD.connections = 0 AND NEW.connections > 0
    BEGIN
        INSERT INTO device_events (serial, kind, at, client_id, address, protocol)
        VALUES (NEW.serial, 'connected',
                CASE WHEN NEW.last_connect IS NOT OLD.last_connect THEN NEW.last_connect
                     ELSE CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) END,
                NEW.client_id, NEW.address, NEW.protocol);
    END;
CREATE TRIGGER IF NOT EXISTS device_events_disconnected AFTER UPDATE OF connections ON device_status
    WHEN OLD.connections <> 0 AND NEW.connections = 0
    BEGIN
        INSERT INTO device_events (serial, kind, at, reason, client_id, address, protocol)
        VALUES (NEW.serial, 'disconnected',
                coalesce(NEW.last_disconnect,
                         CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
                NEW.last_reason, NEW.client_id, NEW.address, NEW.protocol);
    END;

-- Which silence of a device each analysis with "offline" in its `on` has
-- been told of: the device's last_sent when it was reported. A device is
-- reported once per silence: a new message moves last_sent, which re-arms
-- it. Survives restarts, so a device that went silent while the daemon was
-- down is reported once it is back and caught up.
CREATE TABLE IF NOT EXISTS offline_state (
    analysis    TEXT NOT NULL,
    serial      TEXT NOT NULL,
    last_sent   INTEGER NOT NULL,
    reported_at INTEGER NOT NULL,
    PRIMARY KEY (analysis, serial)
) WITHOUT ROWID;

-- Where each analysis's conditions (`when`) stand for each device: state 0
-- armed, 1 holding but waiting for its `for` (due_at: when it fires), 2
-- fired (re-armed when the value leaves it, past the hysteresis). cond is a
-- hash of the condition as written, so an edited condition starts afresh.
-- last_value (JSON text) and last_time (the record's time, Unix ms) are the
-- last record of the variable evaluated: a record older than it changes
-- nothing (a backfill fires nothing), and `changes` compares with it.
-- Written in the transaction that stores the records, with the run a
-- transition queues (trigger_queue).
CREATE TABLE IF NOT EXISTS condition_state (
    analysis   TEXT NOT NULL,
    cond       TEXT NOT NULL,
    serial     TEXT NOT NULL,
    state      INTEGER NOT NULL,
    since      INTEGER,
    due_at     INTEGER,
    last_value TEXT,
    last_time  INTEGER,
    PRIMARY KEY (analysis, cond, serial)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS condition_state_due ON condition_state (due_at) WHERE due_at IS NOT NULL;

-- webhook() requests waiting to be sent (sdk/lua/README.md, "webhook"): one
-- row per call, written in the transaction that stores the calling message's
-- or run's results, so a request is queued exactly once per committed call.
-- The daemon sends due rows (next_at <= now) between batches
-- (runtime/transport/webhooks.c) and deletes a row once its server answered
-- 2xx, or moves it to dead_letters (reason webhook_failed) in the same
-- transaction; a row in flight at a crash is sent again (at least once). The
-- id is the request's Sealpipe-Delivery header on every attempt, and
-- AUTOINCREMENT never gives it twice. headers is a JSON object of the
-- analysis's header lines; times are Unix milliseconds.
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    analysis   TEXT NOT NULL,
    serial     TEXT,              -- the device of the call, if one
    origin     TEXT,              -- the topic of the message or run that called webhook()
    method     TEXT NOT NULL,
    url        TEXT NOT NULL,
    host       TEXT,              -- the URL's host: at most a few of one host are taken at once
    headers    TEXT NOT NULL,
    body       BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,  -- attempts that failed and may be retried
    next_at    INTEGER NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS webhook_outbox_next ON webhook_outbox (next_at);
