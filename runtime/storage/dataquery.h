/*
 * dataquery.h - reading the buckets with TagoIO's data-query semantics, for
 * sealpipe query (cli/query.c): a device's records, newest first, filtered by
 * variable, time range and group, paged with qty and skip, or reduced per
 * variable (and per time interval) to one record or one number.
 *
 * It opens <data_dir>/sealpipe.db read-only, so it works beside the running
 * daemon (WAL: a reader never blocks the writer) and can change nothing; it
 * never creates the database. One connection per struct dataquery_db; not
 * thread-safe.
 */
#ifndef SP_DATAQUERY_H
#define SP_DATAQUERY_H

#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/buf.h"
#include "base/record.h"

/* The most rows one query returns (qty). TagoIO states no maximum for its
 * API; 10,000 is the most data points one of its widgets shows. */
#define DATAQUERY_MAX_QTY 10000
/* The default qty, as TagoIO's. */
#define DATAQUERY_DEFAULT_QTY 15
/* The most --variable names one query takes. */
#define DATAQUERY_MAX_VARIABLES 100

/* What a query returns per variable (and interval): the records themselves,
 * or one of these. min, max, avg and sum read numbers only. */
enum dataquery_agg {
    DATAQUERY_RECORDS,
    DATAQUERY_LAST,  /* the newest record */
    DATAQUERY_FIRST, /* the oldest record */
    DATAQUERY_COUNT, /* how many records (of any type) */
    DATAQUERY_MIN,   /* the record with the smallest number (the newest of equals) */
    DATAQUERY_MAX,   /* the record with the largest number (the newest of equals) */
    DATAQUERY_AVG,   /* the mean of the numbers */
    DATAQUERY_SUM,   /* the sum of the numbers */
};

struct dataquery {
    const char *serial;
    const char *const *variables; /* lowercase names; nvariables 0: every variable */
    size_t nvariables;
    const char *group; /* NULL: any */
    int has_start, has_end;
    int64_t start_ms, end_ms; /* both inclusive, Unix milliseconds */
    int64_t qty, skip;        /* rows returned and skipped, after any reduction */
    int ascending;            /* oldest first (default: newest first) */
    enum dataquery_agg agg;
    int64_t interval_ms; /* > 0 with an aggregate: one row per interval, aligned to the epoch */
};

struct dataquery_row {
    /* The record; for count, avg and sum: variable, value, and the unit when
     * every record that has one agrees, without time. */
    struct record rec;
    int has_interval;
    int64_t interval_ms; /* start of the row's interval */
};

struct dataquery_db;

/*
 * Opens <data_dir>/sealpipe.db read-only (never creating it). Returns 0, or
 * SP_ERR_NOTFOUND / SP_ERR_DB with the reason in err.
 */
int dataquery_open(const char *data_dir, struct dataquery_db **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void dataquery_close(struct dataquery_db *d);
/* Stops a dataquery_run that runs past ms (then SP_ERR_TIMEOUT, with a
 * message in err); 0: no limit (the default). */
void dataquery_time_limit(struct dataquery_db *d, int ms);

/* 1 if the registry has a device serial, 0 if not, or SP_ERR_DB with err. */
int dataquery_device_exists(struct dataquery_db *d, const char *serial, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Called for each row in order; strings live in the arena given to
 * dataquery_run, which it may reset. Nonzero stops the query with that code. */
typedef int (*dataquery_row_fn)(void *ctx, const struct dataquery_row *row);

/*
 * Runs q, calling fn(ctx, row) for each row. Returns 0, fn's nonzero code,
 * SP_ERR_NOMEM (the arena is full), SP_ERR_TIMEOUT past dataquery_time_limit,
 * or SP_ERR_DB with sqlite's message in err (both with err set).
 */
int dataquery_run(struct dataquery_db *d, const struct dataquery *q, struct arena *a,
                  dataquery_row_fn fn, void *ctx, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * Writes the SQL statement dataquery_run executes for q into out, with
 * numbered parameters (?1 serial, ?2 start, ?3 end, ?4 group, ?5 qty, ?6
 * skip, ?7... the variables). Returns 0 or SP_ERR_NOMEM / SP_ERR_TOOLARGE.
 */
int dataquery_sql(const struct dataquery *q, struct buf *out) __attribute__((warn_unused_result));

#endif
