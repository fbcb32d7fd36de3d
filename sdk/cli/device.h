/*
 * device.h - what the files of sealpipe-device share: its limits and
 * defaults, the parsed command line, the MQTT session, the counter store, the
 * message buffers, and each file's entry points.
 *
 *   device.c   main: picks the command and runs it
 *   args.c     the option table, parsing and checking the command line
 *   usage.c    --help texts and error reports
 *   body.c     TagoTiP bodies and TagoTiP/S envelopes of push and seal
 *   counter.c  the counter file of encrypted push and pull (and of the "!N"
 *              of raw plain frames)
 *   session.c  the MQTT connection (<mosquitto.h> is included only there,
 *              in args.c for the protocol versions and in device.c for the
 *              library's init)
 *   push.c     the push command
 *   pull.c     the pull and listen commands (the server's answers)
 *   seal.c     the seal and hash commands (no broker)
 *   answer.c   reading an answer (plain ACK, sealed ACK envelope, plaintext
 *              fallback) into its ACK frame line: pull, listen and the links
 *   link.c     push, pull and ping over a request/answer transport (http,
 *              udp, tcp): the requests, their counters, the answers printed
 *   net_http.c the HTTP binding (<curl/curl.h> is included only there)
 *   net_raw.c  the raw binding: UDP datagrams and TCP streams
 *
 * A tool, not part of the device SDK: it uses the public SDK (sealpipe.h),
 * and reads its command line with the scanner the daemon uses too, the SDK's
 * internal sp_cmdline.h (args.c). One thread.
 */
#ifndef SP_DEVICE_H
#define SP_DEVICE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sealpipe.h"

/* Every limit and default of the tool, in one place. */
#define DEVICE_PROG              "sealpipe-device"
#define DEVICE_DEFAULT_HOST      "127.0.0.1"
#define DEVICE_DEFAULT_PORT      1883
#define DEVICE_DEFAULT_QOS       1
#define DEVICE_DEFAULT_CIPHER    "chacha20-poly1305"
#define DEVICE_DEFAULT_TIMEOUT   30   /* seconds without progress */
#define DEVICE_KEEPALIVE         60   /* seconds */
#define DEVICE_WINDOW            1000 /* unacknowledged messages in flight */
#define DEVICE_COUNTER_CHUNK     1024 /* counters reserved per counter-file write */
#define DEVICE_MAX_INTERVAL_MS   86400000u
#define DEVICE_MAX_TIMEOUT       86400u
#define DEVICE_DEFAULT_USERNAME  "Token"
#define DEVICE_DEFAULT_HTTP_PORT 8080
#define DEVICE_DEFAULT_RAW_PORT  5540 /* udp and tcp */
#define DEVICE_UDP_TRIES         5    /* sends of one datagram, the same bytes each time */
#define DEVICE_UDP_FIRST_WAIT_MS 500  /* before the first resend; doubles after each */
#define DEVICE_LINGER_MS         200  /* udp, tcp: wait for CMD frames after the last answer */

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* ---- the command line (args.c, usage.c) ---------------------------------- */

enum cmd {
    CMD_PUSH = 1u,
    CMD_SEAL = 2u,
    CMD_HASH = 4u,
    CMD_PULL = 8u,
    CMD_LISTEN = 16u,
    CMD_PING = 32u
};

/* Commands that talk to a server, those that may talk MQTT, those that may
 * choose the transport, and those that may seal or open envelopes. */
#define CMD_NET    (CMD_PUSH | CMD_PULL | CMD_LISTEN | CMD_PING)
#define CMD_MQTT   (CMD_PUSH | CMD_PULL | CMD_LISTEN)
#define CMD_XPORT  (CMD_PUSH | CMD_PULL | CMD_PING)
#define CMD_CRYPTO (CMD_PUSH | CMD_PULL | CMD_LISTEN | CMD_SEAL | CMD_PING)

/* The transports of --transport; mqtt is the default. */
enum transport { TRANSPORT_MQTT, TRANSPORT_HTTP, TRANSPORT_UDP, TRANSPORT_TCP };

enum opt_id {
    OPT_HELP = 'h',
    OPT_SERIAL = 256,
    OPT_HOST,
    OPT_PORT,
    OPT_USERNAME,
    OPT_PASSWORD,
    OPT_QOS,
    OPT_MQTT_VERSION,
    OPT_ENCRYPT,
    OPT_KEY,
    OPT_CIPHER,
    OPT_AUTH_HASH,
    OPT_COUNTER,
    OPT_COUNTER_FILE,
    OPT_COUNT,
    OPT_INTERVAL,
    OPT_TIMEOUT,
    OPT_QUIET,
    OPT_HEX,
    OPT_TOKEN,
    OPT_TRANSPORT,
    OPT_TLS,
    OPT_CAFILE
};

struct opt_def {
    const char *name;
    int id;
    const char *arg; /* NULL: a flag */
    unsigned cmds;   /* enum cmd bits */
    const char *help;
};

extern const struct opt_def opt_table[];
extern const size_t opt_count;

/* Parsed command line; the decoded secrets are wiped by args_cleanup. */
struct args {
    unsigned cmd;
    const char *cmd_name;
    const char *serial;
    const char *host;
    const char *username;
    const char *password;
    char *key_hex; /* a copy; wiped and freed by args_cleanup */
    const char *cipher;
    const char *auth_hex;
    const char *counter_file;
    const char *token;
    const char *body;
    const char *cafile;
    int transport; /* enum transport */
    int tls;       /* https (http only) */
    int port;      /* 0 until set: the transport's default */
    int qos;
    int qos_set;
    int mqtt_version;
    int mqtt_version_set;
    int encrypt;
    int quiet;
    int hex;
    int has_counter;
    uint32_t counter;
    uint64_t count;
    uint64_t interval_ms;
    unsigned timeout_s;
    int timeout_set;
    /* decoded */
    int suite;
    uint8_t key[SP_MAX_KEY_LEN];
    size_t key_len;
    uint8_t auth_hash[SP_HASH_LEN];
};

/* Sets the defaults and the command named name; -1 if there is no such command. */
int args_init(struct args *a, const char *name);
/*
 * Parses argv (argv[0] is the command name). Returns 0, EXIT_USAGE, or -1
 * after printing --help.
 */
int args_parse(struct args *a, int argc, char **argv);
/* Checks the combinations of options. Returns 0 or EXIT_USAGE. */
int args_check(struct args *a);
/* Wipes and frees the decoded secrets. */
void args_cleanup(struct args *a);
/* Strict unsigned decimal: digits only, no sign, no spaces, at most max. 0 or -1. */
int parse_uint(const char *s, uint64_t max, uint64_t *out);

/* --help of one command, and of the tool. */
void usage_cmd(FILE *f, unsigned cmd);
void usage_top(FILE *f);
/* "mqtt", "http", "udp" or "tcp". */
const char *transport_name(int transport);
/* Reports a usage error and returns EXIT_USAGE. */
int usage_error(const struct args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reports a runtime failure and returns EXIT_FAIL. */
int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- bodies and envelopes (body.c) --------------------------------------- */

/* Per-run buffers of push and seal; heap-allocated, they are large. */
struct work {
    struct sp_tip_body parsed;
    char body[SP_MAX_FRAME + 1];
    char inner[SP_MAX_FRAME + 1];
    uint8_t env[SP_ENV_MAX_LEN];
    size_t body_len;
    size_t inner_len;
    size_t env_len;
};

/* Expands and validates message index of BODY into w->body; 0 or an sp_err. */
int work_body(struct work *w, const char *tmpl, uint64_t index);
/* Seals "serial|body" from w->body into w->env; 0 or an sp_err. */
int work_seal(struct work *w, const struct args *a, const uint8_t device_hash[SP_HASH_LEN],
              uint32_t counter);
/* Seals the request "serial|body" (PING: "serial") of method into env; 0 or an sp_err. */
int seal_request(const struct args *a, int method, uint32_t counter, const char *body,
                 size_t body_len, uint8_t *env, size_t cap, size_t *env_len);
/* Wipes and frees w (NULL is fine). */
void work_free(struct work *w);
/* Reports an invalid BODY (message index) and returns EXIT_USAGE. */
int body_error(const struct args *a, uint64_t index, int rc);

/* ---- the counter file (counter.c) ---------------------------------------- */

/*
 * The counter file holds the last counter in decimal. Rather than one fsync
 * per message (100k messages would take minutes), counters are reserved in
 * chunks: the file is advanced to the end of the next chunk before the first
 * message of that chunk is sealed, and the last chunk ends at the last message,
 * so after a complete run the file holds exactly the last counter used. With
 * --interval-ms the chunk is one counter, so a killed slow run skips none.
 * A lock on PATH.lock keeps two pushes from sharing a counter.
 */
struct ctr_store {
    char *path;
    char *tmp;
    int lock_fd;
    int dir_fd;
    uint32_t reserved; /* value in the file */
};

/* Counter range of an encrypted push; store.path is NULL with --counter. */
struct counters {
    struct ctr_store store;
    uint32_t first;
    uint32_t chunk;
};

/* Empty: counters_close() may be called before counters_open(). */
void counters_init(struct counters *k);
/* The counters of a.count messages: from --counter, or reserved from the
 * counter file. Returns 0 or EXIT_FAIL. */
int counters_open(struct counters *k, const struct args *a);
/* Makes counter durable before use; last is the final counter of the run. */
int counters_reserve(struct counters *k, uint32_t counter, uint32_t last);
void counters_close(struct counters *k);

/* ---- the MQTT session (session.c) ---------------------------------------- */

struct mosquitto;

/*
 * The session drives the libmosquitto loop itself, in this thread: in this
 * mode mosquitto_publish writes straight to the socket, and mosquitto_loop
 * reads PUBACKs (and sends what libmosquitto queued behind the broker's
 * Receive Maximum) whenever the window is full, while pausing, and at the end.
 * Compared with mosquitto_loop_start this saves a wake-up write, a poll and
 * two lock round trips per message: measured about 1.4x faster on a 2-core box
 * where client and broker compete for CPU. Callbacks run inside
 * mosquitto_loop, so the counters below need no lock.
 */
struct session {
    struct mosquitto *mosq;
    int version;
    int conn_state; /* 0 waiting for CONNACK, 1 connected, -1 refused */
    int conn_rc;
    int lost; /* unexpected disconnect or network error */
    int lost_rc;
    uint64_t queued;   /* messages handed to mosquitto_publish */
    uint64_t done;     /* on_publish: PUBACK received (QoS 1) or written (QoS 0) */
    uint64_t rejected; /* PUBACK with a failure reason code (MQTT 5) */
    int reject_rc;
    int subscribed; /* SUBACK: 1 granted, -1 refused */
    /* Messages received (pull, listen), handled between loop turns. */
    struct rx {
        char *topic;
        uint8_t *payload;
        size_t len;
    } rx[64];
    size_t nrx;
    uint64_t rx_dropped;
};

/* Monotonic clock. */
int64_t now_ms(void);
double now_s(void);

/* Connects and waits for CONNACK. Returns 0 or EXIT_FAIL. */
int session_open(struct session *s, const struct args *a);
/* One turn of the network loop, waiting at most until the deadline. */
void session_step(struct session *s, int64_t deadline);
/*
 * Runs the loop until at most max_out messages are unacknowledged. Gives up
 * when nothing was acknowledged for timeout_s seconds. Returns 0 or EXIT_FAIL.
 */
int session_drain(struct session *s, uint64_t max_out, unsigned timeout_s);
/* Keeps the connection serviced for ms milliseconds. 0 or EXIT_FAIL. */
int session_sleep(struct session *s, uint64_t ms);
/* Hands one message to the client. 0 or EXIT_FAIL. */
int session_publish(struct session *s, const char *topic, const void *payload, size_t len, int qos);
/* Subscribes to the topics at QoS 1 and waits for the SUBACK. Returns 0 or EXIT_FAIL. */
int session_subscribe(struct session *s, char *const *topics, int n, unsigned timeout_s);
/* Reports the messages the broker rejected (MQTT 5 PUBACK) and returns EXIT_FAIL. */
int session_rejected(const struct session *s);
/* Reports the lost connection and returns EXIT_FAIL. */
int session_lost(const struct session *s);
/* Frees the received messages. */
void session_rx_clear(struct session *s);
/* Disconnects (cleanly if the session is healthy) and frees the client. */
void session_close(struct session *s);

/* ---- answers (answer.c) -------------------------------------------------- */

/* What answer_read returns for a message it cannot read. */
enum { ANSWER_BAD_ENVELOPE = -1, ANSWER_NOT_ACK = -2 };

/*
 * Turns one message from the server into its ACK frame line in out
 * ("ACK|[!N|]STATUS[|DETAIL]"): with sealed set, an envelope is opened with
 * the key (a message starting with 'A' is a plaintext fallback, TagoTiPs.md
 * §5.3), else it is read in plain_form: SP_ACK_MQTT on $tip/S/ack,
 * SP_ACK_FRAME on the raw binding and HTTP. Returns the status (enum
 * sp_ack_status) with *ack set (its detail span cleared), ANSWER_BAD_ENVELOPE
 * when an envelope does not open with this key, or ANSWER_NOT_ACK.
 */
int answer_read(const struct args *a, int sealed, int plain_form, const uint8_t *p, size_t len,
                char *out, size_t cap, struct sp_tip_ack *ack);

/* ---- push, pull and ping over http, udp and tcp (link.c, net_*.c) -------- */

/* One request: a plain one (the whole raw frame, or the HTTP body or
 * variable list) or a sealed envelope. */
struct request {
    int method; /* SP_METHOD_PUSH, _PULL or _PING */
    int sealed;
    const uint8_t *bytes;
    size_t len;
    int has_seq; /* raw plain frames carry "!seq" (TagoTiP.md §9.5) */
    uint32_t seq;
    unsigned linger_ms; /* udp, tcp: then wait this long for CMD frames that follow */
    int after;          /* the answer came: only CMD frames are printed now */
};

struct link {
    const struct args *a;
    int fd;                             /* udp, tcp: the connected socket; -1 when closed */
    void *curl;                         /* http: the CURL easy handle */
    char where[300];                    /* "127.0.0.1:5540": how messages name the peer */
    uint8_t rx[2 + SP_ENV_MAX_LEN + 1]; /* tcp: bytes read, not yet taken */
    size_t nrx;
    char line[SP_MAX_FRAME + 64]; /* the last answer line (answer_read) */
    long http_status;             /* of the last HTTP response */
    char why[512];                /* an ERR answer, e.g. "http 401 invalid_token" */
};

/*
 * What a transport received: each message handed to link_take, which prints
 * it and says whether it answered the request. Returns the status of the
 * answer, LINK_MORE (a CMD, or not ours: keep waiting) or LINK_BAD.
 */
enum { LINK_MORE = -1, LINK_BAD = -2 };
int link_take(struct link *l, const struct request *rq, int plain_form, const uint8_t *p,
              size_t len);

/* Opens the connection of a.transport (not mqtt). Returns 0 or EXIT_FAIL. */
int link_open(struct link *l, const struct args *a);
/*
 * Sends the request and waits --timeout seconds for its answer, printing on
 * stdout every ACK line received (pending commands, then the answer).
 * Returns the answer's status (enum sp_ack_status), or -1 after reporting on
 * stderr that none came or the transport failed.
 */
int link_exchange(struct link *l, const struct request *rq);
void link_close(struct link *l);

/* The transports behind link_*: net_http.c and net_raw.c. */
int http_open(struct link *l);
int http_exchange(struct link *l, const struct request *rq);
void http_close(struct link *l);
int raw_open(struct link *l);
int raw_exchange(struct link *l, const struct request *rq);
void raw_close(struct link *l);

/* push, pull and ping over a link (device.c picks them for --transport
 * http, udp and tcp); each returns the exit status. */
int link_push(const struct args *a);
int link_pull(const struct args *a);
int link_ping(const struct args *a);

/* ---- the commands: each returns the exit status -------------------------- */

int cmd_push(const struct args *a);   /* push.c */
int cmd_pull(const struct args *a);   /* pull.c */
int cmd_listen(const struct args *a); /* pull.c */
int cmd_seal(const struct args *a);   /* seal.c */
int cmd_hash(const struct args *a);   /* seal.c */

#endif
