/*
 * inspectd.h - the Live Inspector's sockets, served by a thread of their own:
 *
 *   <data_dir>/inspect.sock        `sealpipe inspect` connects, sends one
 *                                   request line, then reads events (JSON
 *                                   lines, core/inspect.h) until it leaves
 *   <data_dir>/broker-events.sock  the broker plugin's events (plugin
 *                                   option `events`): emitted to the
 *                                   inspector, connections to devstatus
 *
 * Both are unix sockets in the daemon's 0700 data directory: only its user
 * reaches them, so a watcher needs no secret and no device can speak on the
 * plugin's. A request is one JSON object:
 *   {"device":"sensor-01"|null, "since_ms":600000, "plaintext":false}
 */
#ifndef SP_INSPECTD_H
#define SP_INSPECTD_H

#include <stddef.h>

struct inspect;
struct devstatus;
struct inspectd;

#define INSPECTD_WATCH_SOCK  "inspect.sock"
#define INSPECTD_BROKER_SOCK "broker-events.sock"

/* Binds both sockets under data_dir and starts the thread. 0, or an error
 * with the reason in err. */
int inspectd_start(const char *data_dir, struct inspect *in, struct devstatus *ds,
                   struct inspectd **out, char *err, size_t errlen);
/* Stops the thread, closes every connection, removes the sockets. */
void inspectd_stop(struct inspectd *d);
/* Where the broker plugin sends its events. */
const char *inspectd_broker_path(const struct inspectd *d);

#endif
