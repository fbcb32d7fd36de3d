-- registry.sql - profiles, devices, device tokens and encryption keys.
--
-- This file is compiled into sealpipe (symbol sp_schema_registry) and applied
-- every time the registry opens <data_dir>/sealpipe.db, so every statement is
-- idempotent. You may inspect the database with the sqlite3 shell:
--
--     sqlite3 sealpipe-data/sealpipe.db 'SELECT serial, name FROM devices'
--
-- but add, change and remove devices with `sealpipe device|token|key|profile`:
-- the tables hold no secret in the clear, and the tools keep the hashes, the
-- encrypted keys and the derived columns consistent.
--
-- Conventions: times are Unix milliseconds (UTC) in INTEGER columns; NULL
-- means "never" (expires_at) or "not yet" (revoked_at, retired_at). Hashes are
-- raw bytes in BLOB columns; in SQL use hex(col) to read them.
--
-- The replay counters (device_counters) live in bucket.sql: the transaction
-- that stores a device's data records its new counter (device_status_pending),
-- and the daemon folds it into device_counters within seconds.

-- Version of this file's tables, one row per schema file sharing the database
-- (so that bucket.sql can keep its own). Raise it with every incompatible
-- change; sealpipe refuses a database whose version is newer than it knows.
CREATE TABLE IF NOT EXISTS schema_version (
    component TEXT PRIMARY KEY,
    version   INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO schema_version (component, version) VALUES ('registry', 1);

-- A profile groups devices under one TagoTiP authorization token ("at" + 32
-- hex characters). Only the token's auth hash is kept: the first 8 bytes of
-- SHA-256 over the token without "at", as sent in every TagoTiP/S envelope.
-- A profile named "default" is created with the first device.
CREATE TABLE IF NOT EXISTS profiles (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    auth_hash  BLOB NOT NULL UNIQUE CHECK (length(auth_hash) = 8),
    created_at INTEGER NOT NULL
);

-- One row per device. device_hash is the first 8 bytes of SHA-256 over the
-- serial (TagoTiP/S); envelopes are matched by (profile auth hash, device
-- hash). tags and params are JSON objects of strings. parser names an
-- analysis (<analyses_dir>/<parser>.lua) that normalizes the device's
-- payloads, or is NULL. encryption_required = 1 refuses plaintext TagoTiP
-- from this device; counter_mode is 0 (strict: envelope counters must grow)
-- or 1 (off).
CREATE TABLE IF NOT EXISTS devices (
    id                  INTEGER PRIMARY KEY,
    serial              TEXT NOT NULL UNIQUE,
    device_hash         BLOB NOT NULL CHECK (length(device_hash) = 8),
    profile_id          INTEGER NOT NULL REFERENCES profiles (id),
    name                TEXT NOT NULL,
    tags                TEXT NOT NULL DEFAULT '{}',
    params              TEXT NOT NULL DEFAULT '{}',
    parser              TEXT,
    encryption_required INTEGER NOT NULL DEFAULT 0 CHECK (encryption_required IN (0, 1)),
    counter_mode        INTEGER NOT NULL DEFAULT 0 CHECK (counter_mode IN (0, 1)),
    created_at          INTEGER NOT NULL
);
-- Envelope lookups: which devices does (auth hash, device hash) name?
-- (profiles.auth_hash is UNIQUE, which indexes the other half.)
CREATE INDEX IF NOT EXISTS devices_by_hash ON devices (device_hash, profile_id);
CREATE INDEX IF NOT EXISTS devices_by_profile ON devices (profile_id);

-- Device tokens (the MQTT password; the username is "Token"). Only SHA-256
-- of the token is kept; prefix is its first 8 characters, to tell tokens
-- apart in listings. perm: 0 full, 1 write, 2 read. Removing a device removes
-- its tokens. token_hash is UNIQUE, which indexes token checks.
CREATE TABLE IF NOT EXISTS device_tokens (
    id         INTEGER PRIMARY KEY,
    device_id  INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    prefix     TEXT NOT NULL,
    token_hash BLOB NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    perm       INTEGER NOT NULL DEFAULT 0 CHECK (perm IN (0, 1, 2)),
    expires_at INTEGER,
    revoked_at INTEGER,
    created_at INTEGER NOT NULL,
    UNIQUE (device_id, name)
);

-- Tokens of the daemon's HTTP API and web console (`sealpipe admin token
-- add|list|revoke`), kept as device tokens are: only SHA-256 of the token
-- (UUID text form, shown once) and its first 8 characters. perm 0: full,
-- 2: read (GET only; the values of device_tokens.perm).
CREATE TABLE IF NOT EXISTS admin_tokens (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    prefix     TEXT NOT NULL,
    token_hash BLOB NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    perm       INTEGER NOT NULL DEFAULT 0 CHECK (perm IN (0, 2)),
    revoked_at INTEGER,
    created_at INTEGER NOT NULL
);

-- TagoTiP/S encryption keys. key_enc is the key encrypted with
-- XChaCha20-Poly1305 under <data_dir>/master.key with the random 24-byte
-- nonce, and the device serial as associated data: the database alone does
-- not reveal a key, and a key row moved to another device does not open.
-- suite: 0 aes-128-ccm, 1 aes-128-gcm, 2 aes-256-ccm, 3 aes-256-gcm,
-- 4 chacha20-poly1305. The current key has retired_at NULL; a rotated key
-- keeps opening envelopes for the daemon's key_grace seconds after
-- retired_at. Removing a device removes its keys.
CREATE TABLE IF NOT EXISTS device_keys (
    id         INTEGER PRIMARY KEY,
    device_id  INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    suite      INTEGER NOT NULL CHECK (suite BETWEEN 0 AND 4),
    nonce      BLOB NOT NULL CHECK (length(nonce) = 24),
    key_enc    BLOB NOT NULL,
    retired_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS device_keys_by_device ON device_keys (device_id, retired_at);

-- Bumped by the triggers below on every change to profiles, devices, tokens
-- and keys, whoever makes it (the CLI, a script, the sqlite3 shell). The
-- daemon keeps devices and unwrapped keys in memory and reads this one row
-- once per batch: when n has moved, it drops its cache.
CREATE TABLE IF NOT EXISTS registry_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  INTEGER NOT NULL
);
INSERT OR IGNORE INTO registry_generation (id, n) VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS profiles_ins_gen AFTER INSERT ON profiles
    BEGIN UPDATE registry_generation SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS profiles_upd_gen AFTER UPDATE ON profiles
    BEGIN UPDATE registry_generation SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS profiles_del_gen AFTER DELETE ON profiles
    BEGIN UPDATE registry_generation SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS devices_ins_gen AFTER INSERT ON devices
    BEGIN UPDATE registry_generation SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS devices_upd_gen AFTER UPDATE ON devices
    BEGIN UPDATE registry_generation SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS devices_del_gen AFTER DELETE ON devices
    BEGIN UPDATE registry_generation SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS device_tokens_ins_gen AFTER INSERT ON device_tokens
    BEGIN UPDATE registry_generation SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS device_tokens_upd_gen AFTER UPDATE ON device_tokens
    BEGIN UPDATE registry_generation SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS device_tokens_del_gen AFTER DELETE ON device_tokens
    BEGIN UPDATE registry_generation SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS device_keys_ins_gen AFTER INSERT ON device_keys
    BEGIN UPDATE registry_generation SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS device_keys_upd_gen AFTER UPDATE ON device_keys
    BEGIN UPDATE registry_generation SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS device_keys_del_gen AFTER DELETE ON device_keys
    BEGIN UPDATE registry_generation SET n = n + 1; END;
