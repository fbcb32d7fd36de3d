/*
 * inspect.h - the Live Inspector's events: what happened to each device, in
 * order, kept in a bounded ring per device and handed to whoever watches.
 *
 * An event is one JSON object on one line (base/jsonline.h) with at least
 * "at" (Unix ms), "device" (serial; "" for no known device) and "kind":
 *
 *   connect, disconnect, subscribe, unsubscribe   the broker plugin's, carried
 *   login_refused, denied                          over transport/inspectd.c
 *   message      a message received (transport, topic, size, qos, retain)
 *   envelope     a TagoTiP/S envelope opened or rejected (suite, reason)
 *   log          a line an analysis logged for the device's message
 *   stored       records stored (count, variables)
 *   dead_letter  the message became a dead letter (reason, detail)
 *   duplicate    a redelivery of a message already stored, skipped
 *   sent         an answer, command or publish sent to the device
 *
 * Events are emitted after what they report is committed. Anyone may emit
 * (the pipeline's thread and inspectd's): one mutex guards the rings and the
 * watchers. With nobody watching an event costs its formatting, one malloc
 * and a ring slot (make bench prints the figure).
 *
 * A field that carries a device's decrypted plaintext is private: it is put
 * last, after inspect_private(), and only watchers that asked for plaintext
 * get it.
 */
#ifndef SP_INSPECT_H
#define SP_INSPECT_H

#include <stddef.h>
#include <stdint.h>

#include "base/jsonline.h"

#define INSPECT_EVENT_MAX    2048        /* bytes of one event line */
#define INSPECT_RING_BYTES   (32u << 10) /* kept events per device */
#define INSPECT_RING_EVENTS  512         /* at most this many of them */
#define INSPECT_RINGS_MAX    4096        /* devices with kept events; least recent dropped */
#define INSPECT_KEPT_BYTES   (16u << 20) /* kept events of all devices; least recent dropped */
#define INSPECT_WATCHERS_MAX 32          /* watching at once */
#define INSPECT_WATCH_BUF    (8u << 20)  /* output held for a slow watcher; past it, dropped */
#define INSPECT_PREVIEW      256         /* bytes of a payload or plaintext shown */

struct inspect;

/* One event being built (on the caller's stack or in its state). */
struct inspect_ev {
    struct jsonline j;
    size_t private_at; /* 0: no private field; else where it starts */
    int64_t at;        /* its time */
    char device[128];
    char buf[INSPECT_EVENT_MAX];
};

int inspect_new(struct inspect **out);
void inspect_free(struct inspect *in);

/* Starts event kind of device (NULL or "": none) at at_ms. */
void inspect_begin(struct inspect_ev *e, const char *device, const char *kind, int64_t at_ms);
/* What follows is private (plaintext): call once, before the last fields. */
void inspect_private(struct inspect_ev *e);
/* Keeps e in its device's ring and hands it to the watchers it concerns. */
void inspect_emit(struct inspect *in, struct inspect_ev *e);
/* Emits a line built elsewhere (the broker plugin's): a JSON object whose
 * first field is not "seq"; device as the line says. */
void inspect_emit_line(struct inspect *in, const char *device, const char *line, size_t len);

/* ---- watchers (transport/inspectd.c) ------------------------------------ */

struct inspect_watch {
    const char *device; /* NULL: every device */
    int64_t since_ms;   /* kept events this recent first (0: none) */
    int plaintext;      /* private fields too */
    const int *wake_fd; /* an eventfd written when output comes; NULL: inspect_wake_fd's */
};

struct inspect_watcher;

/*
 * Registers a watcher: its output starts with the kept events it asked for,
 * in order, then {"kind":"live"}, then every new event it concerns. Its wake
 * fd is written when its output was empty and is not any more. Returns
 * NULL when INSPECT_WATCHERS_MAX watch already or memory is short.
 */
struct inspect_watcher *inspect_watch(struct inspect *in, const struct inspect_watch *w,
                                      int64_t now_ms);
void inspect_unwatch(struct inspect *in, struct inspect_watcher *w);
/* Copies up to cap bytes of w's pending output into out and removes them
 * from it. Returns the count. */
size_t inspect_take(struct inspect *in, struct inspect_watcher *w, char *out, size_t cap);
/* Readable (eventfd) when some watcher without a wake_fd of its own has new
 * output. inspect_take() everything, then inspect_clear_wake(). */
int inspect_wake_fd(const struct inspect *in);
void inspect_clear_wake(struct inspect *in);
/* Events kept and emitted since start, for the stats. */
uint64_t inspect_count(struct inspect *in);

#endif
