/*
 * tip_build.c - the builder devices use to write a structured PUSH body (or a
 * PULL response) into their own buffer (TagoTiP.md §6, Revision D): names checked,
 * values escaped, suffixes in the grammar's order, numbers in the fewest
 * digits that read back, and an error that sticks and rolls the call back.
 * The daemon writes its PULL answers with it (runtime/core/tipserver.c). No
 * allocation; one builder per thread.
 */
#include "tip_scan.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sp_text.h"

/* ------------------------------------------------------------------------ */
/* Builder                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * b->stage: how far the body got. Body-level modifiers come first, then each
 * variable's value and suffixes; a stage may only move forward within a
 * variable, which enforces the order of §6.2 and §6.3.
 */
enum {
    ST_START,  /* nothing yet */
    ST_BLOC,   /* @=location written (Revision D: first) */
    ST_BTIME,  /* @time written (Revision C: before ^group) */
    ST_BGROUP, /* ^group written */
    ST_BMETA,  /* {meta block open (b->nmeta pairs) */
    ST_VALUE,  /* a variable's value written */
    ST_UNIT,
    ST_VLOC, /* @=location suffix (Revision D: after #unit) */
    ST_VTIME,
    ST_VGROUP,
    ST_VMETA, /* its {meta block open */
    ST_DONE,  /* the last variable takes no more suffixes */
    ST_CLOSED /* sp_tip_build_end wrote the "]" */
};

void sp_tip_build_init(struct sp_tip_builder *b, char *buf, size_t cap)
{
    memset(b, 0, sizeof *b);
    b->buf = buf;
    b->cap = cap;
    b->stage = ST_START;
    b->err = (buf == NULL || cap == 0) ? SP_ERR_INVAL : SP_OK;
    if (b->err == SP_OK)
        buf[0] = '\0';
}

/*
 * The bytes that must still fit after b->len to close the body: "}" while a
 * metadata block is open, then "]". Every write keeps room for them and the
 * NUL, so sp_tip_build_end can always close what the calls accepted.
 */
static size_t tail_len(const struct sp_tip_builder *b)
{
    return b->nmeta ? 2 : 1;
}

/* Appends n bytes, keeping room for the tail and the NUL. */
static int put(struct sp_tip_builder *b, const char *s, size_t n)
{
    if (b->len + n + tail_len(b) + 1 > b->cap)
        return SP_ERR_BUFSIZE;
    if (b->len + n + tail_len(b) > SP_MAX_FRAME)
        return SP_ERR_TOOLARGE;
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    return SP_OK;
}

static int put_str(struct sp_tip_builder *b, const char *s)
{
    return put(b, s, strlen(s));
}

/* Appends an escaped value (string or metadata), at least one byte. */
static int put_escaped(struct sp_tip_builder *b, const char *v)
{
    size_t room = b->cap - b->len, tail = tail_len(b);
    int n;

    if (v == NULL)
        return SP_ERR_INVAL;
    if (v[0] == '\0')
        return SP_ERR_PAYLOAD;
    /* Escape in place, keeping room for the tail besides the NUL. */
    n = room <= tail ? SP_ERR_BUFSIZE : sp_tip_escape(v, strlen(v), b->buf + b->len, room - tail);
    if (n < 0)
        return n;
    if (b->len + (size_t)n + tail > SP_MAX_FRAME)
        return SP_ERR_TOOLARGE;
    b->len += (size_t)n;
    return SP_OK;
}

/* 1-100 VARNAMECHAR, or SP_ERR_PAYLOAD. */
static int check_ident(const char *name)
{
    size_t i, n;

    if (name == NULL)
        return SP_ERR_INVAL;
    n = strlen(name);
    if (n == 0 || n > SP_MAX_NAME)
        return SP_ERR_PAYLOAD;
    for (i = 0; i < n; i++)
        if (!is_namechar((unsigned char)name[i]))
            return SP_ERR_PAYLOAD;
    return SP_OK;
}

/* Closes an open {} block. */
static int close_meta(struct sp_tip_builder *b)
{
    if (b->nmeta == 0)
        return SP_OK;
    b->nmeta = 0;
    return put(b, "}", 1);
}

/* Starts a variable: separator, checked name, operator. */
static int begin_var(struct sp_tip_builder *b, const char *name, const char *op)
{
    int rc;

    if ((rc = check_ident(name)) < 0)
        return rc;
    if (b->nvars >= SP_MAX_VARS || b->stage == ST_CLOSED)
        return SP_ERR_PAYLOAD;
    if ((rc = close_meta(b)) < 0)
        return rc;
    b->var_start = b->len;
    if ((rc = put(b, b->nvars ? ";" : "[", 1)) < 0 || (rc = put_str(b, name)) < 0)
        return rc;
    b->stage = ST_VALUE;
    b->loc = 0;
    return put_str(b, op);
}

static int put_unit(struct sp_tip_builder *b, const char *unit)
{
    struct scan s;
    struct sp_span sp;
    int rc;

    if (unit == NULL || unit[0] == '\0')
        return SP_OK;
    if (b->loc)
        return SP_ERR_PAYLOAD; /* §6.3.2: no unit on a location */
    s.p = unit;
    s.n = strlen(unit);
    s.i = 0;
    if (sp__tip_scan_text(&s, TEXT_UNIT, &sp) < 0 || s.i != s.n)
        return SP_ERR_PAYLOAD;
    if ((rc = put(b, "#", 1)) < 0)
        return rc;
    b->stage = ST_UNIT;
    return put(b, unit, s.n);
}

/*
 * Numbers go out in plain decimal (the grammar has no exponent) with the
 * fewest fraction digits that read back as the same double.
 */
static int put_number(struct sp_tip_builder *b, double v)
{
    char num[700];
    int n = sp__double_format(v, 1, num, sizeof num);

    return n < 0 ? SP_ERR_PAYLOAD : put(b, num, (size_t)n);
}

/*
 * Runs one builder call: does nothing after an error; an error sticks and
 * rolls the buffer back to before the call (state included).
 */
#define BUILD_CALL(b, body)                                                                        \
    do {                                                                                           \
        struct sp_tip_builder saved_;                                                              \
        int rc_;                                                                                   \
        if ((b) == NULL || (b)->err)                                                               \
            return;                                                                                \
        saved_ = *(b);                                                                             \
        rc_ = (body);                                                                              \
        if (rc_ < 0) {                                                                             \
            *(b) = saved_;                                                                         \
            (b)->err = rc_;                                                                        \
            (b)->buf[(b)->len] = '\0';                                                             \
        }                                                                                          \
    } while (0)

static int add_number(struct sp_tip_builder *b, const char *name, double v, const char *unit)
{
    int rc;

    if (!isfinite(v))
        return SP_ERR_PAYLOAD;
    if ((rc = begin_var(b, name, ":=")) < 0 || (rc = put_number(b, v)) < 0 ||
        (rc = put_unit(b, unit)) < 0)
        return rc;
    b->nvars++;
    return SP_OK;
}

void sp_tip_add_number(struct sp_tip_builder *b, const char *name, double v, const char *unit)
{
    BUILD_CALL(b, add_number(b, name, v, unit));
}

static int add_string(struct sp_tip_builder *b, const char *name, const char *v, const char *unit)
{
    int rc;

    if (v == NULL)
        return SP_ERR_INVAL;
    if (v[0] == '\0')
        return SP_ERR_PAYLOAD;
    if ((rc = begin_var(b, name, "=")) < 0 || (rc = put_escaped(b, v)) < 0 ||
        (rc = put_unit(b, unit)) < 0)
        return rc;
    b->nvars++;
    return SP_OK;
}

void sp_tip_add_string(struct sp_tip_builder *b, const char *name, const char *v, const char *unit)
{
    BUILD_CALL(b, add_string(b, name, v, unit));
}

static int add_bool(struct sp_tip_builder *b, const char *name, int v)
{
    int rc;

    if ((rc = begin_var(b, name, "?=")) < 0 || (rc = put_str(b, v ? "true" : "false")) < 0)
        return rc;
    b->nvars++;
    return SP_OK;
}

void sp_tip_add_bool(struct sp_tip_builder *b, const char *name, int v)
{
    BUILD_CALL(b, add_bool(b, name, v));
}

/* lat,lng[,alt]: the @= operator's value and the @= suffix's. */
static int put_coords(struct sp_tip_builder *b, double lat, double lng, int has_alt, double alt)
{
    int rc;

    if (!isfinite(lat) || !isfinite(lng) || (has_alt && !isfinite(alt)))
        return SP_ERR_PAYLOAD;
    if ((rc = put_number(b, lat)) < 0 || (rc = put(b, ",", 1)) < 0 || (rc = put_number(b, lng)) < 0)
        return rc;
    if (has_alt && ((rc = put(b, ",", 1)) < 0 || (rc = put_number(b, alt)) < 0))
        return rc;
    return SP_OK;
}

static int add_location(struct sp_tip_builder *b, const char *name, double lat, double lng,
                        int has_alt, double alt)
{
    int rc;

    if (!isfinite(lat) || !isfinite(lng) || (has_alt && !isfinite(alt)))
        return SP_ERR_PAYLOAD;
    if ((rc = begin_var(b, name, "@=")) < 0 || (rc = put_coords(b, lat, lng, has_alt, alt)) < 0)
        return rc;
    b->loc = 1;
    b->nvars++;
    return SP_OK;
}

void sp_tip_add_location(struct sp_tip_builder *b, const char *name, double lat, double lng,
                         int has_alt, double alt)
{
    BUILD_CALL(b, add_location(b, name, lat, lng, has_alt, alt));
}

/* A suffix or modifier of the given stage: only forward, only in its part. */
static int advance(struct sp_tip_builder *b, int stage)
{
    int body_level = stage < ST_VALUE;

    if (b->stage == ST_CLOSED)
        return SP_ERR_PAYLOAD;
    if (body_level ? b->nvars > 0 || b->stage > stage
                   : b->nvars == 0 || b->stage < ST_VALUE || b->stage > stage)
        return SP_ERR_PAYLOAD;
    if (b->stage == stage && stage != ST_BMETA && stage != ST_VMETA)
        return SP_ERR_PAYLOAD; /* twice */
    return SP_OK;
}

static int put_time(struct sp_tip_builder *b, int stage, int64_t t)
{
    char num[24];
    int rc;

    if (t < 0)
        return SP_ERR_PAYLOAD;
    if ((rc = advance(b, stage)) < 0)
        return rc;
    snprintf(num, sizeof num, "@%" PRId64, t);
    b->stage = stage;
    return put_str(b, num);
}

/*
 * "@=lat,lng[,alt]": the body-level modifier or a variable's suffix, which
 * an @= operator variable never takes (§6.3.2: its value is the location).
 */
static int put_location(struct sp_tip_builder *b, int stage, double lat, double lng, int has_alt,
                        double alt)
{
    int rc;

    if ((rc = advance(b, stage)) < 0)
        return rc;
    if (stage == ST_VLOC && b->loc)
        return SP_ERR_PAYLOAD;
    b->stage = stage;
    if ((rc = put(b, "@=", 2)) < 0)
        return rc;
    return put_coords(b, lat, lng, has_alt, alt);
}

static int put_group(struct sp_tip_builder *b, int stage, const char *group)
{
    int rc;

    if ((rc = check_ident(group)) < 0 || (rc = advance(b, stage)) < 0)
        return rc;
    b->stage = stage;
    if ((rc = put(b, "^", 1)) < 0)
        return rc;
    return put_str(b, group);
}

static int put_meta(struct sp_tip_builder *b, int stage, const char *key, const char *value)
{
    int rc;

    if ((rc = check_ident(key)) < 0 || (rc = advance(b, stage)) < 0)
        return rc;
    if (b->nmeta >= SP_MAX_META)
        return SP_ERR_PAYLOAD;
    b->stage = stage;
    if ((rc = put(b, b->nmeta ? "," : "{", 1)) < 0)
        return rc;
    /* Counted before the pair is written, so that it keeps room for the "}". */
    b->nmeta++;
    if ((rc = put_str(b, key)) < 0 || (rc = put(b, "=", 1)) < 0 || (rc = put_escaped(b, value)) < 0)
        return rc;
    return SP_OK;
}

void sp_tip_body_location(struct sp_tip_builder *b, double lat, double lng, int has_alt, double alt)
{
    BUILD_CALL(b, put_location(b, ST_BLOC, lat, lng, has_alt, alt));
}

void sp_tip_body_group(struct sp_tip_builder *b, const char *group)
{
    BUILD_CALL(b, put_group(b, ST_BGROUP, group));
}

void sp_tip_body_time(struct sp_tip_builder *b, int64_t time_ms)
{
    BUILD_CALL(b, put_time(b, ST_BTIME, time_ms));
}

void sp_tip_body_meta(struct sp_tip_builder *b, const char *key, const char *value)
{
    BUILD_CALL(b, put_meta(b, ST_BMETA, key, value));
}

static int var_unit(struct sp_tip_builder *b, const char *unit)
{
    int rc;

    if (unit == NULL || unit[0] == '\0')
        return SP_ERR_PAYLOAD;
    if ((rc = advance(b, ST_UNIT)) < 0)
        return rc;
    return put_unit(b, unit);
}

void sp_tip_var_unit(struct sp_tip_builder *b, const char *unit)
{
    BUILD_CALL(b, var_unit(b, unit));
}

void sp_tip_var_location(struct sp_tip_builder *b, double lat, double lng, int has_alt, double alt)
{
    BUILD_CALL(b, put_location(b, ST_VLOC, lat, lng, has_alt, alt));
}

void sp_tip_var_time(struct sp_tip_builder *b, int64_t time_ms)
{
    BUILD_CALL(b, put_time(b, ST_VTIME, time_ms));
}

void sp_tip_var_group(struct sp_tip_builder *b, const char *group)
{
    BUILD_CALL(b, put_group(b, ST_VGROUP, group));
}

void sp_tip_var_meta(struct sp_tip_builder *b, const char *key, const char *value)
{
    BUILD_CALL(b, put_meta(b, ST_VMETA, key, value));
}

/*
 * Where the last variable of buf[0..n) starts: its ";", or the "[" that opens
 * the block. Outside an escape these two bytes are always structure: values
 * are escaped, and names, groups, keys, units and numbers cannot hold them.
 */
static size_t last_var_start(const char *p, size_t n)
{
    size_t i = 0, at = 0;

    while (i < n) {
        if (p[i] == '\\') {
            i += 2;
            continue;
        }
        if (p[i] == ';' || p[i] == '[')
            at = i;
        i++;
    }
    return at;
}

void sp_tip_build_drop_last(struct sp_tip_builder *b)
{
    if (b == NULL || b->buf == NULL || b->nvars == 0)
        return;
    b->len = b->var_start;
    b->buf[b->len] = '\0';
    b->nvars--;
    /* The one before is now the last: found again, so a second drop works. */
    b->var_start = b->nvars ? last_var_start(b->buf, b->len) : 0;
    b->nmeta = 0;
    b->loc = 0;
    b->stage = ST_DONE;
    b->err = SP_OK;
}

int sp_tip_build_end(struct sp_tip_builder *b, size_t *len)
{
    int rc;

    if (b == NULL || len == NULL)
        return SP_ERR_INVAL;
    if (b->err)
        return b->err;
    if (b->stage == ST_CLOSED) {
        *len = b->len; /* a second call closes nothing more */
        return SP_OK;
    }
    if (b->nvars == 0) {
        b->err = SP_ERR_PAYLOAD; /* "[]" is not a body */
        return b->err;
    }
    if ((rc = close_meta(b)) < 0) {
        b->err = rc;
        return rc;
    }
    /* put() always left room for these bytes (see tail_len). */
    b->buf[b->len++] = ']';
    b->buf[b->len] = '\0';
    b->stage = ST_CLOSED;
    *len = b->len;
    return SP_OK;
}
