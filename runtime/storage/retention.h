/*
 * retention.h - how long the buckets keep data, as TagoIO buckets do: a
 * global window (the `retention` option) and per-device overrides (the
 * device_retention table of schemas/bucket.sql, set by `sealpipe device set
 * --retention`). Rows of `data` whose record time, and rows of
 * `dead_letters` whose receive time, is older than their device's window are
 * deleted by the running daemon, a little at a time.
 *
 * The daemon calls retention_step() between batches, on the bucket's own
 * connection (one writer), every 500 ms, and every 50 ms while a step
 * reports that it is behind (retention_behind: a backlog, e.g. after the
 * window was shortened); each call is one short transaction bounded by a
 * row count and a few milliseconds (RETENTION_STEP_ROWS, RETENTION_STEP_MS),
 * so ingest never waits behind a large delete. Every delete walks an index
 * ((device, variable, time) of data, (device, received_at) of dead_letters)
 * from the oldest row of one device and stops at the cutoff: a step costs
 * what it deletes plus one index probe per device visited, never a scan of
 * the table. Deleted pages go to SQLite's free list and are reused by later
 * inserts, so the file stops growing once ingest and deletion balance.
 *
 * The CLI reads and writes the overrides with retention_get_device() and
 * retention_set_device(). Not thread-safe: one struct retention per bucket.
 */
#ifndef SP_RETENTION_H
#define SP_RETENTION_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/errors.h"
#include "base/timespan.h"
#include "bucket.h"

/* One step's bounds: rows deleted, and milliseconds spent. */
#ifndef RETENTION_STEP_ROWS
#define RETENTION_STEP_ROWS 10000
#endif
#ifndef RETENTION_STEP_MS
#define RETENTION_STEP_MS 10
#endif

/* Rows a key walk deletes at once, and a scan reads at once. */
#ifndef RETENTION_KEY_ROWS
#define RETENTION_KEY_ROWS 128
#endif
#ifndef RETENTION_SCAN_ROWS
#define RETENTION_SCAN_ROWS 128
#endif

/* Room for retention_format()'s text. */
#define RETENTION_TEXT_MAX 32

/*
 * Parses a retention as users write it: "forever" or "0" (keep forever, 0
 * ms) or a length of time such as "90d", "12h", "30m", "45s", "2w"
 * (timespan.h). Returns 0 with *ms, or SP_ERR_INVAL.
 */
static inline int retention_parse(const char *s, int64_t *ms)
{
    if (s && (strcmp(s, "forever") == 0 || strcmp(s, "0") == 0)) {
        *ms = 0;
        return SP_OK;
    }
    return timespan_parse(s, ms);
}

/* Writes ms as the largest whole unit ("90d", "36h", "forever" for 0). */
void retention_format(int64_t ms, char out[RETENTION_TEXT_MAX]);

struct retention;

/*
 * Prepares the statements on b's connection; global_ms is the window of
 * devices without an override (0: forever). Returns 0, SP_ERR_NOMEM or
 * SP_ERR_DB.
 */
int retention_open(struct bucket *b, int64_t global_ms, struct retention **out)
    __attribute__((warn_unused_result));
void retention_close(struct retention *rt);

/*
 * Deletes, in one transaction outside any batch, rows older than their
 * device's window as of now_ms, up to RETENTION_STEP_ROWS and for about
 * RETENTION_STEP_MS; the next call goes on where this one stopped. Returns
 * the rows deleted (>= 0), or SP_ERR_DB (nothing deleted; the next call
 * tries again).
 */
int retention_step(struct retention *rt, int64_t now_ms) __attribute__((warn_unused_result));

/*
 * 1 if the last step stopped at its bounds rather than at the end of a round:
 * more may be due now, and the caller may step again soon.
 */
int retention_behind(const struct retention *rt);

/*
 * A device's override: 0 with *ms (0 meaning forever), SP_ERR_NOTFOUND when
 * it has none (the global window applies), or SP_ERR_DB. For `device show`.
 */
int retention_get_device(struct bucket *b, const char *serial, int64_t *ms)
    __attribute__((warn_unused_result));

/*
 * Sets device serial's override to ms (0: keep forever), or removes it when
 * clear is set (the global window applies again). The daemon sees the change
 * at its next step. Returns 0 or SP_ERR_DB.
 */
int retention_set_device(struct bucket *b, const char *serial, int64_t ms, int clear)
    __attribute__((warn_unused_result));

#endif
