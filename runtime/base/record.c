/*
 * record.c - TagoIO data records: parsing, validation and JSON output (see
 * record.h and schemas/record.schema.json).
 *
 * Called by the pipeline and the TagoTiP server (MQTT payload -> records,
 * checks), the Lua host and the worker wire (records an analysis returns) and
 * the bucket (read-back into a record_vec). Every record string
 * lives in the batch arena; nothing here holds state between calls, so it is
 * thread-safe with one arena per thread. Time conversion is done with plain
 * proleptic-Gregorian arithmetic rather than timegm()/TZ so the result never
 * depends on the process environment.
 */
#include "record.h"
#include "civil.h"
#include "errors.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sp_limits.h"
#include "sealpipe.h"

#define MS_PER_DAY 86400000LL

/* Error text for operators. A NULL or zero-sized err is allowed. */
static int seterr(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int seterr(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* A short, printable copy of untrusted text for an error message, so a
 * hostile key cannot inject control characters into a log line. */
static void printable(char *dst, size_t cap, const char *s, size_t n)
{
    size_t j = 0;

    for (size_t i = 0; i < n && j + 4 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[j++] = (c >= 0x20 && c < 0x7F && c != '"') ? (char)c : '?';
    }
    if (n > 0 && j + 4 >= cap && j < n) {
        dst[j++] = '.';
        dst[j++] = '.';
        dst[j++] = '.';
    }
    dst[j] = '\0';
}

/* ------------------------------------------------------------------------ */
/* Calendar arithmetic (civil.h)                                            */

static int days_in_month(int64_t y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 ? 28 + leap : dim[m - 1];
}

/* Times must print as four-digit ISO years: 0000-01-01 .. 9999-12-31. */
static int time_in_range(int64_t ms)
{
    int64_t lo = civil_days(0, 1, 1) * MS_PER_DAY;
    int64_t hi = civil_days(10000, 1, 1) * MS_PER_DAY - 1;
    return ms >= lo && ms <= hi;
}

/* Reads exactly n decimal digits at s[*i]. */
static int digits(const char *s, size_t len, size_t *i, size_t n, int *out)
{
    int v = 0;

    if (len - *i < n)
        return -1;
    for (size_t k = 0; k < n; k++) {
        char c = s[*i + k];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *i += n;
    *out = v;
    return 0;
}

static int expect(const char *s, size_t len, size_t *i, char c)
{
    if (*i >= len || s[*i] != c)
        return -1;
    (*i)++;
    return 0;
}

int iso8601_parse(const char *s, size_t n, int64_t *ms)
{
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, frac = 0, oh = 0, om = 0, sign = 0;
    size_t i = 0;

    if (!s)
        return SP_ERR_PAYLOAD;
    if (digits(s, n, &i, 4, &y) || expect(s, n, &i, '-') || digits(s, n, &i, 2, &mo) ||
        expect(s, n, &i, '-') || digits(s, n, &i, 2, &d))
        return SP_ERR_PAYLOAD;
    if (i >= n || (s[i] != 'T' && s[i] != 't' && s[i] != ' '))
        return SP_ERR_PAYLOAD;
    i++;
    if (digits(s, n, &i, 2, &h) || expect(s, n, &i, ':') || digits(s, n, &i, 2, &mi) ||
        expect(s, n, &i, ':') || digits(s, n, &i, 2, &sec))
        return SP_ERR_PAYLOAD;
    if (i < n && (s[i] == '.' || s[i] == ',')) {
        /* Any number of fraction digits; milliseconds are kept, the rest
         * truncated. */
        size_t start = ++i;
        int scale = 100;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            frac += (s[i] - '0') * scale;
            scale /= 10;
            i++;
        }
        if (i == start || i - start > 9)
            return SP_ERR_PAYLOAD;
    }
    if (i < n) {
        if (s[i] == 'Z' || s[i] == 'z') {
            i++;
        } else if (s[i] == '+' || s[i] == '-') {
            sign = s[i] == '-' ? -1 : 1;
            i++;
            if (digits(s, n, &i, 2, &oh))
                return SP_ERR_PAYLOAD;
            /* +hh, +hhmm or +hh:mm */
            int colon = i < n && s[i] == ':';
            if (colon)
                i++;
            if ((colon || i < n) && digits(s, n, &i, 2, &om))
                return SP_ERR_PAYLOAD;
        } else {
            return SP_ERR_PAYLOAD;
        }
    }
    if (i != n)
        return SP_ERR_PAYLOAD;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59 ||
        oh > 23 || om > 59)
        return SP_ERR_PAYLOAD;
    int64_t t = civil_days(y, mo, d) * MS_PER_DAY;
    t += ((int64_t)h * 3600 + mi * 60 + sec) * 1000 + frac;
    t -= (int64_t)sign * ((int64_t)oh * 3600 + om * 60) * 1000;
    *ms = t;
    return 0;
}

int iso8601_format(int64_t ms, char out[ISO8601_LEN])
{
    int64_t days = ms / MS_PER_DAY, rem = ms % MS_PER_DAY, y;
    int m, d;

    if (!time_in_range(ms))
        return -1;
    if (rem < 0) {
        rem += MS_PER_DAY;
        days--;
    }
    civil_date(days, &y, &m, &d);
    int64_t secs = rem / 1000;
    return snprintf(out, ISO8601_LEN, "%04lld-%02d-%02dT%02d:%02d:%02d.%03dZ", (long long)y, m, d,
                    (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60), (int)(rem % 1000));
}

/* "2026-11-24T10:00:00.000Z" as a JSON string; ms must be time_in_range(). */
static int write_iso8601(struct buf *b, int64_t ms)
{
    char iso[ISO8601_LEN];

    if (iso8601_format(ms, iso) < 0)
        return SP_ERR_INVAL;
    return buf_printf(b, "\"%s\"", iso);
}

/* ------------------------------------------------------------------------ */
/* Records                                                                  */

struct record *record_vec_push(struct arena *a, struct record_vec *rv)
{
    if (rv->n >= SP_LIMIT_RECORDS)
        return NULL;
    if (rv->n == rv->cap) {
        /* The old array stays in the arena until reset: growth doubles, so
         * the waste is bounded by the final size. */
        size_t cap = rv->cap ? rv->cap * 2 : 8;
        if (cap > SP_LIMIT_RECORDS)
            cap = SP_LIMIT_RECORDS;
        struct record *v = arena_calloc(a, cap, sizeof(*v));
        if (!v)
            return NULL;
        if (rv->n)
            memcpy(v, rv->v, rv->n * sizeof(*v));
        rv->v = v;
        rv->cap = cap;
    }
    struct record *r = &rv->v[rv->n++];
    memset(r, 0, sizeof(*r));
    return r;
}

/* TagoIO refuses these in variable names, besides white space. */
static int variable_char_ok(unsigned char c)
{
    if (c <= 0x20 || c == 0x7F)
        return 0;
    return strchr("*?!<>.-=$", c) == NULL;
}

static int check_text(const char *what, const char *s, size_t max, char *err, size_t errlen)
{
    size_t n = strlen(s);

    if (n > max)
        return seterr(err, errlen, SP_ERR_PAYLOAD, "%s: longer than %zu bytes", what, max);
    if (!sp__utf8_valid(s, n))
        return seterr(err, errlen, SP_ERR_PAYLOAD, "%s: not valid UTF-8", what);
    return 0;
}

static int validate_variable(struct arena *a, struct record *r, char *err, size_t errlen)
{
    if (!r->variable)
        return seterr(err, errlen, SP_ERR_PAYLOAD, "variable: missing");
    size_t n = strlen(r->variable);
    if (n == 0 || n > SP_LIMIT_VARIABLE)
        return seterr(err, errlen, SP_ERR_PAYLOAD, "variable: must be 1-%d bytes, got %zu",
                      SP_LIMIT_VARIABLE, n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)r->variable[i];
        if (!variable_char_ok(c)) {
            if (c <= 0x20 || c == 0x7F)
                return seterr(err, errlen, SP_ERR_PAYLOAD,
                              "variable: white space or control character at byte %zu", i);
            return seterr(err, errlen, SP_ERR_PAYLOAD,
                          "variable: character '%c' is not allowed (none of * ? ! < > . - = $)",
                          (char)c);
        }
    }
    if (!sp__utf8_valid(r->variable, n))
        return seterr(err, errlen, SP_ERR_PAYLOAD, "variable: not valid UTF-8");
    char *low = arena_strndup(a, r->variable, n);
    if (!low)
        return seterr(err, errlen, SP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (low[i] >= 'A' && low[i] <= 'Z')
            low[i] = (char)(low[i] - 'A' + 'a');
    r->variable = low;
    return 0;
}

static int validate_value(struct record *r, char *err, size_t errlen)
{
    switch (r->type) {
    case RECORD_NONE:
        return 0;
    case RECORD_NUMBER:
        if (!isfinite(r->number))
            return seterr(err, errlen, SP_ERR_PAYLOAD, "value: number is not finite");
        return 0;
    case RECORD_BOOLEAN:
        r->boolean = r->boolean != 0;
        return 0;
    case RECORD_STRING:
        if (!r->string) {
            if (r->string_len)
                return seterr(err, errlen, SP_ERR_PAYLOAD, "value: string missing");
            r->string = "";
        }
        if (r->string_len > SP_LIMIT_VALUE)
            return seterr(err, errlen, SP_ERR_PAYLOAD, "value: string longer than %d bytes",
                          SP_LIMIT_VALUE);
        if (memchr(r->string, '\0', r->string_len))
            return seterr(err, errlen, SP_ERR_PAYLOAD, "value: string contains a NUL byte");
        if (!sp__utf8_valid(r->string, r->string_len))
            return seterr(err, errlen, SP_ERR_PAYLOAD, "value: string is not valid UTF-8");
        return 0;
    }
    return seterr(err, errlen, SP_ERR_PAYLOAD, "value: unknown type %d", (int)r->type);
}

int record_validate(struct arena *a, struct record *r, char *err, size_t errlen)
{
    int rc;

    if ((rc = validate_variable(a, r, err, errlen)) || (rc = validate_value(r, err, errlen)))
        return rc;
    if (r->unit && (rc = check_text("unit", r->unit, SP_LIMIT_UNIT, err, errlen)))
        return rc;
    if (r->group && (rc = check_text("group", r->group, SP_LIMIT_GROUP, err, errlen)))
        return rc;
    if (r->has_time && !time_in_range(r->time_ms))
        return seterr(err, errlen, SP_ERR_PAYLOAD, "time: %lld ms is outside the years 0000-9999",
                      (long long)r->time_ms);
    if (r->has_location) {
        if (!isfinite(r->lat) || r->lat < -90 || r->lat > 90)
            return seterr(err, errlen, SP_ERR_PAYLOAD, "location: latitude %g not in [-90, 90]",
                          r->lat);
        if (!isfinite(r->lng) || r->lng < -180 || r->lng > 180)
            return seterr(err, errlen, SP_ERR_PAYLOAD, "location: longitude %g not in [-180, 180]",
                          r->lng);
        if (r->has_alt && !isfinite(r->alt))
            return seterr(err, errlen, SP_ERR_PAYLOAD, "location: altitude is not finite");
    }
    if (r->metadata) {
        size_t n = strlen(r->metadata);
        struct json *m;
        char jerr[128];
        if (n > SP_LIMIT_METADATA)
            return seterr(err, errlen, SP_ERR_PAYLOAD, "metadata: longer than %d bytes",
                          SP_LIMIT_METADATA);
        rc = json_parse(a, r->metadata, n, &m, jerr, sizeof(jerr));
        if (rc == SP_ERR_NOMEM)
            return seterr(err, errlen, rc, "out of memory");
        if (rc)
            return seterr(err, errlen, SP_ERR_PAYLOAD, "metadata: %s", jerr);
        if (m->type != JSON_OBJECT)
            return seterr(err, errlen, SP_ERR_PAYLOAD, "metadata: must be a JSON object");
    }
    return 0;
}

/* Optional string member: absent or null leaves *out NULL. */
static int member_string(const struct json *obj, const char *name, const char **out, char *err,
                         size_t errlen)
{
    const struct json *v = json_get(obj, name);

    if (!v || v->type == JSON_NULL)
        return 0;
    if (v->type != JSON_STRING)
        return seterr(err, errlen, SP_ERR_PAYLOAD, "%s: must be a string", name);
    *out = v->str;
    return 0;
}

static int number_member(const struct json *obj, const char *name, double *out, int *present)
{
    const struct json *v = json_get(obj, name);

    *present = v != NULL;
    if (!v)
        return 0;
    if (v->type != JSON_NUMBER)
        return -1;
    *out = v->number;
    return 0;
}

/* {lat, lng[, alt]} or a GeoJSON Point {type:"Point", coordinates:[lng, lat[, alt]]}. */
static int location_from_json(const struct json *loc, struct record *r, char *err, size_t errlen)
{
    if (loc->type == JSON_NULL)
        return 0;
    if (loc->type != JSON_OBJECT)
        return seterr(err, errlen, SP_ERR_PAYLOAD, "location: must be an object");
    const struct json *type = json_get(loc, "type");
    if (type) {
        const struct json *c = json_get(loc, "coordinates");
        if (type->type != JSON_STRING || strcmp(type->str, "Point") != 0)
            return seterr(err, errlen, SP_ERR_PAYLOAD,
                          "location: only GeoJSON type \"Point\" is supported");
        if (!c || c->type != JSON_ARRAY || c->len < 2 || c->len > 3)
            return seterr(err, errlen, SP_ERR_PAYLOAD,
                          "location: coordinates must be [lng, lat] or [lng, lat, alt]");
        for (const struct json *e = c->child; e; e = e->next)
            if (e->type != JSON_NUMBER)
                return seterr(err, errlen, SP_ERR_PAYLOAD, "location: coordinates must be numbers");
        for (const struct json *m = loc->child; m; m = m->next)
            if (strcmp(m->key, "type") != 0 && strcmp(m->key, "coordinates") != 0)
                return seterr(err, errlen, SP_ERR_PAYLOAD,
                              "location: unexpected member in GeoJSON Point");
        r->lng = c->child->number;
        r->lat = c->child->next->number;
        if (c->len == 3) {
            r->has_alt = 1;
            r->alt = c->child->next->next->number;
        }
        r->has_location = 1;
        return 0;
    }
    int has_lat, has_lng;
    if (number_member(loc, "lat", &r->lat, &has_lat) ||
        number_member(loc, "lng", &r->lng, &has_lng) ||
        number_member(loc, "alt", &r->alt, &r->has_alt))
        return seterr(err, errlen, SP_ERR_PAYLOAD, "location: lat, lng and alt must be numbers");
    if (!has_lat || !has_lng)
        return seterr(err, errlen, SP_ERR_PAYLOAD, "location: lat and lng are required");
    for (const struct json *m = loc->child; m; m = m->next)
        if (strcmp(m->key, "lat") != 0 && strcmp(m->key, "lng") != 0 && strcmp(m->key, "alt") != 0)
            return seterr(err, errlen, SP_ERR_PAYLOAD,
                          "location: unexpected member (expected lat, lng, alt)");
    r->has_location = 1;
    return 0;
}

static int time_from_json(const struct json *t, struct record *r, char *err, size_t errlen)
{
    if (t->type == JSON_NULL)
        return 0;
    if (t->type == JSON_NUMBER) {
        /* +-2^53 keeps the conversion exact; the range check follows in
         * record_validate. */
        if (t->number != trunc(t->number) || fabs(t->number) > 9007199254740992.0)
            return seterr(err, errlen, SP_ERR_PAYLOAD,
                          "time: must be integer Unix milliseconds or an ISO 8601 string");
        r->time_ms = (int64_t)t->number;
    } else if (t->type == JSON_STRING) {
        if (iso8601_parse(t->str, t->len, &r->time_ms))
            return seterr(err, errlen, SP_ERR_PAYLOAD,
                          "time: not an ISO 8601 date-time (YYYY-MM-DDTHH:MM:SS[.sss][Z|+hh:mm])");
    } else {
        return seterr(err, errlen, SP_ERR_PAYLOAD,
                      "time: must be integer Unix milliseconds or an ISO 8601 string");
    }
    r->has_time = 1;
    return 0;
}

static int metadata_from_json(struct arena *a, const struct json *m, struct record *r, char *err,
                              size_t errlen)
{
    struct buf b;
    int rc;

    if (m->type == JSON_NULL)
        return 0;
    if (m->type != JSON_OBJECT)
        return seterr(err, errlen, SP_ERR_PAYLOAD, "metadata: must be an object");
    buf_init(&b, SP_LIMIT_METADATA);
    rc = json_write(&b, m);
    if (rc == 0) {
        r->metadata = arena_strndup(a, b.p, b.len);
        if (!r->metadata)
            rc = SP_ERR_NOMEM;
    }
    buf_cleanup(&b);
    if (rc == SP_ERR_TOOLARGE)
        return seterr(err, errlen, SP_ERR_PAYLOAD, "metadata: longer than %d bytes",
                      SP_LIMIT_METADATA);
    if (rc)
        return seterr(err, errlen, rc, "out of memory");
    return 0;
}

static int known_member(const char *key)
{
    static const char *const known[] = {"variable", "value",  "unit",      "time",
                                        "group",    "serie",  "location",  "metadata",
                                        "id",       "device", "created_at"};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(key, known[i]) == 0)
            return 1;
    return 0;
}

int record_from_json(struct arena *a, const struct json *obj, struct record *out, char *err,
                     size_t errlen)
{
    struct record r;
    const struct json *v;
    int rc;

    memset(&r, 0, sizeof(r));
    if (!obj || obj->type != JSON_OBJECT)
        return seterr(err, errlen, SP_ERR_PAYLOAD, "record: must be a JSON object");
    for (const struct json *m = obj->child; m; m = m->next) {
        if (strlen(m->key) != m->keylen || !known_member(m->key)) {
            char name[48];
            printable(name, sizeof(name), m->key, m->keylen);
            return seterr(err, errlen, SP_ERR_PAYLOAD, "record: unknown member \"%s\"", name);
        }
    }
    v = json_get(obj, "variable");
    if (!v)
        return seterr(err, errlen, SP_ERR_PAYLOAD, "variable: missing");
    if (v->type != JSON_STRING)
        return seterr(err, errlen, SP_ERR_PAYLOAD, "variable: must be a string");
    r.variable = v->str;
    if ((v = json_get(obj, "value"))) {
        switch (v->type) {
        case JSON_NULL:
            break;
        case JSON_TRUE:
        case JSON_FALSE:
            r.type = RECORD_BOOLEAN;
            r.boolean = v->type == JSON_TRUE;
            break;
        case JSON_NUMBER:
            r.type = RECORD_NUMBER;
            r.number = v->number;
            break;
        case JSON_STRING:
            r.type = RECORD_STRING;
            r.string = v->str;
            r.string_len = v->len;
            break;
        default:
            return seterr(err, errlen, SP_ERR_PAYLOAD,
                          "value: must be a string, number, boolean or null");
        }
    }
    if ((rc = member_string(obj, "unit", &r.unit, err, errlen)))
        return rc;
    /* "serie" is TagoIO's old name for group; group wins when both exist. */
    if ((rc = member_string(obj, "serie", &r.group, err, errlen)) ||
        (rc = member_string(obj, "group", &r.group, err, errlen)))
        return rc;
    if ((v = json_get(obj, "time")) && (rc = time_from_json(v, &r, err, errlen)))
        return rc;
    if ((v = json_get(obj, "location")) && (rc = location_from_json(v, &r, err, errlen)))
        return rc;
    if ((v = json_get(obj, "metadata")) && (rc = metadata_from_json(a, v, &r, err, errlen)))
        return rc;
    if ((rc = record_validate(a, &r, err, errlen)))
        return rc;
    *out = r;
    return 0;
}

/* TagoIO data is an object whose "variable" member is a string. */
static int is_tago_object(const struct json *v)
{
    const struct json *var;

    if (!v || v->type != JSON_OBJECT)
        return 0;
    var = json_get(v, "variable");
    return var && var->type == JSON_STRING;
}

static int is_tago_data(const struct json *v)
{
    if (is_tago_object(v))
        return 1;
    if (!v || v->type != JSON_ARRAY || v->len == 0)
        return 0;
    for (const struct json *e = v->child; e; e = e->next)
        if (!is_tago_object(e))
            return 0;
    return 1;
}

static int tago_records(struct arena *a, const char *topic, const struct json *root,
                        struct record_vec *out, char *err, size_t errlen)
{
    const struct json *one = root->type == JSON_OBJECT ? root : NULL;
    const struct json *e = one ? one : root->child;
    size_t idx = 0;
    char why[256];
    int rc;

    for (; e; e = one ? NULL : e->next, idx++) {
        struct record *r = record_vec_push(a, out);
        if (!r) {
            if (out->n >= SP_LIMIT_RECORDS)
                return seterr(err, errlen, SP_ERR_TOOLARGE, "more than %d records",
                              SP_LIMIT_RECORDS);
            return seterr(err, errlen, SP_ERR_NOMEM, "out of memory");
        }
        if ((rc = record_from_json(a, e, r, why, sizeof(why))))
            return seterr(err, errlen, rc, "record %zu: %s", idx, why);
        if (topic && (rc = record_set_meta(a, r, "mqtt_topic", topic, 0)))
            return seterr(
                err, errlen, rc == SP_ERR_TOOLARGE ? SP_ERR_PAYLOAD : rc, "record %zu: %s", idx,
                rc == SP_ERR_TOOLARGE ? "metadata with mqtt_topic too large" : "out of memory");
    }
    return 1;
}

static int raw_record(struct arena *a, const char *topic, const uint8_t *payload, size_t len,
                      struct record_vec *out, char *err, size_t errlen)
{
    static const char hex[] = "0123456789abcdef";
    struct record *r = record_vec_push(a, out);
    const char *text = (const char *)payload;
    int rc;

    if (!r)
        return seterr(err, errlen, out->n >= SP_LIMIT_RECORDS ? SP_ERR_TOOLARGE : SP_ERR_NOMEM,
                      "cannot add the payload record");
    r->variable = "payload";
    r->type = RECORD_STRING;
    if (len == 0 || (!memchr(text, '\0', len) && sp__utf8_valid(text, len))) {
        r->string = arena_strndup(a, len ? text : "", len);
        r->string_len = len;
    } else {
        if (len > (SIZE_MAX - 1) / 2)
            return seterr(err, errlen, SP_ERR_TOOLARGE, "payload too large");
        char *h = arena_alloc(a, len * 2 + 1);
        if (h) {
            for (size_t i = 0; i < len; i++) {
                h[2 * i] = hex[payload[i] >> 4];
                h[2 * i + 1] = hex[payload[i] & 15];
            }
            h[len * 2] = '\0';
        }
        r->string = h;
        r->string_len = len * 2;
    }
    if (!r->string)
        return seterr(err, errlen, SP_ERR_NOMEM, "out of memory");
    if (topic && (rc = record_set_meta(a, r, "mqtt_topic", topic, 1)))
        return seterr(err, errlen, rc, "payload record: cannot set mqtt_topic");
    return 0;
}

/*
 * Detection follows TagoIO: only an object with a string "variable" (or a
 * non-empty array of those) is data; any other JSON, or non-JSON, is handed
 * on whole as the "payload" record. On failure the vector is rolled back so
 * a rejected payload leaves no partial records behind.
 */
int records_from_payload(struct arena *a, const char *topic, const uint8_t *payload, size_t len,
                         struct record_vec *out, char *err, size_t errlen)
{
    size_t before = out->n;
    struct json *root = NULL;
    size_t i = 0;
    int rc;

    while (i < len &&
           (payload[i] == ' ' || payload[i] == '\t' || payload[i] == '\n' || payload[i] == '\r'))
        i++;
    if (i < len && (payload[i] == '{' || payload[i] == '[')) {
        rc = json_parse(a, (const char *)payload, len, &root, NULL, 0);
        if (rc == SP_ERR_NOMEM) {
            return seterr(err, errlen, rc, "out of memory");
        }
        if (rc)
            root = NULL;
    }
    if (root && is_tago_data(root))
        rc = tago_records(a, topic, root, out, err, errlen);
    else
        rc = raw_record(a, topic, payload, len, out, err, errlen);
    if (rc < 0)
        out->n = before;
    return rc;
}

int record_set_meta(struct arena *a, struct record *r, const char *key, const char *value,
                    int overwrite)
{
    struct json *old = NULL;
    struct buf b;
    size_t keylen = strlen(key);
    int rc, written = 0;

    if (r->metadata) {
        rc = json_parse(a, r->metadata, strlen(r->metadata), &old, NULL, 0);
        if (rc)
            return rc;
        if (old->type != JSON_OBJECT)
            return SP_ERR_PAYLOAD;
        if (!overwrite && json_get(old, key))
            return 0;
    }
    buf_init(&b, SP_LIMIT_METADATA);
    if ((rc = buf_putc(&b, '{')))
        goto out;
    /* Replace in place (first occurrence) so member order is kept; later
     * duplicates of key are dropped. */
    for (const struct json *m = old ? old->child : NULL; m; m = m->next) {
        int same = m->keylen == keylen && memcmp(m->key, key, keylen) == 0;
        if (same && written)
            continue;
        if (b.len > 1 && (rc = buf_putc(&b, ',')))
            goto out;
        if ((rc = json_write_string(&b, m->key, m->keylen)) || (rc = buf_putc(&b, ':')))
            goto out;
        if (same) {
            rc = json_write_string(&b, value, strlen(value));
            written = 1;
        } else {
            rc = json_write(&b, m);
        }
        if (rc)
            goto out;
    }
    if (!written) {
        if (b.len > 1 && (rc = buf_putc(&b, ',')))
            goto out;
        if ((rc = json_write_string(&b, key, keylen)) || (rc = buf_putc(&b, ':')) ||
            (rc = json_write_string(&b, value, strlen(value))))
            goto out;
    }
    if ((rc = buf_putc(&b, '}')))
        goto out;
    char *text = arena_strndup(a, b.p, b.len);
    if (!text) {
        rc = SP_ERR_NOMEM;
        goto out;
    }
    r->metadata = text;
out:
    buf_cleanup(&b);
    return rc;
}

static int put_member(struct buf *b, const char *name, int first)
{
    int rc;

    if (!first && (rc = buf_putc(b, ',')))
        return rc;
    if ((rc = json_write_string(b, name, strlen(name))))
        return rc;
    return buf_putc(b, ':');
}

int record_to_json(struct buf *b, const struct record *r)
{
    const char *var = r->variable ? r->variable : "";
    int rc;

    if ((rc = buf_putc(b, '{')) || (rc = put_member(b, "variable", 1)) ||
        (rc = json_write_string(b, var, strlen(var))))
        return rc;
    if (r->type != RECORD_NONE && (rc = put_member(b, "value", 0)))
        return rc;
    switch (r->type) {
    case RECORD_NUMBER:
        rc = json_write_number(b, r->number);
        break;
    case RECORD_STRING:
        rc = json_write_string(b, r->string ? r->string : "", r->string ? r->string_len : 0);
        break;
    case RECORD_BOOLEAN:
        rc = buf_puts(b, r->boolean ? "true" : "false");
        break;
    case RECORD_NONE:
        break;
    }
    if (rc)
        return rc;
    if (r->unit &&
        ((rc = put_member(b, "unit", 0)) || (rc = json_write_string(b, r->unit, strlen(r->unit)))))
        return rc;
    if (r->has_time) {
        if ((rc = put_member(b, "time", 0)))
            return rc;
        /* Out-of-range times cannot come from record_validate(); print the
         * raw milliseconds rather than a malformed date. */
        rc = time_in_range(r->time_ms) ? write_iso8601(b, r->time_ms)
                                       : buf_printf(b, "%lld", (long long)r->time_ms);
        if (rc)
            return rc;
    }
    if (r->group && ((rc = put_member(b, "group", 0)) ||
                     (rc = json_write_string(b, r->group, strlen(r->group)))))
        return rc;
    if (r->has_location) {
        if ((rc = put_member(b, "location", 0)) || (rc = buf_puts(b, "{\"lat\":")) ||
            (rc = json_write_number(b, r->lat)) || (rc = buf_puts(b, ",\"lng\":")) ||
            (rc = json_write_number(b, r->lng)))
            return rc;
        if (r->has_alt && ((rc = buf_puts(b, ",\"alt\":")) || (rc = json_write_number(b, r->alt))))
            return rc;
        if ((rc = buf_putc(b, '}')))
            return rc;
    }
    /* metadata is compact JSON object text (record_validate checked it). */
    if (r->metadata && ((rc = put_member(b, "metadata", 0)) || (rc = buf_puts(b, r->metadata))))
        return rc;
    return buf_putc(b, '}');
}
