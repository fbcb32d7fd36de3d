/*
 * broker.h - the embedded mosquitto broker, run as a child process.
 *
 * broker_start() writes <data_dir>/broker/mosquitto.conf, starts
 * `mosquitto -c` in its own session (so a crash of the daemon, even kill -9,
 * leaves it running with the daemon's queued messages), and waits until its
 * listener accepts connections. The broker logs to
 * <data_dir>/broker/mosquitto.log and persists sessions there.
 *
 * A broker left running by a previous daemon (found through its pid file,
 * with the same generated config) is adopted instead of started, so messages
 * it queued while the daemon was down are delivered. broker_stop() ends it.
 */
#ifndef SP_BROKER_H
#define SP_BROKER_H

#include <stddef.h>

/* The strings are borrowed for the broker's whole life, not only for
 * broker_start: broker_restart writes the config from them again. */
struct broker_opts {
    const char *mosquitto; /* binary */
    const char *data_dir;
    const char *bind;
    int port;
    int max_inflight;
    const char *plugin;   /* sealpipe_auth.so */
    const char *tls_cert; /* "" or NULL: no TLS listener */
    const char *tls_key;
    int tls_port;
    const char *device_publish;   /* plugin_opt_publish */
    const char *device_subscribe; /* plugin_opt_subscribe */
    int cross_profile;            /* plugin_opt_cross_profile */
    const char *client_id;        /* the daemon's: plugin_opt_daemon_client_id */
    const char *journal_dir;      /* plugin_opt_journal; NULL: no journal */
    int journal_sync_ms;          /* plugin_opt_journal_sync_ms */
    int journal_min_free_mb;      /* plugin_opt_journal_min_free_mb */
    const char *events;           /* plugin_opt_events: the inspector's socket; NULL: none */
    const char *answers;          /* plugin_opt_answers: the daemon's answers; NULL: none */
};

/* The daemon's own broker username; its password is generated (see broker_secret). */
#define BROKER_DAEMON_USER "sealpipe-daemon"

struct broker;

/*
 * Starts or adopts the broker and waits up to 10 s for its listener. Returns
 * 0, or SP_ERR_IO with the reason in err (binary missing, port in use: the
 * broker's own last log lines are quoted).
 */
int broker_start(const struct broker_opts *o, struct broker **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* 1 if the broker process is alive, 0 if it has exited. */
int broker_alive(struct broker *b);

/* Starts it again after it died; same returns as broker_start. */
int broker_restart(struct broker *b, char *err, size_t errlen) __attribute__((warn_unused_result));

/* Stops the broker (SIGTERM) and waits while it saves its queue; kills it
 * only once the save stops growing for 10 s. Frees b. */
void broker_stop(struct broker *b);

/* The daemon's broker password (<data_dir>/broker/daemon.secret, 0600). */
const char *broker_secret(const struct broker *b);

/* Where the daemon connects: the unix socket path, and port 0. */
const char *broker_host(const struct broker *b);
int broker_port(const struct broker *b);

#endif
