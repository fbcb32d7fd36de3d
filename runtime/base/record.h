/*
 * record.h - TagoIO data records: the unit sealpipe stores in a bucket.
 *
 * A record has a variable, an optional typed value, unit, time, group,
 * location and metadata (TagoIO's data model; schemas/record.schema.json).
 * Records produced for one batch live in that batch's arena; every string is
 * NUL-terminated.
 *
 * This module turns payloads into records (TagoIO JSON, or the raw "payload"
 * record handed to a device's parser) and validates records from any source
 * (JSON, TagoTiP, Lua analyses) against the same rules, so a bucket only ever
 * holds valid data.
 */
#ifndef SP_RECORD_H
#define SP_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "buf.h"
#include "json.h"

enum record_type { RECORD_NONE, RECORD_NUMBER, RECORD_STRING, RECORD_BOOLEAN };

struct record {
    const char *variable;
    enum record_type type;
    double number;      /* RECORD_NUMBER */
    const char *string; /* RECORD_STRING (may hold any UTF-8) */
    size_t string_len;
    int boolean;      /* RECORD_BOOLEAN: 0 or 1 */
    const char *unit; /* NULL: none */
    int has_time;
    int64_t time_ms;   /* Unix milliseconds when has_time */
    const char *group; /* NULL: none */
    int has_location;
    double lat, lng;
    int has_alt;
    double alt;
    const char *metadata; /* compact JSON object text, NULL: none */
};

/* A growable array of records in an arena. Zero-initialize before use. */
struct record_vec {
    struct record *v;
    size_t n;
    size_t cap;
};

/*
 * Appends a zeroed record and returns it, or NULL when the arena is exhausted
 * or the vector already holds SP_LIMIT_RECORDS records.
 */
struct record *record_vec_push(struct arena *a, struct record_vec *rv);

/*
 * Checks a record against TagoIO's rules and normalizes it in place:
 * the variable name is lowercased (copied into the arena) and must be 1-100
 * bytes without any of * ? ! < > . - = $ or white space; unit <= 25 bytes,
 * group <= 100, string value <= SP_LIMIT_VALUE and valid UTF-8, metadata a JSON
 * object of <= SP_LIMIT_METADATA bytes, latitude in [-90, 90], longitude in
 * [-180, 180], numbers finite.
 * Returns 0, or SP_ERR_PAYLOAD with the reason in err.
 */
int record_validate(struct arena *a, struct record *r, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * Converts one JSON object in TagoIO's data format into a record and
 * validates it. Accepted members: variable (string, required), value (string,
 * number, boolean or null), unit, time (Unix milliseconds as a number, or an
 * ISO 8601 string such as 2026-11-24T10:00:00Z / with .sss and +hh:mm
 * offsets), group (or its old alias serie), location ({lat, lng[, alt]} or a
 * GeoJSON Point {type:"Point", coordinates:[lng, lat]}), metadata (object).
 * The stored-record members id, device and created_at are ignored; any other
 * member is an error.
 * Returns 0 or SP_ERR_PAYLOAD / SP_ERR_NOMEM with the reason in err.
 */
int record_from_json(struct arena *a, const struct json *obj, struct record *out, char *err,
                     size_t errlen) __attribute__((warn_unused_result));

/*
 * Turns an MQTT payload into records, TagoIO's way:
 *  - a JSON object with a string member "variable", or a non-empty array of
 *    such objects, is TagoIO data: each is converted and validated, and
 *    metadata.mqtt_topic = topic is added (a record's own mqtt_topic wins).
 *    Returns 1. A record that breaks a rule fails the whole payload:
 *    SP_ERR_PAYLOAD with the reason (naming the record index) in err.
 *  - anything else becomes one record {variable:"payload", value, metadata:
 *    {mqtt_topic}} whose value is the payload as text when it is valid UTF-8
 *    without NUL bytes, else its lowercase hex. Returns 0.
 * topic may be NULL (no mqtt_topic metadata). Records are appended to out.
 */
int records_from_payload(struct arena *a, const char *topic, const uint8_t *payload, size_t len,
                         struct record_vec *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * Sets metadata[key] = value (a string) on r, replacing r->metadata with a new
 * JSON object text in the arena. If overwrite is 0 and key exists, r is left
 * unchanged. Returns 0 or SP_ERR_NOMEM / SP_ERR_TOOLARGE.
 */
int record_set_meta(struct arena *a, struct record *r, const char *key, const char *value,
                    int overwrite) __attribute__((warn_unused_result));

/* Appends r as a TagoIO JSON object (used by the tests and fuzz_record only). */
int record_to_json(struct buf *b, const struct record *r) __attribute__((warn_unused_result));

/*
 * Parses an ISO 8601 date-time (YYYY-MM-DDTHH:MM:SS[.fff][Z|+hh:mm|-hh:mm],
 * 'T' or ' ' separator; no zone means UTC) into Unix milliseconds.
 * Returns 0 or SP_ERR_PAYLOAD.
 */
int iso8601_parse(const char *s, size_t n, int64_t *ms) __attribute__((warn_unused_result));

/* Room for iso8601_format()'s 24 characters and the NUL. */
#define ISO8601_LEN 32

/*
 * Writes Unix milliseconds ms as UTC ISO 8601 with milliseconds, e.g.
 * 2026-11-24T10:00:00.000Z (24 characters), NUL-terminated. Returns the
 * length, or -1 when ms is outside years 0000-9999 (out is then untouched).
 */
int iso8601_format(int64_t ms, char out[ISO8601_LEN]);

#endif
